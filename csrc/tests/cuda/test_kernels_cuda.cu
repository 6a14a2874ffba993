// Standalone check of the CUDA kernels (kernels/cuda) against straightforward host formulas.
//
// Build and run on a machine with a GPU (no torch needed):
//   nvcc -std=c++17 -O2 -I csrc csrc/tests/cuda/test_kernels_cuda.cu csrc/kernels/cuda/*.cu -o test_kernels_cuda
//   ./test_kernels_cuda
// `./test_kernels_cuda error_norm` runs one family (combine | error_norm | interp) only.
// Every case prints a PASS or FAIL line; the exit status is the number of failures (capped), 2 on
// a CUDA error. Float32 is checked to ~1e-5 and Float64 to ~1e-12 relative to the magnitude of
// the terms (|y| + |h| sum_j |w_j k_j|); group norms to 1e-10 (Float64) / 1e-4 (Float32).
// Outputs are pre-filled with NaN (error norm) or a sentinel (interp) so unwritten entries show.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/kernels_cuda.h"
#include "tableaus.h"

using namespace node_ext;
using namespace node_ext::cuda;

#define CK(call)                                                                                  \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::printf("FAIL cuda error '%s' at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(2);                                                                               \
    }                                                                                             \
  } while (0)

static int g_failures = 0;
static const char* g_only = nullptr;  // argv[1]: run only the kernel family with this name
static bool wanted(const char* family) { return g_only == nullptr || std::strcmp(g_only, family) == 0; }
static std::mt19937_64 g_rng(12345);

static void report(bool ok, const std::string& name, double err) {
  std::printf("%s %s (max scaled err %.3g)\n", ok ? "PASS" : "FAIL", name.c_str(), err);
  if (!ok) ++g_failures;
}
static void expect(bool ok, const std::string& name) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", name.c_str());
  if (!ok) ++g_failures;
}

template <typename T> const char* tname();
template <> const char* tname<float>() { return "float"; }
template <> const char* tname<double>() { return "double"; }
template <typename T> ScalarKind kind_of();
template <> ScalarKind kind_of<float>() { return ScalarKind::Float32; }
template <> ScalarKind kind_of<double>() { return ScalarKind::Float64; }
template <typename T> double tol_of() { return sizeof(T) == 4 ? 1e-5 : 1e-12; }
template <typename T> double norm_tol_of() { return sizeof(T) == 4 ? 1e-4 : 1e-10; }

