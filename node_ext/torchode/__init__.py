"""torchode's interface on node_ext's native solve loop: a torchode user switches by changing
``import torchode as to`` to ``import node_ext.torchode as to``.

torchode (Lienen & Günnemann, "torchode: A Parallel ODE Solver for PyTorch", The Symbiosis of Deep
Learning and Differential Equations II, NeurIPS 2022) solves a batch of problems, each with its own
time span, evaluation points and step size. node_ext's per-sample time grids (a 2-D ``t``) do the same
in native code; this package maps torchode's objects (terms, step methods, controllers, adjoints,
problems, solutions) onto them. What differs from torchode 1.0.1 is listed in README.md
("Coming from torchode").
"""
from .step_size_controllers import FixedStepController, IntegralController, PIDController, max_norm, rms_norm
from .methods import Dopri5, Euler, Heun, Tsit5, register_method
from .problem import InitialValueProblem
from .solution import Solution, Status
from .solvers import AutoDiffAdjoint, BacksolveAdjoint, JointBacksolveAdjoint, solve_ivp
from .terms import ODETerm

__all__ = ["ODETerm", "InitialValueProblem", "Solution", "Status", "Dopri5", "Tsit5", "Heun", "Euler",
           "register_method", "IntegralController", "PIDController", "FixedStepController", "rms_norm", "max_norm",
           "AutoDiffAdjoint", "BacksolveAdjoint", "JointBacksolveAdjoint", "solve_ivp"]
