// CPU kernel for step finalisation and the weighted RMS error norm (see ../params.h).
//
// Reduction order is fixed: the flat state is cut into chunks of kChunk elements; chunk c writes
// its partial sum for group g into slot c + g (unique, because both chunk and group indices grow
// along the state), and each group then adds its slots in increasing chunk order.
#include "kernels/cpu/vec_capability.h"  // must come first

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cpu/row_kernels.h"

namespace node_ext {
namespace cpu {
namespace {

struct Run {
  int64_t begin, end, row;
};

template <typename T>
struct NormRun {
  const ErrorNormParams& p;
  const T* y;
  T* y_new;
  T* ratio;

  // Sum of q^2 over [run.begin, run.end), all in one row (one step size).
  double operator()(const Run& run) const {
    const double h = step_of_row(p.h, run.row);
    const T* kb[kMaxTerms];
    const T* ke[kMaxTerms];
    T hb[kMaxTerms], he[kMaxTerms];
    const int nb = p.compute_y_new ? scaled_terms<T>(p.n_terms, p.k, p.b, h, run.begin, kb, hb) : 0;
    const int ne = scaled_terms<T>(p.n_terms, p.k, p.e, h, run.begin, ke, he);
    const int64_t n = run.end - run.begin;
    const T* y0 = y + run.begin;
    T* y1 = y_new + run.begin;
    T* q_out = ratio ? ratio + run.begin : nullptr;
    if (p.compute_y_new) combine_run<T>(y1, y0, nb, kb, hb, n);
    if (p.rtol_elem || p.atol_elem) return scalar_tol(y0, y1, ne, ke, he, q_out, run.begin, n);
    return vector_tol(y0, y1, ne, ke, he, q_out, n);
  }

  double scalar_tol(const T* y0, const T* y1, int ne, const T* const* ke, const T* he, T* q_out, int64_t base,
                    int64_t n) const {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      T err = T(0);
      for (int j = 0; j < ne; ++j) err += he[j] * ke[j][i];
      const double rtol = p.rtol_elem ? p.rtol_elem[base + i] : p.rtol;
      const double atol = p.atol_elem ? p.atol_elem[base + i] : p.atol;
      const double tol = atol + rtol * std::max(std::abs(double(y0[i])), std::abs(double(y1[i])));
      // (y_new - y_new) is 0, or NaN when y_new is not finite: a non-finite state is never accepted.
      const double q = double(err) / tol + (double(y1[i]) - double(y1[i]));
      if (q_out) q_out[i] = static_cast<T>(q);
      sum += q * q;
    }
    return sum;
  }

  double vector_tol(const T* y0, const T* y1, int ne, const T* const* ke, const T* he, T* q_out, int64_t n) const {
    using Vec = at::vec::Vectorized<T>;
    constexpr int64_t V = Vec::size();
    constexpr int64_t kFlush = 256 * V;  // float partials are moved to double this often
    const Vec vr(static_cast<T>(p.rtol)), va(static_cast<T>(p.atol));
    double sum = 0.0;
    int64_t i = 0;
    while (i + V <= n) {
      Vec acc(T(0));
      const int64_t stop = std::min(n - n % V, i + kFlush);
      for (; i < stop; i += V) {
        Vec err(T(0));
        for (int j = 0; j < ne; ++j) err = at::vec::fmadd(Vec(he[j]), Vec::loadu(ke[j] + i), err);
        const Vec yn = Vec::loadu(y1 + i);
        const Vec tol = at::vec::fmadd(vr, at::vec::maximum(Vec::loadu(y0 + i).abs(), yn.abs()), va);
        const Vec q = err / tol + (yn - yn);
        if (q_out) q.store(q_out + i);
        acc = at::vec::fmadd(q, q, acc);
      }
      T lanes[V];
      acc.store(lanes);
      for (int64_t l = 0; l < V; ++l) sum += double(lanes[l]);
    }
    for (; i < n; ++i) {
      T err = T(0);
      for (int j = 0; j < ne; ++j) err += he[j] * ke[j][i];
      const T tol = static_cast<T>(p.atol) + static_cast<T>(p.rtol) * std::max(std::abs(y0[i]), std::abs(y1[i]));
      const T q = err / tol + (y1[i] - y1[i]);
      if (q_out) q_out[i] = q;
      sum += double(q) * double(q);
    }
    return sum;
  }
};

template <typename T>
void error_norm_impl(const ErrorNormParams& p) {
  const int64_t numel = p.rows * p.cols;
  const int64_t n_groups = p.n_groups;
  auto group_end = [&](int64_t g) { return p.group_end ? p.group_end[g] : (g + 1) * p.cols; };
  auto group_of = [&](int64_t i) -> int64_t {  // group holding element i
    if (!p.group_end) return i / p.cols;
    return std::upper_bound(p.group_end, p.group_end + n_groups, i) - p.group_end;
  };
  const int64_t n_chunks = (numel + kChunk - 1) / kChunk;
  // Partial sums: on the stack for the common small case, else on the heap.
  constexpr int64_t kStack = 64;
  double stack_partial[kStack];
  std::vector<double> heap_partial;
  double* partial = stack_partial;
  if (n_chunks + n_groups > kStack) {
    heap_partial.assign(static_cast<size_t>(n_chunks + n_groups), 0.0);
    partial = heap_partial.data();
  } else {
    std::fill(stack_partial, stack_partial + n_chunks + n_groups, 0.0);
  }
  const NormRun<T> run_norm{p, static_cast<const T*>(p.y), static_cast<T*>(p.y_new), static_cast<T*>(p.ratio_out)};

  auto run_chunks = [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t stop = std::min(numel, (c + 1) * kChunk);
      int64_t pos = c * kChunk;
      int64_t g = group_of(pos);
      while (pos < stop) {
        while (group_end(g) <= pos) ++g;  // skip empty groups
        const int64_t row = pos / p.cols;
        const int64_t end = std::min({stop, group_end(g), (row + 1) * p.cols});
        partial[c + g] += run_norm(Run{pos, end, row});
        pos = end;
      }
    }
  };
  if (n_chunks <= 1) {
    run_chunks(0, n_chunks);  // small states: no parallel dispatch
  } else {
    at::parallel_for(0, n_chunks, 1, run_chunks);
  }

  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t begin = g == 0 ? 0 : group_end(g - 1), end = group_end(g);
    double sum = 0.0;
    if (end > begin) {
      for (int64_t c = begin / kChunk; c <= (end - 1) / kChunk; ++c) sum += partial[c + g];
    }
    p.group_sumsq[g] = sum;
  }
}

}  // namespace

void error_norm(const ErrorNormParams& p, ScalarKind kind) {
  if (kind == ScalarKind::Float64) {
    error_norm_impl<double>(p);
  } else {
    error_norm_impl<float>(p);
  }
}

}  // namespace cpu
}  // namespace node_ext
