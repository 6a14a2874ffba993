// MLPDynamics::eval_vjp: f(t, y) and its vector-Jacobian products for the adjoint's backward solve
// in one fused CPU pass, without autograd: the forward layers keep their pre-activations z_l and
// activations h_l; the backward pass sends the cotangent g through the layers,
//   dW_l = g_l^T h_{l-1},  db_l = sum_rows g_l,  g_{l-1} = (g_l W_l) * act'(z_{l-1}),
// down to the input [y, t], whose gradient holds a^T df/dy and a^T df/dt (Chen et al. 2018,
// appendix B); a hidden layer taking the time adds its time column's share to a^T df/dt. With an input power p the input is [y**p, t], and a^T df/dy takes the factor
// p y**(p-1). The derivatives are those of PyTorch's backward formulas.
#include <ATen/ATen.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/dense_layer.h"
#include "solve/mlp_dynamics.h"

namespace node_ext {

namespace {

// g *= act'(z), written from the pre-activation z and the activation h = act(z).
template <typename T>
void times_derivative(T* g, const T* z, const T* h, int64_t n, const Activation& a) {
  using Kind = Activation::Kind;
  const T alpha = static_cast<T>(a.alpha);
  const T threshold = static_cast<T>(a.threshold);
  switch (a.kind) {
    case Kind::Tanh:
      for (int64_t i = 0; i < n; ++i) g[i] *= T(1) - h[i] * h[i];
      break;
    case Kind::ReLU:
      for (int64_t i = 0; i < n; ++i) g[i] = h[i] > T(0) ? g[i] : T(0);
      break;
    case Kind::LeakyReLU:
      for (int64_t i = 0; i < n; ++i) g[i] = z[i] > T(0) ? g[i] : g[i] * alpha;
      break;
    case Kind::ELU:
      // alpha exp(z), not h + alpha, which cancels for very negative z.
      for (int64_t i = 0; i < n; ++i) g[i] = z[i] > T(0) ? g[i] : g[i] * alpha * std::exp(z[i]);
      break;
    case Kind::Sigmoid:
      for (int64_t i = 0; i < n; ++i) g[i] *= h[i] * (T(1) - h[i]);
      break;
    case Kind::Softplus:  // alpha is beta
      for (int64_t i = 0; i < n; ++i) {
        const T bz = z[i] * alpha;
        g[i] = bz > threshold ? g[i] : g[i] / (T(1) + std::exp(-bz));
      }
      break;
    case Kind::SiLU:
      for (int64_t i = 0; i < n; ++i) {
        const T s = T(1) / (T(1) + std::exp(-z[i]));
        g[i] *= s * (T(1) + z[i] * (T(1) - s));
      }
      break;
    case Kind::GELU:  // not reached: eval_vjp leaves GELU to autograd
      break;
  }
}

// dw (out, in) += g^T x and db (out,) += sum over rows of g (db may be nullptr).
template <typename T>
void accumulate_outer(const T* g, const T* x, int64_t rows, int64_t out, int64_t in, T* dw, T* db) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * in;
    for (int64_t o = 0; o < out; ++o) {
      const T go = g[r * out + o];
      if (db) db[o] += go;
      T* row = dw + o * in;
      for (int64_t i = 0; i < in; ++i) row[i] += go * xr[i];
    }
  }
}

}  // namespace

