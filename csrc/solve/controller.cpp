#include "solve/controller.h"

#include <algorithm>
#include <cmath>

namespace node_ext {

StepController::StepController(const ControllerOptions& opts, int order, int64_t rows)
    : opts_(opts),
      beta1_((opts.pcoeff + opts.icoeff + opts.dcoeff) / order),
      beta2_(-(opts.pcoeff + 2.0 * opts.dcoeff) / order),
      beta3_(opts.dcoeff / order),
      prev1_(static_cast<size_t>(rows), 1.0),
      prev2_(static_cast<size_t>(rows), 1.0) {}

double StepController::next_step(int64_t r, double h_abs, double err, bool accepted) {
  if (!std::isfinite(err)) return h_abs * opts_.dfactor;
  double factor;
  if (err == 0.0) {
    factor = opts_.ifactor;
  } else if (accepted) {
    factor = opts_.safety * std::pow(err, -beta1_) * std::pow(prev1_[r], -beta2_) * std::pow(prev2_[r], -beta3_);
    factor = std::min(opts_.ifactor, std::max(1.0, factor));
  } else {
    factor = opts_.safety * std::pow(err, -beta1_);
    factor = std::min(1.0, std::max(opts_.dfactor, factor));
  }
  if (accepted) {
    prev2_[r] = prev1_[r];
    prev1_[r] = std::max(err, 1e-10);
  }
  return h_abs * factor;
}

}  // namespace node_ext
