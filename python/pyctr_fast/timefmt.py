"""Times as Docker reads and prints them.

* :func:`parse_rfc3339` reads the engine's RFC 3339 times (nanoseconds kept);
* :func:`format_rfc3339_nano` prints Docker's fixed-width nanosecond form;
* :func:`human_duration` is Docker's ``units.HumanDuration`` ("3 seconds",
  "About a minute", ...);
* :func:`parse_time_arg` reads ``--since``/``--until`` values the way
  Docker's ``GetTimestamp`` does: a Go duration (``10m``, ``1h30m``) before
  now, an RFC 3339 date or time (local time when no zone is given), or a Unix
  timestamp (``1700000000.5``).
"""

from __future__ import annotations

import calendar
import re
import time

from .errors import UserError

__all__ = [
    "format_rfc3339_nano",
    "human_duration",
    "parse_go_duration",
    "parse_rfc3339",
    "parse_time_arg",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"([Zz]|[+-]\d{2}:?\d{2})?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _fields(text: str) -> tuple[int, int, int, int, int, int, int, str | None] | None:
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute, sec = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
    frac = (m[7] or "")[:9].ljust(9, "0")
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and sec < 61):
        return None
    return year, month, day, hour, minute, sec, int(frac), m[8]


def _offset_seconds(zone: str) -> int:
    if zone in ("Z", "z"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def parse_rfc3339(text: str | None) -> int | None:
    """Nanoseconds since the epoch for an RFC 3339 time; None for Docker's zero
    time (``0001-01-01T00:00:00Z``), an empty string or anything unreadable.
    A time without a zone is taken as UTC."""
    if not text:
        return None
    got = _fields(text)
    if got is None:
        return None
    year, month, day, hour, minute, sec, frac, zone = got
    if year <= 1:
        return None
    secs = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
    if zone:
        secs -= _offset_seconds(zone)
    return secs * 1_000_000_000 + frac


def format_rfc3339_nano(ns: int) -> str:
    """``2006-01-02T15:04:05.000000000Z`` (UTC, always nine digits)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's d.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{s // 3600 // 24 // 365} years"


def parse_go_duration(text: str) -> int | None:
    """A Go ``time.ParseDuration`` string in nanoseconds, or None if it is not one."""
    body = text
    sign = 1
    if body and body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        return None
    total = 0.0
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None
        total += float(m[1]) * _UNIT_NS[m[2]]
        pos = m.end()
    return sign * int(total)


def parse_time_arg(value: str, now_ns: int | None = None) -> int:
    """Docker's ``--since``/``--until`` value as nanoseconds since the epoch."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if value != "0":
        duration = parse_go_duration(value)
        if duration is not None:
            return now_ns - duration
    got = _fields(value) if "-" in value else None
    if got is not None:
        year, month, day, hour, minute, sec, frac, zone = got
        parts = (year, month, day, hour, minute, sec, 0, 0, -1)
        if zone:
            secs = calendar.timegm(parts) - _offset_seconds(zone)
        else:
            secs = int(time.mktime(parts))  # local time, as Docker
        return secs * 1_000_000_000 + frac
    if "-" not in value:
        m = re.fullmatch(r"(\d+)(?:\.(\d{1,9}))?", value)
        if m is not None:
            return int(m[1]) * 1_000_000_000 + int((m[2] or "").ljust(9, "0"))
    raise UserError(f'failed to parse value as time or duration: "{value}"')
