// A minimal test harness for the C++ unit tests: CHECK / EXPECT_NEAR record failures with their
// location; main() returns the number of failures (ctest treats non-zero as a failure).
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace check {

inline int& failures() {
  static int n = 0;
  return n;
}

inline std::vector<std::pair<std::string, std::function<void()>>>& registry() {
  static std::vector<std::pair<std::string, std::function<void()>>> r;
  return r;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().emplace_back(name, std::move(fn)); }
};

inline int run_all() {
  for (auto& [name, fn] : registry()) {
    const int before = failures();
    try {
      fn();
    } catch (const std::exception& e) {
      std::printf("  exception: %s\n", e.what());
      ++failures();
    }
    std::printf("%s %s\n", failures() == before ? "PASS" : "FAIL", name.c_str());
  }
  std::printf("%d failure(s)\n", failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace check

#define TEST_CASE(name)                                              \
  static void name();                                                \
  static check::Register name##_registration(#name, name);           \
  static void name()

#define EXPECT(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::printf("  %s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond);      \
      ++check::failures();                                                        \
    }                                                                             \
  } while (0)

#define EXPECT_NEAR(a, b, tol)                                                                          \
  do {                                                                                                 \
    const double va_ = (a), vb_ = (b);                                                                 \
    if (!(std::abs(va_ - vb_) <= (tol))) {                                                             \
      std::printf("  %s:%d: |%s - %s| = |%.17g - %.17g| = %.3g > %.3g\n", __FILE__, __LINE__, #a, #b, \
                  va_, vb_, std::abs(va_ - vb_), double(tol));                                         \
      ++check::failures();                                                                             \
    }                                                                                                  \
  } while (0)

#define TEST_MAIN() \
  int main() { return check::run_all(); }
