"""Workloads that time gradients: W0 (the spiral training step), W2 (wide batch, forward and
forward + adjoint backward) and W3 (an ODE-Net conv block training step). Each library runs in
its gradient modes: 'adjoint' (node_ext.odeint_adjoint, torchdiffeq.odeint_adjoint) and
'backprop' (backpropagation through the solver: node_ext.odeint, torchdiffeq.odeint, the
reference solvers, torchode's AutoDiffAdjoint)."""
import copy

import torch

import node_ext

from .libraries import Counted, available, odeint_fn
from .timing import interleaved
from node_ext.nn import ConvODEF, as_ty
from node_ext.nn.native import native_dynamics

from .workloads import NATIVE_MODE, _skip

MODES = (("node_ext", "adjoint"), ("node_ext", "backprop"), ("reference", "backprop"), ("torchdiffeq", "adjoint"),
         ("torchdiffeq", "backprop"), ("torchode", "backprop"))
# node_ext with the model itself as dynamics, evaluated in C++ (lowered by node_ext.nn.lowering, or
# ConvODEF's native form for W3) instead of called from Python through a counting wrapper; compared
# with the rows of the mode before the comma.
NATIVE_MODES = (("node_ext", "adjoint, " + NATIVE_MODE), ("node_ext", "backprop, " + NATIVE_MODE))


def _solver(lib, mode, kw):
    solve = odeint_fn(lib, adjoint=mode == "adjoint")
    if solve is None:
        return None
    if mode == "adjoint":
        return lambda f, y0, t: solve(f, y0, t, adjoint_params=tuple(f.parameters()), **kw)
    return lambda f, y0, t: solve(f, y0, t, **kw)


