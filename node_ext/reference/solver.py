"""Pure-PyTorch explicit Runge-Kutta solvers: a plain Python loop over steps.

The same methods, controller and options as the native loop, written independently from the
same tableaus (csrc/tableaus.h): the oracle of the tests, the fallback when node_ext._C cannot be
loaded, and the pure-Python baseline of the benchmarks. Per-sample time grids are solved one
sample at a time, which is the definition the native per-row solve must reproduce.

Methods: Euler; the midpoint method (Runge 1895); Heun (1900); Kutta's 3/8 rule (1901);
Heun-Euler 2(1); Fehlberg (1969) RKF1(2); Bogacki & Shampine (1989); Dormand & Prince (1980);
Tsitouras (2011); Prince & Dormand (1981) RK8(7)13M. Initial step: Hairer, Norsett & Wanner,
Solving ODEs I, II.4. PI/PID control: Soderlind (2003).
"""
import math

import torch

from .. import adams
from .._problem import scalar_norm
from ..errors import MaxStepsError, NonFiniteError, StepSizeError
from ..tableaus import a_matrix, dense_weights, tableau


def solve_reference(problem):
    """Solves a validated node_ext._problem.Problem; returns (solution, counts, event time or None); with
    per-sample grids and an event function the event times are a list, one per sample."""
    counts = dict(n_fev=0, n_steps=0, n_accepted=0, n_rejected=0, n_unconverged=0)
    if not problem.per_row:
        from .adams import AdamsSolver  # (it subclasses _Solver)
        cls = AdamsSolver if adams.is_adams(problem.method) else _Solver
        solver = cls(problem, problem.y0, problem.t.tolist(), problem.t_grad, counts, row=None)
        sol = solver.run()
        return sol, counts, solver.event_t
    outs, steps, accepted, event_t = [], [], [], []
    for r in range(problem.t.shape[0]):
        t_grad = problem.t_grad[r] if problem.t_grad is not None else None
        before = counts["n_steps"], counts["n_accepted"]
        solver = _Solver(problem, problem.y0[r:r + 1], problem.t[r].tolist(), t_grad, counts, row=r)
        outs.append(solver.run())
        event_t.append(solver.event_t)
        steps.append(counts["n_steps"] - before[0])
        accepted.append(counts["n_accepted"] - before[1])
    counts.update(n_steps_per_sample=steps, n_accepted_per_sample=accepted)
    return torch.cat(outs, dim=1), counts, (event_t if problem.event_fn is not None else None)


def solve_reference_recording_steps(problem):
    """Like solve_reference for one time grid and a Runge-Kutta method, also keeping every accepted
    step as node_ext._C.solve(record_steps=True) does: returns (solution, counts, (step boundaries,
    step sizes, steps (N, 1 + terms, *y0.shape), poly, degree))."""
    counts = dict(n_fev=0, n_steps=0, n_accepted=0, n_rejected=0, n_unconverged=0)
    solver = _Solver(problem, problem.y0, problem.t.tolist(), problem.t_grad, counts, row=None)
    poly, degree, uses_f1 = dense_weights(solver.tab, problem.options["cubic"])
    solver.record = dict(t=[], h=[], steps=[], uses_f1=uses_f1)
    sol = solver.run()
    rec = solver.record
    return sol, counts, (rec["t"] + [solver.t], rec["h"], torch.stack(rec["steps"]), poly, degree)


def _step_size_grid(t0, t1, h):
    """torchdiffeq's fixed grid: t0, t0 + h, ... and a last, shorter step onto t1."""
    direction = 1.0 if t1 >= t0 else -1.0
    grid = [t0 + direction * i * h for i in range(int(math.ceil(abs(t1 - t0) / h)))]
    return [x for x in grid if direction * (t1 - x) > 0] + [t1]


