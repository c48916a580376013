"""Docker's resource flags and their values: the request ``run``/``create``
and ``update`` send (see :mod:`pyctr_fast.resources`).

The request is a dict with ``HostConfig``'s names (Docker's ``Resources``):
zero values (0, "", [], None) mean "not given".  Values are parsed the way
the docker CLI parses them (pflag, go-units, docker/cli's opts), and malformed
ones are refused with its messages: ``invalid argument "x" for "-m, --memory"
flag: invalid size: 'x'``.
"""

from __future__ import annotations

from .errors import UserError
from .flags import BOOL, LIST, VALUE, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .flags import ParsedFlags

__all__ = [
    "HOST_CONFIG_DEFAULTS",
    "MIN_MEMORY",
    "RESOURCE_FLAGS",
    "THROTTLES",
    "UPDATE_FLAGS",
    "defaults",
    "parse_cpus",
    "parse_throttle",
    "ram_in_bytes",
    "request_from_flags",
]

MIN_MEMORY = 6291456
_NANO = 1_000_000_000

#: HostConfig's throttle lists ({"Path", "Rate"} each).
THROTTLES = (
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
)

#: The resource fields of ``HostConfig`` and how Docker shows them when unset.
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Memory": 0,
    "MemorySwap": 0,
    "MemoryReservation": 0,
    "MemorySwappiness": None,
    "OomKillDisable": False,
    "NanoCpus": 0,
    "CpuShares": 0,
    "CpuPeriod": 0,
    "CpuQuota": 0,
    "CpusetCpus": "",
    "CpusetMems": "",
    "PidsLimit": None,
    "BlkioWeight": 0,
    **{key: [] for key in THROTTLES},
}

_BLKIO = "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)"
_PERIOD_HELP = "Limit CPU CFS (Completely Fair Scheduler) period"
_QUOTA_HELP = "Limit CPU CFS (Completely Fair Scheduler) quota"


def _flags(swap_help: str) -> tuple[Flag, ...]:
    return (
        Flag("blkio-weight", VALUE, _BLKIO, metavar="uint16"),
        Flag("cpu-period", VALUE, _PERIOD_HELP, metavar="int"),
        Flag("cpu-quota", VALUE, _QUOTA_HELP, metavar="int"),
        Flag("cpu-shares", VALUE, "CPU shares (relative weight)", short="c", metavar="int"),
        Flag("cpus", VALUE, "Number of CPUs", metavar="decimal"),
        Flag("cpuset-cpus", VALUE, "CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", VALUE, "MEMs in which to allow execution (0-3, 0,1)"),
        Flag("device-read-bps", LIST, "Limit read rate (bytes per second) from a device"),
        Flag("device-read-iops", LIST, "Limit read rate (IO per second) from a device"),
        Flag("device-write-bps", LIST, "Limit write rate (bytes per second) to a device"),
        Flag("device-write-iops", LIST, "Limit write rate (IO per second) to a device"),
        Flag("memory", VALUE, "Memory limit", short="m", metavar="bytes"),
        Flag("memory-reservation", VALUE, "Memory soft limit", metavar="bytes"),
        Flag("memory-swap", VALUE, swap_help, metavar="bytes"),
        Flag(
            "pids-limit", VALUE, "Tune container pids limit (set -1 for unlimited)", metavar="int"
        ),
    )


