"""Native lowering of torchdiffeq-style dynamics modules: a user's ``ODEFunc(nn.Module)`` whose
``forward(t, y)`` is a multilayer perceptron of ``y`` (or of ``y**p``) runs in C++ with no change to
its code, like :class:`node_ext.nn.MLPODEF` (node_ext/nn/native.py).

``forward`` is traced once with torch.fx (symbolic tracing, which records the tensor operations
without computing) and the graph is accepted only when it is a chain from ``y`` to the output:
an optional integer power of ``y``, then ``nn.Linear`` modules with one and the same activation
between them, as a module (``nn.Tanh()``, ``nn.ELU(alpha)``, ...) or a function (``torch.tanh``,
``F.softplus(x, beta=2)``, ``x.relu()``, ...); ``t`` unused. That covers the dynamics of
torchdiffeq's examples (``self.net(y**3)``, fc1 -> ELU -> fc2 -> ELU -> fc3) and of Chen et al.,
"Neural Ordinary Differential Equations", NeurIPS 2018. Anything else (convolutions, residual
connections, time inputs, control flow on values) is called from Python as usual.

A forward with side effects would lose them when run natively, so tracing must leave every module's
attributes as they were: a forward that counts its calls (``self.nfe += 1``) or stores anything on
the module stays in Python (the attributes are restored after the trace). Effects outside the
module (printing, global state) cannot be seen; set ``native = False`` on such a module to opt out.
The trace is cached per module and redone when its structure, class or plain attributes (``training``,
flags) change; the weights are read at every solve.
"""
import copy
import operator
import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import _ops
from .native import activation_of, mlp_from_layers, without_hooks

# Activation functions as fx records them: target -> (torch.nn class name, [(argument, default,
# MLPDynamics parameter)...]) for the arguments after the input; "inplace" is accepted and ignored.
_FUNCTIONS = {}
for _fn, _name, _args in (
        ((torch.tanh, F.tanh), "Tanh", ()),
        ((torch.relu, F.relu), "ReLU", ()),
        ((torch.sigmoid, F.sigmoid), "Sigmoid", ()),
        ((F.silu,), "SiLU", ()),
        ((F.elu,), "ELU", (("alpha", 1.0, "alpha"),)),
        ((F.leaky_relu,), "LeakyReLU", (("negative_slope", 0.01, "alpha"),)),
        ((F.softplus,), "Softplus", (("beta", 1.0, "alpha"), ("threshold", 20.0, "threshold"))),
        ((F.gelu,), "GELU", (("approximate", "none", "approximate"),))):
    for _f in _fn:
        _FUNCTIONS[_f] = (_name, _args)
_METHODS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid"}
_POWERS = (operator.pow, torch.pow)

_cache = weakref.WeakKeyDictionary()  # module -> (structure, plain attributes, plan | None | _IMPURE)
_IMPURE = "impure"


def native_form(func, y0):
    """A node_ext._C.MLPDynamics computing ``func(t, y)`` for states like y0, or None."""
    if (_ops.native is None or not isinstance(func, nn.Module) or getattr(func, "native", True) is False
            or type(func).__call__ is not nn.Module.__call__):  # func(t, y) must mean forward(t, y)
        return None
    named = list(func.named_modules())
    if not without_hooks(func, [m for _, m in named]):
        return None
    structure, attributes = _fingerprint(named)
    cached = _cache.get(func)
    # A forward with side effects is refused for as long as the structure stays (its counters change).
    if cached is None or cached[0] != structure or (cached[2] is not _IMPURE and cached[1] != attributes):
        cached = (structure, attributes, _plan(func))
        _cache[func] = cached
    plan = cached[2]
    if plan is None or plan is _IMPURE:
        return None
    power, names, activation = plan
    linears = [func.get_submodule(n) for n in names]
    return mlp_from_layers(linears, activation, y0.shape[-1] if y0.dim() else -1, False, y0, power)


_PLAIN = frozenset((bool, int, float, str, type(None)))


def _plain_attributes(module):
    return [item for item in vars(module).items() if type(item[1]) in _PLAIN and item[0] != "native"]


