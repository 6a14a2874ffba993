// CPU implementations of the fused Runge-Kutta kernels (see ../params.h for the semantics).
// Vectorised with at::vec and parallel over fixed-size chunks of the state, so results do not
// depend on the number of threads.
#pragma once

#include "kernels/params.h"

namespace node_ext {
namespace cpu {

void combine(const CombineParams& p, ScalarKind kind);
void error_norm(const ErrorNormParams& p, ScalarKind kind);
void interp(const InterpParams& p, ScalarKind kind);

}  // namespace cpu
}  // namespace node_ext
