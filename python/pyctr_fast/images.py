"""The image commands: ``pull``, ``images``, ``image inspect``, ``rmi``,
``image prune``, ``tag``, ``load``, ``save``, ``import``, ``login``, ``logout``.

Each ``*_cli(args, root)`` parses its flags and returns the exit status;
:func:`resolve_image` is how every command (and ``run``) finds an image from a
name, a ``name@digest``, a full id or an id prefix.
"""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, VALUE, Flag, format_flags, parse_flags
from .flags import write_out as out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .reference import Reference
    from .store import ImageRecord, Store

__all__ = [
    "COMMANDS",
    "format_created",
    "images_cli",
    "import_cli",
    "inspect_cli",
    "load_cli",
    "login_cli",
    "logout_cli",
    "open_store",
    "prune_cli",
    "pull_cli",
    "remove_images",
    "resolve_image",
    "rmi_cli",
    "save_cli",
    "tag_cli",
]

PROG = "pyctr-fast"
_HELP = Flag("help", BOOL, "Print usage")


def open_store(root: str | None) -> Store:
    from .container import resolve_root
    from .store import Store

    return Store(resolve_root(root))


def parse_args(
    args: Sequence[str], flags: Sequence[Flag], usage: str, nargs: tuple[int, int | None]
) -> tuple[Any, list[str]] | None:
    parsed, rest = parse_flags(args, (*flags, _HELP))
    if parsed.flag("help"):
        out(f"Usage:  {PROG} {usage}\n\nOptions:\n{format_flags((*flags, _HELP))}\n")
        return None
    low, high = nargs
    if len(rest) < low or (high is not None and len(rest) > high):
        command = usage.split(" [")[0].split(" ")[0]
        want = f"exactly {low}" if low == high else f"at least {low}"
        if high is not None and low != high:
            want = f"between {low} and {high}"
        raise UserError(
            f'"{command}" requires {want} argument{"s" if (high or low) != 1 else ""}.\n'
            f"See '{PROG} {command} --help'."
        )
    return parsed, rest


# --------------------------------------------------------------------------- lookup


