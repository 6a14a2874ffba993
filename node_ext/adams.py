"""Adams methods: torchdiffeq's ``explicit_adams`` and ``implicit_adams`` (alias ``fixed_adams``).

Linear multistep methods on a fixed grid (options ``step_size`` / ``grid_constructor``, else the
output times): the Adams-Bashforth predictor (Bashforth & Adams 1883), corrected for
``implicit_adams`` by Adams-Moulton (Moulton 1926) in at most ``max_iters`` functional iterations.
As in torchdiffeq, the first steps use Kutta's 3/8 rule until three derivatives are stored, then
the order grows with the history up to ``max_order - 1`` (Bashforth) and ``max_order`` (Moulton).
Unlike torchdiffeq, whose coefficients assume equal steps everywhere, the weights are those of the
variable-step formulation (Hairer, Norsett & Wanner, Solving ODEs I, III.5), so a last, shorter
step or a non-uniform grid keeps the method's order; on a uniform grid both are the classical
coefficients. The steps run in the native loop (csrc/solve/adams.cpp); this module validates the
options and reports corrector iterations that did not converge.
"""
import numbers
import warnings

METHODS = ("explicit_adams", "implicit_adams", "fixed_adams")
STARTER = "rk4"  # the Runge-Kutta method of the first steps
MIN_ORDER = 4
MAX_ORDER = 12
OPTIONS = ("max_order", "max_iters")


def is_adams(method):
    return method in METHODS


def adams_options(method, options, per_row):
    """max_order (default 12, at most 12) and max_iters (default 4) from the user's options."""
    if per_row:
        raise ValueError("method %r does not support per-sample time grids (a 2-D t): a multistep method's "
                         "history is per grid; use a Runge-Kutta method such as 'rk4' or 'dopri5'" % method)
    out = {}
    for name, default, high in (("max_order", MAX_ORDER, MAX_ORDER), ("max_iters", 4, None)):
        v = options.get(name, default)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 or (high is not None and v > high):
            bound = "an integer in [1, %d]" % high if high is not None else "a positive integer"
            raise ValueError("options['%s'] must be %s, got %r" % (name, bound, v))
        out[name] = int(v)
    if out["max_order"] < MIN_ORDER:
        warnings.warn("options['max_order'] = %d is below %d: method %r reduces to %r (Kutta's 3/8 rule)"
                      % (out["max_order"], MIN_ORDER, method, STARTER), RuntimeWarning, stacklevel=4)
    return out


def warn_unconverged(counts, method, backward=False):
    """One warning when the Adams-Moulton corrector did not converge in some steps."""
    n = int(counts.get("n_unconverged", 0))
    if n:
        warnings.warn("%s%s: the corrector's functional iteration did not converge within max_iters in %d step(s); "
                      "the solution may be inaccurate (reduce step_size, or raise options['max_iters'])"
                      % (method, " (backward solve)" if backward else "", n), RuntimeWarning, stacklevel=3)
