"""Signal names and numbers as Docker parses them (moby/sys/signal, Linux).

A table rather than the :mod:`signal` module: that one imports :mod:`enum`,
which costs more than a whole ``run`` start-up in Python.
"""

from __future__ import annotations

from .errors import UserError

__all__ = ["SIGKILL", "SIGNALS", "SIGTERM", "parse_signal", "signal_name"]

SIGKILL = 9
SIGTERM = 15

#: Docker's ``SignalMap`` for Linux (names without ``SIG``).
SIGNALS: dict[str, int] = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8,
    "HUP": 1, "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29,
    "PROF": 27, "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31,
    "TERM": 15, "TRAP": 5, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "USR1": 10,
    "USR2": 12, "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25,
    "RTMIN": 34, "RTMAX": 64,
    **{f"RTMIN+{i}": 34 + i for i in range(1, 16)},
    **{f"RTMAX-{i}": 64 - i for i in range(1, 15)},
}  # fmt: skip

_MAX = 64


def parse_signal(raw: str | int) -> int:
    """``KILL``, ``SIGKILL``, ``kill`` or ``9`` -> 9; Docker's error otherwise."""
    if isinstance(raw, int):
        number = raw
    else:
        text = raw.strip()
        if text.lstrip("-").isdigit():
            number = int(text)
        else:
            upper = text.upper()
            number = SIGNALS.get(upper[3:] if upper.startswith("SIG") else upper, 0)
    if not 0 < number <= _MAX:
        raise UserError(f"Invalid signal: {raw}")
    return number


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15 (the first of Docker's names), ``SIG<n>`` if unnamed."""
    for name, value in SIGNALS.items():
        if value == number:
            return "SIG" + name
    return f"SIG{number}"
