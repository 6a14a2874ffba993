"""odeint_event: solve until an event, with gradients through the event time.

torchdiffeq's ``odeint_event`` interface (Chen, Amos & Nickel, "Learning Neural Event Functions for
Ordinary Differential Equations", ICLR 2021). The native loop finds the event (``odeint(...,
event_fn=...)``); this module makes the event time and the state there differentiable by the implicit
function theorem: with c(t, y) the event value, c(t_e, y(t_e)) = 0 gives

    dt_e/dp = -(dc/dp) / (dc/dt),   dc/dt = partial_t c + grad_y c . f(t_e, y(t_e)),

for every quantity p that c depends on: through the state y(t_e) (y0, t0, the parameters of func)
and directly (the parameters of event_fn, which torchdiffeq leaves without gradient). The state at
the event, y(t_e) with t_e moving, gains f(t_e, y(t_e)) dt_e/dp.
"""
import torch

from .compile_guard import eager_under_compile
from .odeint import odeint


@eager_under_compile  # under torch.compile the solve runs eagerly (node_ext/compile_guard.py)
def odeint_event(func, y0, t0, *, event_fn, reverse_time=False, odeint_interface=odeint, **kwargs):
    """Solves from t0 until ``event_fn(t, y)`` changes sign; returns ``(event_t, solution)``.

    Args:
        func, y0: as in :func:`node_ext.odeint` (a tuple y0 is supported).
        t0: the initial time, a scalar Tensor (it may require grad); or a Tensor of shape (batch,), one
            initial time per sample of a Tensor y0 whose first dimension is the batch: every sample
            then stops at its own event (see below). A t0 of one element is one time, as in
            torchdiffeq, whatever its shape (for a batch of one with an event per sample, pass a t of
            shape (1, 2) to odeint or odeint_adjoint).
        event_fn: ``event_fn(t, y)`` returning a Tensor; the event is the first sign change of any of
            its values. It may have parameters of its own (an ``nn.Module``): they get gradients too.
            With one event per sample, t has shape (batch,) and the values' first dimension is the
            batch, row i depending on sample i only (so that each sample's event time, and its
            gradient, are those of the sample solved alone).
        reverse_time: integrate towards decreasing t.
        odeint_interface: :func:`node_ext.odeint` (backpropagation through the solver) or
            :func:`node_ext.odeint_adjoint` (the adjoint method).
        **kwargs: rtol, atol, method, options, adjoint_* ... passed to ``odeint_interface``.

    Returns:
        event_t (of t0's dtype and shape: a scalar, or one time per sample) and the solution of shape
        (2, *y0.shape): y0 and the state at event_t, the latest time found before the sign change (to
        a few ulps of t), so that restarting there (after a bounce, say) does not meet the same
        crossing again. Both are differentiable, the event time by the implicit function theorem (see
        the module docstring); a grazing event (dc/dt = 0) has no derivative and gives infinite
        gradients.
    """
    per_sample = torch.is_tensor(t0) and t0.dim() == 1 and t0.numel() > 1
    if not torch.is_tensor(t0) or not (t0.numel() == 1 or per_sample):
        raise TypeError("t0 must be a scalar Tensor, or of shape (batch,) for one event per sample, got %s" % (
            "a Tensor of shape %s" % (tuple(t0.shape),) if torch.is_tensor(t0) else type(t0).__name__))
    if not callable(event_fn):
        raise TypeError("event_fn must be callable as event_fn(t, y), got %s" % type(event_fn).__name__)
    direction = -1.0 if reverse_time else 1.0
    if per_sample:
        if not torch.is_tensor(y0) or y0.dim() == 0 or y0.shape[0] != t0.shape[0]:
            got = "y0 of shape %s" % (tuple(y0.shape),) if torch.is_tensor(y0) else "a %s" % type(y0).__name__
            raise ValueError("t0 of shape %s gives one event per sample and needs a Tensor y0 whose first dimension "
                             "is the batch (%d), got %s" % (tuple(t0.shape), t0.shape[0], got))
        t = torch.stack([t0, t0.detach() + direction], 1)
    else:
        t0 = t0.reshape(1)
        t = torch.cat([t0, t0.detach() + direction])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    if not torch.is_grad_enabled():
        return event_t, solution
    tuple_state = isinstance(solution, tuple)
    y_e = tuple(s[-1] for s in solution) if tuple_state else solution[-1]
    event_t, y_e = _through_event_time(func, event_fn, t[..., 0], y0, event_t, y_e, tuple_state, per_sample)
    if tuple_state:
        return event_t, tuple(torch.cat([s[:1], e[None]]) for s, e in zip(solution, y_e))
    return event_t, torch.cat([solution[:1], y_e[None]])