def _fingerprint(named_modules):
    """What the trace depends on besides the weights: every submodule's identity, class and forward
    (the structure), and their plain attributes."""
    return (tuple((name, id(m), type(m), type(m).forward, "forward" in vars(m)) for name, m in named_modules),
            [_plain_attributes(m) for _, m in named_modules])


_CONTAINERS = (list, dict, set)


def _entry(v):
    return v if type(v) in _PLAIN else (id(v), len(v) if isinstance(v, _CONTAINERS) else -1)


def _snapshot(modules):
    """Every module's attributes, with copies of the containers among them (to undo appends)."""
    return [(dict(vars(m)), {k: copy.copy(v) for k, v in vars(m).items() if isinstance(v, _CONTAINERS)})
            for m in modules]


def _restore(modules, snapshot):
    for m, (attributes, containers) in zip(modules, snapshot):
        vars(m).clear()
        vars(m).update(attributes)
        for k, saved in containers.items():
            attributes[k].clear()
            if isinstance(saved, list):
                attributes[k].extend(saved)
            else:
                attributes[k].update(saved)


def _plan(func):
    """(input power, qualified names of the Linear layers, activation) when func's forward is a
    supported chain (module docstring); _IMPURE when tracing changed func's attributes (they are
    restored); else None."""
    modules = list(func.modules())
    snapshot = _snapshot(modules)
    before = [{k: _entry(v) for k, v in vars(m).items()} for m in modules]
    try:
        graph = fx.Tracer().trace(func)
    except Exception:  # noqa: BLE001 - anything tracing cannot follow stays in Python
        graph = None
    if [{k: _entry(v) for k, v in vars(m).items()} for m in modules] != before:
        _restore(modules, snapshot)  # undo the trace's side effects
        return _IMPURE
    return None if graph is None else _chain(func, graph)


def _chain(func, graph):
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 2 or inputs[0].users:
        return None
    current, power, names, acts = inputs[1], 1, [], []
    for node in nodes[len(inputs):]:
        if node.op == "output":
            ok = node.args == (current,) and names and len(acts) == len(names) - 1
            return (power, names, acts[0] if acts else None) if ok and all(a == acts[0] for a in acts) else None
        if len(current.users) != 1 or not node.args or node.args[0] is not current:
            return None
        step = _step(func, node)
        if step is None:
            return None
        kind, value = step
        if kind == "power" and not names and power == 1:
            power = value
        elif kind == "linear" and len(acts) == len(names):
            names.append(value)
        elif kind == "activation" and len(acts) == len(names) - 1:
            acts.append(value)
        else:
            return None
        current = node
    return None


def _step(func, node):
    """("power", p), ("linear", qualified name) or ("activation", (name, parameters)) for one node."""
    if node.op == "call_module":
        module = func.get_submodule(node.target)
        if type(module) is nn.Linear and len(node.args) == 1 and not node.kwargs:
            return "linear", node.target
        act = activation_of(module)
        return ("activation", act) if act and len(node.args) == 1 and not node.kwargs else None
    if node.op == "call_method" and node.target in _METHODS and len(node.args) == 1 and not node.kwargs:
        return "activation", (_METHODS[node.target], {})
    exponent = node.args[1] if len(node.args) == 2 and not node.kwargs else None
    if (node.op == "call_function" and node.target in _POWERS) or (node.op == "call_method" and node.target == "pow"):
        return ("power", exponent) if type(exponent) is int and exponent >= 1 else None
    if node.op == "call_function" and node.target in _FUNCTIONS:
        name, spec = _FUNCTIONS[node.target]
        return _function_activation(name, spec, node.args[1:], node.kwargs)
    return None


def _function_activation(name, spec, args, kwargs):
    if len(args) > len(spec) + 1 or any(k not in [s[0] for s in spec] + ["inplace"] for k in kwargs):
        return None
    params = {}
    for i, (arg, default, param) in enumerate(spec):
        value = args[i] if i < len(args) else kwargs.get(arg, default)
        if isinstance(value, fx.Node):
            return None
        params[param] = value if param == "approximate" else float(value)
    return "activation", (name, params)
