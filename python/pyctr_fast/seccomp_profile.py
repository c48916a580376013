"""``--security-opt``: Docker's seccomp profiles turned into the spec's ``linux.seccomp``.

Docker's profile format (moby's ``profiles/seccomp``): ``defaultAction``,
``defaultErrnoRet``, ``architectures`` or ``archMap`` (the native
architecture's entry gives its sub-architectures), ``flags``, and
``syscalls`` entries with ``names`` (or the older single ``name``),
``action``, ``errnoRet``, ``args`` and ``includes``/``excludes`` (``arches``
by Go name, ``caps``, ``minKernel``): an entry applies only when the
container matches them.  The result is validated here, so a bad profile is a
one-line error before anything is created.

Other options: ``no-new-privileges[=true|false]`` (``process.noNewPrivileges``),
``seccomp=unconfined``, ``apparmor=unconfined`` and ``label=disable``
(nothing to turn off here: the engine applies no AppArmor or SELinux label).
As in Docker, ``--privileged`` runs without a filter.
"""

from __future__ import annotations

import os

from . import _native
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["SecurityOptions", "parse_security_opts", "profile_to_oci", "security_spec"]

# The core's names (libseccomp's), so both layers accept the same profiles.
ACTIONS = frozenset(_native.SECCOMP_ACTIONS)
OPERATORS = frozenset(_native.SECCOMP_OPERATORS)
FLAGS = frozenset(_native.SECCOMP_FLAGS)
# libseccomp's names, as the core accepts them (only the native one gets rules).
ARCHITECTURES = frozenset(_native.SECCOMP_ARCHITECTURES)
# os.uname().machine -> (libseccomp's name, Go's name as profiles' "arches" use it).
_ARCHES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
}


class SecurityOptions:
    """What ``--security-opt`` values ask for: ``seccomp`` is the profile
    (``None``: no filter), ``no_new_privileges`` Docker's flag."""

    __slots__ = ("no_new_privileges", "seccomp", "seccomp_path")

    def __init__(self) -> None:
        self.seccomp: dict[str, Any] | None = None
        self.seccomp_path = ""
        self.no_new_privileges = False


def security_spec(
    values: Iterable[str], *, capabilities: Iterable[str], privileged: bool
) -> tuple[dict[str, Any] | None, bool]:
    """``--security-opt`` ``values`` as the spec's ``linux.seccomp`` (None:
    none; always None for a ``--privileged`` container, as in Docker) and
    ``process.noNewPrivileges``."""
    opts = parse_security_opts(values)
    if opts.seccomp is None or privileged:
        return None, opts.no_new_privileges
    oci = profile_to_oci(opts.seccomp, capabilities=capabilities, source=opts.seccomp_path)
    return oci, opts.no_new_privileges


