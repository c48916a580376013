"""The ``load``, ``save`` and ``import`` commands (formats: :mod:`pyctr_fast.archive`)."""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, VALUE, Flag
from .flags import write_out as out
from .images import familiar_tag, open_store, parse_args, resolve_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .store import Store

__all__ = ["import_cli", "load_cli", "save_cli"]


def load_cli(args: Sequence[str], root: str | None) -> int:
    from .archive import load_archive

    got = parse_args(
        args,
        (
            Flag("input", VALUE, "Read from tar archive file, instead of STDIN", short="i"),
            Flag("quiet", BOOL, "Suppress the load output", short="q"),
        ),
        "load [OPTIONS]",
        (0, 0),
    )
    if got is None:
        return 0
    parsed, _ = got
    store = open_store(root)
    path = parsed.value("input")
    if path is None or path == "-":
        return _with_stdin_file(store, lambda p: _print_loaded(load_archive(store, p)))
    _print_loaded(load_archive(store, path))
    return 0


def _print_loaded(loaded: list[tuple[str, list[str]]]) -> int:
    for image_id, tags in loaded:
        if tags:
            out("".join(f"Loaded image: {familiar_tag(t)}\n" for t in tags))
        else:
            out(f"Loaded image ID: {image_id}\n")
    return 0


def _with_stdin_file(store: Store, use: Any) -> int:
    import os
    import shutil

    staging = store.staging_dir("stdin-")
    try:
        path = os.path.join(staging, "input")
        with open(path, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        result: int = use(path)
        return result
    finally:
        store.remove_tree(staging)


def save_cli(args: Sequence[str], root: str | None) -> int:
    import os

    from .archive import save_archive

    got = parse_args(
        args,
        (Flag("output", VALUE, "Write to a file, instead of STDOUT", short="o"),),
        "save [OPTIONS] IMAGE [IMAGE...]",
        (1, None),
    )
    if got is None:
        return 0
    parsed, rest = got
    store = open_store(root)
    from .reference import parse

    chosen: list[tuple[str, list[str]]] = []
    for name in rest:
        record = resolve_image(store, name)
        try:
            ref = parse(name)
            tags = [ref.name] if ref.digest is None and ref.name in record.repo_tags else []
        except UserError:
            tags = []
        if not tags and not name.startswith("sha256:") and name not in record.id:
            tags = list(record.repo_tags)
        chosen.append((record.id, tags))
    output = parsed.value("output")
    if output is None or output == "-":
        if sys.stdout.isatty():
            raise UserError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        sys.stdout.flush()
        save_archive(store, chosen, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    tmp = f"{output}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            save_archive(store, chosen, f)
        os.rename(tmp, output)
    except OSError as err:
        raise UserError(f"cannot write {output}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def import_cli(args: Sequence[str], root: str | None) -> int:
    from .archive import import_tarball

    got = parse_args(args, (), "import FILE|- [REPOSITORY[:TAG]]", (1, 2))
    if got is None:
        return 0
    _, rest = got
    store = open_store(root)
    tag = rest[1] if len(rest) > 1 else None
    if rest[0] == "-":
        image_id: str = ""

        def use(path: str) -> int:
            nonlocal image_id
            image_id = import_tarball(store, path, tag=tag)
            return 0

        _with_stdin_file(store, use)
    else:
        image_id = import_tarball(store, rest[0], tag=tag)
    out(image_id + "\n")
    return 0