// Device buffer with `lead` spare elements in front (lead = 1 misaligns the data pointer).
template <typename T>
struct Buf {
  T* base = nullptr;
  T* d = nullptr;
  size_t n = 0;
  Buf(size_t count, size_t lead = 0) : n(count) {
    CK(cudaMalloc(&base, (count + lead + 1) * sizeof(T)));
    d = base + lead;
  }
  Buf(const std::vector<T>& h, size_t lead = 0) : Buf(h.size(), lead) { put(h); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { cudaFree(base); }
  void put(const std::vector<T>& h) { CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

template <typename T>
std::vector<T> random_vec(size_t n, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(g_rng));
  return v;
}

template <typename T>
using Stages = std::vector<std::vector<T>>;

template <typename T>
Stages<T> random_stages(int nt, size_t n) {
  Stages<T> k;
  for (int j = 0; j < nt; ++j) k.push_back(random_vec<T>(n));
  return k;
}

// ---------------------------------------------------------------------------------------------
template <typename T>
void test_combine(int64_t rows, int64_t cols, int nt, bool per_row, bool y_null, bool alias, bool misalign) {
  const int64_t n = rows * cols;
  const size_t lead = misalign ? 1 : 0;
  std::vector<T> y = random_vec<T>(n);
  Stages<T> k = random_stages<T>(nt, n);
  std::vector<double> w = random_vec<double>(nt), h = random_vec<double>(per_row ? rows : 1, 0.01, 0.5);
  if (nt >= 3) {  // a zero weight: its stage must not even be read (as on the CPU), so poison it
    w[1] = 0.0;
    k[1].assign(n, static_cast<T>(NAN));
  }
  Buf<T> dy(y, lead), dout(n, lead);
  Buf<double> dh(h);
  std::vector<std::unique_ptr<Buf<T>>> dk;
  CombineParams p;
  p.rows = rows;
  p.cols = cols;
  p.y = y_null ? nullptr : dy.d;
  p.out = alias ? dy.d : dout.d;
  p.n_terms = nt;
  for (int j = 0; j < nt; ++j) {
    dk.emplace_back(new Buf<T>(k[j], lead));
    p.k[j] = dk.back()->d;
    p.w[j] = w[j];
  }
  p.h.ptr = dh.d;
  p.h.per_row = per_row;
  CK(combine_cuda(p, kind_of<T>(), 0));
  CK(cudaDeviceSynchronize());
  const std::vector<T> got = alias ? dy.get() : dout.get();
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double hr = h[per_row ? i / cols : 0];
    double acc = 0.0, mag = 0.0;
    for (int j = 0; j < nt; ++j) {
      if (w[j] == 0.0) continue;
      acc += w[j] * k[j][i];
      mag += std::fabs(w[j] * k[j][i]);
    }
    const double y0 = y_null ? 0.0 : static_cast<double>(y[i]);
    const double ref = y0 + hr * acc, scale = std::fabs(y0) + std::fabs(hr) * mag + 1e-30;
    const double e = std::fabs(static_cast<double>(got[i]) - ref) / scale;
    if (!(e <= worst)) worst = e;  // NaN propagates
  }
  char name[256];
  std::snprintf(name, sizeof name, "combine<%s> rows=%lld cols=%lld terms=%d h=%s%s%s%s", tname<T>(), (long long)rows,
                (long long)cols, nt, per_row ? "per-row" : "shared", y_null ? " y=null" : "", alias ? " out==y" : "",
                misalign ? " misaligned" : "");
  report(worst <= tol_of<T>(), name, worst);
}

// ---------------------------------------------------------------------------------------------
// Ragged groups covering [0, n): a mix of empty, short (<= 16), long and multi-chunk groups, or
// (small) only empty and short groups.
static std::vector<int64_t> make_groups(int64_t n, bool small) {
  std::vector<int64_t> end = {0, 0};  // two leading empty groups
  std::uniform_int_distribution<int> pick(0, 99);
  int64_t pos = 0;
  while (pos < n) {
    const int c = pick(g_rng);
    int64_t len;
    if (small) len = c < 10 ? 0 : 1 + static_cast<int64_t>(g_rng() % 8);
    else if (c < 10) len = 0;
    else if (c < 70) len = 1 + static_cast<int64_t>(g_rng() % 16);
    else if (c < 90) len = 17 + static_cast<int64_t>(g_rng() % 3000);
    else if (c < 97) len = 2048 - pos % 2048;  // end exactly on a tile boundary
    else len = 1 + static_cast<int64_t>(g_rng() % (n / 4 + 1));
    pos = pos + len < n ? pos + len : n;
    end.push_back(pos);
  }
  end.push_back(n);  // trailing empty groups
  end.push_back(n);
  return end;
}

struct NormCase {
  int64_t rows, cols;
  const char* method;
  bool per_row, compute_y_new, elem_tol, ratio, sumsq;
  int ragged;  // 0: the groups are the rows; 1: mixed ragged groups; 2: small ragged groups
};

template <typename T>
void test_error_norm(const NormCase& c) {
  const Tableau* tb = find_tableau(c.method);
  const int nt = tb->stages;
  const int64_t n = c.rows * c.cols;
  std::vector<T> y = random_vec<T>(n), y_new_in = random_vec<T>(n);
  Stages<T> k = random_stages<T>(nt, n);
  std::vector<double> h = random_vec<double>(c.per_row ? c.rows : 1, 0.01, 0.5);
  std::vector<double> rt = random_vec<double>(n, 1e-4, 1e-2), at = random_vec<double>(n, 1e-6, 1e-3);
  std::vector<int64_t> gend = c.ragged ? make_groups(n, c.ragged == 2) : std::vector<int64_t>();
  const int64_t ng = c.ragged ? static_cast<int64_t>(gend.size()) : c.rows;

  Buf<T> dy(y), dynew(y_new_in), dratio(n);
  Buf<double> dh(h), drt(rt), dat(at), dsum(ng > 0 ? ng : 1);
  std::unique_ptr<Buf<int64_t>> dgend(c.ragged ? new Buf<int64_t>(gend) : nullptr);
  std::vector<std::unique_ptr<Buf<T>>> dk;
  ErrorNormParams p;
  p.rows = c.rows;
  p.cols = c.cols;
  p.y = dy.d;
  p.y_new = dynew.d;
  p.compute_y_new = c.compute_y_new;
  p.n_terms = nt;
  for (int j = 0; j < nt; ++j) {
    dk.emplace_back(new Buf<T>(k[j]));
    p.k[j] = dk.back()->d;
    p.b[j] = tb->b[j];
    p.e[j] = tb->b_err[j];
  }
  p.h.ptr = dh.d;
  p.h.per_row = c.per_row;
  p.rtol = 1e-3;
  p.atol = 1e-5;
  if (c.elem_tol) {
    p.rtol_elem = drt.d;
    p.atol_elem = dat.d;
  }
  p.n_groups = ng;
  p.group_end = c.ragged ? dgend->d : nullptr;
  p.group_sumsq = c.sumsq ? dsum.d : nullptr;
  p.ratio_out = c.ratio ? dratio.d : nullptr;
  const size_t ws_bytes = error_norm_cuda_workspace_bytes(p);
  void* ws = nullptr;
  if (ws_bytes > 0) CK(cudaMalloc(&ws, ws_bytes));
  std::vector<std::vector<double>> runs;
  for (int run = 0; run < 2; ++run) {  // twice: the sums must be bitwise reproducible
    CK(cudaMemset(dsum.d, 0xff, dsum.n * sizeof(double)));  // NaN: unwritten groups show up
    if (ws_bytes > 0) CK(cudaMemset(ws, 0xff, ws_bytes));
    if (c.compute_y_new) CK(cudaMemset(dynew.d, 0xff, n * sizeof(T)));
    CK(error_norm_cuda(p, kind_of<T>(), ws, 0));
    CK(cudaDeviceSynchronize());
    runs.push_back(dsum.get());
  }
  const std::vector<T> ynew = dynew.get(), ratio = dratio.get();

  // Host reference.
  std::vector<double> ref_sum(ng > 0 ? ng : 1, 0.0), slack(ng > 0 ? ng : 1, 0.0);
  int64_t g = 0;
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double hr = h[c.per_row ? i / c.cols : 0];
    double sb = 0.0, se = 0.0, mb = 0.0, me = 0.0;
    for (int j = 0; j < nt; ++j) {
      sb += tb->b[j] * k[j][i];
      se += tb->b_err[j] * k[j][i];
      mb += std::fabs(tb->b[j] * k[j][i]);
      me += std::fabs(tb->b_err[j] * k[j][i]);
    }
    const double yv = y[i];
    const double yn = c.compute_y_new ? yv + hr * sb : static_cast<double>(y_new_in[i]);
    if (c.compute_y_new) {
      const double e = std::fabs(ynew[i] - yn) / (std::fabs(yv) + std::fabs(hr) * mb + 1e-30);
      if (!(e <= worst)) worst = e;
    }
    const double tol = (c.elem_tol ? at[i] : p.atol) + (c.elem_tol ? rt[i] : p.rtol) * std::fmax(std::fabs(yv), std::fabs(yn));
    const double q = hr * se / tol, qscale = std::fabs(hr) * me / tol + 1e-300;
    if (c.ratio) {
      const double e = std::fabs(ratio[i] - q) / qscale;
      if (!(e <= worst)) worst = e;
    }
    if (c.ragged) {
      while (g < ng && gend[g] <= i) ++g;
    } else {
      g = i / c.cols;
    }
    if (g < ng) {
      ref_sum[g] += q * q;
      slack[g] += qscale * qscale;
    }
  }
  char name[256];
  std::snprintf(name, sizeof name, "error_norm<%s> rows=%lld cols=%lld %s groups=%s(%lld) h=%s%s%s%s", tname<T>(),
                (long long)c.rows, (long long)c.cols, c.method, c.ragged == 0 ? "rows" : c.ragged == 1 ? "ragged" : "small-ragged", (long long)ng,
                c.per_row ? "per-row" : "shared", c.compute_y_new ? " y_new=computed" : " y_new=given",
                c.elem_tol ? " tol=per-elem" : "", c.sumsq ? "" : " no-norm");
  bool ok = worst <= tol_of<T>();
  double worst_norm = 0.0;
  if (c.sumsq) {
    for (int64_t gg = 0; gg < ng; ++gg) {
      const double e = std::fabs(runs[0][gg] - ref_sum[gg]) / (ref_sum[gg] + slack[gg] + 1e-300);
      if (!(e <= worst_norm)) worst_norm = e;
    }
    ok = ok && worst_norm <= norm_tol_of<T>();
    expect(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(double)) == 0,
           std::string(name) + " [bitwise reproducible]");
  }
  report(ok, name, worst > worst_norm ? worst : worst_norm);
  if (ws != nullptr) CK(cudaFree(ws));
}

