"""Bad input is refused before anything runs, naming the argument and the value; failures during a
solve raise node_ext.SolverError subclasses carrying the time reached and the statistics; an
exception raised by the dynamics (or an event function, a callback) reaches the caller with its type,
plus a note naming the callable and the time; nothing leaks."""
import gc
import re
import weakref

import pytest
import torch

import node_ext

F = lambda t, y: -y  # noqa: E731
Y0 = torch.ones(2)
T = torch.linspace(0, 1, 3)


@pytest.mark.parametrize("t,match", [
    (torch.tensor([0.0, 1.0, 1.0]), "strictly increasing or strictly decreasing"),
    (torch.tensor([0.0, 2.0, 1.0]), "strictly increasing or strictly decreasing"),
    (torch.zeros(2, 2, 2), "t must be 1-D"),
    (torch.tensor([0.0, float("nan")]), "t contains non-finite"),
    (torch.zeros(3, 4), "a 2-D t of shape \\(3, 4\\) needs y0 with first dimension 3"),
])
def test_bad_times(t, match):
    with pytest.raises(ValueError, match=match):
        node_ext.odeint(F, Y0, t)


def test_integer_or_non_tensor_t_is_a_type_error():
    with pytest.raises(TypeError, match="t must be a floating point Tensor, got dtype torch.int64"):
        node_ext.odeint(F, Y0, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="t must be a Tensor"):
        node_ext.odeint(F, Y0, [0.0, 1.0])


def test_func_must_be_callable():
    with pytest.raises(TypeError, match="func must be callable"):
        node_ext.odeint(3, Y0, T)


@pytest.mark.parametrize("y0,exc,match", [
    (torch.tensor([1.0, float("inf")]), ValueError, "y0 contains non-finite"),
    (torch.tensor([1, 2]), TypeError, "y0 must be a floating point or complex Tensor .*, got torch.int64"),
    (torch.ones(2, dtype=torch.bool), TypeError, "floating point or complex Tensor .*, got torch.bool"),
    ([torch.ones(2)], TypeError, "y0 must be a Tensor or a non-empty tuple"),
    ((torch.ones(2), torch.ones(2, dtype=torch.float64)), TypeError, "share dtype and device"),
])
def test_bad_initial_state(y0, exc, match):
    with pytest.raises(exc, match=match):
        node_ext.odeint(F, y0, T)


@pytest.mark.parametrize("kw,match", [
    (dict(rtol=0.0, atol=0.0), "rtol and atol cannot both be zero"),
    (dict(rtol=torch.tensor([1e-3, 0.0]), atol=0.0), "rtol and atol cannot both be zero"),
    (dict(atol=-1e-9), "atol must be non-negative and finite, got -1e-09"),
    (dict(rtol=torch.tensor([1e-3, -1.0])), "rtol must be non-negative"),
    (dict(atol=torch.ones(3) * 1e-6), "atol of shape \\(3,\\) does not broadcast to the state's shape \\(2,\\)"),
    (dict(method="rk45"), "unknown method 'rk45'; valid methods are: euler, midpoint, heun2"),
    (dict(options=dict(stepsize=0.1)), "unknown option\\(s\\) 'stepsize' for method 'dopri5'; valid options"),
    (dict(method="rk4", options=dict(first_step=0.1, rtol=1e-3)), "unknown option\\(s\\) 'rtol' for method 'rk4'"),
    (dict(options=dict(max_step=-1.0)), "options\\['max_step'\\] must be positive, got -1.0"),
    (dict(options=dict(max_num_steps=0)), "options\\['max_num_steps'\\] must be a positive integer, got 0"),
    (dict(options=dict(controller="p")), "options\\['controller'\\] must be one of integral, pi, pid, got 'p'"),
    (dict(options=dict(dtype=torch.float16)), "options\\['dtype'\\]"),
    (dict(method="rk4", options=dict(step_size=0.1, grid_constructor=lambda f, y, t: t)), "mutually exclusive"),
    (dict(method="rk4", options=dict(interp="quadratic")), "options\\['interp'\\] must be 'linear' or 'cubic'"),
    (dict(options=dict(min_step=1.0, max_step=0.5)), "min_step'\\] = 1.0 exceeds"),
])
def test_bad_tolerances_methods_and_options(kw, match):
    with pytest.raises(ValueError, match=match):
        node_ext.odeint(F, Y0, T, **kw)


@pytest.mark.parametrize("method,options,unused", [
    ("dopri5", dict(step_size=0.1), "'step_size'"),
    ("rk4", dict(first_step=0.1), "'first_step'"),
    ("rk4", dict(step_size=0.25, max_order=3), "'max_order'"),
    ("implicit_adams", dict(step_size=0.05, dtype=torch.float32, safety=0.5), "'dtype', 'safety'"),
])
def test_options_of_other_methods_are_ignored_with_a_warning(method, options, unused):
    """As torchdiffeq: one options dict may serve several methods; what the method does not take is
    ignored with a warning naming it, and the result is the solve without it."""
    with pytest.warns(UserWarning, match="option\\(s\\) %s are not used by method '%s'" % (unused, method)):
        out = node_ext.odeint(F, Y0, T, method=method, options=options)
    kept = {k: v for k, v in options.items() if repr(k) not in unused}
    torch.testing.assert_close(out, node_ext.odeint(F, Y0, T, method=method, options=kept), rtol=0, atol=0)


def test_wrong_type_options():
    with pytest.raises(TypeError, match="options must be a dict"):
        node_ext.odeint(F, Y0, T, options=[("step_size", 1)])
    with pytest.raises(TypeError, match="options\\['norm'\\] must be callable"):
        node_ext.odeint(F, Y0, T, options=dict(norm="rms"))
    with pytest.raises(TypeError, match="rtol must be a positive number or Tensor, got 'tight'"):
        node_ext.odeint(F, Y0, T, rtol="tight")


