// Tableau consistency: sum(b) = 1, row sums of A = c, the order conditions of every rooted tree up
// to each method's order (Butcher's theory; Hairer, Norsett & Wanner, Solving ODEs I, II.2), the
// embedded pair one order lower, and the continuous extensions' conditions at several theta.
#include <cstdio>
#include <vector>

#include "kernels/params.h"
#include "solve/dense_output.h"
#include "tableaus.h"
#include "tests/check.h"

namespace {

using node_ext::Tableau;

// Rooted trees in canonical form: children sorted by id. trees[id] = children ids.
struct Trees {
  std::vector<std::vector<int>> children;
  std::vector<int> order;
  std::vector<std::vector<int>> by_order;

  explicit Trees(int max_order) {
    by_order.resize(max_order + 1);
    add({}, 1);
    for (int n = 2; n <= max_order; ++n) {
      std::vector<int> current;
      pick(n - 1, static_cast<int>(children.size()) - 1, current, n);
    }
  }
  void add(std::vector<int> ch, int n) {
    children.push_back(std::move(ch));
    order.push_back(n);
    by_order[n].push_back(static_cast<int>(children.size()) - 1);
  }
  // Multisets of children (non-increasing ids <= max_id, existing trees of order < n) summing to `left`.
  void pick(int left, int max_id, std::vector<int>& current, int n) {
    if (left == 0) {
      add(current, n);
      return;
    }
    for (int id = max_id; id >= 0; --id) {
      if (order[id] > left || order[id] >= n) continue;
      current.push_back(id);
      pick(left - order[id], id, current, n);
      current.pop_back();
    }
  }
};

// Phi_i(t) for every stage i of a method given by its lower-triangular A (s x s, row major).
std::vector<double> phi(const Trees& T, int id, const std::vector<double>& A, int s) {
  std::vector<double> out(s, 1.0);
  for (int child : T.children[id]) {
    const std::vector<double> p = phi(T, child, A, s);
    for (int i = 0; i < s; ++i) {
      double acc = 0.0;
      for (int j = 0; j < s; ++j) acc += A[i * s + j] * p[j];
      out[i] *= acc;
    }
  }
  return out;
}

double gamma(const Trees& T, int id) {
  double g = T.order[id];
  for (int child : T.children[id]) g *= gamma(T, child);
  return g;
}

// A as a dense s x s matrix, optionally extended with a last row b (the stage f(t1, y1)).
std::vector<double> dense_A(const Tableau& t, bool with_f1) {
  const int s = t.stages + (with_f1 ? 1 : 0);
  std::vector<double> A(s * s, 0.0);
  for (int i = 1; i < t.stages; ++i)
    for (int j = 0; j < i; ++j) A[i * s + j] = node_ext::tableau_a(t, i, j);
  if (with_f1)
    for (int j = 0; j < t.stages; ++j) A[t.stages * s + j] = t.b[j];
  return A;
}

// Largest p such that sum_i w_i Phi_i(t) = scale^|t| / gamma(t) for all trees of order <= p.
int order_of(const Trees& T, const std::vector<double>& A, int s, const std::vector<double>& w, double scale,
             double tol, int max_order) {
  for (int n = 1; n <= max_order; ++n) {
    for (int id : T.by_order[n]) {
      const std::vector<double> p = phi(T, id, A, s);
      double lhs = 0.0;
      for (int i = 0; i < s; ++i) lhs += w[i] * p[i];
      if (std::abs(lhs - std::pow(scale, n) / gamma(T, id)) > tol) return n - 1;
    }
  }
  return max_order;
}

const Trees& trees() {
  static Trees T(9);
  return T;
}

}  // namespace

TEST_CASE(tree_counts_match_oeis_a000081) {
  const int expected[] = {0, 1, 1, 2, 4, 9, 20, 48, 115, 286};
  for (int n = 1; n <= 9; ++n) EXPECT(static_cast<int>(trees().by_order[n].size()) == expected[n]);
}

