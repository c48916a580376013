"""Compact JSON text for the OCI spec, without importing :mod:`json`.

``import json`` pulls in :mod:`re` (and with it ``enum``, ``sre_*``...), which
costs more than the rest of a ``pyctr-fast run`` start-up in Python.  The spec
only holds dicts, lists, strings, ints, bools and None, so this encodes those
with CPython's C string escaper and gives byte for byte what
``json.dumps(obj, separators=(",", ":"))`` gives.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    _Escape = Callable[[str], str]

_escape: _Escape | None
try:
    from _json import encode_basestring_ascii as _escape
except ImportError:  # pragma: no cover - CPython always has _json
    _escape = None

__all__ = ["dumps"]


def dumps(obj: object) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` for JSON-native values."""
    if _escape is None:  # pragma: no cover
        import json

        return json.dumps(obj, separators=(",", ":"))
    out: list[str] = []
    _encode(obj, out, _escape)
    return "".join(out)


def _encode(obj: object, out: list[str], escape: _Escape) -> None:
    if isinstance(obj, str):
        out.append(escape(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(_float(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(escape(key))
            out.append(":")
            _encode(value, out, escape)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _encode(item, out, escape)
        out.append("]")
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)