template <typename T>
void MLPDynamics::vjp_layers(const at::Tensor& t, const at::Tensor& y, const at::Tensor& cotangent, bool want_params,
                             at::Tensor& f, at::Tensor& input_grad, at::Tensor& time_grad, std::vector<at::Tensor>& dw,
                             std::vector<at::Tensor>& db) {
  const int64_t rows = y.numel() / dim_;
  const size_t n = weights_.size();
  const auto opts = y.options();
  at::Tensor tt;
  if (time_dependent_) tt = t.to(y.scalar_type()).contiguous();
  const int64_t t_stride = tt.defined() && tt.numel() > 1 ? 1 : 0;
  // inputs[l]: layer l's input as the kernels read it (a layer taking the time gets a copy of its
  // input with the time appended as a last column); z[l], h[l]: pre-activations and activations.
  std::vector<at::Tensor> inputs(n), z(n - 1), h(n - 1);
  at::Tensor x = powered_state(y);
  for (size_t l = 0; l < n; ++l) {
    const int64_t width = weights_[l].size(0), in_l = weights_[l].size(1);
    if (time_inputs_[l] != TimeInput::None) {
      const int64_t in_x = in_l - 1;
      inputs[l] = at::empty({rows, in_l}, opts);
      T* xp = inputs[l].data_ptr<T>();
      const T* src = x.data_ptr<T>();
      const T* tp = tt.data_ptr<T>();
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(xp + r * in_l, src + r * in_x, sizeof(T) * static_cast<size_t>(in_x));
        xp[r * in_l + in_x] = tp[r * t_stride];
      }
    } else {
      inputs[l] = x;
    }
    at::Tensor dst = l + 1 < n ? at::empty({rows, width}, opts) : f;
    const T* b = biases_[l] && biases_[l]->defined() ? biases_[l]->data_ptr<T>() : nullptr;
    cpu::dense_layer<T>(inputs[l].data_ptr<T>(), rows, in_l, transposed_[l].data_ptr<T>(), b, nullptr, 0, nullptr, width,
                        dst.data_ptr<T>());
    if (l + 1 < n) {
      z[l] = dst;
      h[l] = dst.clone();
      activation_.apply_(h[l]);
      x = h[l];
    }
  }
  at::Tensor g = cotangent.is_contiguous() ? cotangent : cotangent.contiguous();
  T* tg = nullptr;
  if (time_dependent_) {
    time_grad = at::zeros({rows}, opts);
    tg = time_grad.data_ptr<T>();
  }
  for (size_t step = 0; step < n; ++step) {
    const size_t l = n - 1 - step;
    const int64_t out_l = weights_[l].size(0), in_l = weights_[l].size(1);
    if (want_params) {
      dw[l] = at::zeros({out_l, in_l}, opts);
      const bool has_bias = biases_[l] && biases_[l]->defined();
      if (has_bias) db[l] = at::zeros({out_l}, opts);
      accumulate_outer<T>(g.data_ptr<T>(), inputs[l].data_ptr<T>(), rows, out_l, in_l, dw[l].data_ptr<T>(),
                          has_bias ? db[l].data_ptr<T>() : nullptr);
    }
    at::Tensor gx = at::empty({rows, in_l}, opts);
    cpu::dense_layer<T>(g.data_ptr<T>(), rows, out_l, padded_[l].data_ptr<T>(), nullptr, nullptr, 0, nullptr, in_l,
                        gx.data_ptr<T>());
    if (time_inputs_[l] != TimeInput::None) {  // the time column's share goes to a^T df/dt
      const T* gp = gx.data_ptr<T>();
      for (int64_t r = 0; r < rows; ++r) tg[r] += gp[r * in_l + in_l - 1];
      gx = gx.narrow(1, 0, in_l - 1).contiguous();
    }
    if (l > 0) times_derivative<T>(gx.data_ptr<T>(), z[l - 1].data_ptr<T>(), h[l - 1].data_ptr<T>(), gx.numel(),
                                   activation_);
    g = gx;
  }
  if (input_power_ > 1) {  // d(y**p)/dy = p y**(p-1), as PyTorch's pow backward
    T* gp = g.data_ptr<T>();
    const T* yp = y.data_ptr<T>();
    for (int64_t i = 0; i < rows * dim_; ++i) {
      const T v = yp[i];
      T d = static_cast<T>(input_power_);
      for (int64_t k = 1; k < input_power_; ++k) d *= v;
      gp[i] *= d;
    }
  }
  input_grad = g;
}

bool MLPDynamics::eval_vjp(const at::Tensor& t, const at::Tensor& y, const at::Tensor& cotangent, bool want_t,
                           const std::vector<at::Tensor>& params, at::Tensor* f, std::vector<at::Tensor>* grads) {
  if ((activation_.kind == Activation::Kind::GELU && weights_.size() > 1) || !fused_shape_ok(t, y, true) ||
      cotangent.sizes() != y.sizes() || cotangent.scalar_type() != y.scalar_type() || !cotangent.device().is_cpu()) {
    return false;
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // plain buffers: no autograd bookkeeping
  refresh_transposed();
  const size_t n = weights_.size();
  *f = at::empty(y.sizes(), y.options());
  at::Tensor input_grad, time_grad;
  std::vector<at::Tensor> dw(n), db(n);
  const at::Tensor cot = cotangent.reshape({y.numel() / dim_, dim_});
  if (y.scalar_type() == at::kFloat) {
    vjp_layers<float>(t, y, cot, !params.empty(), *f, input_grad, time_grad, dw, db);
  } else {
    vjp_layers<double>(t, y, cot, !params.empty(), *f, input_grad, time_grad, dw, db);
  }
  for (size_t l = 0; l < n; ++l) {  // back to the weight's column order (time first)
    if (time_inputs_[l] == TimeInput::First && dw[l].defined()) dw[l] = at::roll(dw[l], 1, 1);
  }
  grads->clear();
  grads->push_back(input_grad.view(y.sizes()));
  if (want_t) {
    if (!time_dependent_) {
      grads->push_back(at::zeros_like(t));
    } else {
      grads->push_back(t.numel() > 1 ? time_grad.reshape(t.sizes()) : time_grad.sum().reshape(t.sizes()));
    }
  }
  // A parameter may serve several layers (one nn.Linear applied twice): its gradient is the sum.
  for (const at::Tensor& p : params) {
    at::Tensor grad;
    auto add = [&grad](const at::Tensor& g) { grad = grad.defined() ? grad + g : g; };
    for (size_t i = 0; i < n; ++i) {
      if (p.unsafeGetTensorImpl() == weights_[i].unsafeGetTensorImpl()) add(dw[i]);
      const std::optional<at::Tensor>& b = biases_[i];
      if (b && b->defined() && p.unsafeGetTensorImpl() == b->unsafeGetTensorImpl()) add(db[i]);
    }
    grads->push_back(grad.defined() ? grad : at::zeros_like(p));
  }
  return true;
}

}  // namespace node_ext
