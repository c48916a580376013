"""The reading commands: ``ps``, ``inspect``, ``logs``, ``top``, ``port`` and ``cp``.

Each ``*_cli(args, root)`` parses Docker's flags and returns the exit status;
the work is done by :mod:`pyctr_fast.views`, :mod:`pyctr_fast.logs` and
:mod:`pyctr_fast.transfer`.  ``--format`` templates are Go-template-like
(:mod:`pyctr_fast.gotemplate`); a ``table`` format is aligned as Docker's
tabwriter does it.
"""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, LIST, VALUE, Flag, format_flags, parse_flags, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = [
    "COMMANDS",
    "cp_cli",
    "inspect_cli",
    "logs_cli",
    "port_cli",
    "ps_cli",
    "tabwrite",
    "top_cli",
]

PROG = "pyctr-fast"
_HELP = Flag("help", BOOL, "Print usage")

PS_FLAGS = (
    Flag("all", BOOL, "Show all containers (default shows just running)", short="a"),
    Flag("filter", LIST, "Filter output based on conditions provided", short="f"),
    Flag("format", VALUE, "Format output using a custom template"),
    Flag("last", VALUE, "Show n last created containers (includes all states)", short="n"),
    Flag("latest", BOOL, "Show the latest created container (includes all states)", short="l"),
    Flag("no-trunc", BOOL, "Don't truncate output"),
    Flag("quiet", BOOL, "Only display container IDs", short="q"),
)
INSPECT_FLAGS = (
    Flag("format", VALUE, "Format output using a custom template", short="f"),
    Flag("size", BOOL, "Display total file sizes if the type is container", short="s"),
    Flag("type", VALUE, "Return JSON for specified type"),
)
LOGS_FLAGS = (
    Flag("details", BOOL, "Show extra details provided to logs"),
    Flag("follow", BOOL, "Follow log output", short="f"),
    Flag("since", VALUE, "Show logs since timestamp or relative (e.g. 42m for 42 minutes)"),
    Flag(
        "tail", VALUE, 'Number of lines to show from the end of the logs (default "all")', short="n"
    ),
    Flag("timestamps", BOOL, "Show timestamps", short="t"),
    Flag("until", VALUE, "Show logs before a timestamp or relative (e.g. 42m for 42 minutes)"),
)
CP_FLAGS = (
    Flag("archive", BOOL, "Archive mode (copy all uid/gid information)", short="a"),
    Flag("follow-link", BOOL, "Always follow symbol link in SRC_PATH", short="L"),
    Flag("quiet", BOOL, "Suppress progress output during copy", short="q"),
)

DEFAULT_PS_FORMAT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)


def _parse(
    args: Sequence[str], flags: Sequence[Flag], usage: str, low: int, high: int | None
) -> tuple[Any, list[str]] | None:
    parsed, rest = parse_flags(args, (*flags, _HELP))
    if parsed.flag("help"):
        write_out(f"Usage:  {PROG} {usage}\n\nOptions:\n{format_flags((*flags, _HELP))}\n")
        return None
    if len(rest) < low or (high is not None and len(rest) > high):
        command = usage.split(" ")[0]
        if low == high:
            want = f"exactly {low} argument{'s' if low != 1 else ''}"
        elif high is None:
            want = f"at least {low} argument{'s' if low != 1 else ''}"
        else:
            want = f"at least {low} and at most {high} argument{'s' if high != 1 else ''}"
        raise UserError(f"\"{command}\" requires {want}. See '{PROG} {command} --help'.")
    return parsed, rest


def _root(root: str | None) -> str:
    from .container import resolve_root

    return resolve_root(root)


# --------------------------------------------------------------------------- formatting