// ---------------------------------------------------------------------------------------------
template <typename T>
void test_interp(int64_t rows, int64_t cols, int64_t n_points, const char* method, bool per_row, bool indexed) {
  const Tableau* tb = find_tableau(method);
  const int nt = tb->dense_terms, deg = tb->dense_degree;
  const int64_t n = rows * cols, n_out = indexed ? n_points + 2 : n_points;
  const T sentinel = static_cast<T>(777.0);
  std::vector<T> y0 = random_vec<T>(n);
  Stages<T> K = random_stages<T>(nt, n);
  std::vector<double> h = random_vec<double>(per_row ? rows : 1, 0.01, 0.5);
  std::vector<double> theta = random_vec<double>(per_row ? n_points * rows : n_points, 0.0, 1.0);
  std::vector<int64_t> idx(n_points * rows);
  for (int64_t m = 0; m < n_points; ++m)
    for (int64_t r = 0; r < rows; ++r) idx[m * rows + r] = (g_rng() % 5 == 0) ? -1 : (m + r) % n_out;  // distinct per r
  std::vector<T> out_ref(n_out * n, sentinel);
  Buf<T> dy0(y0), dout(out_ref);
  Buf<double> dh(h), dtheta(theta);
  Buf<int64_t> didx(idx);
  std::vector<std::unique_ptr<Buf<T>>> dk;
  InterpParams p;
  p.rows = rows;
  p.cols = cols;
  p.n_points = n_points;
  p.y0 = dy0.d;
  p.out = dout.d;
  p.n_terms = nt;
  for (int j = 0; j < nt; ++j) {
    dk.emplace_back(new Buf<T>(K[j]));
    p.k[j] = dk.back()->d;
  }
  p.degree = deg;
  for (int x = 0; x < nt * deg; ++x) p.poly[x] = tb->dense_poly[x];
  p.h.ptr = dh.d;
  p.h.per_row = per_row;
  p.theta = dtheta.d;
  p.theta_per_row = per_row;
  p.out_index = indexed ? didx.d : nullptr;
  CK(interp_cuda(p, kind_of<T>(), 0));
  CK(cudaDeviceSynchronize());
  const std::vector<T> got = dout.get();
  std::vector<double> scale(n_out * n, 0.0), refd(n_out * n, static_cast<double>(sentinel));
  double w[kMaxTerms];
  for (int64_t m = 0; m < n_points; ++m) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t dst = indexed ? idx[m * rows + r] : m;
      if (dst < 0) continue;
      dense_weights(tb->dense_poly, nt, deg, theta[per_row ? m * rows + r : m], w);
      const double hr = h[per_row ? r : 0];
      for (int64_t d = 0; d < cols; ++d) {
        double acc = 0.0, mag = 0.0;
        for (int j = 0; j < nt; ++j) {
          acc += w[j] * K[j][r * cols + d];
          mag += std::fabs(w[j] * K[j][r * cols + d]);
        }
        const int64_t o = (dst * rows + r) * cols + d;
        refd[o] = y0[r * cols + d] + hr * acc;
        scale[o] = std::fabs(static_cast<double>(y0[r * cols + d])) + std::fabs(hr) * mag + 1e-30;
      }
    }
  }
  double worst = 0.0;
  for (size_t o = 0; o < refd.size(); ++o) {
    const double e = scale[o] == 0.0 ? (got[o] == sentinel ? 0.0 : 1.0) : std::fabs(got[o] - refd[o]) / scale[o];
    if (!(e <= worst)) worst = e;
  }
  char name[256];
  std::snprintf(name, sizeof name, "interp<%s> rows=%lld cols=%lld points=%lld %s theta/h=%s%s", tname<T>(),
                (long long)rows, (long long)cols, (long long)n_points, method, per_row ? "per-row" : "shared",
                indexed ? " out_index(with -1)" : "");
  report(worst <= tol_of<T>(), name, worst);
}

