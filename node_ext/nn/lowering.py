"""Native lowering of torchdiffeq-style dynamics modules: a user's ``ODEFunc(nn.Module)`` whose
``forward(t, y)`` is a multilayer perceptron of ``y`` (or of ``y**p``) runs in C++ with no change to
its code, like :class:`node_ext.nn.MLPODEF` (node_ext/nn/native.py).

``forward`` is traced once with torch.fx (symbolic tracing, which records the tensor operations
without computing) and the graph is accepted only when it is a chain from ``y`` to the output:
an optional integer power of ``y``, then ``nn.Linear`` modules with one and the same activation
between them, as a module (``nn.Tanh()``, ``nn.ELU(alpha)``, ...) or a function (``torch.tanh``,
``F.softplus(x, beta=2)``, ``x.relu()``, ...), where any Linear may take the time concatenated to
its input as a first or last column (``torch.cat([y, t.expand(y.shape[0], 1)], 1)``, FFJORD's
``torch.cat([torch.ones_like(x[:, :1]) * t, x], 1)`` at every layer, ...). That covers the dynamics
of torchdiffeq's examples (``self.net(y**3)``, fc1 -> ELU -> fc2 -> ELU -> fc3), of Chen et al.,
"Neural Ordinary Differential Equations", NeurIPS 2018, and the ConcatLinear MLPs of Grathwohl et
al., "FFJORD", ICLR 2019. Anything else (convolutions, residual connections, the time entering
elsewhere, control flow on values) is called from Python as usual.

A time column is accepted only when it is exactly ``t`` in every row, built from ``t`` and the
shape of one tensor of the chain, which node_ext/nn/time_columns.py checks on the graph and on
probe values.

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
from .time_columns import column_module, column_nodes, is_time_column

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
    power, names, activation, time_inputs, columns = plan
    linears = [func.get_submodule(n) for n in names]
    if columns:
        key = (tuple(y0.shape), y0.dtype, y0.device, per_row)
        if key not in cached[3]:
            if len(cached[3]) >= 64:  # many state shapes: keep the checks bounded
                cached[3].clear()
            cached[3][key] = y0.dim() == 2 and all(
                is_time_column(column, y0.shape[0], y0.shape[1] if k in (None, 0) else linears[k - 1].out_features,
                                y0, per_row) for column, k in columns)
        if not cached[3][key]:
            return None
    return mlp_from_layers(linears, activation, y0.shape[-1] if y0.dim() else -1, y0, power, time_inputs)


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
    """(input power, qualified names of the Linear layers, activation, time input of each layer
    ('none' | 'last' | 'first'), time columns [(module of (t, x), x's position: the number of Linear
    layers before it, None when the column reads no tensor of the chain)]) when func's forward is a
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
    """The plan of a supported chain (see _plan), followed forward from ``y``: each node's one user
    that continues the chain (a power, a Linear, an activation, a concatenation with a time column,
    the output); its other users may only compute time columns."""
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 2:
        return None
    t, current = inputs
    chain, columns = [current], []  # the time columns' nodes, each once
    power, names, acts, time_inputs, pending = 1, [], [], [], None
    while True:
        nexts = [u for u in current.users if _continues(func, u, current)]
        if len(nexts) != 1:
            return None
        node = nexts[0]
        if node.op == "output":
            break
        step = ("cat", _time_part(node, current)) if _is_cat(node) else _step(func, node)
        kind, value = step if step else (None, None)
        if kind == "cat" and value is not None and pending is None and len(acts) == len(names):
            pending = value[0]
            if value[1] not in columns:
                columns.append(value[1])
        elif kind == "power" and not names and power == 1 and pending is None:
            power = value
        elif kind == "linear" and len(acts) == len(names):
            names.append(value)
            time_inputs.append(pending or "none")
            pending = None
        elif kind == "activation" and len(acts) == len(names) - 1 and pending is None:
            acts.append(value)
        else:
            return None
        chain.append(node)
        current = node
    if not names or len(acts) != len(names) - 1 or any(a != acts[0] for a in acts) or pending is not None:
        return None
    plans = _column_plans(func, nodes, t, chain, columns)
    if plans is None:
        return None
    return power, names, acts[0] if acts else None, time_inputs, plans


def _continues(func, user, current):
    """Whether ``user`` continues the chain at ``current``: the output of current alone, a torch.cat
    of current with one other tensor, or a supported step (_step) of current."""
    if user.op == "output":
        return user.args == (current,)
    if _is_cat(user):
        parts = _cat_arguments(user)[0]
        return isinstance(parts, (list, tuple)) and current in parts
    return bool(user.args) and user.args[0] is current and _step(func, user) is not None


_CATS = (torch.cat, torch.concat, torch.concatenate)


def _is_cat(node):
    return node.op == "call_function" and node.target in _CATS


def _cat_arguments(cat):
    """(tensors, dim, unknown keyword arguments) of a torch.cat / concat / concatenate node."""
    kwargs = dict(cat.kwargs)
    parts = cat.args[0] if cat.args else kwargs.pop("tensors", None)
    dim = cat.args[1] if len(cat.args) > 1 else kwargs.pop("dim", kwargs.pop("axis", 0))
    return parts, dim, kwargs


def _time_part(cat, current):
    """("first" | "last", the other part) when ``cat`` joins ``current`` and one other node along
    the last dimension of a 2-D state; else None."""
    parts, dim, unknown = _cat_arguments(cat)
    if (unknown or dim not in (1, -1) or len(parts) != 2
            or not all(isinstance(p, fx.Node) for p in parts) or parts[0] is parts[1]):
        return None
    position = 1 - parts.index(current)
    return ("first" if position == 0 else "last"), parts[position]


def _column_plans(func, nodes, t, chain, columns):
    """[(column module of (t, x), chain position of x or None)] for the time columns, when every
    node of the graph is in the chain or computes a column from ``t`` and at most one chain node
    (node_ext/nn/time_columns.py); else None."""
    chain_set, members, plans = set(chain), set(), []
    for column in columns:
        found = None if column in chain_set else column_nodes(column, t, chain_set)
        if found is None:
            return None
        inner, source = found
        if source is not None and _is_cat(source):  # its width is not a layer's
            return None
        members |= inner
        plans.append((column_module(func, nodes, t, source, inner, column),
                      None if source is None else sum(1 for n in chain[:chain.index(source) + 1]
                                                      if n.op == "call_module" and _is_linear(func, n))))
    cats = {u for n in chain for u in n.users if u in chain_set and _is_cat(u)}
    for n in nodes:
        if n.op in ("placeholder", "output") or n in chain_set:
            continue
        if n not in members or not set(n.users) <= (members | cats):
            return None
    return plans


def _is_linear(func, node):
    return type(func.get_submodule(node.target)) is nn.Linear


def _step(func, node):
    """("power", p), ("linear", qualified name) or ("activation", (name, parameters)) for one node."""
    if node.op == "call_module":
        module = func.get_submodule(node.target)
        if "forward" in vars(module):  # an instance's own forward: not the layer it looks like
            return None
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
