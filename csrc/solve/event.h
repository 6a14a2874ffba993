// Event functions (torchdiffeq's event_fn; the terminal events of Hairer, Norsett & Wanner, Solving
// ODEs I, II.6 "dense output and event location"): the solve stops where g(t, y) changes sign.
//
// g may return several values; as in torchdiffeq they are combined into one, c = min_i g_i s_i with
// s_i = sign(g_i(t0, y0)), which is positive until the first of them changes sign. The crossing is
// located inside the step that contains it, on the step's continuous extension, by the Illinois
// variant of regula falsi (Dowell & Jarratt 1971) safeguarded by bisection (every fourth point).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace node_ext {

class EventFunction {
 public:
  virtual ~EventFunction() = default;
  // g(t, y): t a tensor of the state's dtype and device, y the state; any number of values. With
  // per-sample events t has shape (rows,), y's first dimension is the rows and g's values are rows of
  // equal length, row r depending on sample r only; otherwise t has shape ().
  virtual at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) = 0;
};

// The combination c = min_i g_i s_i, with the signs s_i taken at the initial point; per sample with
// per-sample events (g's values are then rows of equal length, row r belonging to sample r).
class EventSigns {
 public:
  // Records the signs of g(t0, y0), its values taken as `rows` rows of equal length; returns c per
  // row there (0 for a row where some g_i(t0, y0) is exactly 0).
  std::vector<double> start(const at::Tensor& g0, int64_t rows = 1);
  // c per row for the values g (as many as g0; NaN for a row with a value that is not finite).
  std::vector<double> combined(const at::Tensor& g) const;

 private:
  std::vector<double> signs_;
  int64_t rows_ = 1;
};

// The search for the crossing of c(theta) on [0, 1], given c(0) = c_lo > 0 >= c(1) = c_hi, driven
// from outside so that the searches of several samples share each evaluation of g. It ends with the
// largest theta found with c(theta) > 0 once the bracket around the sign change is at most tol wide,
// so that the state returned is just before the event (restarting from it, after a bounce say, does
// not see the same crossing again), or after max_iter evaluations.
class CrossingSearch {
 public:
  CrossingSearch(double c_lo, double c_hi, double tol, int max_iter = 300)
      : c_lo_(c_lo), c_hi_(c_hi), tol_(tol), max_iter_(max_iter) {}
  // The next point at which to evaluate c (then call update), or false when the search is over.
  bool next(double* theta);
  void update(double theta, double c);
  double result() const { return lo_; }
  int evaluations() const { return n_; }

 private:
  double lo_ = 0.0, hi_ = 1.0, c_lo_, c_hi_, tol_;
  int max_iter_;
  int n_ = 0;
  int kept_ = 0;  // which end the last update kept: +1 lo moved (hi kept), -1 hi moved (lo kept)
};

// CrossingSearch run to its end on one function. *evaluations counts the calls of c.
double locate_crossing(const std::function<double(double)>& c, double c_lo, double c_hi, double tol,
                       int max_iter = 300, int* evaluations = nullptr);

}  // namespace node_ext
