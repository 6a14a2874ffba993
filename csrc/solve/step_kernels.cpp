#include "solve/step_kernels.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/dispatch.h"
#include "ops/ops.h"

namespace node_ext {

namespace {
at::TensorList first(const std::vector<at::Tensor>& k, int n) { return at::TensorList(k.data(), n); }
}  // namespace

StepKernels::StepKernels(const at::Tensor& y0, int64_t rows, bool per_row, const SolveOptions& opts)
    : rows_(rows),
      cols_(rows == 0 ? 0 : y0.numel() / rows),
      grad_mode_(c10::GradMode::is_enabled()),
      per_row_(per_row),
      device_(y0.device()),
      kind_(scalar_kind_of(y0.scalar_type())),
      opts_(opts),
      pool_(y0.detach(), 16) {
  if (!per_row && opts.norm_groups.size() > 1) {
    group_sizes_ = opts.norm_groups;
    std::vector<int64_t> ends(group_sizes_.size());
    int64_t acc = 0;
    for (size_t g = 0; g < ends.size(); ++g) ends[g] = acc += group_sizes_[g];
    group_end_ = at::tensor(ends, at::kLong).to(device_);
  } else if (per_row) {
    group_sizes_.assign(static_cast<size_t>(rows), cols_);
  } else {
    group_sizes_ = {y0.numel()};
  }
  // Flat, like the state the kernels and correction_ratio see (Python keeps y0's shape).
  if (opts.rtol_elem.defined()) rtol_elem_ = opts.rtol_elem.to(device_, at::kDouble).contiguous().reshape({-1});
  if (opts.atol_elem.defined()) atol_elem_ = opts.atol_elem.to(device_, at::kDouble).contiguous().reshape({-1});
}

bool StepKernels::needs_graph(const at::Tensor& y, const std::vector<at::Tensor>& k, int n,
                              const StepSize* h) const {
  if (!grad_mode_) return false;
  if (y.requires_grad()) return true;
  for (int j = 0; j < n; ++j) {
    if (k[j].requires_grad()) return true;
  }
  return h && h->tensor.defined() && h->tensor.requires_grad();
}

const at::Tensor& StepKernels::step_tensor(StepSize& h) const {
  if (!h.tensor.defined()) {
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    h.tensor = h.per_row ? at::tensor(h.host, f64).to(device_) : at::scalar_tensor(h.host[0], f64.device(device_));
  }
  return h.tensor;
}

StepSizeArg StepKernels::step_arg(StepSize& h) const {
  if (device_.is_cpu() && !(h.tensor.defined() && h.tensor.requires_grad())) return {h.host.data(), h.per_row};
  return {step_tensor(h).data_ptr<double>(), h.per_row};
}

namespace {
template <typename T>
double correction_ratio_host(const T* y, const T* a, const T* b, int64_t n, double rtol, double atol,
                             const double* rtol_elem, const double* atol_elem) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i] - y[i]), e = double(b[i] - y[i]);
    const double scale = std::max(std::abs(d), std::abs(e));
    const double q = std::abs(d - e) / ((atol_elem ? atol_elem[i] : atol) + (rtol_elem ? rtol_elem[i] : rtol) * scale);
    if (std::isnan(q)) return q;
    worst = std::max(worst, q);
  }
  return worst;
}
}  // namespace

double StepKernels::correction_ratio(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b) {
  at::NoGradGuard g;
  const at::Tensor yc = y.detach().contiguous(), ac = a.detach().contiguous(), bc = b.detach().contiguous();
  const double* re = rtol_elem_.defined() ? rtol_elem_.data_ptr<double>() : nullptr;
  const double* ae = atol_elem_.defined() ? atol_elem_.data_ptr<double>() : nullptr;
  if (device_.is_cpu()) {
    if (yc.scalar_type() == at::kFloat) {
      return correction_ratio_host(yc.data_ptr<float>(), ac.data_ptr<float>(), bc.data_ptr<float>(), yc.numel(),
                                   opts_.rtol, opts_.atol, re, ae);
    }
    return correction_ratio_host(yc.data_ptr<double>(), ac.data_ptr<double>(), bc.data_ptr<double>(), yc.numel(),
                                 opts_.rtol, opts_.atol, re, ae);
  }
  const at::Tensor d = (ac - yc).to(at::kDouble).reshape(-1), e = (bc - yc).to(at::kDouble).reshape(-1);
  auto tolerance = [&](const at::Tensor& elem, double value) {
    return elem.defined() ? elem : at::scalar_tensor(value, d.options());
  };
  const at::Tensor tol =
      tolerance(atol_elem_, opts_.atol) + tolerance(rtol_elem_, opts_.rtol) * at::maximum(d.abs(), e.abs());
  return ((d - e).abs() / tol).max().item<double>();
}

