#include "solve/mlp_dynamics.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/core/GradMode.h>

#include "kernels/cpu/dense_layer.h"
#include "solve/shape_text.h"

#include <stdexcept>

namespace node_ext {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw std::invalid_argument("MLPDynamics: " + message); }

std::vector<TimeInput> first_layer_time(size_t layers, bool time_dependent, bool time_first) {
  if (time_first && !time_dependent) invalid("time_first needs time_dependent=True");
  std::vector<TimeInput> inputs(layers, TimeInput::None);
  if (layers > 0 && time_dependent) inputs[0] = time_first ? TimeInput::First : TimeInput::Last;
  return inputs;
}

}  // namespace

MLPDynamics::MLPDynamics(const std::vector<at::Tensor>& weights, const std::vector<std::optional<at::Tensor>>& biases,
                         Activation activation, bool time_dependent, int64_t input_power, bool time_first)
    : MLPDynamics(weights, biases, std::move(activation), first_layer_time(weights.size(), time_dependent, time_first),
                  input_power) {}

MLPDynamics::MLPDynamics(const std::vector<at::Tensor>& weights, const std::vector<std::optional<at::Tensor>>& biases,
                         Activation activation, std::vector<TimeInput> time_inputs, int64_t input_power)
    : weights_(weights), biases_(biases), activation_(std::move(activation)), time_inputs_(std::move(time_inputs)),
      time_dependent_(false), input_power_(input_power) {
  if (weights_.empty()) invalid("weights must hold at least one layer");
  if (input_power_ < 1) invalid("input_power must be a positive integer, got " + std::to_string(input_power_));
  if (biases_.size() != weights_.size()) {
    invalid("biases must hold one entry (a tensor or None) per layer: " + std::to_string(weights_.size()) +
            " weights, " + std::to_string(biases_.size()) + " biases");
  }
  if (time_inputs_.size() != weights_.size()) {
    invalid("time_inputs must hold one entry per layer: " + std::to_string(weights_.size()) + " weights, " +
            std::to_string(time_inputs_.size()) + " time inputs");
  }
  for (TimeInput t : time_inputs_) time_dependent_ = time_dependent_ || t != TimeInput::None;
  const at::Tensor& w0 = weights_[0];
  for (size_t i = 0; i < weights_.size(); ++i) {
    const at::Tensor& w = weights_[i];
    const std::string name = "weights[" + std::to_string(i) + "]";
    if (!w.defined() || w.dim() != 2) invalid(name + " must be a 2-D tensor (out, in), got shape " + shape_of(w));
    if (!at::isFloatingType(w.scalar_type()) || w.scalar_type() != w0.scalar_type() || w.device() != w0.device()) {
      invalid(name + " must have the floating dtype and device of weights[0]");
    }
  }
  dim_ = weights_.back().size(0);
  for (size_t i = 0; i < weights_.size(); ++i) {
    const at::Tensor& w = weights_[i];
    const std::string name = "weights[" + std::to_string(i) + "]";
    const std::optional<at::Tensor>& b = biases_[i];
    if (b && b->defined()) {
      if (b->dim() != 1 || b->size(0) != w.size(0)) {
        invalid("biases[" + std::to_string(i) + "] of shape " + shape_of(*b) + " for weights of shape " + shape_of(w));
      }
      if (b->scalar_type() != w0.scalar_type() || b->device() != w0.device()) {
        invalid("biases[" + std::to_string(i) + "] must have the dtype and device of weights[0]");
      }
    }
    const bool timed = time_inputs_[i] != TimeInput::None;
    const int64_t takes = (i == 0 ? dim_ : weights_[i - 1].size(0)) + (timed ? 1 : 0);
    if (w.size(1) != takes) {
      invalid(name + " of shape " + shape_of(w) +
              (i == 0 ? " for a state of width " + std::to_string(dim_)
                      : " does not take the " + std::to_string(weights_[i - 1].size(0)) + " outputs of the layer before it") +
              (timed ? " and time as an extra input" : "") + ": expected " + std::to_string(takes) + " inputs");
    }
  }
  for (const at::Tensor& w : weights_) work_per_row_ += w.size(0) * w.size(1);
}

at::Tensor MLPDynamics::operator()(const at::Tensor& t, const at::Tensor& y) {
  return fused_applies(t, y) ? eval_fused(t, y) : eval_aten(t, y);
}

at::Tensor MLPDynamics::eval_aten(const at::Tensor& t, const at::Tensor& y) const {
  // y ** p as Python computes it (Tensor.__pow__ with an integer exponent).
  at::Tensor x = input_power_ == 1 ? y : at::pow(y, input_power_);
  at::Tensor tt;
  if (time_dependent_) {
    // As node_ext.nn.add_time: the time (one per row, or one for all) as an extra feature.
    TORCH_CHECK(y.dim() == 2, "MLPDynamics: a time-dependent MLP takes a state of shape (batch, ", dim_,
                "), got ", y.sizes());
    tt = t.reshape({-1, 1}).to(y.scalar_type()).expand({y.size(0), 1});
  }
  const size_t n = weights_.size();
  for (size_t i = 0; i < n; ++i) {
    if (time_inputs_[i] == TimeInput::Last) x = at::cat({x, tt}, 1);
    if (time_inputs_[i] == TimeInput::First) x = at::cat({tt, x}, 1);
    x = at::linear(x, weights_[i], biases_[i]);
    if (i + 1 < n) x = activation_(x);
  }
  return as_state_result(x, y);
}

