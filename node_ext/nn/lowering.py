"""Native lowering of torchdiffeq-style dynamics modules: a user's ``ODEFunc(nn.Module)`` whose
``forward(t, y)`` is a multilayer perceptron of ``y`` (or of ``y**p``) runs in C++ with no change to
its code, like :class:`node_ext.nn.MLPODEF` (node_ext/nn/native.py).

``forward`` is traced once with torch.fx (symbolic tracing, which records the tensor operations
without computing) and the graph is accepted only when it is a chain from ``y`` to the output:
an optional integer power of ``y``, optionally the time concatenated as a first or last column
(``torch.cat([y, t.expand(y.shape[0], 1)], 1)``, ``torch.cat([torch.ones_like(y[:, :1]) * t, y], -1)``,
...), then ``nn.Linear`` modules with one and the same activation between them, as a module
(``nn.Tanh()``, ``nn.ELU(alpha)``, ...) or a function (``torch.tanh``, ``F.softplus(x, beta=2)``,
``x.relu()``, ...). That covers the dynamics of torchdiffeq's examples (``self.net(y**3)``,
fc1 -> ELU -> fc2 -> ELU -> fc3) and of Chen et al., "Neural Ordinary Differential Equations",
NeurIPS 2018. Anything else (convolutions, residual connections, the time entering elsewhere,
control flow on values) is called from Python as usual.

The time column may be computed in any way from ``t`` and the shape of ``y`` (no module state, no
in-place operation): it is checked by running that part of the graph on probe times (and, for
per-sample time grids, one time per row), and accepted only when it is exactly ``t`` in every row.

A forward with side effects would lose them when run natively, so tracing must leave every module's
attributes as they were: a forward that counts its calls (``self.nfe += 1``) or stores anything on
the module stays in Python (the attributes are restored after the trace). Effects outside the
module (printing, global state) cannot be seen; set ``native = False`` on such a module to opt out.
The trace is cached per module and redone when its structure, class or attributes (``training``,
flags, tuples, lists and dicts by their contents) change; the weights are read at every solve.
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

# module -> (structure, plain attributes, plan | None | _IMPURE, {state: time column checked})
_cache = weakref.WeakKeyDictionary()
_IMPURE = "impure"


def native_form(func, y0, per_row=False):
    """A node_ext._C.MLPDynamics computing ``func(t, y)`` for states like y0 (with one time per row
    when per_row), or None."""
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
        cached = (structure, attributes, _plan(func), {})
        _cache[func] = cached
    plan = cached[2]
    if plan is None or plan is _IMPURE:
        return None
    power, names, activation, time = plan
    if time is not None:
        key = (tuple(y0.shape), y0.dtype, y0.device, per_row)
        if key not in cached[3]:
            if len(cached[3]) >= 64:  # many state shapes: keep the checks bounded
                cached[3].clear()
            cached[3][key] = _is_time_column(time[1], y0, per_row)
        if not cached[3][key]:
            return None
    linears = [func.get_submodule(n) for n in names]
    return mlp_from_layers(linears, activation, y0.shape[-1] if y0.dim() else -1, time is not None, y0, power,
                           time is not None and time[0])


_PLAIN = frozenset((bool, int, float, str, type(None)))


_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"native"}


def _attribute_value(v, depth=0):
    """A comparable snapshot of an attribute the forward may branch on: plain values as they are,
    tuples, lists and dicts by their contents (a config dict changed in place counts), anything else
    by identity."""
    if type(v) in _PLAIN:
        return v
    if depth < 4 and type(v) in (tuple, list):
        return type(v), tuple(_attribute_value(x, depth + 1) for x in v)
    if depth < 4 and type(v) is dict:
        return dict, tuple((_attribute_value(k, depth + 1), _attribute_value(x, depth + 1)) for k, x in v.items())
    return "id", id(v)


def _plain_attributes(module):
    return [(k, _attribute_value(v)) for k, v in vars(module).items() if k not in _MODULE_INTERNALS]


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
    """(input power, qualified names of the Linear layers, activation, time) when func's forward is a
    supported chain (module docstring), time being None or (time first, the graph of the time column
    as a module of (t, y)); _IMPURE when tracing changed func's attributes (they are restored); else
    None."""
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
    if len(inputs) != 2:
        return None
    time = _time_concat(nodes, *inputs) if inputs[0].users else None
    if inputs[0].users and time is None:
        return None
    column_nodes = time[2] if time else frozenset()
    current, power, names, acts, time_first = inputs[1], 1, [], [], None
    for node in nodes[len(inputs):]:
        if node in column_nodes:
            continue
        if node.op == "output":
            ok = node.args == (current,) and names and len(acts) == len(names) - 1
            time_plan = (time_first, _column_module(func, nodes, inputs, time)) if time else None
            return ((power, names, acts[0] if acts else None, time_plan)
                    if ok and all(a == acts[0] for a in acts) else None)
        if len([u for u in current.users if u not in column_nodes]) != 1:
            return None
        if time and node is time[0]:  # the concatenation of the state and the time column
            if names or time[3][1 - time[4]] is not current:
                return None
            time_first, current = time[4] == 0, node
            continue
        if not node.args or node.args[0] is not current:
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


def _time_concat(nodes, t, y):
    """(cat node, column node, the column's nodes, the cat's two inputs, the column's position) when
    ``t`` is used only to build one input of a single ``torch.cat`` along the last dimension of a
    2-D state; else None."""
    cats = [n for n in nodes if n.op == "call_function" and n.target is torch.cat]
    if len(cats) != 1:
        return None
    cat = cats[0]
    dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
    parts = cat.args[0] if cat.args else None
    if (set(cat.kwargs) - {"dim"} or dim not in (1, -1) or not isinstance(parts, (list, tuple)) or len(parts) != 2
            or not all(isinstance(p, fx.Node) for p in parts)):
        return None
    for position in (0, 1):
        column = parts[position]
        members = _ancestors(column)
        if members is None or t not in members:
            continue
        members.discard(t)
        members.discard(y)
        if parts[1 - position] in members:
            continue
        inner = members | {t}
        if all(set(n.users) <= (members | {cat}) for n in inner) and column in members:
            return cat, column, frozenset(members), tuple(parts), position
    return None


def _ancestors(node):
    """node and everything it is computed from, or None when that includes module state, modules or
    in-place operations (the column must be a function of t and y's shape alone)."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        name = getattr(n.target, "__name__", n.target) if n.op != "placeholder" else ""
        if n.op in ("get_attr", "call_module") or "out" in n.kwargs or n.target is operator.setitem or (
                isinstance(name, str) and name.endswith("_") and not name.endswith("__")):
            return None
        todo.extend(n.all_input_nodes)
    return seen


def _column_module(func, nodes, inputs, time):
    """The time column's part of the graph as a module of (t, y)."""
    graph = fx.Graph()
    env = {inputs[0]: graph.placeholder("t"), inputs[1]: graph.placeholder("y")}
    for n in nodes:
        if n in time[2]:
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(env[time[1]])
    return fx.GraphModule(func, graph)


def _is_time_column(column, y0, per_row):
    """Whether column(t, y) is exactly t in every row, for probe times (one per row too when
    per_row) and two states of y0's shape, dtype and device."""
    rows = y0.shape[0]
    probes = [torch.tensor(v, dtype=y0.dtype, device=y0.device) for v in (0.0, 0.6180339887, -3.25)]
    if per_row:
        probes.append(torch.linspace(-1.5, 2.5, rows, dtype=y0.dtype, device=y0.device))
    states = (y0.detach().clone(), 0.75 - 2 * y0.detach())
    try:
        with torch.no_grad():
            for t in probes:
                expected = t.reshape(-1, 1).expand(rows, 1)
                for y in states:
                    value = column(t, y)
                    if (not torch.is_tensor(value) or value.shape != (rows, 1) or value.dtype != y0.dtype
                            or value.device != y0.device or not torch.equal(value, expected)):
                        return False
    except Exception:  # noqa: BLE001 - a column that cannot take these inputs is not one
        return False
    return True


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
