// Statistics of a solve, and the failure raised when a solve cannot continue.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace node_ext {

struct SolveStats {
  int64_t n_fev = 0;       // dynamics evaluations
  int64_t n_steps = 0;     // step attempts (a batched attempt counts once for per-row grids)
  int64_t n_accepted = 0;  // accepted steps (summed over rows for per-row grids)
  int64_t n_rejected = 0;  // rejected steps (summed over rows for per-row grids)
  int64_t n_unconverged = 0;  // implicit_adams: steps whose corrector iteration did not converge
  // Per-row grids only: each row's step attempts (while it was running) and accepted steps.
  std::vector<int64_t> row_steps;
  std::vector<int64_t> row_accepted;
};

enum class FailureKind { StepSizeUnderflow, MaxStepsExceeded, NonFinite };

// Thrown by the loop; bindings turn it into node_ext.SolverError's subclasses.
class SolverFailure : public std::runtime_error {
 public:
  SolverFailure(FailureKind kind, const std::string& message, double t, int64_t row, const SolveStats& stats,
                std::string phase = "forward")
      : std::runtime_error(message), kind(kind), t(t), row(row), stats(stats), phase(std::move(phase)) {}
  FailureKind kind;
  double t;      // time reached
  int64_t row;   // sample that failed (per-row grids), or -1
  SolveStats stats;
  std::string phase;  // "forward", or "backward" for the adjoint solve
  // What the forward solve had produced (detached; undefined where not recorded): the (T, *y0.shape)
  // solution, whose outputs [0, outputs_done[r]) of each row (one entry unless per-row) are written.
  at::Tensor partial;
  std::vector<int64_t> outputs_done;
};

}  // namespace node_ext