#: ``update``'s resource flags (``--restart`` and ``--help`` are update_cli's).
UPDATE_FLAGS: tuple[Flag, ...] = _flags(
    "Swap limit equal to memory plus swap: -1 to enable unlimited swap"
)
#: ``run``/``create``'s resource flags.
RESOURCE_FLAGS: tuple[Flag, ...] = tuple(
    sorted(
        (
            *_flags("Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
            Flag(
                "memory-swappiness",
                VALUE,
                "Tune container memory swappiness (0 to 100) (default -1)",
                metavar="int",
            ),
            Flag("oom-kill-disable", BOOL, "Disable OOM Killer"),
        ),
        key=lambda f: f.long,
    )
)
_BY_NAME = {f.long: f for f in RESOURCE_FLAGS}


def defaults() -> dict[str, Any]:
    """A fresh copy of :data:`HOST_CONFIG_DEFAULTS`."""
    out = dict(HOST_CONFIG_DEFAULTS)
    for key in THROTTLES:
        out[key] = []
    return out


# --------------------------------------------------------------------------- flag values


def _shown(dest: str) -> str:
    flag = _BY_NAME[dest]
    return f"-{flag.short}, --{flag.long}" if flag.short else f"--{flag.long}"


def _bad_flag(dest: str, text: str, why: str) -> NoReturn:
    raise UserError(f'invalid argument "{text}" for "{_shown(dest)}" flag: {why}')


def ram_in_bytes(text: str) -> int:
    """go-units' ``RAMInBytes``: ``32m``, ``1.5g``, ``512``, ``64 MiB`` ->
    bytes (units b, k, m, g, t, p; 1024-based; case-insensitive).  Raises
    ValueError with go-units' message.  (Parsed by hand: ``re`` costs the
    CLI milliseconds to import.)"""
    invalid = ValueError(f"invalid size: '{text}'")
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] == "."):
        end += 1
    number, suffix = text[:end], text[end:].lower()
    if not number or not number[0].isdigit() or not number.isascii() or ".." in number:
        raise invalid
    if number.endswith("."):
        raise invalid
    suffix = suffix[1:] if suffix.startswith(" ") else suffix
    unit = suffix[:1] if suffix[:1] in ("k", "m", "g", "t", "p") else ""
    rest = suffix[len(unit) :]
    if rest not in ("", "b", "i", "ib"):
        raise invalid
    if number.count(".") > 1:
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    scale = 1024 ** (" kmgtp".index(unit)) if unit else 1
    return int(float(number) * scale)


def _go_int(text: str, func: str, low: int, high: int) -> int:
    """Go's ``strconv.ParseInt/ParseUint(text, 0, bits)`` (0x, 0o, 0b and
    leading-0 octal prefixes, ``_`` separators), with its messages."""
    syntax = ValueError(f'{func}: parsing "{text}": invalid syntax')
    signed = low < 0
    body = text[1:] if signed and text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not all(c.isalnum() or c == "_" for c in body):
        raise syntax
    try:
        if len(body) > 1 and body[0] == "0" and body[1] in "01234567_":
            value = int(body, 8)  # Go's "017" is octal
        else:
            value = int(body, 0)
    except ValueError:
        raise syntax from None
    if text[:1] == "-":
        value = -value
    if not low <= value <= high:
        raise ValueError(f'{func}: parsing "{text}": value out of range')
    return value


def _int64(parsed: ParsedFlags, dest: str, default: int = 0) -> int:
    text = parsed.value(dest)
    if text is None:
        return default
    try:
        return _go_int(text, "strconv.ParseInt", -(2**63), 2**63 - 1)
    except ValueError as err:
        _bad_flag(dest, text, str(err))


def _uint16(parsed: ParsedFlags, dest: str) -> int:
    text = parsed.value(dest)
    if text is None:
        return 0
    try:
        return _go_int(text, "strconv.ParseUint", 0, 65535)
    except ValueError as err:
        _bad_flag(dest, text, str(err))


def _bytes(parsed: ParsedFlags, dest: str, *, swap: bool = False) -> int:
    text = parsed.value(dest)
    if text is None:
        return 0
    if swap and text == "-1":
        return -1
    try:
        return ram_in_bytes(text)
    except ValueError as err:
        _bad_flag(dest, text, str(err))


def _rational(text: str) -> tuple[int, int]:
    """Go's ``big.Rat.SetString``: ``a/b`` or a decimal with an optional
    exponent (``1.5``, ``-2``, ``25e-2``), as (numerator, denominator).
    Exact, without the ``fractions`` module (15 ms to import)."""
    if "/" in text:
        a, b = text.split("/", 1)
        num, den = int(a), int(b)  # ValueError for anything else
        if den == 0:
            raise ZeroDivisionError
        return (-num, -den) if den < 0 else (num, den)
    mantissa, _, exponent = text.lower().partition("e")
    exp = int(exponent) if exponent else 0
    sign = -1 if mantissa.startswith("-") else 1
    mantissa = mantissa.lstrip("+-") if mantissa[:1] in ("+", "-") else mantissa
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError
    num, den = sign * int(digits), 10 ** len(frac)
    return (num * 10**exp, den) if exp >= 0 else (num, den * 10**-exp)


