// Arguments of the fused Runge-Kutta kernels, as plain structs over raw pointers.
//
// No torch header is included here: the same structs are filled by the C++ op layer and by the
// C++ solve loop, and consumed by the CPU kernels (kernels/cpu) and by the CUDA kernels
// (kernels/cuda/*.cu), which must compile with plain nvcc on machines without a CUDA torch.
//
// A state of N elements is viewed as `rows` x `cols` (N = rows * cols, row-major, contiguous).
// Every pointer refers to memory on the device the kernel runs on.
#pragma once

#include <cstdint>

namespace node_ext {

constexpr int kMaxTerms = 16;        // stages (+ the end-point derivative) a kernel combines
constexpr int kMaxDenseDegree = 8;   // highest power of theta in a continuous extension

enum class ScalarKind : int { Float32 = 0, Float64 = 1 };

// The step size: one float64 value shared by all rows, or one per row.
struct StepSizeArg {
  const double* ptr = nullptr;
  bool per_row = false;
};

// Stage combination: out[r, d] = y[r, d] + h_r * sum_j w_j * k_j[r, d].
// y may be nullptr (treated as zero); out may alias y.
struct CombineParams {
  int64_t rows = 0;
  int64_t cols = 0;
  const void* y = nullptr;
  void* out = nullptr;
  int n_terms = 0;
  const void* k[kMaxTerms];  // only the first n_terms entries are read
  double w[kMaxTerms];
  StepSizeArg h;
};

// Step finalisation and error norm, in one pass over the state:
//   y_new = y + h_r * sum_j b_j k_j       (written when compute_y_new, else read)
//   err   = h_r * sum_j e_j k_j
//   q     = err / (atol + rtol * max(|y|, |y_new|))
//   group_sumsq[g] = sum of q^2 over the elements of group g.
// Groups are the rows when group_end is nullptr (then n_groups == rows), otherwise consecutive
// ranges of the flat state ending (exclusive) at group_end[0..n_groups).
// rtol_elem / atol_elem, when given, hold one float64 tolerance per element.
// ratio_out, when given, receives q (state dtype), for norms computed by the caller.
// q is NaN wherever y_new is not finite (q + (y_new - y_new)), so a step that produced a non-finite
// state always has a NaN norm and is never accepted, even when the error weights miss the culprit.
struct ErrorNormParams {
  int64_t rows = 0;
  int64_t cols = 0;
  const void* y = nullptr;
  void* y_new = nullptr;
  bool compute_y_new = false;
  int n_terms = 0;
  const void* k[kMaxTerms];  // only the first n_terms entries are read
  double b[kMaxTerms];
  double e[kMaxTerms];
  StepSizeArg h;
  double rtol = 0.0;
  double atol = 0.0;
  const double* rtol_elem = nullptr;
  const double* atol_elem = nullptr;
  int64_t n_groups = 1;
  const int64_t* group_end = nullptr;
  double* group_sumsq = nullptr;
  void* ratio_out = nullptr;
};

// Dense output at many points:
//   out[m, r, d] = y0[r, d] + h_r * sum_j w_j(theta[m, r]) K_j[r, d],
//   w_j(theta) = sum_{p < degree} poly[j * degree + p] * theta^(p + 1).
// theta has n_points entries, or n_points * rows when theta_per_row. When out_index is given,
// the result for (m, r) goes to point out_index[m * rows + r] of out (skipped when negative);
// otherwise to point m.
struct InterpParams {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t n_points = 0;
  const void* y0 = nullptr;
  void* out = nullptr;
  int n_terms = 0;
  const void* k[kMaxTerms];  // only the first n_terms entries are read
  int degree = 0;
  double poly[kMaxTerms * kMaxDenseDegree];  // only the first n_terms * degree entries are read
  StepSizeArg h;
  const double* theta = nullptr;
  bool theta_per_row = false;
  const int64_t* out_index = nullptr;
};

// Continuous-extension weights w_j(theta) for j < n_terms (Horner in theta).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline void dense_weights(const double* poly, int n_terms, int degree, double theta, double* w) {
  for (int j = 0; j < n_terms; ++j) {
    double acc = 0.0;
    for (int p = degree - 1; p >= 0; --p) acc = acc * theta + poly[j * degree + p];
    w[j] = acc * theta;
  }
}

}  // namespace node_ext