bool MLPDynamics::fused_shape_ok(const at::Tensor& t, const at::Tensor& y, bool small_only) const {
  // Under torch.autocast Python computes the layers in lower precision: ATen does the same here.
  if (at::autocast::is_autocast_enabled(at::kCPU)) return false;
  const at::ScalarType dtype = weights_[0].scalar_type();
  if (!y.device().is_cpu() || !weights_[0].device().is_cpu() || y.scalar_type() != dtype || !y.is_contiguous() ||
      (dtype != at::kFloat && dtype != at::kDouble) || y.dim() < 1 || y.size(-1) != dim_ ||
      (time_dependent_ && y.dim() != 2) || (small_only && y.numel() / dim_ * work_per_row_ > kFusedMaxWork) ||
      (time_dependent_ && t.numel() != 1 && t.numel() != y.numel() / dim_)) {
    return false;
  }
  for (const std::optional<at::Tensor>& b : biases_) {  // read in place by the fused kernels
    if (b && b->defined() && !b->is_contiguous()) return false;
  }
  return true;
}

bool MLPDynamics::fused_applies(const at::Tensor& t, const at::Tensor& y, bool small_only) const {
  if (!fused_shape_ok(t, y, small_only)) return false;
  if (!c10::GradMode::is_enabled()) return true;
  if (y.requires_grad() || t.requires_grad()) return false;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (weights_[i].requires_grad() || (biases_[i] && biases_[i]->defined() && biases_[i]->requires_grad())) {
      return false;
    }
  }
  return true;
}

void MLPDynamics::refresh_transposed() {
  if (transposed_.size() != weights_.size()) {
    transposed_.assign(weights_.size(), at::Tensor());
    padded_.assign(weights_.size(), at::Tensor());
    versions_.assign(weights_.size(), 0);
  }
  for (size_t i = 0; i < weights_.size(); ++i) {
    const uint32_t v = weights_[i]._version();
    if (transposed_[i].defined() && versions_[i] == v) continue;
    // (in, out) for the forward layers and (out, in) for the vector-Jacobian products, with the
    // padding the layer kernel's edge tiles read past the end. The kernels take the time as the
    // last input: the columns of a layer taking it first are rotated.
    const at::Tensor w = time_inputs_[i] == TimeInput::First ? at::roll(weights_[i], -1, 1) : weights_[i];
    const int64_t padding = w.scalar_type() == at::kFloat ? cpu::kDensePadding<float> : cpu::kDensePadding<double>;
    transposed_[i] = at::zeros({w.numel() + padding}, w.options().requires_grad(false));
    transposed_[i].narrow(0, 0, w.numel()).view({w.size(1), w.size(0)}).copy_(w.detach().t());
    padded_[i] = at::zeros({w.numel() + padding}, w.options().requires_grad(false));
    padded_[i].narrow(0, 0, w.numel()).view(w.sizes()).copy_(w.detach());
    versions_[i] = v;
  }
}

const at::Tensor& MLPDynamics::powered_state(const at::Tensor& y) {
  if (input_power_ == 1) return y;
  if (!powered_.defined() || powered_.sizes() != y.sizes() || powered_.scalar_type() != y.scalar_type()) {
    powered_ = at::empty(y.sizes(), y.options());
  }
  at::pow_out(powered_, y, input_power_);
  return powered_;
}

template <typename T>
void MLPDynamics::fused_layers(const at::Tensor& t, const at::Tensor& y, at::Tensor& out) {
  const int64_t rows = y.numel() / dim_;
  const size_t n = weights_.size();
  const T* x = powered_state(y).data_ptr<T>();
  int64_t in = dim_;
  at::Tensor tt;
  if (time_dependent_) tt = t.scalar_type() == y.scalar_type() ? t.contiguous() : t.to(y.scalar_type()).contiguous();
  for (size_t l = 0; l < n; ++l) {
    const int64_t width = weights_[l].size(0);
    at::Tensor& dst = l + 1 < n ? hidden_[l] : out;
    const T* wt = transposed_[l].data_ptr<T>();
    const T* b = biases_[l] && biases_[l]->defined() ? biases_[l]->data_ptr<T>() : nullptr;
    const bool with_time = time_inputs_[l] != TimeInput::None;
    cpu::dense_layer<T>(x, rows, in, wt, b, with_time ? tt.data_ptr<T>() : nullptr, tt.numel() > 1 ? 1 : 0,
                        with_time ? wt + in * width : nullptr, width, dst.data_ptr<T>());
    if (l + 1 < n) activation_.apply_(dst);
    x = dst.data_ptr<T>();
    in = width;
  }
}

at::Tensor MLPDynamics::eval_fused(const at::Tensor& t, const at::Tensor& y) {
  // Nothing here needs a gradient: skip autograd's dispatch (the results stay ordinary tensors).
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  refresh_transposed();
  const int64_t rows = y.numel() / dim_;
  if (hidden_.empty() || hidden_[0].size(0) != rows) {
    hidden_.clear();
    for (size_t l = 0; l + 1 < weights_.size(); ++l) hidden_.push_back(at::empty({rows, weights_[l].size(0)}, y.options()));
  }
  if (out_shape_ != y.sizes().vec()) {
    out_shape_ = y.sizes().vec();
    out_pool_ = TensorPool(at::empty_like(y, at::MemoryFormat::Contiguous), 16);
  }
  at::Tensor out = out_pool_.acquire();
  if (y.scalar_type() == at::kFloat) {
    fused_layers<float>(t, y, out);
  } else {
    fused_layers<double>(t, y, out);
  }
  return out;
}

}  // namespace node_ext
