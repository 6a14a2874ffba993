// Step-size control: the integral / PI / PID controller, per row of the state.
#pragma once

#include <vector>

#include "solve/options.h"

namespace node_ext {

class StepController {
 public:
  StepController(const ControllerOptions& opts, int order, int64_t rows);

  // The next step magnitude for row r after an attempt of magnitude |h| with error ratio `err`
  // (<= 1 accepts). After an acceptance the step does not shrink (torchdiffeq's rule); after a
  // rejection it does not grow, and only the current error is used.
  double next_step(int64_t r, double h_abs, double err, bool accepted);

 private:
  ControllerOptions opts_;
  double beta1_, beta2_, beta3_;
  std::vector<double> prev1_, prev2_;  // previous accepted error ratios per row
};

}  // namespace node_ext