def _bool(opt: str, text: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise UserError(f'invalid --security-opt {opt!r}: "{text}" is not a boolean')


def parse_security_opts(values: Iterable[str]) -> SecurityOptions:
    """Parse ``--security-opt`` values (``KEY=VALUE``; Docker's older
    ``KEY:VALUE`` too), reading a seccomp profile file."""
    out = SecurityOptions()
    for opt in values:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise UserError(f"invalid --security-opt: {opt!r}")
        if key == "no-new-privileges":
            out.no_new_privileges = _bool(opt, value)
        elif key == "seccomp":
            out.seccomp = None if value == "unconfined" else _load(value)
            out.seccomp_path = value
        elif (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
            continue
        elif key in ("apparmor", "label", "systempaths", "writable-cgroups"):
            raise UserError(f"--security-opt {opt}: {key} options are not supported")
        else:
            raise UserError(f"invalid --security-opt: {opt!r}")
    return out


def _load(path: str) -> dict[str, Any]:
    from . import compact_json

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"opening seccomp profile ({path}) failed: {e.strerror}") from None
    try:
        profile = compact_json.loads(text)
    except ValueError as e:
        raise UserError(f"decoding seccomp profile ({path}) failed: {e}") from None
    if not isinstance(profile, dict):
        raise UserError(f"decoding seccomp profile ({path}) failed: not a JSON object")
    # Validate now (the capabilities are only known at build time, but a
    # malformed profile is malformed whatever they are).
    profile_to_oci(profile, capabilities=(), source=path)
    return profile


def _kernel_at_least(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        nums = []
        for p in text.split("-")[0].split(".")[:3]:
            digits = ""
            for ch in p:
                if not ch.isdigit():
                    break
                digits += ch
            nums.append(int(digits or 0))
        return tuple(nums)

    return parts(os.uname().release) >= parts(version)


def _matches(cond: object, where: str, arch: str, caps: frozenset[str], inverse: bool) -> bool:
    """Whether the container matches ``includes`` (all of it; ``inverse``:
    ``excludes``, any of it)."""
    if cond is None:
        return not inverse
    if not isinstance(cond, dict):
        raise ValueError(f"{where}: must be an object")
    arches = cond.get("arches") or []
    want_caps = cond.get("caps") or []
    if not isinstance(arches, list) or not isinstance(want_caps, list):
        raise ValueError(f"{where}: arches and caps must be lists")
    if inverse:
        return arch in arches or any(c in caps for c in want_caps)
    min_kernel = cond.get("minKernel")
    if min_kernel is not None and not isinstance(min_kernel, str):
        raise ValueError(f"{where}.minKernel: must be a string")
    return (
        (not arches or arch in arches)
        and all(c in caps for c in want_caps)
        and (not min_kernel or _kernel_at_least(min_kernel))
    )


def _uint(value: object, where: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{where}: {value!r} is not an unsigned {bits}-bit integer")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: must be a list of strings")
    return list(value)


def _action(value: object, where: str) -> str:
    if value == "SCMP_ACT_NOTIFY":
        raise ValueError(f"{where}: SCMP_ACT_NOTIFY is not supported")
    if value not in ACTIONS:
        raise ValueError(f"{where}: unknown action {value!r}")
    return str(value)


def _syscall(i: int, call: object, arch: str, caps: frozenset[str]) -> dict[str, Any] | None:
    where = f"syscalls[{i}]"
    if not isinstance(call, dict):
        raise ValueError(f"{where}: must be an object")
    name, names = call.get("name"), call.get("names")
    if name and names:
        raise ValueError(f"{where}: use either 'name' or 'names'")
    names = [name] if isinstance(name, str) and name else _strings(names or [], f"{where}.names")
    if not names:
        raise ValueError(f"{where}.names: must not be empty")
    out: dict[str, Any] = {"names": names, "action": _action(call.get("action"), f"{where}.action")}
    if call.get("errnoRet") is not None:
        out["errnoRet"] = _uint(call["errnoRet"], f"{where}.errnoRet", 16)
    args = []
    for j, arg in enumerate(call.get("args") or []):
        at = f"{where}.args[{j}]"
        if not isinstance(arg, dict):
            raise ValueError(f"{at}: must be an object")
        op = arg.get("op")
        if op not in OPERATORS:
            raise ValueError(f"{at}.op: unknown operator {op!r}")
        index = arg.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            raise ValueError(f"{at}.index: {index!r} is not an argument index (0-5)")
        entry = {"index": index, "value": _uint(arg.get("value", 0), f"{at}.value", 64)}
        entry["valueTwo"] = _uint(arg.get("valueTwo", 0), f"{at}.valueTwo", 64)
        entry["op"] = op
        args.append(entry)
    if args:
        out["args"] = args
    included = _matches(call.get("includes"), f"{where}.includes", arch, caps, False)
    excluded = _matches(call.get("excludes"), f"{where}.excludes", arch, caps, True)
    return out if included and not excluded else None


def profile_to_oci(
    profile: dict[str, Any], *, capabilities: Iterable[str], source: str = "profile"
) -> dict[str, Any]:
    """``linux.seccomp`` for a container with ``capabilities`` (its
    bounding set, ``CAP_*`` names) from Docker's ``profile``."""
    machine = os.uname().machine
    if machine not in _ARCHES:
        raise UserError(f"seccomp profiles are not supported on {machine}")
    native, goarch = _ARCHES[machine]
    caps = frozenset(capabilities)
    try:
        out: dict[str, Any] = {
            "defaultAction": _action(profile.get("defaultAction"), "defaultAction")
        }
        if profile.get("defaultErrnoRet") is not None:
            out["defaultErrnoRet"] = _uint(profile["defaultErrnoRet"], "defaultErrnoRet", 16)
        arch_list, arch_map = profile.get("architectures"), profile.get("archMap")
        if arch_list and arch_map:
            raise ValueError("use either 'architectures' or 'archMap', not both")
        arches = _strings(arch_list or [], "architectures")
        for k, entry in enumerate(arch_map or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("architecture"), str):
                raise ValueError(f"archMap[{k}].architecture: must be a string")
            if entry["architecture"] == native:
                subs = _strings(
                    entry.get("subArchitectures") or [], f"archMap[{k}].subArchitectures"
                )
                arches = [native, *subs]
        for k, name in enumerate(arches):
            if name not in ARCHITECTURES:
                raise ValueError(f"architectures[{k}]: unknown architecture {name!r}")
        if arches:
            out["architectures"] = arches
        flags = _strings(profile.get("flags") or [], "flags")
        for k, flag in enumerate(flags):
            if flag not in FLAGS:
                raise ValueError(f"flags[{k}]: unknown flag {flag!r}")
        if flags:
            out["flags"] = flags
        if profile.get("listenerPath"):
            raise ValueError("listenerPath: seccomp notification listeners are not supported")
        calls = profile.get("syscalls") or []
        if not isinstance(calls, list):
            raise ValueError("syscalls: must be a list")
        syscalls = [s for i, c in enumerate(calls) if (s := _syscall(i, c, goarch, caps))]
    except ValueError as e:
        raise UserError(f"seccomp profile {source}: {e}") from None
    out["syscalls"] = syscalls
    return out
