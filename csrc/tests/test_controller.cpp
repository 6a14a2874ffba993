// Step-size controller: torchdiffeq's integral rule, bounds, and the PI history.
#include <cmath>

#include "solve/controller.h"
#include "tests/check.h"

using node_ext::ControllerOptions;
using node_ext::StepController;

TEST_CASE(integral_controller_follows_torchdiffeq) {
  StepController c(ControllerOptions{}, 5, 1);
  EXPECT_NEAR(c.next_step(0, 1.0, 0.0, true), 10.0, 0);                         // zero error: ifactor
  EXPECT_NEAR(c.next_step(0, 1.0, 0.5, true), 0.9 * std::pow(0.5, -0.2), 1e-15);  // safety * err^(-1/k)
  EXPECT_NEAR(c.next_step(0, 1.0, 1e-12, true), 10.0, 0);                       // capped at ifactor
  EXPECT_NEAR(c.next_step(0, 1.0, 0.99, true), 1.0, 0);                         // accepted: never shrinks
  EXPECT_NEAR(c.next_step(0, 2.0, 2.0, false), 2.0 * 0.9 * std::pow(2.0, -0.2), 1e-15);
  EXPECT_NEAR(c.next_step(0, 1.0, 1e10, false), 0.2, 0);                        // floored at dfactor
  EXPECT_NEAR(c.next_step(0, 1.0, NAN, false), 0.2, 0);                         // non-finite: dfactor
}

TEST_CASE(pi_controller_uses_previous_error) {
  ControllerOptions o;
  o.pcoeff = 0.4;
  o.icoeff = 0.3;
  StepController c(o, 5, 2);
  const double first = c.next_step(0, 1.0, 0.1, true);  // history starts at 1
  EXPECT_NEAR(first, 0.9 * std::pow(0.1, -0.7 / 5), 1e-15);
  const double second = c.next_step(0, 1.0, 0.1, true);
  EXPECT_NEAR(second, 0.9 * std::pow(0.1, -0.7 / 5) * std::pow(0.1, 0.4 / 5), 1e-15);
  // Row 1 keeps its own history.
  EXPECT_NEAR(c.next_step(1, 1.0, 0.1, true), first, 1e-15);
  // A rejection does not grow the step.
  EXPECT(c.next_step(0, 1.0, 1.5, false) < 1.0);
}

TEST_MAIN()