def _detached(y, tuple_state, grad=False):
    if tuple_state:
        return tuple(m.detach().requires_grad_(grad) for m in y)
    return y.detach().requires_grad_(grad)


def _through_event_time(func, event_fn, t0, y0, event_t, y_e, tuple_state, per_sample):
    """(event_t, y_e) made differentiable: values unchanged, gradients by the implicit function theorem
    (per sample: row i of c, t0 and event_t belongs to sample i)."""
    members = y_e if tuple_state else (y_e,)
    dtype = members[0].real.dtype  # the time's: real for a complex state too
    rows = t0.shape[0] if per_sample else None

    def total(x):  # summed over the state: per sample, or all of it
        return x.reshape(rows, -1).sum(1) if per_sample else x.sum()

    with torch.no_grad():
        g0 = event_fn(t0.detach().to(dtype), _detached(y0, tuple_state))
        signs = torch.sign(g0)
        # A value that is zero at t0 puts the event there (torchdiffeq's convention): event_t is t0
        # itself (c vanishes identically: no implicit derivative), and the state there y0.
        at_start = (g0.abs().reshape(rows, -1).min(1).values if per_sample else g0.abs().min()) == 0
        at_start = at_start.to(event_t.device)
        f_e = func(event_t.detach().to(dtype), _detached(y_e, tuple_state))
    f_members = f_e if tuple_state else (f_e,)

    def combined(t, y):  # torchdiffeq's combination: positive until a first value changes sign
        signed = event_fn(t, y) * signs
        return signed.reshape(rows, -1).min(1).values if per_sample else signed.min()

    # dc/dt along the solution, at the event (no graph kept).
    with torch.enable_grad():
        t_req = event_t.detach().to(dtype).requires_grad_(True)
        y_req = _detached(y_e, tuple_state, grad=True)
        y_list = list(y_req) if tuple_state else [y_req]
        grads = torch.autograd.grad(combined(t_req, y_req).sum(), [t_req] + y_list, allow_unused=True)
    dcdt = grads[0] if grads[0] is not None else torch.zeros_like(t_req)
    for g, f in zip(grads[1:], f_members):
        if g is not None:  # grad_y c . f; for a complex y, over the real and imaginary parts
            dcdt = dcdt + total(torch.view_as_real(g) * torch.view_as_real(f) if g.is_complex() else g * f)
    dcdt = dcdt.detach()

    # c through the graph of the state and of event_fn's parameters: its value is (nearly) zero; only
    # its derivatives matter, so the correction below has value zero and the implicit gradients.
    c = combined(event_t.detach().to(dtype), y_e)
    # dt: zero in value, with the event time's derivatives: -(dc/dp) / (dc/dt), or t0's own for an event at
    # t0. The state moves with the event time along f (odeint's y(t_e) holds t_e constant): for an
    # event at t0 this cancels y(t_e)'s derivative -f with respect to t0, leaving y0's.
    start = (t0 - t0.detach()).to(device=event_t.device, dtype=dtype)
    implicit = -(c - c.detach()) / torch.where(at_start, torch.ones_like(dcdt), dcdt)
    dt = torch.where(at_start, start, implicit)
    event_t = event_t.detach() + dt.to(event_t.dtype)
    moved = tuple(m + f.detach() * (dt.reshape((rows,) + (1,) * (m.dim() - 1)) if per_sample else dt)
                  for m, f in zip(members, f_members))
    return event_t, (moved if tuple_state else moved[0])


__all__ = ["odeint_event"]
