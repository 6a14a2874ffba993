"""Pure-PyTorch Adams methods: the reference for the native explicit_adams / implicit_adams.

The same schedule as the native loop (see node_ext/adams.py): Kutta's 3/8 rule until three
derivatives are stored, then Adams-Bashforth of order k = min(stored, max_order - 1), corrected for
implicit_adams by Adams-Moulton of order k + 1 (functional iteration, torchdiffeq's convergence
test). The weights are computed here independently of csrc/solve/adams.cpp, exactly, in rational
arithmetic: the Lagrange basis polynomials through the step's nodes integrated over the step
(Hairer, Norsett & Wanner, Solving ODEs I, III.5).
"""
import collections
import functools
from fractions import Fraction

import torch

from .. import adams
from .solver import _Solver


def interpolatory_weights(nodes):
    """w_j with integral_0^1 p = sum_j w_j p(x_j) for polynomials p of degree < len(nodes), exactly."""
    xs = [Fraction(x) for x in nodes]
    out = []
    for j, xj in enumerate(xs):
        poly = [Fraction(1)]  # coefficients of prod_{m != j} (s - x_m), lowest degree first
        denom = Fraction(1)
        for m, xm in enumerate(xs):
            if m == j:
                continue
            poly = [(poly[i - 1] if i > 0 else 0) - (xm * poly[i] if i < len(poly) else 0) for i in range(len(poly) + 1)]
            denom *= xj - xm
        out.append(float(sum(c / (p + 1) for p, c in enumerate(poly)) / denom))
    return out


def step_weights(nodes):
    """interpolatory_weights, cached for equal steps: nodes within 1e-12 of integers (0, -1, -2, ...
    and 1 for the corrector, computed from float times) are snapped to them."""
    snapped = tuple(float(round(x)) for x in nodes)
    if all(abs(x - s) <= 1e-12 * max(1.0, abs(s)) for x, s in zip(nodes, snapped)):
        return _equal_step_weights(snapped)
    return interpolatory_weights(nodes)


@functools.lru_cache(maxsize=None)
def _equal_step_weights(nodes):
    return interpolatory_weights(nodes)


class AdamsSolver(_Solver):
    def __init__(self, problem, *args, **kwargs):
        super().__init__(problem, *args, **kwargs)
        self.implicit = problem.method != "explicit_adams"
        self.max_order = self.o["max_order"]
        self.max_iters = self.o["max_iters"]
        self.history = collections.deque()  # (t, f), newest first

    def step(self, y, k0, h, hh, end):
        if not self.history or self.history[0][0] != self.t:
            self.history.appendleft((self.t, k0))
            if len(self.history) > max(1, self.max_order - 1):
                self.history.pop()
        order = min(len(self.history), self.max_order - 1)
        if order < 3:
            return super().step(y, k0, h, hh, end)
        past = list(self.history)[:order]
        nodes = [(tj - self.t) / h for tj, _ in past]
        w = step_weights(nodes)
        y_new = y + hh * sum(wj * fj for wj, (_, fj) in zip(w, past))
        if self.implicit:
            w = step_weights(nodes + [1.0])
            known = sum(wj * fj for wj, (_, fj) in zip(w, past))
            t_end = (self.t_T + hh) if self.t_T is not None else end
            converged = False
            for _ in range(self.max_iters):
                f_end = self.f(t_end, y_new, -1 if self.o["perturb"] else 0)
                corrected = y + hh * (known + w[-1] * f_end)
                converged = self.converged(y_new - y, corrected - y)
                y_new = corrected
                if converged:
                    break
            if not converged:
                self.counts["n_unconverged"] += 1
                self.history.pop()
        return [k0], y_new

    def converged(self, d, e):
        d, e = d.detach().double(), e.detach().double()
        scale = self.atol + self.rtol * torch.maximum(d.abs(), e.abs())
        return bool(((d - e).abs() / scale).max() < 1)