TEST_CASE(weights_sum_to_one_and_rows_of_a_to_c) {
  for (const Tableau& t : node_ext::kTableaus) {
    double sb = 0.0;
    for (int j = 0; j < t.stages; ++j) sb += t.b[j];
    EXPECT_NEAR(sb, 1.0, 1e-14);
    EXPECT(t.c[0] == 0.0);
    for (int i = 1; i < t.stages; ++i) {
      double row = 0.0;
      for (int j = 0; j < i; ++j) row += node_ext::tableau_a(t, i, j);
      EXPECT_NEAR(row, t.c[i], 1e-14);
    }
    if (t.fsal) {
      for (int j = 0; j < t.stages - 1; ++j) EXPECT(node_ext::tableau_a(t, t.stages - 1, j) == t.b[j]);
      EXPECT(t.b[t.stages - 1] == 0.0);
    }
  }
}

TEST_CASE(order_conditions) {
  const double tol = 1e-12;
  for (const Tableau& t : node_ext::kTableaus) {
    const int s = t.stages;
    const std::vector<double> A = dense_A(t, false);
    const std::vector<double> b(t.b, t.b + s);
    const int p = order_of(trees(), A, s, b, 1.0, tol, 9);
    std::printf("  %-14s order %d (expected %d)\n", t.name, p, t.order);
    EXPECT(p == t.order);
    if (t.b_err) {
      std::vector<double> embedded(s);
      for (int j = 0; j < s; ++j) embedded[j] = t.b[j] - t.b_err[j];
      const int q = order_of(trees(), A, s, embedded, 1.0, tol, 9);
      std::printf("  %-14s embedded order %d\n", t.name, q);
      EXPECT(q == t.order - 1);
    }
  }
}

TEST_CASE(continuous_extensions) {
  // Expected orders of y(t0 + theta h) as a function of theta.
  struct Expect {
    const char* name;
    int order;
  };
  const Expect expects[] = {{"euler", 1}, {"rk4", 1}, {"adaptive_heun", 2}, {"fehlberg2", 2}, {"bosh3", 3},
                            {"dopri5", 4}, {"tsit5", 4}, {"dopri8", 5}};
  for (const Expect& e : expects) {
    const Tableau& t = *node_ext::find_tableau(e.name);
    const node_ext::DenseOutput d = node_ext::make_dense_output(t, false);
    const std::vector<double> A = dense_A(t, d.uses_f1);
    const int s = t.stages + (d.uses_f1 ? 1 : 0);
    EXPECT(d.n_terms == s);
    for (double theta : {0.13, 0.5, 0.77, 1.0}) {
      std::vector<double> w(s);
      node_ext::dense_weights(d.poly.data(), d.n_terms, d.degree, theta, w.data());
      const int p = order_of(trees(), A, s, w, theta, 1e-11, 9);
      if (theta == 0.5) std::printf("  %-14s dense order %d at theta 0.5 (expected >= %d)\n", e.name, p, e.order);
      EXPECT(p >= e.order);
      if (theta == 1.0) {
        for (int j = 0; j < t.stages; ++j) EXPECT_NEAR(w[j], t.b[j], 1e-12);
      }
    }
  }
}

TEST_CASE(cubic_hermite_for_fixed_grids) {
  const Tableau& t = *node_ext::find_tableau("rk4");
  const node_ext::DenseOutput d = node_ext::make_dense_output(t, true);
  EXPECT(d.uses_f1 && d.n_terms == 5 && d.degree == 3);
  const std::vector<double> A = dense_A(t, true);
  std::vector<double> w(5);
  node_ext::dense_weights(d.poly.data(), d.n_terms, d.degree, 0.3, w.data());
  EXPECT(order_of(trees(), A, 5, w, 0.3, 1e-12, 9) >= 3);
}

TEST_MAIN()
