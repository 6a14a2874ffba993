"""torchode's step size controllers, as node_ext solver options.

IntegralController and PIDController are node_ext's integral and PID controllers (the PID factor of
Söderlind, "Digital filters in adaptive time-stepping", ACM TOMS 29, 2003, eq. 34, with coefficients
divided by the method's order as torchode does); FixedStepController keeps dt0."""
import math
import numbers

import torch


def rms_norm(y):
    """Root mean square per sample of the scaled error, shape (batch,) (Hairer, Nørsett & Wanner,
    Solving ODEs I, eq. 4.11); node_ext computes it natively when a controller uses this norm."""
    flat = y.reshape(y.shape[0], -1)
    return torch.linalg.vector_norm(flat, dim=1) / math.sqrt(flat.shape[1])


def max_norm(y):
    """Largest absolute scaled error per sample, shape (batch,)."""
    return y.reshape(y.shape[0], -1).abs().amax(dim=1)


def _number(owner, name, value, low=0.0, low_open=True, high=math.inf, allow_none=False):
    if value is None and allow_none:
        return None
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise TypeError("%s: %s must be a number, got %r" % (owner, name, value))
    if value < low or (low_open and value == low) or value > high:
        raise ValueError("%s: %s must be in %s%g, %g], got %r" % (owner, name, "(" if low_open else "[", low, high, value))
    return float(value)


def _tolerance(owner, name, value):
    """A non-negative tolerance (zero: pure relative or absolute control, as torchode allows)."""
    if torch.is_tensor(value) and value.numel() > 1:
        if not bool((value >= 0).all()):
            raise ValueError("%s: %s must be non-negative, got %s" % (owner, name, value))
        return value
    return _number(owner, name, value, low_open=False)


class AdaptiveController(torch.nn.Module):
    """What IntegralController and PIDController share: tolerances, norm, step bounds, factors."""
    coefficients = None

    def __init__(self, atol, rtol, *, term=None, norm=rms_norm, dt_min=None, dt_max=None, safety=0.9, factor_min=0.2,
                 factor_max=10.0):
        super().__init__()
        owner = type(self).__name__
        self.atol = _tolerance(owner, "atol", atol)
        self.rtol = _tolerance(owner, "rtol", rtol)
        if not torch.is_tensor(self.atol) and not torch.is_tensor(self.rtol) and self.atol == self.rtol == 0:
            raise ValueError("%s: atol and rtol cannot both be zero" % owner)
        self.term = term
        if not callable(norm):
            raise TypeError("%s: norm must be callable (scaled error (batch, ...) -> (batch,)), got %r" % (owner, norm))
        self.norm = norm
        self.dt_min = _number(owner, "dt_min", dt_min, allow_none=True)
        self.dt_max = _number(owner, "dt_max", dt_max, allow_none=True)
        if self.dt_min is not None and self.dt_max is not None and self.dt_min > self.dt_max:
            raise ValueError("%s: dt_min = %r exceeds dt_max = %r" % (owner, self.dt_min, self.dt_max))
        self.safety = _number(owner, "safety", safety, high=1.0)
        self.factor_min = _number(owner, "factor_min", factor_min, high=1.0)
        self.factor_max = _number(owner, "factor_max", factor_max, low=1.0, low_open=False)

    def options(self):
        """node_ext's options for this controller (the tolerances travel separately)."""
        o = dict(safety=self.safety, ifactor=self.factor_max, dfactor=self.factor_min)
        o.update(self.coefficients())
        if self.dt_min is not None:
            o["min_step"] = self.dt_min
        if self.dt_max is not None:
            o["max_step"] = self.dt_max
        if self.norm is not rms_norm:
            o["norm"] = self.norm
        return o


class IntegralController(AdaptiveController):
    """``IntegralController(atol, rtol, *, term=None, norm=rms_norm, dt_min=None, dt_max=None,
    safety=0.9, factor_min=0.2, factor_max=10.0)``: dt *= safety * ratio^(-1/order)."""

    def coefficients(self):
        return dict(controller="integral")

    def __repr__(self):
        return "IntegralController(atol=%r, rtol=%r)" % (self.atol, self.rtol)


class PIDController(AdaptiveController):
    """``PIDController(atol, rtol, pcoeff, icoeff, dcoeff, *, term=None, norm=rms_norm, dt_min=None,
    dt_max=None, safety=0.9, factor_min=0.2, factor_max=10.0)``."""

    def __init__(self, atol, rtol, pcoeff, icoeff, dcoeff, **kwargs):
        super().__init__(atol, rtol, **kwargs)
        owner = "PIDController"
        self.pcoeff = _number(owner, "pcoeff", pcoeff, low=-math.inf)
        self.icoeff = _number(owner, "icoeff", icoeff, low=-math.inf)
        self.dcoeff = _number(owner, "dcoeff", dcoeff, low=-math.inf)
        if self.pcoeff + self.icoeff + self.dcoeff <= 0:
            raise ValueError("PIDController: pcoeff + icoeff + dcoeff must be positive, got %r"
                             % (self.pcoeff + self.icoeff + self.dcoeff))

    def coefficients(self):
        return dict(controller="pid", pcoeff=self.pcoeff, icoeff=self.icoeff, dcoeff=self.dcoeff)

    def __repr__(self):
        return "PIDController(atol=%r, rtol=%r, pcoeff=%r, icoeff=%r, dcoeff=%r)" % (
            self.atol, self.rtol, self.pcoeff, self.icoeff, self.dcoeff)


class FixedStepController(torch.nn.Module):
    """Steps of dt0 (required at solve time), every step accepted; the last one ends on t_end."""

    def __repr__(self):
        return "FixedStepController()"
