#include "solve/conv_dynamics.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "solve/shape_text.h"

namespace node_ext {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw std::invalid_argument("ConvDynamics: " + message); }

// As node_ext.nn.add_time: the time (one per sample, or one for all) as a channel of x's shape, first or last.
at::Tensor with_time(const at::Tensor& x, const at::Tensor& t, TimeInput where) {
  std::vector<int64_t> column(x.dim(), 1);
  column[0] = -1;
  std::vector<int64_t> channel = x.sizes().vec();
  channel[1] = 1;
  const at::Tensor tt = t.reshape(column).to(x.scalar_type()).expand(channel);
  return where == TimeInput::Last ? at::cat({x, tt}, 1) : at::cat({tt, x}, 1);
}

class Conv2dLayer : public ConvLayer {
 public:
  Conv2dLayer(at::Tensor weight, std::optional<at::Tensor> bias, std::vector<int64_t> stride,
              std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups, TimeInput time)
      : weight_(std::move(weight)), bias_(std::move(bias)), stride_(std::move(stride)), padding_(std::move(padding)),
        dilation_(std::move(dilation)), groups_(groups), time_(time) {}

  at::Tensor operator()(const at::Tensor& x, const at::Tensor& t) const override {
    const at::Tensor in = time_ == TimeInput::None ? x : with_time(x, t, time_);
    return at::conv2d(in, weight_, bias_, stride_, padding_, dilation_, groups_);
  }

  int64_t out_channels(int64_t in, const std::string& where) const override {
    const int64_t takes = in + (time_ == TimeInput::None ? 0 : 1);
    if (weight_.size(1) * groups_ != takes || weight_.size(0) % groups_ != 0) {
      invalid(where + ": a weight of shape " + shape_of(weight_) + " with groups=" + std::to_string(groups_) +
              " does not take " + std::to_string(in) + " channels" + (takes != in ? " and the time channel" : ""));
    }
    return weight_.size(0);
  }

 private:
  at::Tensor weight_;
  std::optional<at::Tensor> bias_;
  std::vector<int64_t> stride_, padding_, dilation_;
  int64_t groups_;
  TimeInput time_;
};

class GroupNormLayer : public ConvLayer {
 public:
  GroupNormLayer(int64_t groups, std::optional<at::Tensor> weight, std::optional<at::Tensor> bias, double eps)
      : groups_(groups), weight_(std::move(weight)), bias_(std::move(bias)), eps_(eps) {}

  at::Tensor operator()(const at::Tensor& x, const at::Tensor&) const override {
    return at::group_norm(x, groups_, weight_, bias_, eps_, /*cudnn_enabled=*/true);
  }

  int64_t out_channels(int64_t in, const std::string& where) const override {
    if (groups_ < 1 || in % groups_ != 0) {
      invalid(where + ": " + std::to_string(in) + " channels do not split into num_groups=" + std::to_string(groups_));
    }
    for (const auto* p : {&weight_, &bias_}) {
      if (*p && (*p)->numel() != in) {
        invalid(where + ": an affine parameter of shape " + shape_of(**p) + " for " + std::to_string(in) + " channels");
      }
    }
    return in;
  }

 private:
  int64_t groups_;
  std::optional<at::Tensor> weight_, bias_;
  double eps_;
};

class BatchNormLayer : public ConvLayer {
 public:
  BatchNormLayer(std::optional<at::Tensor> weight, std::optional<at::Tensor> bias, std::optional<at::Tensor> mean,
                 std::optional<at::Tensor> var, std::optional<at::Tensor> count, bool training,
                 std::optional<double> momentum, double eps)
      : weight_(std::move(weight)), bias_(std::move(bias)), mean_(std::move(mean)), var_(std::move(var)),
        count_(std::move(count)), training_(training), momentum_(momentum), eps_(eps) {}

  at::Tensor operator()(const at::Tensor& x, const at::Tensor&) const override {
    double factor = momentum_.value_or(0.0);
    if (count_) {  // nn.BatchNorm2d.forward in training mode with running statistics
      {
        c10::AutoGradMode no_grad(false);
        count_->add_(1);
      }
      if (!momentum_) factor = 1.0 / count_->item<double>();
    }
    return at::batch_norm(x, weight_, bias_, mean_, var_, training_, factor, eps_, /*cudnn_enabled=*/true);
  }

  int64_t out_channels(int64_t in, const std::string& where) const override {
    for (const auto* p : {&weight_, &bias_, &mean_, &var_}) {
      if (*p && (*p)->numel() != in) {
        invalid(where + ": a parameter or running statistic of shape " + shape_of(**p) + " for " +
                std::to_string(in) + " channels");
      }
    }
    if (!training_ && (!mean_ || !var_)) invalid(where + ": evaluation mode needs running_mean and running_var");
    return in;
  }

 private:
  std::optional<at::Tensor> weight_, bias_, mean_, var_, count_;
  bool training_;
  std::optional<double> momentum_;
  double eps_;
};

class ActivationLayer : public ConvLayer {
 public:
  explicit ActivationLayer(Activation a) : activation_(std::move(a)) {}
  at::Tensor operator()(const at::Tensor& x, const at::Tensor&) const override { return activation_(x); }
  int64_t out_channels(int64_t in, const std::string&) const override { return in; }

 private:
  Activation activation_;
};

