// The continuous extension used for outputs between step ends, as polynomial weights over the
// step's stages (see tableaus.h): the method's own extension when it has one, cubic Hermite
// (through y0, f0, y1, f1) for the other adaptive methods and for fixed grids with interp="cubic",
// linear interpolation otherwise.
#pragma once

#include <vector>

#include "tableaus.h"

namespace node_ext {

struct DenseOutput {
  int n_terms = 0;  // stages, plus f(t1, y1) when uses_f1
  int degree = 0;
  std::vector<double> poly;  // n_terms x degree, w_j(theta) = sum_p poly[j][p] theta^(p+1)
  bool uses_f1 = false;      // needs f(t1, y1) as term `stages` (methods that are not FSAL)
};

// Linear or cubic Hermite interpolation over a step whose increment is y1 - y0 = h sum_j b_j K_j
// (j < n); K_0 is f(t0, y0). With fsal, K_{n-1} is f(t1, y1); otherwise the Hermite form takes it
// as an extra term n. Also the extension of the Adams methods, whose weights change every step.
inline DenseOutput interpolating_dense_output(const double* b, int n, bool fsal, bool hermite) {
  DenseOutput d;
  if (!hermite) {
    d.n_terms = n;
    d.degree = 1;
    d.poly.assign(b, b + n);  // y0 + theta * (y1 - y0)
    return d;
  }
  // y(theta) = h00 y0 + h10 h f0 + h01 y1 + h11 h f1, with y1 - y0 = h sum_j b_j k_j:
  // h10 = theta - 2 theta^2 + theta^3, h01 = 3 theta^2 - 2 theta^3, h11 = -theta^2 + theta^3.
  const int f1 = fsal ? n - 1 : n;
  d.uses_f1 = !fsal;
  d.n_terms = fsal ? n : n + 1;
  d.degree = 3;
  d.poly.assign(static_cast<size_t>(d.n_terms * 3), 0.0);
  for (int j = 0; j < n; ++j) {
    d.poly[j * 3 + 1] += 3.0 * b[j];
    d.poly[j * 3 + 2] += -2.0 * b[j];
  }
  d.poly[0] += 1.0;
  d.poly[1] += -2.0;
  d.poly[2] += 1.0;
  d.poly[f1 * 3 + 1] += -1.0;
  d.poly[f1 * 3 + 2] += 1.0;
  return d;
}

inline DenseOutput make_dense_output(const Tableau& t, bool cubic) {
  DenseKind kind = t.dense;
  if (!t.adaptive) kind = cubic ? DenseKind::Hermite : DenseKind::Linear;
  if (kind != DenseKind::Polynomial) return interpolating_dense_output(t.b, t.stages, t.fsal, kind == DenseKind::Hermite);
  DenseOutput d;
  d.n_terms = t.dense_terms;
  d.degree = t.dense_degree;
  d.poly.assign(t.dense_poly, t.dense_poly + t.dense_terms * t.dense_degree);
  d.uses_f1 = t.dense_terms > t.stages;
  return d;
}

}  // namespace node_ext