def training_step_rows(workload, make_model, y0, t, loss_fn, kw, quick, device, repeats, progress=None,
                       modes=MODES, ref_tol=(1e-10, 1e-12), solver=_solver):
    """Times `loss_fn(solve(model, y0, t)).backward()` + an Adam step per library and mode, each on
    its own copy of the same initial model (reset before every step, so every run does the same
    work). Reports NFE forward and backward, the loss and the gradient's error against a float64
    adjoint solve at tight tolerance (ref_tol). solver(lib, mode, kw) gives each library's
    solve(model, y0, t), or None where the library lacks the mode."""
    base = make_model().to(device)
    init = copy.deepcopy(base.state_dict())
    ref_model = copy.deepcopy(base).double()
    with torch.enable_grad():  # the adjoint keeps the reference's memory flat at tight tolerances
        ref_loss = loss_fn(node_ext.odeint_adjoint(ref_model, y0.double(), t.double(), rtol=ref_tol[0],
                                                   atol=ref_tol[1]))
        ref_grads = torch.autograd.grad(ref_loss, list(ref_model.parameters()))
    ref_flat = torch.cat([g.reshape(-1) for g in ref_grads])
    rows, fns, info = [], {}, {}
    for lib, mode in modes:
        ok, why = available(lib)
        if not ok:
            rows.append(dict(_skip(workload, lib, why), mode=mode))
            continue
        model = copy.deepcopy(base)
        native = mode.endswith(NATIVE_MODE)
        if native and native_dynamics(model, y0) is None:
            rows.append(dict(_skip(workload, lib, "the model cannot be evaluated natively here"), mode=mode))
            continue
        stats = node_ext.SolveStats()  # native rows count through the solver's statistics
        solve = solver(lib, mode.split(",")[0], dict(kw, stats=stats) if native else kw)
        if solve is None:
            continue
        counted = Counted(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(solve=solve, model=model, counted=counted, opt=opt, native=native, stats=stats):
            model.load_state_dict(init)
            opt.zero_grad()
            counted.calls = 0
            stats.reset()
            loss = loss_fn(solve(model if native else counted, y0, t))
            n_forward = stats.n_fev if native else counted.calls
            loss.backward()
            n_backward = stats.n_fev_backward if native else counted.calls - n_forward
            grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            opt.step()
            return loss.detach(), grads, n_forward, n_backward

        loss, grads, nf, nb = step()
        info[(lib, mode)] = dict(loss=float(loss), grad_error=(grads.double() - ref_flat).abs().max().item(),
                                 nfe=nf, nfe_backward=nb)
        fns[(lib, mode)] = step
    timed = interleaved({"%s/%s" % k: fn for k, fn in fns.items()}, repeats[0 if quick else 1], device=device,
                        progress=progress)
    for (lib, mode), extra in info.items():
        res = timed["%s/%s" % (lib, mode)]
        row = dict(workload=workload, library=lib, mode=mode,
                   time={k: v for k, v in res.items() if k != "samples"}, nfe=extra["nfe"],
                   nfe_backward=extra["nfe_backward"], error=extra["grad_error"], loss=extra["loss"],
                   note="loss %.4g, gradient error %.1e" % (extra["loss"], extra["grad_error"]))
        if mode.endswith(NATIVE_MODE):
            row["compare_mode"] = mode.split(",")[0]
        rows.append(row)
    return rows


class SpiralODE(torch.nn.Module):
    """torchdiffeq's spiral example: f(t, y) = net(y^3), net 2-50 tanh-2."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2))
        for m in self.net:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, mean=0, std=0.1)
                torch.nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y ** 3)


def w0(quick, device, progress=None):
    """W0: spiral training step. net(y^3), 2-50 tanh-2, y0 = [2, 0], 30 points on [0, 1.5], dopri5 1e-7/1e-9."""
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64, device=device)
    t = torch.linspace(0.0, 1.5, 30, device=device)
    y0 = torch.tensor([[2.0, 0.0]], device=device)
    true_y = node_ext.odeint(lambda tt, y: (y ** 3) @ A, y0.double(), t.double(), rtol=1e-12, atol=1e-14)

    def loss_fn(pred):
        return (pred - true_y.to(pred.dtype)).abs().mean()

    torch.manual_seed(0)
    return training_step_rows("W0", SpiralODE, y0, t, loss_fn, dict(rtol=1e-7, atol=1e-9, method="dopri5"), quick,
                              device, repeats=(3, 11), progress=progress, modes=MODES + NATIVE_MODES)


class WideMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256),
                                       torch.nn.Tanh(), torch.nn.Linear(256, 64))

    def forward(self, t, y):
        return self.net(y)


def w2(quick, device, progress=None):
    """W2: wide batch. 64-256-256-64 tanh, batch 1024, 10 points on [0, 1], dopri5 1e-5/1e-7; forward and forward + adjoint backward."""
    torch.manual_seed(0)
    batch = 256 if quick else 1024  # quick mode: a smoke test on a quarter of the batch
    y0 = torch.randn(batch, 64, device=device)
    t = torch.linspace(0.0, 1.0, 10, device=device)
    kw = dict(rtol=1e-5, atol=1e-7, method="dopri5")
    rows = training_step_rows("W2", WideMLP, y0, t, lambda pred: pred.pow(2).mean(), kw, quick, device,
                              repeats=(2, 7), progress=progress, ref_tol=(1e-8, 1e-10),
                              modes=(("node_ext", "adjoint"), ("torchdiffeq", "adjoint"), ("node_ext", "backprop"),
                                     ("torchdiffeq", "backprop"), ("torchode", "backprop")))
    # The forward solve alone (no gradient), same problem.
    from .workloads import Autonomous, forward_solve
    torch.manual_seed(0)
    model = WideMLP().to(device)
    forward = forward_solve("W2", dict(func=Autonomous(model.net), y0=y0, t=t, method="dopri5", kw=dict(rtol=1e-5, atol=1e-7),
                                       repeats=(2, 7)), quick, device, progress=progress)
    for r in forward + rows:
        r.setdefault("mode", "forward")
        if quick:
            r["mode"] += ", batch 256"
    return forward + rows


def odenet_block(dim=64):
    """The ODE-Net's conv dynamics as f(t, x): node_ext.nn.ConvODEF, two 3x3 convolutions over [x, t]
    (the time as an extra channel) with group normalisation and ReLU, seen by every library as a plain
    nn.Module. Native rows let node_ext evaluate it in C++ (node_ext/nn/native_conv.py)."""
    return as_ty(ConvODEF(dim, norm="group", activation=torch.nn.ReLU))


def w3(quick, device, progress=None):
    """W3: ODE-Net block training step. Conv dynamics, 64 channels, 6x6 maps, time channel, batch 128, [0, 1], dopri5 1e-3/1e-3."""
    torch.manual_seed(0)
    batch = 16 if quick else 128  # quick mode: a smoke test on a small batch
    x = torch.randn(batch, 64, 6, 6, device=device)
    t = torch.tensor([0.0, 1.0], device=device)
    kw = dict(rtol=1e-3, atol=1e-3, method="dopri5")
    modes = (("node_ext", "adjoint"), ("torchdiffeq", "adjoint"), ("node_ext", "backprop"), ("torchdiffeq", "backprop"))
    modes += NATIVE_MODES
    rows = training_step_rows("W3", odenet_block, x, t, lambda pred: pred[-1].pow(2).mean(), kw, quick, device,
                              repeats=(2, 5), progress=progress, modes=modes, ref_tol=(1e-5, 1e-7))
    if quick:
        for r in rows:
            r["mode"] = r.get("mode", "") + ", batch 16"
            if "compare_mode" in r:
                r["compare_mode"] += ", batch 16"
    return rows