at::Tensor StepKernels::combine(const at::Tensor& y, const std::vector<at::Tensor>& k, const double* w, int n,
                                StepSize& h) {
  if (needs_graph(y, k, n, &h)) {
    return ops::call_rk_stage(y, first(k, n), at::ArrayRef<double>(w, n), step_tensor(h));
  }
  at::Tensor out = pool_.acquire();
  CombineParams p;
  p.rows = rows_;
  p.cols = cols_;
  p.y = y.data_ptr();
  p.out = out.data_ptr();
  p.n_terms = n;
  for (int j = 0; j < n; ++j) {
    p.k[j] = k[j].data_ptr();
    p.w[j] = w[j];
  }
  p.h = step_arg(h);
  run_combine(p, kind_, device_);
  return out;
}

const std::vector<double>& StepKernels::error_ratio(const at::Tensor& y, at::Tensor* y_new, bool compute_y_new,
                                                    const std::vector<at::Tensor>& k, const double* b,
                                                    const double* e, int n, StepSize& h) {
  if (compute_y_new && needs_graph(y, k, n, &h)) {
    *y_new = ops::call_rk_stage(y, first(k, n), at::ArrayRef<double>(b, n), step_tensor(h));
    compute_y_new = false;
  }
  if (compute_y_new) *y_new = pool_.acquire();
  ErrorNormParams p;
  p.rows = rows_;
  p.cols = cols_;
  p.y = y.data_ptr();
  p.y_new = y_new->data_ptr();
  p.compute_y_new = compute_y_new;
  p.n_terms = n;
  for (int j = 0; j < n; ++j) {
    p.k[j] = k[j].data_ptr();
    p.b[j] = compute_y_new ? b[j] : 0.0;
    p.e[j] = e[j];
  }
  p.h = step_arg(h);
  p.rtol = opts_.rtol;
  p.atol = opts_.atol;
  p.rtol_elem = rtol_elem_.defined() ? rtol_elem_.data_ptr<double>() : nullptr;
  p.atol_elem = atol_elem_.defined() ? atol_elem_.data_ptr<double>() : nullptr;
  p.n_groups = static_cast<int64_t>(group_sizes_.size());
  p.group_end = group_end_.defined() ? group_end_.data_ptr<int64_t>() : nullptr;
  at::Tensor sumsq;
  if (device_.is_cpu()) {
    sumsq_host_.resize(static_cast<size_t>(p.n_groups));
    p.group_sumsq = sumsq_host_.data();
  } else {
    sumsq = at::empty({p.n_groups}, y.options().dtype(at::kDouble));
    p.group_sumsq = sumsq.data_ptr<double>();
  }
  at::Tensor ratio;
  if (opts_.user_norm) {
    ratio = pool_.acquire();
    p.ratio_out = ratio.data_ptr();
  }
  run_error_norm(p, kind_, device_);
  if (!device_.is_cpu()) {
    const at::Tensor host = sumsq.cpu();
    return group_ratios(host.data_ptr<double>(), ratio);
  }
  return group_ratios(sumsq_host_.data(), ratio);
}

const std::vector<double>& StepKernels::group_ratios(const double* ss, const at::Tensor& ratio) {
  if (opts_.user_norm) {
    // A non-finite error is NaN whatever the user's norm makes of it (a norm built on Python's
    // max() can drop a NaN): the step is then rejected and the failure reported, as without one.
    const int64_t rows = per_row_ ? rows_ : 1;
    const at::Tensor finite = at::isfinite(ratio).reshape({rows, -1}).all(1).cpu();
    const bool* ok = finite.data_ptr<bool>();
    const std::vector<double> v = opts_.user_norm(ratio);
    TORCH_CHECK(static_cast<int64_t>(v.size()) == rows, "node_ext: the user norm returned ", v.size(),
                " values for ", rows, " rows");
    ratios_.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      ratios_[r] = ok[r] ? std::abs(v[r]) : std::numeric_limits<double>::quiet_NaN();
    }
    return ratios_;
  }
  rms_.resize(group_sizes_.size());
  for (size_t g = 0; g < rms_.size(); ++g) {
    rms_[g] = group_sizes_[g] > 0 ? std::sqrt(ss[g] / static_cast<double>(group_sizes_[g])) : 0.0;
  }
  if (per_row_) return rms_;
  double worst = 0.0;  // torchdiffeq's mixed norm: the largest RMS over the groups
  for (double v : rms_) {
    if (std::isnan(v)) {
      worst = v;
      break;
    }
    worst = std::max(worst, v);
  }
  ratios_.assign(1, worst);
  return ratios_;
}

