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

double EventSigns::start(const at::Tensor& g0) {
  const std::vector<double> v = host_values(g0);
  TORCH_CHECK(!v.empty(), "event_fn returned an empty tensor; it must return at least one value");
  signs_.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) signs_[i] = v[i] > 0 ? 1.0 : (v[i] < 0 ? -1.0 : 0.0);
  return combined(g0);
}

double EventSigns::combined(const at::Tensor& g) const {
  const std::vector<double> v = host_values(g);
  TORCH_CHECK(v.size() == signs_.size(), "event_fn returned ", v.size(), " values, but ", signs_.size(),
              " at the initial time; it must return the same number every time");
  double c = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) return std::numeric_limits<double>::quiet_NaN();
    c = std::min(c, v[i] * signs_[i]);
  }
  return c;
}

double locate_crossing(const std::function<double(double)>& c, double c_lo, double c_hi, double tol, int max_iter,
                       int* evaluations) {
  double lo = 0.0, hi = 1.0;
  int kept = 0;  // which end the last iteration kept: +1 lo moved (hi kept), -1 hi moved (lo kept)
  int n = 0;
  while (hi - lo > tol && n < max_iter) {
    double m;
    // False position, every fourth iteration bisection: superlinear on smooth c, and at least a
    // quarter of bisection's rate on kinks (c is a minimum of several functions) or multiple roots.
    if (n % 4 == 3 || !(c_lo > c_hi)) {
      m = 0.5 * (lo + hi);
    } else {
      m = lo + c_lo * (hi - lo) / (c_lo - c_hi);
      // At least tol/2 inside the bracket: once the estimate is within tol of the crossing, the
      // next point lands beyond it and the bracket closes (rather than creeping from one side).
      m = std::min(std::max(m, lo + 0.5 * tol), hi - 0.5 * tol);
    }
    if (!(m > lo && m < hi)) m = 0.5 * (lo + hi);
    if (!(m > lo && m < hi)) break;  // no representable point strictly inside
    const double cm = c(m);
    ++n;
    if (std::isnan(cm)) {
      hi = m;  // treat like the far side: the bracket still shrinks onto the last finite positive point
      c_hi = 0.0;
      kept = 0;
    } else if (cm > 0) {
      lo = m;
      c_lo = cm;
      if (kept == 1) c_hi *= 0.5;  // Illinois: the far end has stayed twice, halve its weight
      kept = 1;
    } else {
      hi = m;
      c_hi = cm;
      if (kept == -1) c_lo *= 0.5;
      kept = -1;
    }
  }
  if (evaluations) *evaluations = n;
  return lo;
}

}  // namespace node_ext
