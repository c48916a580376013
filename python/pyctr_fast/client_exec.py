"""``Container.exec_run``: :func:`pyctr_fast.container_exec.exec_in` with the
program's output captured (memfds), streamed (pipes read while a thread
waits for the program) or discarded (detached)."""

from __future__ import annotations

import os

from .client import engine_errors
from .errors import APIError, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from .client_containers import ExecResult

__all__ = ["run_exec"]

_CHUNK = 65536


def run_exec(
    root: str,
    ref: str,
    args: Sequence[str],
    *,
    env: Sequence[str],
    user: str | None,
    workdir: str | None,
    tty: bool,
    privileged: bool,
    detach: bool,
    stream: bool,
    want: tuple[bool, bool],
    demux: bool,
) -> ExecResult:
    """Run ``args`` in container ``ref``; see ``Container.exec_run``."""
    from .client_containers import ExecResult

    if not args:
        raise APIError("No exec command specified")
    options: dict[str, Any] = {
        "env": list(env),
        "user": user,
        "workdir": workdir,
        "tty": tty,
        "privileged": privileged,
    }
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        if detach:
            _exec(root, ref, args, options, (devnull, devnull, devnull), detach=True)
            return ExecResult(None, b"")
        if stream:
            _check_running(root, ref)
            return ExecResult(None, _stream(root, ref, args, options, want, demux))
        return _capture(root, ref, args, options, want, demux, devnull)
    finally:
        os.close(devnull)


def _check_running(root: str, ref: str) -> None:
    """Fail now, not at the first chunk, when the exec cannot run."""
    from .records import resolve

    with engine_errors():
        state = resolve(root, ref).state()
    if state["Paused"]:
        raise APIError(f"Container {ref} is paused, unpause the container before exec", 1)
    if not state["Running"]:
        raise APIError(f"Container {ref} is not running", 1)


def _exec(
    root: str,
    ref: str,
    args: Sequence[str],
    options: dict[str, Any],
    stdio: tuple[int, int, int],
    detach: bool = False,
) -> tuple[int, bytes]:
    """(status, b"") or, for a program that cannot be found or run,
    (127 or 126, the error line) like docker's exec."""
    from .client import translate
    from .container_exec import exec_in

    try:
        with engine_errors():
            code = exec_in(root, ref, list(args), stdio=stdio, detach=detach, **options)
    except APIError as err:
        cause = err.__cause__
        if (
            isinstance(cause, UserError)
            and not isinstance(cause, APIError)
            and cause.message.startswith("exec failed")
            and cause.exit_code in (126, 127)
        ):
            return cause.exit_code, (cause.message + "\n").encode()
        raise
    except UserError as err:  # pragma: no cover - engine_errors translates these
        raise translate(err) from err
    return int(code), b""


def _capture(
    root: str,
    ref: str,
    args: Sequence[str],
    options: dict[str, Any],
    want: tuple[bool, bool],
    demux: bool,
    devnull: int,
) -> ExecResult:
    from .client_containers import ExecResult

    out_fd = os.memfd_create("exec-stdout", os.MFD_CLOEXEC)
    err_fd = os.memfd_create("exec-stderr", os.MFD_CLOEXEC) if demux else out_fd
    try:
        stdio = (devnull, out_fd if want[0] else devnull, err_fd if want[1] else devnull)
        status, error = _exec(root, ref, args, options, stdio)
        out = _read_all(out_fd)
        err = _read_all(err_fd) if demux else b""
    finally:
        for fd in {out_fd, err_fd}:
            os.close(fd)
    if demux:
        return ExecResult(status, (out if want[0] else None, (err + error) if want[1] else None))
    return ExecResult(status, out + error)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    parts: list[bytes] = []
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def _stream(
    root: str,
    ref: str,
    args: Sequence[str],
    options: dict[str, Any],
    want: tuple[bool, bool],
    demux: bool,
) -> Iterator[Any]:
    """Chunks as the program writes them (``(stdout, stderr)`` pairs with
    ``demux``, one side None).  The exec runs in a thread that holds the
    write ends; the pipes reach EOF when it and the program are done."""
    import selectors
    import threading

    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    if demux:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
    else:
        err_r, err_w = -1, out_w
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    failure: list[BaseException] = []
    trailer: list[bytes] = []

    def work() -> None:
        try:
            stdio = (null, out_w if want[0] else null, err_w if want[1] else null)
            _status, error = _exec(root, ref, args, options, stdio)
            trailer.append(error)
        except BaseException as err:
            failure.append(err)
        finally:
            for fd in {out_w, err_w, null}:
                os.close(fd)

    thread = threading.Thread(target=work, name=f"exec-{ref[:12]}", daemon=True)
    thread.start()
    # File objects (not bare fds): if the iterator is dropped unstarted they
    # are closed when collected, and the program gets EPIPE instead of blocking.
    sel = selectors.DefaultSelector()
    sel.register(open(out_r, "rb", buffering=0), selectors.EVENT_READ, 0)
    if err_r >= 0:
        sel.register(open(err_r, "rb", buffering=0), selectors.EVENT_READ, 1)

    def chunks() -> Iterator[Any]:
        try:
            while sel.get_map():
                for key, _ in sel.select():
                    data = key.fileobj.read(_CHUNK)  # type: ignore[union-attr]
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
                    elif demux:
                        yield (data, None) if key.data == 0 else (None, data)
                    else:
                        yield data
            thread.join()
            if failure:
                raise failure[0]
            if trailer and trailer[0]:
                yield (None, trailer[0]) if demux else trailer[0]
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    return chunks()
