"""torch.compile around models that call node_ext: the solvers run eagerly, as one graph break.

Dynamo cannot trace the native solve loop, and tracing the Python validation in front of it only
produces graph breaks and warnings. ``torch.compiler.disable`` makes dynamo skip a function, but
applied at import it imports ``torch._dynamo`` (more than a second). The entry points are wrapped
instead by :func:`eager_under_compile`, which uses dynamo's ``disable`` only once ``torch._dynamo``
is loaded (torch.compile imports it), and otherwise calls the solver directly.
"""
import functools
import sys

_disabled = {}  # solver entry point -> its torch._dynamo.disable'd form, made on first use


def eager_under_compile(fn):
    @functools.wraps(fn)
    def entry(*args, **kwargs):
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:  # torch.compile has not been used in this process: nothing traces this call
            return fn(*args, **kwargs)
        disabled = _disabled.get(fn)
        if disabled is None:
            disabled = _disabled[fn] = dynamo.disable(fn)
        return disabled(*args, **kwargs)
    return entry