std::vector<double> StepKernels::scaled_norm(const at::Tensor& y, const std::vector<at::Tensor>& k, const double* w,
                                             int n, StepSize& h) {
  at::Tensor y_same = y.detach();
  std::vector<at::Tensor> kd;
  for (int j = 0; j < n; ++j) kd.push_back(k[j].detach());
  at::NoGradGuard no_grad;
  return error_ratio(y_same, &y_same, false, kd, w, w, n, h);
}

void StepKernels::interp_into(at::Tensor& solution, const at::Tensor& y0, const std::vector<at::Tensor>& k,
                              StepSize& h, const std::vector<double>& poly, int degree,
                              const std::vector<double>& theta, const std::vector<int64_t>& out_index) {
  InterpParams p;
  p.rows = rows_;
  p.cols = cols_;
  p.n_points = static_cast<int64_t>(out_index.size()) / (per_row_ ? rows_ : 1);
  p.y0 = y0.data_ptr();
  p.out = solution.data_ptr();
  p.n_terms = static_cast<int>(k.size());
  for (size_t j = 0; j < k.size(); ++j) p.k[j] = k[j].data_ptr();
  p.degree = degree;
  std::copy(poly.begin(), poly.end(), p.poly);
  p.h = step_arg(h);
  p.theta_per_row = per_row_;
  at::Tensor theta_d, index_d;
  if (device_.is_cpu()) {
    p.theta = theta.data();
    p.out_index = out_index.data();
  } else {
    theta_d = at::tensor(theta, at::kDouble).to(device_);
    index_d = at::tensor(out_index, at::kLong).to(device_);
    p.theta = theta_d.data_ptr<double>();
    p.out_index = index_d.data_ptr<int64_t>();
  }
  run_interp(p, kind_, device_);
}

at::Tensor StepKernels::interp(const at::Tensor& y0, const std::vector<at::Tensor>& k, StepSize& h,
                               const std::vector<double>& poly, int degree, const at::Tensor& theta) {
  return ops::call_rk_interp(y0, k, step_tensor(h), theta, poly, degree);
}

void StepKernels::accumulate(std::vector<at::Tensor>& acc, const at::Tensor& x, double w, bool init) {
  if (init || !acc[0].defined()) acc[0] = pool_.acquire();
  CombineParams p;
  p.rows = 1;
  p.cols = x.numel();
  p.y = init ? nullptr : acc[0].data_ptr();
  p.out = acc[0].data_ptr();
  p.n_terms = 1;
  p.k[0] = x.data_ptr();
  p.w[0] = w;
  const double one = 1.0;
  at::Tensor one_d;
  if (device_.is_cpu()) {
    p.h = {&one, false};
  } else {
    one_d = at::ones({}, x.options().dtype(at::kDouble));
    p.h = {one_d.data_ptr<double>(), false};
  }
  run_combine(p, kind_, device_);
}

at::Tensor StepKernels::select_rows(const std::vector<char>& mask, const at::Tensor& a, const at::Tensor& b) {
  const bool all = std::all_of(mask.begin(), mask.end(), [](char m) { return m != 0; });
  if (all) return a;
  const bool none = std::none_of(mask.begin(), mask.end(), [](char m) { return m != 0; });
  if (none) return b;
  std::vector<int64_t> shape(static_cast<size_t>(a.dim()), 1);
  shape[0] = rows_;
  std::vector<uint8_t> m(mask.begin(), mask.end());
  const at::Tensor mt = at::tensor(m, at::kByte).to(device_, at::kBool).view(shape);
  return at::where(mt, a, b);
}

}  // namespace node_ext
