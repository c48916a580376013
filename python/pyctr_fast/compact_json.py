"""JSON without importing :mod:`json`: compact text (the OCI spec, state files) and reading.

``import json`` pulls in :mod:`re` (and with it ``enum``, ``sre_*``...), which
costs more than the rest of a ``pyctr-fast run`` start-up in Python.  CPython's
C encoder (``_json.make_encoder``, what :mod:`json` itself uses) is reachable
without it and gives byte for byte what ``json.dumps(obj, separators=(",",
":"))`` gives, at C speed.  :func:`loads` reads with CPython's C scanner
(``_json.make_scanner``, what :func:`json.loads` itself uses) configured as
:mod:`json`'s default decoder: the same values; any text it does not take
is handed to :func:`json.loads`, which raises its usual error.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["dumps", "loads"]


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


class _Context:
    """The settings the C scanner reads from its context: those of
    ``json.JSONDecoder()``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__


_scanner: Callable[[str, int], tuple[Any, int]] | None
try:
    _scanner = _json.make_scanner(_Context())  # type: ignore[arg-type]  # (any settings object)
except (NameError, AttributeError):  # pragma: no cover - not CPython
    _scanner = None

_WHITESPACE = " \t\n\r"  # json's WHITESPACE


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, without importing :mod:`json` for valid UTF-8 text."""
    if _scanner is not None:
        try:
            s = text if isinstance(text, str) else text.decode("utf-8")
            obj, end = _scanner(s, len(s) - len(s.lstrip(_WHITESPACE)))
            if end == len(s) or not s[end:].strip(_WHITESPACE):
                return obj
        except (StopIteration, ValueError, SystemError):
            # SystemError: the bare C scanner fails so on some bad input
            # ("{not json"); json.loads says what is wrong (or reads what
            # this did not).
            pass
    import json

    return json.loads(text)
