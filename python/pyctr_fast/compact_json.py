"""Compact JSON text for the OCI spec, without importing :mod:`json`.

``import json`` pulls in :mod:`re` (and with it ``enum``, ``sre_*``...), which
costs more than the rest of a ``pyctr-fast run`` start-up in Python.  CPython's
C encoder (``_json.make_encoder``, what :mod:`json` itself uses) is reachable
without it and gives byte for byte what ``json.dumps(obj, separators=(",",
":"))`` gives, at C speed.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["dumps"]


def _default(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encoder: Callable[[object, int], list[str]] | None
try:
    import _json

    # Arguments as json.encoder passes them: no circular-reference markers
    # (the spec is a tree), compact separators, keys in insertion order.
    _encoder = _json.make_encoder(
        None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True
    )
except (ImportError, AttributeError):  # pragma: no cover - not CPython
    _encoder = None


def dumps(obj: object) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` for JSON-native values."""
    if _encoder is None:  # pragma: no cover
        import json

        return json.dumps(obj, separators=(",", ":"))
    return "".join(_encoder(obj, 0))
