"""Time columns in traced dynamics (node_ext.nn.lowering): the part of a forward(t, y) graph that
builds the column concatenated to a layer's input, accepted only when it is exactly ``t`` in
every row, so that the native MLP (the time as an extra input of that layer) computes what the
module computes.

Two checks, both needed:

- structure: the column reads the tensors of the network (``x``: ``y`` or a hidden layer) only for
  their shape, dtype or device (``torch.ones_like(x[:, :1])``, ``x.shape[0]``, ``t.type_as(x)``),
  never their values, and builds on ``t`` with shape operations, casts and products or sums with
  such constants only (no ``detach``, which would cut the time's gradient in Python but not
  natively; no ``clamp``, ``fmod``, ``where``; no module state; nothing in place);
- values: run on probe times (one per row for per-sample time grids) and probe inputs, the column
  equals ``t`` in every row, with the state's dtype and device (which rules out ``2 * t``,
  ``t * 0``, a column of the wrong shape).
"""
import operator

import torch
from torch import fx

# Operations that read only the metadata of their first argument.
_SHAPE_FUNCTIONS = frozenset((torch.ones_like, torch.zeros_like))
_SHAPE_METHODS = frozenset(("size", "dim", "new_ones", "new_zeros"))
_SHAPE_ATTRIBUTES = frozenset(("shape", "dtype", "device", "ndim"))
# Methods whose second argument is read only for its metadata.
_LIKE_METHODS = frozenset(("type_as", "expand_as", "view_as", "reshape_as", "to"))
# Views: x's values pass through them (allowed only when they end in a metadata read).
_VIEW_FUNCTIONS = frozenset((operator.getitem,))
_VIEW_METHODS = frozenset(("view", "reshape", "narrow", "select", "unsqueeze", "squeeze", "contiguous"))
# What may be done with t and with constants built from shapes.
_VALUE_FUNCTIONS = frozenset((operator.mul, operator.add, operator.sub, torch.mul, torch.add, torch.sub, torch.reshape,
                              torch.broadcast_to, torch.unsqueeze, torch.ones, torch.zeros, torch.full, operator.getitem,
                              torch.ones_like, torch.zeros_like))
_VALUE_METHODS = frozenset(("reshape", "view", "expand", "expand_as", "repeat", "unsqueeze", "squeeze", "to", "type",
                            "type_as", "float", "double", "broadcast_to", "contiguous", "clone", "mul", "add", "sub",
                            "size", "dim", "new_ones", "new_zeros", "view_as", "reshape_as"))


def column_nodes(column, t, chain):
    """(the nodes the column is computed from, up to ``t`` and the ``chain`` nodes, column
    included; the chain node it reads, or None) when the column is built as the module docstring
    says; else None."""
    seen, sources, todo = set(), set(), [column]
    while todo:
        n = todo.pop()
        if n is t or n in seen:
            continue
        if n in chain:
            sources.add(n)
            continue
        seen.add(n)
        if n.op not in ("call_function", "call_method") or "out" in n.kwargs:
            return None
        todo.extend(n.all_input_nodes)
    if len(sources) > 1 or not _reads_shapes_only(seen, sources):
        return None
    return seen, next(iter(sources), None)


def _allowed(n):
    if n.op == "call_method":
        return n.target in _VALUE_METHODS
    if n.target is getattr:
        return len(n.args) == 2 and n.args[1] in _SHAPE_ATTRIBUTES
    return n.target in _VALUE_FUNCTIONS


def _reads_metadata(n, a):
    """Whether node n reads input a for its metadata alone."""
    first = bool(n.args) and n.args[0] is a
    if n.op == "call_method":
        if n.target in _SHAPE_METHODS:
            return first
        return n.target in _LIKE_METHODS and not first and a in n.args[1:]
    return first and (n.target in _SHAPE_FUNCTIONS or n.target is getattr)


def _is_view(n, a):
    first = bool(n.args) and n.args[0] is a
    return first and (n.target in _VIEW_FUNCTIONS if n.op == "call_function" else n.target in _VIEW_METHODS)


def _reads_shapes_only(members, sources):
    """Every member is an allowed operation, and the values of the source (and of its views) reach
    no member but through a metadata read."""
    valued = set(sources)  # nodes holding values of the network's tensors
    for n in _in_order(members):
        if not _allowed(n):
            return False
        for a in n.all_input_nodes:
            if a in valued:
                if _is_view(n, a):
                    valued.add(n)
                elif not _reads_metadata(n, a):
                    return False
    return True


def _in_order(members):
    """The members in the graph's order (inputs before users)."""
    if not members:
        return []
    graph = next(iter(members)).graph
    return [n for n in graph.nodes if n in members]


def column_module(func, nodes, t, source, members, column):
    """A time column's part of the graph as a module of (t, x), x the chain node it reads."""
    graph = fx.Graph()
    env = {t: graph.placeholder("t"), source: graph.placeholder("x")}
    for n in nodes:
        if n in members:
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(env[column])
    return fx.GraphModule(func, graph)


def is_time_column(column, rows, width, like, per_row):
    """Whether column(t, x) is exactly t in every row, for probe times (one per row when per_row,
    as per-sample solves call the dynamics; else scalars) and two inputs x of shape (rows, width),
    dtype and device of ``like``."""
    opts = {"dtype": like.dtype, "device": like.device}
    if per_row:
        probes = [torch.linspace(-1.5, 2.5, rows, **opts), torch.full((rows,), 0.6180339887, **opts),
                  torch.linspace(3.25, -0.5, rows, **opts)]
    else:
        probes = [torch.tensor(v, **opts) for v in (0.0, 0.6180339887, -3.25)]
    n = rows * max(width, 0)
    states = (torch.linspace(-1.0, 1.5, n, **opts).reshape(rows, -1),
              torch.cos(torch.arange(n, **opts) * 0.37).reshape(rows, -1) * 2.5 + 0.5)
    try:
        with torch.no_grad():
            for t in probes:
                expected = t.reshape(-1, 1).expand(rows, 1)
                for x in states:
                    value = column.forward(t, x)  # not column(...), which prints the traceback of a failure
                    if (not torch.is_tensor(value) or value.shape != (rows, 1) or value.dtype != like.dtype
                            or value.device != like.device or not torch.equal(value, expected)):
                        return False
    except Exception:  # noqa: BLE001 - a column that cannot take these inputs is not one
        return False
    return True
