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
        t0: the initial time, a scalar Tensor (it may require grad).
        event_fn: ``event_fn(t, y)`` returning a Tensor; the event is the first sign change of any of
            its values. It may have parameters of its own (an ``nn.Module``): they get gradients too.
        reverse_time: integrate towards decreasing t.
        odeint_interface: :func:`node_ext.odeint` (backpropagation through the solver) or
            :func:`node_ext.odeint_adjoint` (the adjoint method).
        **kwargs: rtol, atol, method, options, adjoint_* ... passed to ``odeint_interface``.

    Returns:
        event_t (a scalar Tensor of t0's dtype) and the solution of shape (2, *y0.shape): y0 and the
        state at event_t, the latest time found before the sign change (to a few ulps of t), so that
        restarting there (after a bounce, say) does not meet the same crossing again. Both are
        differentiable, the event time by the implicit function theorem (see the module docstring);
        a grazing event (dc/dt = 0) has no derivative and gives infinite gradients.
    """
    if not torch.is_tensor(t0) or t0.numel() != 1:
        raise TypeError("t0 must be a scalar Tensor, got %s" % (
            "a Tensor of shape %s" % (tuple(t0.shape),) if torch.is_tensor(t0) else type(t0).__name__))
    if not callable(event_fn):
        raise TypeError("event_fn must be callable as event_fn(t, y), got %s" % type(event_fn).__name__)
    t0 = t0.reshape(1)
    t = torch.cat([t0, t0.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    if not torch.is_grad_enabled():
        return event_t, solution
    tuple_state = isinstance(solution, tuple)
    y_e = tuple(s[-1] for s in solution) if tuple_state else solution[-1]
    event_t, y_e = _through_event_time(func, event_fn, t[0], y0, event_t, y_e, tuple_state)
    if tuple_state:
        return event_t, tuple(torch.cat([s[:1], e[None]]) for s, e in zip(solution, y_e))
    return event_t, torch.cat([solution[:1], y_e[None]])


def _detached(y, tuple_state, grad=False):
    if tuple_state:
        return tuple(m.detach().requires_grad_(grad) for m in y)
    return y.detach().requires_grad_(grad)


def _through_event_time(func, event_fn, t0, y0, event_t, y_e, tuple_state):
    """(event_t, y_e) made differentiable: values unchanged, gradients by the implicit function theorem."""
    members = y_e if tuple_state else (y_e,)
    dtype = members[0].real.dtype  # the time's: real for a complex state too
    with torch.no_grad():
        signs = torch.sign(event_fn(t0.detach().to(dtype), _detached(y0, tuple_state)))
        f_e = func(event_t.detach().to(dtype), _detached(y_e, tuple_state))
    f_members = f_e if tuple_state else (f_e,)

    def combined(t, y):  # torchdiffeq's combination: positive until a first value changes sign
        return (event_fn(t, y) * signs).min()

    # dc/dt along the solution, at the event (no graph kept).
    with torch.enable_grad():
        t_req = event_t.detach().to(dtype).requires_grad_(True)
        y_req = _detached(y_e, tuple_state, grad=True)
        y_list = list(y_req) if tuple_state else [y_req]
        grads = torch.autograd.grad(combined(t_req, y_req), [t_req] + y_list, allow_unused=True)
    dcdt = grads[0] if grads[0] is not None else torch.zeros((), dtype=dtype, device=t_req.device)
    for g, f in zip(grads[1:], f_members):
        if g is not None:  # grad_y c . f; for a complex y, over the real and imaginary parts
            dcdt = dcdt + (torch.view_as_real(g) * torch.view_as_real(f) if g.is_complex() else g * f).sum()
    dcdt = dcdt.detach()

    # c through the graph of the state and of event_fn's parameters: its value is (nearly) zero; only
    # its derivatives matter, so the correction below has value zero and the implicit gradients.
    c = combined(event_t.detach().to(dtype), y_e)
    if not c.requires_grad:
        return event_t, y_e
    dt = -(c - c.detach()) / dcdt
    event_t = event_t.detach() + dt.to(event_t.dtype)
    moved = tuple(m + f.detach() * dt for m, f in zip(members, f_members))
    return event_t, (moved if tuple_state else moved[0])


__all__ = ["odeint_event"]
