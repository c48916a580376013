"""docker-py's ``Container`` (what ``client.containers`` returns) and
``ExecResult``, over the modules the CLI uses: :mod:`pyctr_fast.lifecycle`,
:mod:`pyctr_fast.views`, :mod:`pyctr_fast.logs`, :mod:`pyctr_fast.transfer`
and (through :mod:`pyctr_fast.client_exec`) :mod:`pyctr_fast.container_exec`."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, overload

from .client import engine_errors
from .client_images import Image
from .errors import APIError, ImageNotFound, NotFound, WaitTimeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime
    from typing import BinaryIO

    from .client import DockerClient
    from .client_collection import ContainerCollection
    from .client_options import Env

__all__ = ["Container", "ExecResult"]


class ExecResult(NamedTuple):
    """docker-py's ``(exit_code, output)`` of :meth:`Container.exec_run`."""

    exit_code: int | None
    output: Any


class Container:
    """One container; ``attrs`` is its ``docker inspect`` dict as of the last
    :meth:`reload` (the state-changing methods reload it when they return)."""

    def __init__(self, attrs: dict[str, Any], collection: ContainerCollection) -> None:
        self.attrs = attrs
        self.collection = collection

    # ------------------------------------------------------------------ properties

    @property
    def client(self) -> DockerClient:
        return self.collection.client

    @property
    def id(self) -> str:
        """The 64-hex container id."""
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the id."""
        return self.id[:12]

    @property
    def name(self) -> str:
        """The name, without Docker's leading ``/``."""
        return str(self.attrs.get("Name") or "").lstrip("/")

    @property
    def status(self) -> str:
        """``created``, ``running``, ``paused``, ``restarting``, ``exited``..."""
        return str((self.attrs.get("State") or {}).get("Status", "unknown"))

    @property
    def labels(self) -> dict[str, str]:
        """``Config.Labels``."""
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})

    @property
    def health(self) -> str:
        """Health checks are not implemented: always ``unknown``."""
        return "unknown"

    @property
    def ports(self) -> dict[str, Any]:
        """Published ports (none: there is no port publishing yet)."""
        return dict((self.attrs.get("NetworkSettings") or {}).get("Ports") or {})

    @property
    def image(self) -> Image | None:
        """The :class:`Image` the container runs, or None (a ``rootfs``
        container, or an image removed since)."""
        image_id = str(self.attrs.get("Image") or "")
        if not image_id.startswith("sha256:"):
            return None
        try:
            return self.client.images.get(image_id)
        except ImageNotFound:
            return None

    # ------------------------------------------------------------------ state

    def reload(self) -> None:
        """Read ``attrs`` again.  Raises :class:`~pyctr_fast.errors.NotFound`
        once the container is gone."""
        self.attrs = self.collection.get(self.id).attrs

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except NotFound:
            pass

    def start(self) -> None:
        """Start the container detached (its supervisor keeps its output in the log)."""
        from . import lifecycle

        with engine_errors():
            lifecycle.start(self.client.root, self.id)
        self._reload_quietly()

    def stop(self, timeout: int | None = None) -> None:
        """Send the stop signal, then SIGKILL after ``timeout`` seconds (default:
        the container's stop timeout, 10 s).  Not an error if it is not running."""
        from . import lifecycle

        with engine_errors():
            lifecycle.stop(self.client.root, self.id, timeout)
        self._reload_quietly()

    def kill(self, signal: str | int | None = None) -> None:
        """Send ``signal`` (name with or without ``SIG``, or number; default
        SIGKILL).  :class:`~pyctr_fast.errors.APIError` if it is not running."""
        from . import lifecycle

        with engine_errors():
            lifecycle.kill(self.client.root, self.id, "KILL" if signal is None else str(signal))
        self._reload_quietly()

    def restart(self, timeout: int | None = None) -> None:
        """Stop (as :meth:`stop`) and start again."""
        from . import lifecycle

        with engine_errors():
            lifecycle.restart(self.client.root, self.id, timeout)
        self._reload_quietly()

    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        from . import lifecycle

        with engine_errors():
            lifecycle.pause(self.client.root, self.id)
        self._reload_quietly()

    def unpause(self) -> None:
        """Thaw a paused container."""
        from . import lifecycle

        with engine_errors():
            lifecycle.unpause(self.client.root, self.id)
        self._reload_quietly()

    def rename(self, name: str) -> None:
        """Give the container a new (unique) name."""
        from . import lifecycle

        with engine_errors():
            lifecycle.rename(self.client.root, self.id, name)
        self._reload_quietly()

    def remove(self, force: bool = False, v: bool = False, link: bool = False) -> None:
        """Remove the container (``force``: kill it first if it runs; ``v``:
        its anonymous volumes too).  ``link`` is not supported."""
        from . import lifecycle

        if link:
            raise APIError("links are not supported")
        with engine_errors():
            lifecycle.remove(self.client.root, self.id, force=force, volumes=v)

    def wait(self, timeout: float | None = None, condition: str = "not-running") -> dict[str, Any]:
        """Block until the container is not running; return docker-py's
        ``{"StatusCode": N, "Error": None}``.  With ``timeout`` (seconds),
        :class:`~pyctr_fast.errors.WaitTimeout` (a ``TimeoutError``) when it
        is still running then.  Only ``condition="not-running"`` is supported."""
        from . import lifecycle

        if condition != "not-running":
            raise APIError(f"wait condition {condition!r} is not supported")
        if timeout is not None:
            self._wait_running(float(timeout))
        with engine_errors():
            code = lifecycle.wait(self.client.root, self.id)
        return {"StatusCode": int(code), "Error": None}

    def _wait_running(self, timeout: float) -> None:
        import time

        from . import records

        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            with engine_errors():
                state = records.resolve(self.client.root, self.id).state()
            if not state["Running"]:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"timed out after {timeout:g} s waiting for {self.short_id}")
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)

    # ------------------------------------------------------------------ output

    @overload
    def logs(
        self,
        stdout: bool = ...,
        stderr: bool = ...,
        stream: Literal[False] = ...,
        timestamps: bool = ...,
        tail: str | int = ...,
        since: datetime | float | None = ...,
        follow: bool | None = ...,
        until: datetime | float | None = ...,
    ) -> bytes: ...

    @overload
    def logs(
        self,
        stdout: bool,
        stderr: bool,
        stream: Literal[True],
        timestamps: bool = ...,
        tail: str | int = ...,
        since: datetime | float | None = ...,
        follow: bool | None = ...,
        until: datetime | float | None = ...,
    ) -> Iterator[bytes]: ...

    @overload
    def logs(
        self,
        stdout: bool = ...,
        stderr: bool = ...,
        *,
        stream: Literal[True],
        timestamps: bool = ...,
        tail: str | int = ...,
        since: datetime | float | None = ...,
        follow: bool | None = ...,
        until: datetime | float | None = ...,
    ) -> Iterator[bytes]: ...

    def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        stream: bool = False,
        timestamps: bool = False,
        tail: str | int = "all",
        since: datetime | float | None = None,
        follow: bool | None = None,
        until: datetime | float | None = None,
    ) -> bytes | Iterator[bytes]:
        """The container's output as logged (json-file): bytes, or with
        ``stream`` an iterator of chunks that, by default (``follow``), keeps
        going until the container stops.  ``timestamps`` prefixes each record
        with its RFC 3339 time; ``tail`` keeps the last N lines; ``since`` and
        ``until`` are datetimes or UNIX times (seconds)."""
        if follow is None:
            follow = stream
        chunks = self._log_chunks(stdout, stderr, timestamps, tail, since, until, follow)
        if stream:
            return chunks
        return b"".join(chunks)

    def _log_chunks(
        self,
        stdout: bool,
        stderr: bool,
        timestamps: bool,
        tail: str | int,
        since: datetime | float | None,
        until: datetime | float | None,
        follow: bool,
    ) -> Iterator[bytes]:
        from . import logs, records

        with engine_errors():
            rec = records.resolve(self.client.root, self.id)
            lines = None if tail in ("all", None, -1) else int(tail)
            entries = logs.read_logs(
                rec,
                stdout=stdout,
                stderr=stderr,
                timestamps=timestamps,
                tail=lines,
                since=_unix_time(since),
                until=_unix_time(until),
                follow=follow,
            )
        return (data for _stream, _time, data in entries)

    def exec_run(
        self,
        cmd: str | list[str],
        stdout: bool = True,
        stderr: bool = True,
        stdin: bool = False,
        tty: bool = False,
        privileged: bool = False,
        user: str = "",
        detach: bool = False,
        stream: bool = False,
        socket: bool = False,
        environment: Env | None = None,
        workdir: str | None = None,
        demux: bool = False,
    ) -> ExecResult:
        """Run ``cmd`` in the running container (``docker exec``) and return
        ``ExecResult(exit_code, output)``: ``output`` is the bytes written to
        stdout and/or stderr (interleaved), a ``(stdout, stderr)`` pair with
        ``demux``, or with ``stream`` an iterator of chunks (``exit_code``
        None).  ``detach`` returns ``ExecResult(None, b"")`` once the program
        runs.  A command that cannot be found or executed gives exit code
        127/126 and the error as output, like docker.  ``stdin`` gives the
        program an empty stdin (there is no socket to write to: ``socket`` is
        not supported).  ``tty`` is only supported with ``detach`` for now.
        APIError if the container is not running or paused."""
        from .client_exec import run_exec

        if socket:
            raise APIError("exec_run(socket=True) is not supported")
        if tty and not detach:
            # The native exec relays a pty to this process's own stdin/stdout,
            # not to the fds the output is captured from.
            raise APIError("exec_run(tty=True) is not supported yet (only with detach=True)")
        from .client_options import env_entries, split_command

        args = split_command(cmd, "cmd")
        return run_exec(
            self.client.root,
            self.id,
            args,
            env=env_entries(environment),
            user=user or None,
            workdir=workdir,
            tty=tty,
            privileged=privileged,
            detach=detach,
            stream=stream,
            want=(stdout, stderr),
            demux=demux,
        )

    def get_archive(
        self, path: str, chunk_size: int | None = 2 * 1024 * 1024, encode_stream: bool = False
    ) -> tuple[Iterator[bytes], dict[str, Any]]:
        """A tar of ``path`` in the container (``docker cp CONTAINER:PATH -``),
        as ``(chunks, stat)``; ``stat`` is docker's path stat of ``path``
        (``name``, ``size``, ``mode``, ``mtime``, ``linkTarget``).  Symlinks
        are resolved inside the container (never out of it)."""
        import io

        from . import transfer

        del encode_stream
        out = io.BytesIO()
        with engine_errors():
            transfer.copy(self.client.root, f"{self.id}:{path}", "-", stdout=out)
        data = out.getvalue()
        step = chunk_size or len(data) or 1
        chunks = (data[i : i + step] for i in range(0, len(data), step))
        return chunks, _tar_stat(data)

    def put_archive(self, path: str, data: bytes | Iterable[bytes] | BinaryIO) -> bool:
        """Extract the tar ``data`` (bytes, chunks or a binary file) into the
        directory ``path`` of the container (``docker cp - CONTAINER:PATH``),
        keeping the owners the tar records, as the Engine API does."""
        import io

        from . import transfer

        if isinstance(data, (bytes, bytearray, memoryview)):
            stream: Any = io.BytesIO(bytes(data))
        elif hasattr(data, "read"):
            stream = data
        else:
            stream = io.BytesIO(b"".join(data))
        with engine_errors():
            transfer.copy(self.client.root, "-", f"{self.id}:{path}", stdin=stream, archive=True)
        return True

    def top(self, ps_args: str | None = None) -> dict[str, Any]:
        """``docker top``: ``{"Titles": [...], "Processes": [[...], ...]}``."""
        from . import records, views

        with engine_errors():
            rec = records.resolve(self.client.root, self.id)
            titles, rows = views.top(rec, ps_args.split() if ps_args else [])
        return {"Titles": list(titles), "Processes": [list(r) for r in rows]}

    def stats(
        self, decode: bool | None = None, stream: bool = True, one_shot: bool | None = None
    ) -> dict[str, Any] | Iterator[dict[str, Any]] | Iterator[bytes]:
        """The Engine API's stats object(s) (``docker stats``): with ``stream``
        an iterator of samples, one at once and then one a second while the
        container runs (dicts with ``decode``, else JSON bytes, one object per
        item); without, one dict whose ``precpu_stats`` was sampled a second
        before (``one_shot``: at once, ``precpu_stats`` zeros)."""
        from . import stats

        if decode and not stream:
            raise APIError("decode is only available in conjunction with stream=True")
        if one_shot and stream:
            raise APIError("one_shot is only available in conjunction with stream=False")
        with engine_errors():
            if not stream:
                return stats.collect(self.client.root, self.id, one_shot=bool(one_shot))
            samples = stats.stream(self.client.root, self.id)
        if decode:
            return samples
        return _json_lines(samples)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Container) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Container: {self.short_id}>"


def _json_lines(samples: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    import json

    for data in samples:
        yield json.dumps(data).encode() + b"\n"


def _unix_time(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return float(value.timestamp())


def _tar_stat(data: bytes) -> dict[str, Any]:
    """Docker's ``X-Docker-Container-Path-Stat`` for the first member of a tar
    (Go ``os.FileMode`` bits: directory 1<<31, symlink 1<<27)."""
    import io
    import tarfile

    from . import timefmt

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        first = tar.next()
    if first is None:
        return {}
    mode = first.mode
    if first.isdir():
        mode |= 1 << 31
    elif first.issym():
        mode |= 1 << 27
    return {
        "name": first.name.rstrip("/").rsplit("/", 1)[-1],
        "size": first.size,
        "mode": mode,
        "mtime": timefmt.format_rfc3339_nano(int(first.mtime * 1_000_000_000)),
        "linkTarget": first.linkname,
    }
