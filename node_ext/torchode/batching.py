"""Turns a torchode problem into node_ext solves with per-sample time grids (a 2-D t), and their
results back into torchode's (batch, n_eval, ...) layout.

One native solve serves every sample whose grid has the same shape: the same direction of time,
t_start before t_eval (or not), t_end after it (or not), and, with fixed steps, the same dt0. A batch
mixing those is solved as a few groups, scattered back into batch order."""
import torch


def _flag(x):
    return x.to(torch.long)


def plan_groups(problem, fixed_dt):
    """(zero, groups): zero a bool (batch,) of samples with t_start == t_end; groups a list of
    (index or None, pre, post, dt) where pre/post say whether t_start/t_end are prepended/appended to
    the sample's evaluation times. `fixed_dt` is the (batch,) float64 step per sample, or None."""
    t0, t1, te = problem.t_start, problem.t_end, problem.t_eval
    zero = t0 == t1
    forward = t1 > t0
    if te is None:
        pre = torch.ones_like(zero)
        post = torch.ones_like(zero)
    else:
        _check_eval(te, t0, t1, forward, zero)
        pre, post = te[:, 0] != t0, te[:, -1] != t1
    flags = torch.stack([zero, forward, pre, post])
    if fixed_dt is None and bool((flags == flags[:, :1]).all()) and not bool(zero[0]):  # one kind: one solve
        return zero, [(None, bool(pre[0]), bool(post[0]), None)]
    code = _flag(forward) + 2 * _flag(pre) + 4 * _flag(post)
    if fixed_dt is not None:
        _, dt_id = torch.unique(fixed_dt, return_inverse=True)
        code = code + 8 * dt_id.to(code.device)
    code = torch.where(zero, torch.full_like(code, -1), code)
    values = torch.unique(code)
    groups = []
    code_cpu, pre_cpu, post_cpu = code.cpu(), pre.cpu(), post.cpu()
    for v in values.tolist():
        if v < 0:
            continue
        members = (code_cpu == v).nonzero().flatten()
        first = int(members[0])
        index = None if members.numel() == code.numel() else members.to(code.device)
        dt = None if fixed_dt is None else float(fixed_dt[first])
        groups.append((index, bool(pre_cpu[first]), bool(post_cpu[first]), dt))
    return zero, groups


def _check_eval(te, t0, t1, forward, zero):
    sign = (2 * forward.to(te.dtype) - 1)[:, None]
    rel = sign * (te - t0[:, None])
    ok = (rel >= 0) & (sign * (t1[:, None] - te) >= 0)
    if te.shape[1] > 1:
        ok[:, 1:] &= (rel[:, 1:] > rel[:, :-1]) | zero[:, None]
    if not bool(ok.all()):
        bad = ~ok.all(dim=1)
        i = int(bad.nonzero()[0])
        raise ValueError("InitialValueProblem: t_eval[%d] = %s must run strictly monotonically from t_start[%d] = %r "
                         "to t_end[%d] = %r" % (i, te[i].tolist(), i, t0[i].item(), i, t1[i].item()))


def grid_of(problem, index, pre, post):
    """The group's (b, T) time grid and the slice of it holding the evaluation times."""
    pick = (lambda x: x) if index is None else (lambda x: x[index])
    t0, t1 = pick(problem.t_start)[:, None], pick(problem.t_end)[:, None]
    if problem.t_eval is None:
        return torch.cat([t0, t1], dim=1), slice(1, 2)
    te = pick(problem.t_eval)
    parts = ([t0] if pre else []) + [te] + ([t1] if post else [])
    start = 1 if pre else 0
    return torch.cat(parts, dim=1), slice(start, start + te.shape[1])


def scatter(parts, groups, batch):
    """Concatenates per-group tensors (first dimension the group's samples) back into batch order."""
    if len(parts) == 1 and groups[0] is None:
        return parts[0]
    order = torch.cat([g if g is not None else torch.arange(batch) for g in groups])
    out = torch.cat(parts)
    return out[torch.argsort(order.to(out.device))]