def parse_cpus(text: str) -> int:
    """docker/cli's ``ParseCPUs``: a decimal or ratio (``1.5``, ``3/2``) as
    nano-CPUs.  Raises ValueError with Docker's message."""
    try:
        if not text or any(c.isspace() or c == "_" for c in text):
            raise ValueError
        num, den = _rational(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    nano, rest = divmod(num * _NANO, den)
    if rest:
        raise ValueError("value is too precise")
    return nano


def _nano_cpus(parsed: ParsedFlags) -> int:
    text = parsed.value("cpus")
    if text is None:
        return 0
    try:
        return parse_cpus(text)
    except ValueError as err:
        _bad_flag("cpus", text, str(err))


_BPS_FORMAT = (
    "The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. "
    "Unit is optional and can be kb, mb, or gb"
)
_IOPS_FORMAT = "The correct format is <device-path>:<number>. Number must be a positive integer"


def parse_throttle(text: str, iops: bool) -> dict[str, Any]:
    """docker/cli's ``ValidateThrottleBpsDevice``/``...IOpsDevice``:
    ``/dev/sda:1mb`` -> ``{"Path": "/dev/sda", "Rate": 1048576}``."""
    path, sep, rate_text = text.partition(":")
    if not sep or not path:
        raise ValueError(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise ValueError(f"bad format for device path: {text}")
    try:
        if iops:  # strconv.ParseUint(v, 10, 64)
            ok = rate_text.isascii() and rate_text.isdigit() and int(rate_text) < 2**64
            rate = int(rate_text) if ok else -1
        else:
            rate = ram_in_bytes(rate_text)
    except ValueError:
        rate = -1
    if rate < 0:
        raise ValueError(
            f"invalid rate for device: {text}. {_IOPS_FORMAT if iops else _BPS_FORMAT}"
        )
    return {"Path": path, "Rate": rate}


def _throttles(parsed: ParsedFlags, dest: str) -> list[dict[str, Any]]:
    out = []
    for text in parsed.values(dest):
        try:
            out.append(parse_throttle(text, iops=dest.endswith("iops")))
        except ValueError as err:
            _bad_flag(dest, text, str(err))
    return out


def request_from_flags(parsed: ParsedFlags, update: bool) -> dict[str, Any]:
    """The CLI's request (Docker's ``Resources``; zero values: not given)."""
    req = defaults()
    req["OomKillDisable"] = None
    req["BlkioWeight"] = _uint16(parsed, "blkio-weight")
    req["CpuPeriod"] = _int64(parsed, "cpu-period")
    req["CpuQuota"] = _int64(parsed, "cpu-quota")
    req["CpuShares"] = _int64(parsed, "cpu-shares")
    req["NanoCpus"] = _nano_cpus(parsed)
    req["CpusetCpus"] = parsed.value("cpuset-cpus") or ""
    req["CpusetMems"] = parsed.value("cpuset-mems") or ""
    for dest, key in (
        ("device-read-bps", "BlkioDeviceReadBps"),
        ("device-write-bps", "BlkioDeviceWriteBps"),
        ("device-read-iops", "BlkioDeviceReadIOps"),
        ("device-write-iops", "BlkioDeviceWriteIOps"),
    ):
        req[key] = _throttles(parsed, dest)
    req["Memory"] = _bytes(parsed, "memory")
    req["MemoryReservation"] = _bytes(parsed, "memory-reservation")
    req["MemorySwap"] = _bytes(parsed, "memory-swap", swap=True)
    pids = _int64(parsed, "pids-limit")
    if update:
        # update sends the limit only when non-zero; the API makes <= 0 "unlimited" (0).
        req["PidsLimit"] = None if pids == 0 else max(pids, 0)
    else:
        req["PidsLimit"] = pids if pids > 0 else None  # the API: <= 0 is no limit
        swappiness = _int64(parsed, "memory-swappiness", -1)
        if swappiness != -1 and not 0 <= swappiness <= 100:
            raise UserError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
        req["MemorySwappiness"] = swappiness
        if parsed.given("oom-kill-disable"):
            req["OomKillDisable"] = parsed.flag("oom-kill-disable")
    return req