def tabwrite(lines: Sequence[str], minwidth: int, padding: int) -> str:
    """Go's ``text/tabwriter`` (padding with spaces, no flags): tab-terminated
    cells are aligned in columns over consecutive lines that have them."""
    rows = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]
    columns = max((len(r) - 1 for r in rows), default=0)
    for col in range(columns):
        i = 0
        while i < len(rows):
            if len(rows[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < len(rows) and len(rows[j]) - 1 > col:
                j += 1
            width = max(minwidth, max(len(rows[k][col]) + padding for k in range(i, j)))
            for k in range(i, j):
                widths[k][col] = width
            i = j
    out = []
    for row, w in zip(rows, widths):
        out.append("".join(cell.ljust(w[c]) for c, cell in enumerate(row[:-1])) + row[-1])
    return "\n".join(out) + ("\n" if out else "")


def _template(text: str) -> Any:
    from .gotemplate import Template

    try:
        return Template(text)
    except UserError as err:
        raise UserError(f"template parsing error: {err.message}", exit_code=64) from None


def _prepare_format(fmt: str) -> tuple[bool, str]:
    """``(is_table, template text)`` with Docker's ``\\t``/``\\n`` escapes applied."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    if fmt.strip() == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


def render_rows(fmt: str, rows: Sequence[Any], headers: dict[str, Any]) -> str:
    """Rows through a ``--format`` (``table`` ones get a header and alignment)."""
    table, text = _prepare_format(fmt)
    tmpl = _template(text)
    body = [tmpl.execute(row) for row in rows]
    if not table:
        return "".join(line + "\n" for line in body)
    header = tmpl.execute(headers)
    lines = "\n".join([header, *body]).split("\n")
    return tabwrite(lines, 10, 3)


# --------------------------------------------------------------------------- ps


def ps_cli(args: Sequence[str], root: str | None) -> int:
    from . import views

    got = _parse(args, PS_FLAGS, "ps [OPTIONS]", 0, 0)
    if got is None:
        return 0
    parsed, _ = got
    last_text = parsed.value("last")
    try:
        last = int(last_text) if last_text is not None else -1
    except ValueError:
        raise UserError(
            f'invalid argument "{last_text}" for "-n, --last" flag: strconv.ParseInt: '
            f'parsing "{last_text}": invalid syntax'
        ) from None
    recs = views.list_containers(
        _root(root),
        all=parsed.flag("all"),
        filters=parsed.values("filter"),
        last=last,
        latest=parsed.flag("latest"),
    )
    fmt = parsed.value("format")
    if not fmt or fmt == "table":
        fmt = "{{.ID}}" if parsed.flag("quiet") else DEFAULT_PS_FORMAT
    elif fmt == "raw":
        fmt = "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\n" + (
            "created_at: {{.CreatedAt}}\nstate: {{.State}}\nstatus: {{.Status}}\n"
            "names: {{.Names}}\nlabels: {{.Labels}}\nports: {{.Ports}}\n"
        )
    trunc = not parsed.flag("no-trunc")
    rows = [views.PsRow(rec, trunc=trunc) for rec in recs]
    headers: dict[str, Any] = dict(views.PS_HEADERS)
    headers["Label"] = lambda *_: "LABEL"
    write_out(render_rows(fmt, rows, headers))
    return 0


# --------------------------------------------------------------------------- inspect


def inspect_cli(args: Sequence[str], root: str | None) -> int:
    import json

    from . import records, views

    got = _parse(args, INSPECT_FLAGS, "inspect [OPTIONS] NAME|ID [NAME|ID...]", 1, None)
    if got is None:
        return 0
    parsed, names = got
    kind = parsed.value("type") or ""
    if kind not in ("", "container", "image"):
        raise UserError(f'"{kind}" is not a valid value for --type')
    fmt = parsed.value("format")
    tmpl = _template(fmt.replace("\\t", "\t").replace("\\n", "\n")) if fmt else None
    state_root = _root(root)
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    store = None
    for name in names:
        obj: dict[str, Any] | None = None
        if kind in ("", "container"):
            try:
                rec = records.resolve(state_root, name)
                obj = views.inspect_container(rec, size=parsed.flag("size"))
            except FileNotFoundError:
                obj = None
            except UserError as err:
                if not err.message.startswith("No such container"):
                    errors.append(f"Error: {err.message}")
                    continue
        if obj is None and kind in ("", "image"):
            from .images import inspect_data, resolve_image
            from .store import Store

            store = store or Store(state_root)
            try:
                obj = inspect_data(store, resolve_image(store, name))
            except UserError:
                obj = None
        if obj is None:
            what = {"": "object", "container": "container", "image": "image"}[kind]
            errors.append(f"Error: No such {what}: {name}")
            continue
        found.append(obj)
    if tmpl is not None:
        text = ""
        for obj in found:
            text += tmpl.execute(obj) + "\n"
        write_out(text)
    else:
        write_out(json.dumps(found, indent=4) + "\n")
    if errors:
        sys.stderr.write("".join(e + "\n" for e in errors))
        return 1
    return 0


# --------------------------------------------------------------------------- logs


def _tail_value(text: str | None) -> int | None:
    if text is None or text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UserError(f'invalid value for "tail": "{text}" is not a number or "all"') from None
    return None if n < 0 else n


def logs_cli(args: Sequence[str], root: str | None) -> int:
    from . import logs, records, timefmt

    got = _parse(args, LOGS_FLAGS, "logs [OPTIONS] CONTAINER", 1, 1)
    if got is None:
        return 0
    parsed, rest = got
    tail = _tail_value(parsed.value("tail"))
    since = parsed.value("since")
    until = parsed.value("until")
    since_ns = timefmt.parse_time_arg(since) if since else None
    until_ns = timefmt.parse_time_arg(until) if until else None
    rec = records.resolve(_root(root), rest[0])
    follow = parsed.flag("follow")
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    details = parsed.flag("details")
    try:
        for stream, _time, data in logs.read_logs(
            rec,
            timestamps=parsed.flag("timestamps"),
            tail=tail,
            since_ns=since_ns,
            until_ns=until_ns,
            follow=follow,
        ):
            out = outs.get(stream, sys.stdout.buffer)
            out.write(b" " + data if details else data)
            if follow:
                out.flush()
        for out in outs.values():
            out.flush()
    except BrokenPipeError:
        pass
    return 0


# --------------------------------------------------------------------------- top


def top_cli(args: Sequence[str], root: str | None) -> int:
    from . import records, views

    parsed, _ = parse_flags(args[:1] if args and args[0].startswith("-") else [], (_HELP,))
    if parsed.flag("help"):
        write_out(
            f"Usage:  {PROG} top CONTAINER [ps OPTIONS]\n\nDisplay the running processes of a "
            f"container\n\nOptions:\n{format_flags((_HELP,))}\n"
        )
        return 0
    if not args:
        raise UserError(f"\"top\" requires at least 1 argument. See '{PROG} top --help'.")
    rec = records.resolve(_root(root), args[0])
    titles, rows = views.top(rec, list(args[1:]))
    lines = ["\t".join(titles)] + ["\t".join(r) for r in rows]
    write_out(tabwrite(lines, 20, 3))
    return 0


# --------------------------------------------------------------------------- port


def _natural_key(text: str) -> list[tuple[int, str]]:
    """Docker's ``sortorder.NaturalLess``: digit runs compare as numbers."""
    import re

    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", text) if p]


def port_cli(args: Sequence[str], root: str | None) -> int:
    """``port CONTAINER [PRIVATE_PORT[/PROTO]]``: Docker's ``80/tcp ->
    0.0.0.0:32768`` lines (just ``0.0.0.0:32768`` for one port)."""
    from . import records
    from .network import endpoint
    from .ports import describe

    got = _parse(
        args,
        (),
        "port CONTAINER [PRIVATE_PORT[/PROTO]]\n\n"
        "List port mappings or a specific mapping for the container",
        1,
        2,
    )
    if got is None:
        return 0
    _, words = got
    rec = records.resolve(_root(root), words[0])
    ep = endpoint(rec.dir) if rec.state()["Running"] else None
    published = describe((ep or {}).get("ports") or ())
    if len(words) == 2:
        port, _, proto = words[1].partition("/")
        if not port.isdigit() or int(port) > 65535:
            raise UserError(f"Error: invalid port ({port})", exit_code=1)
        key = f"{int(port)}/{proto or 'tcp'}"
        if key not in published:
            raise UserError(f"Error: No public port '{key}' published for {words[0]}", exit_code=1)
        out = [f"{b['HostIp']}:{b['HostPort']}" for b in published[key]]
    else:
        out = [
            f"{key} -> {b['HostIp']}:{b['HostPort']}"
            for key, bindings in published.items()
            for b in bindings
        ]
    out.sort(key=_natural_key)
    if out:
        write_out("\n".join(out) + "\n")
    return 0


# --------------------------------------------------------------------------- cp


def cp_cli(args: Sequence[str], root: str | None) -> int:
    from . import transfer

    got = _parse(
        args,
        CP_FLAGS,
        "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
        f"        {PROG} cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
        2,
        2,
    )
    if got is None:
        return 0
    parsed, (src, dst) = got
    if not src or not dst:
        raise UserError("filepath can not be empty", exit_code=1)
    transfer.copy(
        _root(root),
        src,
        dst,
        archive=parsed.flag("archive"),
        follow_link=parsed.flag("follow-link"),
    )
    return 0


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {
    "ps": ps_cli,
    "inspect": inspect_cli,
    "logs": logs_cli,
    "top": top_cli,
    "port": port_cli,
    "cp": cp_cli,
}
