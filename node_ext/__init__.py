"""node_ext: neural ordinary differential equations for PyTorch with a native solver core.

Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018.
The step loop, stage combinations, error norms and dense output run in C++ (and CUDA); this package
adds validation, autograd glue and the nn.Module API. ``odeint`` has torchdiffeq's signature.
"""
from ._ops import native as _native
from .adjoint import odeint_adjoint
from .nn import ConvODEF, MLPODEF, NeuralODE, ODEBlock, ODEF
from .errors import MaxStepsError, NonFiniteError, SolverError, StepSizeError
from .dense import DenseSolution, odeint_dense
from .events import odeint_event
from .odeint import odeint
from .tableaus import method_names as _method_names
from .stats import SolveStats, last_stats

METHODS = tuple(_method_names())


def native_available():
    """True when the compiled extension node_ext._C is loaded (else the reference solvers run)."""
    return _native is not None


__all__ = ["odeint", "odeint_adjoint", "odeint_event", "odeint_dense", "DenseSolution", "ODEF", "NeuralODE", "ODEBlock", "MLPODEF", "ConvODEF", "SolveStats", "last_stats", "SolverError", "StepSizeError", "MaxStepsError",
           "NonFiniteError", "METHODS", "native_available"]
