"""torchode's InitialValueProblem: a batch of problems, each with its own span and evaluation points."""
import torch


def _times(name, value, batch, device):
    if not torch.is_tensor(value):
        raise TypeError("InitialValueProblem: %s must be a Tensor, got %s" % (name, type(value).__name__))
    if not value.is_floating_point():
        raise TypeError("InitialValueProblem: %s must be floating point, got %s" % (name, value.dtype))
    if value.dim() != 1 or value.shape[0] != batch:
        raise ValueError("InitialValueProblem: %s must have shape (batch,) = (%d,), got %s"
                         % (name, batch, tuple(value.shape)))
    if value.device != device:
        raise ValueError("InitialValueProblem: %s is on %s, y0 on %s" % (name, value.device, device))
    if not bool(torch.isfinite(value).all()):
        raise ValueError("InitialValueProblem: %s must be finite, got %s" % (name, value))
    return value


class InitialValueProblem:
    """``InitialValueProblem(y0, t_start=None, t_end=None, t_eval=None)``: y0 (batch, *features);
    t_eval (batch, n_eval), each row monotone; t_start and t_end (batch,) default to t_eval's first and
    last columns. Without t_eval the solution is returned at t_end only."""

    def __init__(self, y0, t_start=None, t_end=None, t_eval=None):
        if not torch.is_tensor(y0):
            raise TypeError("InitialValueProblem: y0 must be a Tensor, got %s" % type(y0).__name__)
        if y0.dim() < 2:
            raise ValueError("InitialValueProblem: y0 must have shape (batch, features), got %s" % (tuple(y0.shape),))
        batch = y0.shape[0]
        if t_eval is not None:
            if not torch.is_tensor(t_eval) or t_eval.dim() != 2 or t_eval.shape[0] != batch or t_eval.shape[1] < 1:
                raise ValueError("InitialValueProblem: t_eval must be a Tensor of shape (batch, n_eval) = (%d, n), got %s"
                                 % (batch, tuple(t_eval.shape) if torch.is_tensor(t_eval) else type(t_eval).__name__))
            _times("t_eval[:, 0]", t_eval[:, 0], batch, y0.device)
            if not bool(torch.isfinite(t_eval).all()):
                i = int((~torch.isfinite(t_eval)).any(dim=1).nonzero()[0])
                raise ValueError("InitialValueProblem: t_eval must be finite, got t_eval[%d] = %s" % (i, t_eval[i].tolist()))
        elif t_start is None or t_end is None:
            raise ValueError("InitialValueProblem: give t_eval, or both t_start and t_end")
        self.y0 = y0
        self.t_eval = t_eval
        self.t_start = _times("t_start", t_eval[:, 0] if t_start is None else t_start, batch, y0.device)
        self.t_end = _times("t_end", t_eval[:, -1] if t_end is None else t_end, batch, y0.device)
        if self.t_start.dtype != self.t_end.dtype or (t_eval is not None and t_eval.dtype != self.t_start.dtype):
            raise ValueError("InitialValueProblem: t_start, t_end and t_eval must have one dtype, got %s, %s, %s"
                             % (self.t_start.dtype, self.t_end.dtype, None if t_eval is None else t_eval.dtype))
        self.time_direction = torch.where(self.t_end > self.t_start, 1, -1)

    @property
    def data_dtype(self):
        return self.y0.dtype

    @property
    def time_dtype(self):
        return self.t_start.dtype

    @property
    def device(self):
        return self.y0.device

    @property
    def batch_size(self):
        return self.y0.shape[0]

    @property
    def n_features(self):
        return self.y0.shape[1]

    @property
    def n_evaluation_points(self):
        return 0 if self.t_eval is None else self.t_eval.shape[1]

    def __repr__(self):
        return "InitialValueProblem(y0=%s, t_start=%s, t_end=%s, t_eval=%s)" % (self.y0, self.t_start, self.t_end,
                                                                                 self.t_eval)