def test_dynamics_returning_wrong_things():
    with pytest.raises(ValueError, match="func returned a Tensor of shape \\(3,\\) for a state of shape \\(2,\\)"):
        node_ext.odeint(lambda t, y: torch.ones(3), Y0, T)
    with pytest.raises(TypeError, match="func must return a Tensor, got an object of type list"):
        node_ext.odeint(lambda t, y: [1.0, 2.0], Y0, T)
    with pytest.raises(TypeError, match="tuple of Tensors"):
        node_ext.odeint(lambda t, s: s[0], (Y0, Y0), T)


class Boom(Exception):
    pass


def test_exception_in_dynamics_reaches_the_caller_with_its_type():
    calls = []

    def f(t, y):
        calls.append(1)
        if len(calls) == 7:
            raise Boom("from the dynamics")
        return -y

    with pytest.raises(Boom, match="from the dynamics") as info:
        node_ext.odeint(f, Y0, T)
    # A note (PEP 678) says where in the solve it happened: the 7th evaluation, inside the first step.
    note, = info.value.__notes__
    assert note.startswith("node_ext: raised by func(t, y) during a solve, at t = ")
    assert 0.0 < float(note.rsplit("= ", 1)[1]) < 1.0


def test_exceptions_in_other_callables_say_which_and_when():
    class Fails(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_accept_step(self, t0, y0, dt):
            if t0 > 0:
                raise Boom("from the callback")

    with pytest.raises(Boom) as info:
        node_ext.odeint(Fails(), Y0, T)
    assert re.fullmatch(r"node_ext: raised by the step callback callback_accept_step\(t0, y0, dt\) during a "
                        r"solve, at t = 0\.\d+", info.value.__notes__[0])

    def event(t, y):
        if t > 0.3:
            raise Boom("from the event function")
        return y[0] - 2.0

    with pytest.raises(Boom) as info:
        node_ext.odeint(lambda t, y: -y, Y0, torch.tensor([0.0, 1.0]), event_fn=event)
    assert info.value.__notes__[0].startswith("node_ext: raised by event_fn(t, y) during a solve, at t = 0.")
    # Per-sample grids: the range of the samples' times.
    with pytest.raises(Boom) as info:
        node_ext.odeint(lambda t, y: (_ for _ in ()).throw(Boom("x")) if t.max() > 1.0 else -y, torch.ones(2, 1),
                        torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
    assert re.search(r"at t = [\d.]+ \.\.\. [\d.]+ \(one time per sample\)", info.value.__notes__[0])


def test_a_norm_that_is_not_scalar_is_named():
    with pytest.raises(TypeError, match=r"options\['norm'\] must return a scalar .* got tensor of shape \(2,\)"):
        node_ext.odeint(lambda t, y: -y, Y0, T, options=dict(norm=lambda x: x.abs()))
    with pytest.raises(TypeError, match=r"adjoint_options\['norm'\] must return a scalar .* got tensor of shape"):
        y0 = Y0.clone().requires_grad_()
        node_ext.odeint_adjoint(lambda t, y: -y, y0, T, adjoint_params=(),
                                adjoint_options=dict(norm=lambda aug: aug[1].abs())).sum().backward()


def test_nothing_leaks_after_an_exception():
    refs = []

    def f(t, y):
        refs.append(weakref.ref(y))
        if len(refs) > 20:
            raise Boom()
        return -y

    y0 = torch.ones(1000)
    for _ in range(3):
        refs.clear()
        with pytest.raises(Boom):
            node_ext.odeint(f, y0, T)
        gc.collect()
        assert all(r() is None for r in refs[1:])  # every buffer the solve made is gone


def test_step_size_underflow():
    # Finite-time blow-up at t = 1: the step size shrinks to machine precision.
    with pytest.raises(node_ext.StepSizeError, match="step size underflow") as info:
        node_ext.odeint(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64),
                        torch.tensor([0.0, 2.0], dtype=torch.float64))
    err = info.value
    assert isinstance(err, node_ext.SolverError) and abs(err.t - 1.0) < 1e-3
    assert err.stats["n_fev"] > 0 and err.stats["n_rejected"] > 0 and err.phase == "forward"


def test_below_min_step():
    with pytest.raises(node_ext.StepSizeError, match="below min_step = 0.1"):
        node_ext.odeint(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64),
                        torch.tensor([0.0, 2.0], dtype=torch.float64), options=dict(min_step=0.1))


def test_non_finite_dynamics():
    def f(t, y):
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    with pytest.raises(node_ext.NonFiniteError, match="non-finite") as info:
        node_ext.odeint(f, Y0, T)
    assert 0.4 < info.value.t <= 0.5 + 1e-6  # f sees t in float32: 0.5 + 3e-8 rounds to 0.5
    with pytest.raises(node_ext.NonFiniteError, match="became non-finite .* from t = 0.5"):
        node_ext.odeint(f, Y0, T, method="midpoint")  # its second stage is at t = 0.75
    with pytest.raises(node_ext.NonFiniteError, match="initial time"):
        node_ext.odeint(lambda t, y: y / 0, Y0, T)


def test_per_sample_failure_names_the_sample():
    t = torch.stack([torch.linspace(0, 0.5, 3), torch.linspace(0, 2, 3)]).double()
    with pytest.raises(node_ext.StepSizeError, match="sample 1") as info:
        node_ext.odeint(lambda t, y: y ** 2, torch.ones(2, 1, dtype=torch.float64), t)
    assert info.value.sample == 1


def test_solver_errors_are_not_assertion_errors():
    assert not issubclass(node_ext.SolverError, AssertionError)
    assert issubclass(node_ext.SolverError, RuntimeError)