std::optional<at::Tensor> defined_or_none(const std::optional<at::Tensor>& t) {
  return t && t->defined() ? t : std::nullopt;
}

}  // namespace

ConvDynamics::ConvDynamics(int64_t channels) : channels_(channels), out_channels_(channels) {
  if (channels < 1) invalid("channels must be positive, got " + std::to_string(channels));
}

void ConvDynamics::check_tensor(const at::Tensor& t, const std::string& name) {
  if (!at::isFloatingType(t.scalar_type())) invalid(name + " must be a floating tensor, got " + std::string(c10::toString(t.scalar_type())));
  if (!options_) options_ = t.options();
  if (t.scalar_type() != options_->dtype().toScalarType() || t.device() != options_->device()) {
    std::ostringstream o;
    o << name << " is " << t.scalar_type() << " on " << t.device() << ", the tensors before it "
      << options_->dtype().toScalarType() << " on " << options_->device() << ": all must have one dtype and device";
    invalid(o.str());
  }
}

void ConvDynamics::append(std::unique_ptr<ConvLayer> layer, const std::string& what) {
  out_channels_ = layer->out_channels(out_channels_, "layer " + std::to_string(layers_.size()) + " (" + what + ")");
  layers_.push_back(std::move(layer));
}

void ConvDynamics::add_conv2d(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
                              int64_t groups, TimeInput time) {
  const std::string where = "layer " + std::to_string(layers_.size()) + " (conv2d)";
  if (!weight.defined() || weight.dim() != 4) invalid(where + ": weight must be 4-D (out, in / groups, kh, kw), got shape " + shape_of(weight));
  check_tensor(weight, where + " weight");
  const std::optional<at::Tensor> b = defined_or_none(bias);
  if (b) {
    check_tensor(*b, where + " bias");
    if (b->dim() != 1 || b->size(0) != weight.size(0)) {
      invalid(where + ": bias of shape " + shape_of(*b) + " for a weight of shape " + shape_of(weight));
    }
  }
  if (groups < 1) invalid(where + ": groups must be positive, got " + std::to_string(groups));
  for (const auto& [name, v] : {std::pair<const char*, const std::vector<int64_t>*>{"stride", &stride},
                                {"padding", &padding}, {"dilation", &dilation}}) {
    if (v->size() != 2) invalid(where + ": " + name + " must hold 2 entries, got " + std::to_string(v->size()));
  }
  append(std::make_unique<Conv2dLayer>(weight, b, std::move(stride), std::move(padding), std::move(dilation), groups, time),
         "conv2d");
}

void ConvDynamics::add_group_norm(int64_t num_groups, const std::optional<at::Tensor>& weight,
                                  const std::optional<at::Tensor>& bias, double eps) {
  const std::string where = "layer " + std::to_string(layers_.size()) + " (group_norm)";
  const std::optional<at::Tensor> w = defined_or_none(weight), b = defined_or_none(bias);
  if (w) check_tensor(*w, where + " weight");
  if (b) check_tensor(*b, where + " bias");
  append(std::make_unique<GroupNormLayer>(num_groups, w, b, eps), "group_norm");
}

void ConvDynamics::add_batch_norm(const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& running_mean,
                                  const std::optional<at::Tensor>& running_var,
                                  const std::optional<at::Tensor>& num_batches_tracked, bool training,
                                  std::optional<double> momentum, double eps) {
  const std::string where = "layer " + std::to_string(layers_.size()) + " (batch_norm)";
  const std::optional<at::Tensor> w = defined_or_none(weight), b = defined_or_none(bias);
  const std::optional<at::Tensor> mean = defined_or_none(running_mean), var = defined_or_none(running_var);
  const std::optional<at::Tensor> count = defined_or_none(num_batches_tracked);
  for (const auto& [name, p] : {std::pair<const char*, const std::optional<at::Tensor>*>{"weight", &w}, {"bias", &b},
                                {"running_mean", &mean}, {"running_var", &var}}) {
    if (*p) check_tensor(**p, where + " " + name);
  }
  if (count && (count->numel() != 1 || !training)) {
    invalid(where + ": num_batches_tracked must be a one-element tensor, given in training mode only");
  }
  append(std::make_unique<BatchNormLayer>(w, b, mean, var, count, training, momentum, eps), "batch_norm");
}

void ConvDynamics::add_activation(Activation activation) {
  append(std::make_unique<ActivationLayer>(std::move(activation)), "activation");
}

at::Tensor ConvDynamics::operator()(const at::Tensor& t, const at::Tensor& y) {
  TORCH_CHECK(y.dim() == 4 && y.size(1) == channels_, "ConvDynamics: takes a state of shape (batch, ", channels_,
              ", height, width), got ", y.sizes());
  TORCH_CHECK(t.numel() == 1 || t.numel() == y.size(0), "ConvDynamics: takes one time or one per sample (",
              y.size(0), "), got a time of shape ", t.sizes());
  at::Tensor x = y;
  for (const auto& layer : layers_) x = (*layer)(x, t);
  TORCH_CHECK(x.sizes() == y.sizes(), "ConvDynamics: the layers turn a state of shape ", y.sizes(), " into ",
              x.sizes(), "; dynamics must return the state's shape");
  return as_state_result(x, y);
}

}  // namespace node_ext
