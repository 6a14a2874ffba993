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
  // g(t, y): t a tensor of the state's dtype and device (shape ()), y the state; any number of values.
  virtual at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) = 0;
};

// The combination c = min_i g_i s_i, with the signs s_i taken at the initial point.
class EventSigns {
 public:
  // Records the signs of g(t0, y0); returns c there (0 when some g_i(t0, y0) is exactly 0).
  double start(const at::Tensor& g0);
  // c for the values g (which must have as many elements as g0; NaN when a value is not finite).
  double combined(const at::Tensor& g) const;

 private:
  std::vector<double> signs_;
};

// The crossing of c(theta) on [0, 1], given c(0) = c_lo > 0 >= c(1) = c_hi: the largest theta found
// with c(theta) > 0 once the bracket around the sign change is at most tol wide, so that the state
// returned is just before the event (restarting from it, after a bounce say, does not see the same
// crossing again). Stops after max_iter evaluations of c. *evaluations counts the calls of c.
double locate_crossing(const std::function<double(double)>& c, double c_lo, double c_hi, double tol,
                       int max_iter = 300, int* evaluations = nullptr);

}  // namespace node_ext
