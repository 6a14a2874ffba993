"""Neural-network building blocks for neural ODEs."""
from .dynamics import ConvODEF, MLPODEF, add_time
from .neural_ode import NeuralODE, ODEBlock
from .odef import ODEF, as_ty

__all__ = ["ODEF", "NeuralODE", "ODEBlock", "MLPODEF", "ConvODEF", "add_time", "as_ty"]