// ---------------------------------------------------------------------------------------------
template <typename T>
void run_all() {
  struct Shape { int64_t rows, cols; };
  const Shape shapes[] = {{1, 1}, {3, 1000}, {4096, 2}, {1, 1 << 20}, {5, 33}, {3, 2000007}};
  for (const Shape& s : shapes) {
    if (!wanted("combine")) break;
    test_combine<T>(s.rows, s.cols, 7, true, false, false, false);
    test_combine<T>(s.rows, s.cols, 4, false, false, true, false);
    test_combine<T>(s.rows, s.cols, 13, true, true, false, true);
    test_combine<T>(s.rows, s.cols, 2, false, false, false, true);
  }
  if (wanted("combine")) {
    test_combine<T>(7, 6, 0, true, false, false, false);
    test_combine<T>(2, 10, 16, false, false, true, false);
  }

  const NormCase norm_cases[] = {
      {1, 1, "dopri5", false, true, false, true, true, 0},
      {3, 1000, "dopri5", true, true, false, true, true, 0},
      {3, 1000, "bosh3", false, false, true, true, true, 1},
      {4096, 2, "dopri5", true, true, false, true, true, 0},
      {4096, 2, "adaptive_heun", true, true, true, false, true, 1},
      {4096, 2, "dopri5", true, false, false, true, true, 2},
      {1, 1 << 20, "bosh3", false, true, true, false, true, 2},
      {1, 1 << 20, "dopri5", false, true, false, true, true, 0},
      {1, 1 << 20, "tsit5", false, false, true, true, true, 1},
      {64, 16384, "dopri8", true, true, false, false, true, 0},
      {1, 5000003, "dopri5", false, true, false, false, true, 0},
      {3, 2000007, "bosh3", true, true, true, true, true, 0},
      {1, 5000003, "dopri5", true, true, false, false, true, 1},
      {1, 5000003, "tsit5", false, false, false, true, true, 2},
      {1000, 77, "dopri5", true, true, false, true, false, 0},
  };
  for (const NormCase& c : norm_cases) {
    if (wanted("error_norm")) test_error_norm<T>(c);
  }
  if (!wanted("interp")) return;

  test_interp<T>(1, 1, 1, "dopri5", false, false);
  test_interp<T>(3, 1000, 5, "dopri5", true, true);
  test_interp<T>(3, 1000, 4, "dopri8", false, false);
  test_interp<T>(4096, 2, 3, "dopri5", true, true);
  test_interp<T>(4096, 2, 2, "dopri8", false, false);
  test_interp<T>(1, 1 << 20, 3, "tsit5", false, true);
  test_interp<T>(5, 8, 7, "dopri5", true, false);
  test_interp<T>(6, 9, 7, "dopri8", true, true);
  test_interp<T>(2, 300, 11, "tsit5", false, true);
}

