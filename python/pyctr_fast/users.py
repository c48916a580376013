"""Resolving ``--user USER[:GROUP]`` against the rootfs's /etc/passwd and /etc/group.

The rules are runc's ``GetExecUser``, which Docker uses:

* no user means uid 0 (looked up by number, so root's entry applies);
* a numeric user is always a uid: its passwd entry is used if there is one,
  otherwise the uid is taken as is with gid 0 and home ``/``;
* a name must have a passwd entry, otherwise "unable to find user X: no
  matching entries in passwd file";
* a group, if given, replaces the primary gid (name or number, same rules, no
  supplementary groups then); without one, the supplementary groups are the
  /etc/group entries that list the user's name.

The files are read only through :mod:`pyctr_fast.rootfs_files`.
"""

from __future__ import annotations

from . import rootfs_files
from .errors import UserError

__all__ = ["ExecUser", "lookup_user", "parse_group", "parse_passwd", "resolve_user"]

_MAX_ID = 2**31 - 1


class PasswdEntry:
    __slots__ = ("gid", "home", "name", "uid")

    def __init__(self, name: str, uid: int, gid: int, home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home


class GroupEntry:
    __slots__ = ("gid", "members", "name")

    def __init__(self, name: str, gid: int, members: tuple[str, ...]) -> None:
        self.name = name
        self.gid = gid
        self.members = members


class ExecUser:
    """Who the container process runs as."""

    __slots__ = ("additional_gids", "gid", "home", "uid")

    def __init__(self, uid: int, gid: int, additional_gids: tuple[int, ...], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.home = home

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecUser):
            return NotImplemented
        return (self.uid, self.gid, self.additional_gids, self.home) == (
            other.uid,
            other.gid,
            other.additional_gids,
            other.home,
        )

    def __hash__(self) -> int:
        return hash((self.uid, self.gid, self.additional_gids, self.home))

    def __repr__(self) -> str:
        return (
            f"ExecUser(uid={self.uid}, gid={self.gid}, "
            f"additional_gids={self.additional_gids!r}, home={self.home!r})"
        )


def _parse_id(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def _lines(text: str) -> list[list[str]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of an /etc/passwd text (``name:x:uid:gid:gecos:home:shell``).

    Lines whose uid or gid is not a number (NIS ``+``/``-`` lines, garbage) are
    skipped rather than read as 0.
    """
    entries = []
    for fields in _lines(text):
        if len(fields) < 4:
            continue
        uid, gid = _parse_id(fields[2]), _parse_id(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 and fields[5] else "/"
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of an /etc/group text (``name:x:gid:user1,user2``)."""
    entries = []
    for fields in _lines(text):
        if len(fields) < 3:
            continue
        gid = _parse_id(fields[2])
        if gid is None:
            continue
        listed = fields[3].split(",") if len(fields) > 3 else []
        members = tuple(m.strip() for m in listed if m.strip())
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _check_range(value: int) -> int:
    if value > _MAX_ID:
        raise UserError(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


def resolve_user(spec: str | None, passwd: str | None, group: str | None) -> ExecUser:
    """Resolve ``USER[:GROUP]`` (None or "" for the default) given the file texts
    (None when the file does not exist)."""
    user_arg, _, group_arg = (spec or "").partition(":")
    # runc reads only the first two ':' fields.
    group_arg = group_arg.split(":", 1)[0]
    user_arg = user_arg.strip()
    group_arg = group_arg.strip()
    if not user_arg:
        user_arg = "0"

    uid_arg = _parse_id(user_arg)
    users = parse_passwd(passwd) if passwd is not None else []
    if uid_arg is not None:
        match = next((u for u in users if u.uid == uid_arg), None)
    else:
        match = next((u for u in users if u.name == user_arg), None)

    name = ""
    if match is not None:
        uid, gid, home, name = match.uid, match.gid, match.home, match.name
    elif uid_arg is None:
        raise UserError(f"unable to find user {user_arg}: no matching entries in passwd file")
    else:
        uid, gid, home = _check_range(uid_arg), 0, "/"

    additional: tuple[int, ...] = ()
    if group_arg or name:
        groups = parse_group(group) if group is not None else []
        if group_arg:
            gid_arg = _parse_id(group_arg)
            if gid_arg is not None:
                found = next((g for g in groups if g.gid == gid_arg), None)
            else:
                found = next((g for g in groups if g.name == group_arg), None)
            if found is not None:
                gid = found.gid
            elif gid_arg is not None:
                gid = _check_range(gid_arg)
            else:
                raise UserError(
                    f"unable to find group {group_arg}: no matching entries in group file"
                )
        else:
            additional = tuple(g.gid for g in groups if name in g.members)
    return ExecUser(uid, gid, additional, home)


def lookup_user(rootfs: str, spec: str | None) -> ExecUser:
    """:func:`resolve_user` with the rootfs's /etc/passwd and /etc/group."""
    passwd = rootfs_files.read_text_in_root(rootfs, "/etc/passwd")
    # /etc/group only matters for an explicit group or a user found in passwd.
    if passwd is not None or (spec is not None and ":" in spec):
        group = rootfs_files.read_text_in_root(rootfs, "/etc/group")
    else:
        group = None
    return resolve_user(spec, passwd, group)
