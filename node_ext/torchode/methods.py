"""torchode's step methods, as names of node_ext's tableaus (node_ext/tableaus.py)."""
from .terms import ODETerm


class StepMethod:
    """A step method of torchode's: ``Method(term=None)``. ``method`` is node_ext's name for it,
    ``adaptive`` whether it has an embedded error estimate."""
    method = None
    order = None
    adaptive = True

    def __init__(self, term=None):
        if term is not None and not isinstance(term, ODETerm):
            raise TypeError("%s: term must be a node_ext.torchode.ODETerm or None, got %s"
                            % (type(self).__name__, type(term).__name__))
        self.term = term

    def convergence_order(self):
        return self.order

    def __repr__(self):
        return "%s(term=%r)" % (type(self).__name__, self.term)


class Dopri5(StepMethod):
    """Dormand & Prince (1980), 5(4), with its own continuous extension."""
    method, order = "dopri5", 5


class Tsit5(StepMethod):
    """Tsitouras (2011), 5(4), with its own continuous extension."""
    method, order = "tsit5", 5


class Heun(StepMethod):
    """Heun's method with Euler's as the embedded estimate, 2(1) (node_ext's adaptive_heun)."""
    method, order = "adaptive_heun", 2


class Euler(StepMethod):
    """Euler's method: no error estimate, so fixed steps of dt0 (outputs interpolated linearly)."""
    method, order, adaptive = "euler", 1, False


METHODS = {"dopri5": Dopri5, "tsit5": Tsit5, "heun": Heun, "euler": Euler}


def register_method(name, constructor):
    """Makes ``solve_ivp(..., method=name)`` build ``constructor(term=term)``."""
    if not isinstance(name, str):
        raise TypeError("register_method: name must be a str, got %s" % type(name).__name__)
    if not callable(constructor):
        raise TypeError("register_method: constructor must be callable, got %s" % type(constructor).__name__)
    METHODS[name] = constructor


def method_named(name, term):
    if name not in METHODS:
        raise ValueError("solve_ivp: unknown method %r; registered: %s" % (name, ", ".join(sorted(METHODS))))
    return METHODS[name](term=term)