static void test_edge_cases() {
  CombineParams c;
  c.rows = 3;
  c.cols = 4;
  c.n_terms = kMaxTerms + 1;
  expect(combine_cuda(c, ScalarKind::Float32, 0) == cudaErrorInvalidValue, "combine rejects n_terms > kMaxTerms");
  c.n_terms = 1;
  c.rows = 0;
  expect(combine_cuda(c, ScalarKind::Float64, 0) == cudaSuccess, "combine with rows == 0 is a no-op");

  ErrorNormParams e;
  e.rows = 5;
  e.cols = 0;
  e.n_groups = 5;
  Buf<double> sums(5);
  CK(cudaMemset(sums.d, 0xff, 5 * sizeof(double)));
  e.group_sumsq = sums.d;
  expect(error_norm_cuda(e, ScalarKind::Float32, nullptr, 0) == cudaSuccess, "error_norm with cols == 0 succeeds");
  CK(cudaDeviceSynchronize());
  bool zeros = true;
  for (double v : sums.get()) zeros = zeros && v == 0.0;
  expect(zeros, "error_norm with cols == 0 writes zero norms");
  e.cols = 2;
  e.n_groups = 4;
  expect(error_norm_cuda(e, ScalarKind::Float32, nullptr, 0) == cudaErrorInvalidValue,
         "error_norm rejects n_groups != rows without group_end");

  {  // a non-finite y_new makes the ratio NaN (never accepted), not 0
    const std::vector<double> yv = {1.0, 2.0, 3.0}, ynv = {1.0, INFINITY, 3.0}, kv = {0.5, 0.5, 0.5};
    const std::vector<double> hv = {0.1};
    Buf<double> dy(yv), dyn(ynv), dk(kv), dh(hv), dratio(3), dsum(1);
    ErrorNormParams q;
    q.rows = 1;
    q.cols = 3;
    q.y = dy.d;
    q.y_new = dyn.d;
    q.n_terms = 1;
    q.k[0] = dk.d;
    q.e[0] = 1.0;
    q.h.ptr = dh.d;
    q.rtol = 1e-3;
    q.atol = 1e-6;
    q.n_groups = 1;
    q.group_sumsq = dsum.d;
    q.ratio_out = dratio.d;
    CK(error_norm_cuda(q, ScalarKind::Float64, nullptr, 0));
    CK(cudaDeviceSynchronize());
    const std::vector<double> r = dratio.get(), ss = dsum.get();
    expect(std::isfinite(r[0]) && std::isnan(r[1]) && std::isfinite(r[2]) && std::isnan(ss[0]),
           "error_norm: non-finite y_new gives a NaN ratio and norm");
  }

  InterpParams ip;
  ip.rows = 2;
  ip.cols = 2;
  ip.n_points = 1;
  ip.degree = kMaxDenseDegree + 1;
  expect(interp_cuda(ip, ScalarKind::Float64, 0) == cudaErrorInvalidValue, "interp rejects degree > kMaxDenseDegree");
  CK(cudaGetLastError());
}

int main(int argc, char** argv) {
  if (argc > 1) g_only = argv[1];  // combine | error_norm | interp
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("FAIL no CUDA device available\n");
    return 2;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  test_edge_cases();
  run_all<float>();
  run_all<double>();
  std::printf("%s: %d failure(s)\n", g_failures == 0 ? "ALL PASSED" : "FAILED", g_failures);
  return g_failures == 0 ? 0 : (g_failures < 100 ? g_failures : 100);
}
