"""Butcher tableaus for Python: read from the native extension, or, when it is not built, parsed
from csrc/tableaus.h, the single place where the coefficients are written down."""
import functools
import os
import re

from . import _ops
from .adams import METHODS as ADAMS_METHODS

_ARRAY = re.compile(r"inline constexpr double (\w+)\[\] = \{([^}]*)\};")
_ROW = re.compile(r'\{"(\w+)", (\d+), (\d+), (true|false), (true|false), (\w+::\w+|nullptr), (\w+::\w+|nullptr), '
                  r'(\w+::\w+|nullptr), (\w+::\w+|nullptr), DenseKind::(\w+), (\d+), (\d+), (\w+::\w+|nullptr), "([^"]*)"\}')


def _header_path():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "_tableaus.h"), os.path.join(os.path.dirname(here), "csrc", "tableaus.h")):
        if os.path.exists(path):
            return path
    raise FileNotFoundError("node_ext: cannot find csrc/tableaus.h (the extension is not built either)")


def parse_header(text):
    """All tableaus in the text of csrc/tableaus.h, as dicts like node_ext._C.tableau()."""
    arrays = {name: [float(v) for v in body.replace("\n", " ").split(",") if v.strip()]
              for name, body in _ARRAY.findall(text)}

    def arr(ref):
        return [] if ref == "nullptr" else list(arrays[ref.split("::")[1]])

    out = {}
    for m in _ROW.finditer(text):
        name, s, order, adaptive, fsal, c, a, b, b_err, dense, terms, degree, poly, ref = m.groups()
        out[name] = dict(name=name, stages=int(s), order=int(order), adaptive=adaptive == "true",
                         fsal=fsal == "true", c=arr(c), a=arr(a), b=arr(b), b_err=arr(b_err),
                         dense=dense.lower(), dense_terms=int(terms), dense_degree=int(degree),
                         dense_poly=arr(poly), reference=ref)
    return out


@functools.lru_cache(maxsize=None)
def _parsed():
    with open(_header_path()) as f:
        return parse_header(f.read())


def method_names():
    """Every method: the Runge-Kutta methods in tableau order, then the Adams methods."""
    return list(_method_names()) + list(ADAMS_METHODS)


def is_adaptive(method):
    """True for the methods with an error estimate and step-size control."""
    return method not in ADAMS_METHODS and tableau(method)["adaptive"]


@functools.lru_cache(maxsize=None)
def _method_names():
    if _ops.native is not None:
        return tuple(_ops.native.methods())
    return tuple(_parsed())


@functools.lru_cache(maxsize=None)
def tableau(name):
    """The tableau of `name` as a dict: stages, order, adaptive, fsal, c, a (packed lower
    triangle), b, b_err, dense ('linear' | 'hermite' | 'polynomial'), dense_terms, dense_degree,
    dense_poly, reference."""
    if _ops.native is not None:
        return _ops.native.tableau(name)
    return _parsed()[name]


def a_matrix(tab):
    """The strictly lower triangular A as a list of rows."""
    rows, k = [], 0
    for i in range(tab["stages"]):
        rows.append(tab["a"][k:k + i])
        k += i
    return rows


def dense_weights(tab, cubic=False):
    """The continuous extension of a Runge-Kutta step as polynomial weights over its terms, as the
    native loop uses it (csrc/solve/dense_output.h): ``y(t0 + theta h) = y0 + h sum_j w_j(theta) K_j``
    with ``w_j(theta) = sum_p poly[j * degree + p] theta ** (p + 1)``. The terms are the stages, plus
    f(t1, y1) when ``uses_f1``. Returns (poly, degree, uses_f1): the method's own extension, cubic
    Hermite through (y0, f0, y1, f1) for the other adaptive methods and fixed grids with
    interp='cubic', linear interpolation otherwise."""
    kind = tab["dense"] if tab["adaptive"] else ("hermite" if cubic else "linear")
    b, n = list(tab["b"]), tab["stages"]
    if kind == "polynomial":
        return list(tab["dense_poly"]), tab["dense_degree"], tab["dense_terms"] > n
    if kind == "linear":
        return b, 1, False
    # y(theta) = y0 + h (h10 f0 + h11 f1) + h01 (y1 - y0), y1 - y0 = h sum_j b_j K_j: h10 = theta - 2 theta^2
    # + theta^3, h01 = 3 theta^2 - 2 theta^3, h11 = theta^3 - theta^2; f1 is the last stage when FSAL.
    f1 = n - 1 if tab["fsal"] else n
    poly = [0.0] * (3 * (n if tab["fsal"] else n + 1))
    for j in range(n):
        poly[3 * j + 1] += 3.0 * b[j]
        poly[3 * j + 2] += -2.0 * b[j]
    poly[0:3] = [poly[0] + 1.0, poly[1] - 2.0, poly[2] + 1.0]
    poly[3 * f1 + 1] -= 1.0
    poly[3 * f1 + 2] += 1.0
    return poly, 3, not tab["fsal"]