class _Solver:
    def __init__(self, problem, y0, times, t_grad, counts, row):
        self.p = problem
        self.o = problem.options
        self.tab = tableau(adams.STARTER if adams.is_adams(problem.method) else problem.method)
        self.A = a_matrix(self.tab)
        self.y0 = y0
        self.times = times
        self.t_grad = t_grad
        self.counts = counts
        self.row = row
        self.per_row = row is not None
        sizes = self.o["norm_groups"]
        self.groups = sizes if len(sizes) > 1 else [y0.numel()]
        rt, at = self.o["rtol_elem"], self.o["atol_elem"]
        self.rtol = rt.reshape(y0.shape) if rt is not None else self.o["rtol"]
        self.atol = at.reshape(y0.shape) if at is not None else self.o["atol"]
        self.event_t = None
        self.event_signs = None
        self.record = None  # see solve_reference_recording_steps

    # ------------------------------------------------------------------ helpers
    def f(self, t, y, perturb=0):
        """Calls the dynamics at time t (float or tensor), one ulp forward/back when perturb."""
        dtype = y.dtype
        if torch.is_tensor(t):
            tt = t.to(dtype)
        else:
            tt = torch.tensor(t, dtype=dtype, device=y.device)
        if perturb:
            toward = torch.full_like(tt.detach(), perturb * self.dir * math.inf)
            tt = tt + (torch.nextafter(tt.detach(), toward) - tt.detach())
        if self.per_row:
            tt = tt.reshape(1)
        self.counts["n_fev"] += 1
        return self.p.flatten(self.p.func(tt, self.p.as_state(y))).to(dtype)

    def norm(self, x):
        if self.p.user_norm is not None:
            return scalar_norm("options['norm']", self.p.user_norm(self.p.as_state(x)))
        flat = x.detach().reshape(-1).double()
        rms = [float(g.pow(2).mean().sqrt()) if g.numel() else 0.0 for g in flat.split(self.groups)]
        return max(rms) if not any(math.isnan(v) for v in rms) else math.nan

    def scale(self, y, y_new):
        return self.atol + self.rtol * torch.maximum(y.detach().abs(), y_new.detach().abs()).double()

    def rt(self, v):
        return float(torch.tensor(v, dtype=torch.float32)) if self.o["time_float32"] else v

    def fail(self, cls, message):
        where = " (at t = %r%s, method %s, after %d function evaluations)" % (
            self.t, "" if self.row is None else ", sample %d" % self.row, self.p.method, self.counts["n_fev"])
        raise cls(message + where, self.t, dict(self.counts), self.row)

    # ------------------------------------------------------------------ loop
    def run(self):
        times, tab = self.times, self.tab
        y = self.y0
        out = [y]
        if len(times) < 2:
            return torch.stack(out)[: len(times)]
        self.t, self.t_end = times[0], times[-1]
        self.dir = 1.0 if self.t_end > self.t else -1.0
        event = self.p.event_fn is not None
        if event:
            c_start = self.event_value(self.t, y, first=True)
            if c_start <= 0:  # zero at the initial time: the event is there
                self.event_t = self.t
                if self.t_grad is None:
                    return torch.stack([y, y])
                # y(t_e) for a constant t_e = t0: y0 in value, moving by -f(t0, y0) with t0
                return torch.stack([y, y + (self.t - self.t_grad[0]) * self.f(self.t_grad[0], y)])
            self.t_end = self.dir * math.inf
        self.t_T = self.t_grad[0] if self.t_grad is not None else None
        fixed_perturb = not tab["adaptive"] and self.o["perturb"]
        k0 = self.f(self.t_T if self.t_T is not None else self.t, y, 1 if fixed_perturb else 0)
        next_out = len(times) if event else 1
        since_output, out_before = 0, next_out  # attempts since the last output time (max_num_steps)
        step_t = sorted(self.o["step_t"], key=lambda v: self.dir * v)
        jump_t = sorted(self.o["jump_t"], key=lambda v: self.dir * v)
        if self.o["grid"]:
            grid = self.o["grid"][self.row or 0]
        elif event:
            grid = None  # steps of step_size from t0 without end: point i is t0 + i h
        elif self.o["step_size"] > 0:
            grid = _step_size_grid(times[0], times[-1], self.o["step_size"])
        else:
            grid = times
        gpos = 0
        if tab["adaptive"]:
            first = self.o["first_step_rows"][self.row] if self.o["first_step_rows"] else self.o["first_step"]
            h_abs = first if first > 0 else self.initial_step(y, k0)
        total_steps = 0
        prev = [1.0, 1.0]
        nonfinite = False
        while self.t != self.t_end:
            # ---- plan
            output = None
            on_jump = False
            if tab["adaptive"]:
                ahead = [v for v in step_t + jump_t if self.dir * (v - self.t) > 0 and self.dir * (v - self.t_end) < 0]
                boundary = min(ahead + [self.t_end], key=lambda v: self.dir * v)
                if h_abs >= abs(boundary - self.t):
                    h, end, lands = boundary - self.t, boundary, True
                    on_jump = boundary in jump_t
                else:
                    h, lands = self.dir * h_abs, False
                    end = self.rt(self.t + h)
                    eps = 1.1920929e-07 if self.o["time_float32"] else 2.220446049250313e-16
                    if abs(h) <= 4 * eps * max(abs(self.t), abs(end)) or end == self.t:
                        self.fail(NonFiniteError if nonfinite else StepSizeError,
                                  "non-finite error estimate" if nonfinite else "step size underflow")
            else:
                end = grid[gpos + 1] if grid is not None else times[0] + self.dir * (gpos + 1) * self.o["step_size"]
                h, lands = end - self.t, True
            if lands and next_out < len(times) and times[next_out] == end:
                output = next_out
            # Only the end of the span (or a grid that is t itself) ties a step end to t.
            link = output if output is not None and (output == len(times) - 1 or (
                not tab["adaptive"] and not self.o["grid"] and not self.o["step_size"])) else None
            h_T = None
            if self.t_T is not None:
                h_T = (self.t_grad[link] - self.t_T) if link is not None else torch.tensor(h, dtype=torch.float64)
            hh = h_T if h_T is not None else h
            self.callback(0, y, h)
            # ---- stages
            k, y_new = self.step(y, k0, h, hh, end)
            s = tab["stages"]
            self.counts["n_steps"] += 1
            # ---- error and decision
            if tab["adaptive"]:
                err_vec = sum(h * tab["b_err"][j] * k[j].detach().double() for j in range(s) if tab["b_err"][j] != 0)
                ratio = err_vec / self.scale(y, y_new)
                if not bool(torch.isfinite(y_new).all()):
                    ratio = ratio * math.nan
                err = self.norm(ratio.to(y.dtype) if self.p.user_norm is not None else ratio)
                nonfinite = not math.isfinite(err)
                if nonfinite and abs(h) <= self.o["min_step"]:
                    self.fail(NonFiniteError, "non-finite error estimate at the minimum step size")
                accept = (not nonfinite) and err <= 1.0
                if not accept and not nonfinite and self.o["min_step"] > 0 and abs(h) <= self.o["min_step"]:
                    if not self.o["force_min_step"]:
                        self.fail(StepSizeError, "the step size would have to go below min_step = %r" % self.o["min_step"])
                    accept = True
            else:
                if not bool(torch.isfinite(y_new).all()):
                    self.fail(NonFiniteError, "the state became non-finite")
                err, accept = 0.0, True
            self.callback(1 if accept else 2, y, h)
            if accept:
                self.counts["n_accepted"] += 1
                continues = end != self.t_end
                reuse = not fixed_perturb
                f1 = None
                needs_f1 = tab["dense"] == "polynomial" and tab["dense_terms"] > s
                needs_f1 = needs_f1 or (tab["dense"] == "hermite" and not tab["fsal"]) or (
                    not tab["adaptive"] and self.o["cubic"])
                if tab["fsal"]:
                    f1 = k[-1]
                elif (continues and reuse) or needs_f1:
                    f1 = self.f((self.t_T + hh) if self.t_T is not None else end, y_new)
                while next_out < len(times) and self.dir * (times[next_out] - end) <= 0:
                    tout = times[next_out]
                    if next_out == output or tout == end:
                        val = y_new
                    else:
                        theta = (self.t_grad[next_out] - self.t_T) / h_T if h_T is not None else (tout - self.t) / h
                        val = self.dense(y, y_new, k, f1, hh, theta)
                    out.append(val)
                    next_out += 1
                if event:
                    c_end = self.event_value(end, y_new)
                    if c_end <= 0:
                        theta = self.bisect_event(y, y_new, k, f1, hh, h, end)
                        self.event_t = self.t if theta == 0 else self.rt(self.t + theta * h)
                        if self.t_T is not None:  # the length t_event - t[0] depends on t[0]
                            theta = (self.event_t - self.t_T) / h_T
                        out.append(self.dense(y, y_new, k, f1, hh, theta))
                        return torch.stack(out)
                if self.record is not None:
                    terms = k + ([f1] if self.record["uses_f1"] else [])
                    self.record["t"].append(self.t)
                    self.record["h"].append(h)
                    self.record["steps"].append(torch.stack([y] + terms))
                y = y_new
                if self.t_T is not None:
                    self.t_T = self.t_T + h_T
                self.t = end
                k0 = f1 if (tab["fsal"] or reuse) else None
                if not tab["adaptive"]:
                    gpos += 1
                if on_jump and k0 is not None:
                    k0 = self.f(self.t_T if self.t_T is not None else self.t, y, 1)
                if k0 is None and continues:
                    k0 = self.f(self.t_T if self.t_T is not None else self.t, y, 1 if fixed_perturb else 0)
            else:
                self.counts["n_rejected"] += 1
            if tab["adaptive"]:
                h_abs = self.next_step(abs(h), err, accept, prev)
            total_steps += 1
            if 0 < self.o["max_total_steps"] <= total_steps and self.t != self.t_end:
                self.fail(MaxStepsError, "max_total_steps (%d) reached" % self.o["max_total_steps"])
            since_output = 0 if next_out != out_before else since_output + 1
            out_before = next_out
            if since_output >= self.o["max_num_steps"] and self.t != self.t_end:
                self.fail(MaxStepsError, "max_num_steps (%d) exceeded" % self.o["max_num_steps"])
        return torch.stack(out)

    def step(self, y, k0, h, hh, end):
        """One Runge-Kutta step from (self.t, y) of size h (hh: the same as a tensor when t requires grad)
        to `end`: returns the stages and y_new."""
        tab = self.tab
        k = [k0]
        y_new = None
        s = tab["stages"]
        for i in range(1, s):
            last_fsal = tab["fsal"] and i == s - 1
            w = tab["b"] if last_fsal else self.A[i]
            yi = y + sum(hh * w[j] * k[j] for j in range(i) if w[j] != 0) if any(w[j] != 0 for j in range(i)) else y
            if last_fsal:
                y_new = yi
            c = tab["c"][i]
            if c == 1.0:
                ti = (self.t_T + hh) if self.t_T is not None else end
            else:
                ti = (self.t_T + c * hh) if self.t_T is not None else self.rt(self.t + c * h)
            pert = -1 if c == 1.0 and (tab["adaptive"] or self.o["perturb"]) else 0
            k.append(self.f(ti, yi, pert))
        if y_new is None:
            y_new = y + sum(hh * tab["b"][j] * k[j] for j in range(s) if tab["b"][j] != 0)
        return k, y_new

    def callback(self, which, y, h):
        """func's callback_step (0), callback_accept_step (1) or callback_reject_step (2), if any."""
        fn = self.p.callbacks[which] if self.p.callbacks is not None and self.row is None else None
        if fn is None:
            return
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float64, device=y.device)  # noqa: E731
        fn(as_tensor(self.t), self.p.as_state(y), as_tensor(abs(h)))  # the step's length, as torchdiffeq

    # ------------------------------------------------------------------ events
    def event_value(self, t, y, first=False):
        """min_i g_i(t, y) s_i, the signs s_i taken at the initial point (torchdiffeq's combination)."""
        with torch.no_grad():
            tt = torch.tensor(t, dtype=y.dtype, device=y.device)
            if self.per_row:  # this sample's row: t of shape (1,), one row of values
                tt = tt.reshape(1)
            g = self.p.event_fn(tt, self.p.as_state(y.detach())).detach().double().reshape(-1).cpu()
            if first:
                self.event_signs = torch.sign(g)
            c = float((g * self.event_signs).min())
        if not math.isfinite(c):
            self.fail(NonFiniteError, "event_fn returned a non-finite value at t = %r" % t)
        return c

    def bisect_event(self, y, y_new, k, f1, hh, h, end):
        """Bisection on the step's continuous extension: the last theta with the event value > 0."""
        eps = 1.1920929e-07 if self.o["time_float32"] else 2.220446049250313e-16
        tol = max(4 * eps * max(abs(self.t), abs(end)) / abs(h), 4 * 2.220446049250313e-16)
        lo, hi = 0.0, 1.0
        with torch.no_grad():
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                if not lo < mid < hi:
                    break
                if self.event_value(self.rt(self.t + mid * h), self.dense(y, y_new, k, f1, hh, mid)) > 0:
                    lo = mid
                else:
                    hi = mid
        return lo

    def initial_step(self, y0, f0):
        scale = self.atol + torch.as_tensor(self.rtol, dtype=torch.float64) * y0.detach().abs().double()
        d0 = self.norm(y0.detach().double() / scale)
        d1 = self.norm(f0.detach().double() / scale)
        if not math.isfinite(d1):
            self.fail(NonFiniteError, "the dynamics at the initial time are not finite")
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, abs(self.t_end - self.t))
        y1 = y0.detach() + self.dir * h0 * f0.detach()
        with torch.no_grad():
            f1 = self.f(self.t + self.dir * h0, y1)
        d2 = self.norm((f1.double() - f0.detach().double()) / scale) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / self.tab["order"])
        return min(100 * h0, h1) if math.isfinite(h1) else 100 * h0

    def next_step(self, h_abs, err, accepted, prev):
        o, k = self.o, self.tab["order"]
        b1 = (o["pcoeff"] + o["icoeff"] + o["dcoeff"]) / k
        b2 = -(o["pcoeff"] + 2 * o["dcoeff"]) / k
        b3 = o["dcoeff"] / k
        if not math.isfinite(err):
            factor = o["dfactor"]
        elif err == 0:
            factor = o["ifactor"]
        elif accepted:
            factor = o["safety"] * err ** -b1 * prev[0] ** -b2 * prev[1] ** -b3
            factor = min(o["ifactor"], max(1.0, factor))
        else:
            factor = min(1.0, max(o["dfactor"], o["safety"] * err ** -b1))
        if accepted and math.isfinite(err):
            prev[1], prev[0] = prev[0], max(err, 1e-10)
        return min(max(h_abs * factor, o["min_step"]), o["max_step"])

    def dense(self, y0, y1, k, f1, h, theta):
        """The continuous extension at theta in (0, 1), written from its definition."""
        tab = self.tab
        if not tab["adaptive"] and not self.o["cubic"]:
            return y0 + theta * (y1 - y0)
        if tab["dense"] == "polynomial":
            deg = tab["dense_degree"]
            poly = tab["dense_poly"]
            terms = k + ([f1] if tab["dense_terms"] > len(k) else [])
            acc = 0
            for j, kj in enumerate(terms):
                w = sum(poly[j * deg + p] * theta ** (p + 1) for p in range(deg))
                acc = acc + w * kj
            return y0 + h * acc
        # Cubic Hermite through (y0, f0) and (y1, f1).
        h00 = (1 + 2 * theta) * (1 - theta) ** 2
        h10 = theta * (1 - theta) ** 2
        h01 = theta ** 2 * (3 - 2 * theta)
        h11 = theta ** 2 * (theta - 1)
        return h00 * y0 + h10 * h * k[0] + h01 * y1 + h11 * h * f1