def resolve_image(store: Store, text: str) -> ImageRecord:
    """The image ``text`` names: a tag, ``name@digest``, ``sha256:<id>`` or an id prefix."""
    from .reference import parse
    from .store import digest_hex

    refs = store.refs()
    try:
        ref = parse(text)
    except UserError:
        ref = None
    if ref is not None:
        if ref.digest is not None:
            want = f"{ref.repository}@{ref.digest}"
            for record in store.images():
                if want in record.repo_digests or ref.digest == record.manifest_digest:
                    return record
        elif ref.name in refs and store.has_image(refs[ref.name]):
            return store.get_image(refs[ref.name])
    hexpart = text[7:] if text.startswith("sha256:") else text
    if hexpart and len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart):
        if len(hexpart) == 64:
            full = "sha256:" + digest_hex("sha256:" + hexpart)
            if store.has_image(full):
                return store.get_image(full)
        else:
            found = [r for r in store.images() if r.id[7:].startswith(hexpart)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise UserError(f"multiple IDs found with provided prefix: {text}")
    raise UserError(f"No such image: {text}")


# --------------------------------------------------------------------------- formatting


def format_created(created: str, now: float | None = None) -> str:
    """Docker's "2 days ago" for an RFC 3339 time ("N/A" if unknown)."""
    import time

    seconds = _parse_time(created)
    if seconds is None:
        return "N/A"
    delta = (time.time() if now is None else now) - seconds
    if delta < 1:
        return "Less than a second ago"
    for limit, unit, div in (
        (60, "second", 1),
        (3600, "minute", 60),
        (86400 * 2, "hour", 3600),
        (86400 * 14, "day", 86400),
        (86400 * 60, "week", 86400 * 7),
        (86400 * 365 * 2, "month", 86400 * 30),
    ):
        if delta < limit:
            n = int(delta // div)
            if unit == "hour" and n == 1:
                return "About an hour ago"
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{int(delta // (86400 * 365))} years ago"


def _parse_time(text: str) -> float | None:
    import calendar
    import time

    if not text or len(text) < 19:
        return None
    try:
        base = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return float(calendar.timegm(base))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- commands


def pull_cli(args: Sequence[str], root: str | None) -> int:
    from .pull import DEFAULT_WORKERS, pull_image

    got = parse_args(
        args,
        (
            Flag("platform", VALUE, "Set platform if server is multi-platform capable"),
            Flag("max-concurrent-downloads", VALUE, "Parallel layer downloads (default 3)"),
            Flag("quiet", BOOL, "Suppress verbose output", short="q"),
        ),
        "pull [OPTIONS] NAME[:TAG|@DIGEST]",
        (1, 1),
    )
    if got is None:
        return 0
    parsed, rest = got
    workers = _int_flag(parsed.value("max-concurrent-downloads"), DEFAULT_WORKERS)
    store = open_store(root)
    if parsed.flag("quiet"):
        import io

        pull_image(
            store, rest[0], platform=parsed.value("platform"), workers=workers, out=io.StringIO()
        )
    else:
        pull_image(store, rest[0], platform=parsed.value("platform"), workers=workers)
    from .reference import parse

    out(parse(rest[0]).name + "\n")
    return 0


def _int_flag(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"invalid value {value!r}: a positive number is needed")
    return int(value)


def images_cli(args: Sequence[str], root: str | None) -> int:
    got = parse_args(
        args,
        (
            Flag("all", BOOL, "Show all images (default hides intermediate images)", short="a"),
            Flag("quiet", BOOL, "Only show image IDs", short="q"),
            Flag("no-trunc", BOOL, "Don't truncate output"),
            Flag("digests", BOOL, "Show digests"),
        ),
        "images [OPTIONS] [REPOSITORY[:TAG]]",
        (0, 1),
    )
    if got is None:
        return 0
    parsed, rest = got
    from .pull import human_size
    from .reference import parse

    store = open_store(root)
    records = sorted(store.images(), key=lambda r: r.created, reverse=True)
    want = parse(rest[0], default_tag=None) if rest else None
    rows: list[list[str]] = []
    seen: set[str] = set()
    for record in records:
        short = record.id if parsed.flag("no-trunc") else record.id[7:19]
        names: list[Reference | None] = [parse(t) for t in record.repo_tags] or [None]
        for ref in names:
            if want is not None and (
                ref is None
                or ref.repository != want.repository
                or (want.tag is not None and ref.tag != want.tag)
            ):
                continue
            if parsed.flag("quiet"):
                if short not in seen:
                    seen.add(short)
                    rows.append([short])
                continue
            repo = ref.familiar_repository if ref else "<none>"
            tag = (ref.tag or "<none>") if ref else "<none>"
            row = [repo, tag]
            if parsed.flag("digests"):
                digest = next(
                    (
                        d.partition("@")[2]
                        for d in record.repo_digests
                        if ref is not None and d.partition("@")[0] == ref.repository
                    ),
                    "<none>",
                )
                row.append(digest)
            row += [short, format_created(record.created), human_size(record.size)]
            rows.append(row)
    if parsed.flag("quiet"):
        out("".join(r[0] + "\n" for r in rows))
        return 0
    header = [
        "REPOSITORY",
        "TAG",
        *(["DIGEST"] if parsed.flag("digests") else []),
        "IMAGE ID",
        "CREATED",
        "SIZE",
    ]
    out(_table([header, *rows]))
    return 0


def inspect_data(store: Store, record: ImageRecord) -> dict[str, Any]:
    """``docker image inspect``'s object for one image."""
    from .reference import parse

    config = store.image_config(record.id)
    return {
        "Id": record.id,
        "RepoTags": [parse(t).familiar for t in record.repo_tags],
        "RepoDigests": [_familiar_digest(d) for d in record.repo_digests],
        "Parent": "",
        "Comment": config.get("comment", ""),
        "Created": config.get("created", ""),
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Os": config.get("os", ""),
        "Size": record.size,
        "RootFS": {"Type": "layers", "Layers": list(record.diff_ids)},
        "Metadata": {"LastTagTime": ""},
    }


def _familiar_digest(text: str) -> str:
    from .reference import parse

    repo, _, digest = text.partition("@")
    return parse(repo).familiar_repository + "@" + digest


def inspect_cli(args: Sequence[str], root: str | None) -> int:
    import json

    got = parse_args(
        args,
        (Flag("format", VALUE, "(not supported yet)", short="f"),),
        "image inspect [OPTIONS] IMAGE [IMAGE...]",
        (1, None),
    )
    if got is None:
        return 0
    parsed, rest = got
    if parsed.value("format") is not None:
        raise UserError("image inspect --format is not supported yet")
    store = open_store(root)
    found = []
    missing = []
    for name in rest:
        try:
            found.append(inspect_data(store, resolve_image(store, name)))
        except UserError:
            missing.append(name)
    out(json.dumps(found, indent=4) + "\n")
    if missing:
        sys.stderr.write("".join(f"Error: No such image: {m}\n" for m in missing))
        return 1
    return 0


def remove_images(store: Store, names: Sequence[str], force: bool = False) -> list[str]:
    """``rmi``: the lines Docker prints (``Untagged: ...``, ``Deleted: ...``)."""
    from .reference import parse

    lines: list[str] = []
    errors: list[str] = []
    with store.exclusive():
        in_use = store.containers_using()
        for name in names:
            try:
                record = resolve_image(store, name)
            except UserError as err:
                errors.append(f"Error response from daemon: {err.message}")
                continue
            users = sorted(c for c, i in in_use.items() if i == record.id)
            try:
                ref = parse(name)
            except UserError:
                ref = None
            by_tag = ref is not None and ref.digest is None and ref.name in record.repo_tags
            if by_tag and ref is not None:
                untag = [ref.name]
            else:
                if len(record.repo_tags) > 1 and not force:
                    errors.append(
                        f"Error response from daemon: conflict: unable to delete {record.id[7:19]}"
                        " (must be forced) - image is referenced in multiple repositories"
                    )
                    continue
                untag = list(record.repo_tags)
            deleting = len(untag) >= len(record.repo_tags)
            if users and not force and deleting:
                what = f'repository reference "{name}"' if by_tag else record.id[7:19]
                errors.append(
                    f"Error response from daemon: conflict: unable to remove {what} (must force)"
                    f" - container {users[0][:12]} is using its referenced image "
                    f"{record.id[7:19]}"
                )
                continue
            with store.lock("repositories"):
                for tag in untag:
                    store.remove_tag(tag)
                    lines.append(f"Untagged: {parse(tag).familiar}")
                if deleting and not users:
                    for digest in record.repo_digests:
                        lines.append(f"Untagged: {_familiar_digest(digest)}")
                    store.remove_image_record(record.id)
                    lines.append(f"Deleted: {record.id}")
        removed, _ = store.collect_garbage()
        lines.extend(f"Deleted: {c}" for c in removed)
    if errors:
        raise _RmiError(lines, errors)
    return lines


class _RmiError(UserError):
    def __init__(self, lines: list[str], errors: list[str]) -> None:
        super().__init__("\n".join(errors), exit_code=1)
        self.lines = lines


def rmi_cli(args: Sequence[str], root: str | None) -> int:
    got = parse_args(
        args,
        (Flag("force", BOOL, "Force removal of the image", short="f"),),
        "rmi [OPTIONS] IMAGE [IMAGE...]",
        (1, None),
    )
    if got is None:
        return 0
    parsed, rest = got
    store = open_store(root)
    try:
        lines = remove_images(store, rest, parsed.flag("force"))
    except _RmiError as err:
        out("".join(line + "\n" for line in err.lines))
        sys.stderr.write(err.message + "\n")
        return 1
    out("".join(line + "\n" for line in lines))
    return 0


def prune_cli(args: Sequence[str], root: str | None) -> int:
    from .pull import human_size

    got = parse_args(
        args,
        (
            Flag("all", BOOL, "Remove all unused images, not just dangling ones", short="a"),
            Flag("force", BOOL, "Do not prompt for confirmation", short="f"),
        ),
        "image prune [OPTIONS]",
        (0, 0),
    )
    if got is None:
        return 0
    parsed, _ = got
    store = open_store(root)
    deleted: list[str] = []
    with store.exclusive():
        in_use = set(store.containers_using().values())
        for record in store.images():
            if record.id in in_use or (record.repo_tags and not parsed.flag("all")):
                continue
            with store.lock("repositories"):
                for tag in record.repo_tags:
                    store.remove_tag(tag)
                    deleted.append(f"untagged: {familiar_tag(tag)}")
                store.remove_image_record(record.id)
            deleted.append(f"deleted: {record.id}")
        removed, reclaimed = store.collect_garbage()
        deleted.extend(f"deleted: {c}" for c in removed)
    text = ""
    if deleted:
        text += "Deleted Images:\n" + "".join(d + "\n" for d in deleted) + "\n"
    out(text + f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0


def familiar_tag(tag: str) -> str:
    from .reference import parse

    return parse(tag).familiar


def tag_cli(args: Sequence[str], root: str | None) -> int:
    got = parse_args(args, (), "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", (2, 2))
    if got is None:
        return 0
    _, rest = got
    from .reference import parse

    target = parse(rest[1])
    if target.digest is not None:
        raise UserError("refusing to create a tag with a digest reference")
    store = open_store(root)
    with store.shared():
        record = resolve_image(store, rest[0])
        with store.lock("repositories"):
            store.set_tag(target.name, record.id)
    return 0


def image_cli(args: Sequence[str], root: str | None) -> int:
    """``image inspect|prune|ls|rm|pull|tag|load|save|import``."""
    sub = {
        "inspect": inspect_cli,
        "prune": prune_cli,
        "ls": images_cli,
        "list": images_cli,
        "rm": rmi_cli,
        "pull": pull_cli,
        "tag": tag_cli,
        "load": load_cli,
        "save": save_cli,
        "import": import_cli,
    }
    if not args or args[0] in ("--help", "-h", "help"):
        out(
            f"Usage:  {PROG} image COMMAND\n\nCommands:\n"
            + "".join(f"  {name}\n" for name in sub)
            + "\n"
        )
        return 0
    handler = sub.get(args[0])
    if handler is None:
        raise UserError(f"'image {args[0]}' is not a {PROG} command; see '{PROG} image --help'")
    return handler(args[1:], root)


def _lazy(module: str, name: str) -> Callable[[Sequence[str], str | None], int]:
    def run(args: Sequence[str], root: str | None) -> int:
        import importlib

        handler = getattr(importlib.import_module(f"pyctr_fast.{module}"), name)
        result: int = handler(args, root)
        return result

    return run


load_cli = _lazy("archive_cli", "load_cli")
save_cli = _lazy("archive_cli", "save_cli")
import_cli = _lazy("archive_cli", "import_cli")
login_cli = _lazy("login", "login_cli")
logout_cli = _lazy("login", "logout_cli")

COMMANDS = {
    "pull": pull_cli,
    "images": images_cli,
    "image": image_cli,
    "rmi": rmi_cli,
    "tag": tag_cli,
    "load": load_cli,
    "save": save_cli,
    "import": import_cli,
    "login": login_cli,
    "logout": logout_cli,
}
