#include "solve/event.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace node_ext {

namespace {
std::vector<double> host_values(const at::Tensor& g) {
  const at::Tensor c = g.detach().to(at::kCPU, at::kDouble).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
}  // namespace

std::vector<double> EventSigns::start(const at::Tensor& g0, int64_t rows) {
  const std::vector<double> v = host_values(g0);
  TORCH_CHECK(!v.empty(), "event_fn returned an empty tensor; it must return at least one value");
  if (rows > 1) {
    TORCH_CHECK_VALUE(g0.dim() >= 1 && g0.size(0) == rows, "with per-sample events, event_fn must return a Tensor whose "
                "first dimension is the batch (", rows, " samples: one row of values per sample), got shape ",
                g0.sizes());
  }
  rows_ = rows;
  signs_.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) signs_[i] = v[i] > 0 ? 1.0 : (v[i] < 0 ? -1.0 : 0.0);
  return combined(g0);
}

std::vector<double> EventSigns::combined(const at::Tensor& g) const {
  const std::vector<double> v = host_values(g);
  TORCH_CHECK(v.size() == signs_.size(), "event_fn returned ", v.size(), " values, but ", signs_.size(),
              " at the initial time; it must return the same number every time");
  const size_t per_row = v.size() / static_cast<size_t>(rows_);
  std::vector<double> c(static_cast<size_t>(rows_), std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < v.size(); ++i) {
    double& cr = c[i / per_row];
    if (std::isnan(cr)) continue;
    cr = std::isfinite(v[i]) ? std::min(cr, v[i] * signs_[i]) : std::numeric_limits<double>::quiet_NaN();
  }
  return c;
}

bool CrossingSearch::next(double* theta) {
  if (!(hi_ - lo_ > tol_) || n_ >= max_iter_) return false;
  double m;
  // False position, every fourth point bisection: superlinear on smooth c, and at least a quarter
  // of bisection's rate on kinks (c is a minimum of several functions) or multiple roots.
  if (n_ % 4 == 3 || !(c_lo_ > c_hi_)) {
    m = 0.5 * (lo_ + hi_);
  } else {
    m = lo_ + c_lo_ * (hi_ - lo_) / (c_lo_ - c_hi_);
    // At least tol/2 inside the bracket: once the estimate is within tol of the crossing, the
    // next point lands beyond it and the bracket closes (rather than creeping from one side).
    m = std::min(std::max(m, lo_ + 0.5 * tol_), hi_ - 0.5 * tol_);
  }
  if (!(m > lo_ && m < hi_)) m = 0.5 * (lo_ + hi_);
  if (!(m > lo_ && m < hi_)) return false;  // no representable point strictly inside
  *theta = m;
  return true;
}

void CrossingSearch::update(double m, double cm) {
  ++n_;
  if (std::isnan(cm)) {
    hi_ = m;  // treat like the far side: the bracket still shrinks onto the last finite positive point
    c_hi_ = 0.0;
    kept_ = 0;
  } else if (cm > 0) {
    lo_ = m;
    c_lo_ = cm;
    if (kept_ == 1) c_hi_ *= 0.5;  // Illinois: the far end has stayed twice, halve its weight
    kept_ = 1;
  } else {
    hi_ = m;
    c_hi_ = cm;
    if (kept_ == -1) c_lo_ *= 0.5;
    kept_ = -1;
  }
}

double locate_crossing(const std::function<double(double)>& c, double c_lo, double c_hi, double tol, int max_iter,
                       int* evaluations) {
  CrossingSearch search(c_lo, c_hi, tol, max_iter);
  double m;
  while (search.next(&m)) search.update(m, c(m));
  if (evaluations) *evaluations = search.evaluations();
  return search.result();
}

}  // namespace node_ext
