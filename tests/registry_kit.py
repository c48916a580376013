"""Registry test kit: real registries, test images and a fault-injecting server.

Nothing here is a test.  The pieces (fixtures are in ``conftest_registry.py``):

* :class:`Registry` runs Debian's ``docker-registry`` on a free 127.0.0.1 port
  with a temporary storage dir, optionally with Basic auth (an htpasswd made
  with libcrypt's bcrypt through ctypes) or TLS (a test CA made with the
  ``openssl`` CLI); stopped by PID.
* :class:`OCILayout` writes OCI image layouts (layers are tar streams written
  with ``tarfile``, gzip, zstd or plain) from Debian's busybox-static;
  :func:`skopeo_push` pushes them (OCI or Docker v2s2, or a whole index).
* :class:`FaultRegistry` is a small Distribution API server (http.server in a
  thread on 127.0.0.1) that serves manifests and blobs and misbehaves on
  request: wrong digest or size, truncation, a connection dropped mid-blob,
  5xx, 429 with Retry-After, redirects, Bearer tokens and Basic auth.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
DOCKER_REGISTRY = "/usr/bin/docker-registry"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    None: "application/vnd.oci.image.layer.v1.tar",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- credentials and TLS


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt ($2y$) hash from glibc's libcrypt (libxcrypt), through ctypes."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2y$", cost, None, 0)
    if not salt:
        raise RuntimeError("libcrypt cannot make bcrypt salts")
    hashed = lib.crypt(password.encode(), salt)
    if not hashed or not hashed.startswith(b"$2y$"):
        raise RuntimeError("libcrypt has no bcrypt")
    return str(hashed.decode())


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class TestCA:
    """A CA and a server certificate for 127.0.0.1/localhost, made with ``openssl``."""

    dir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def make(cls, directory: Path, name: str = "pyctr-fast test CA") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            cwd=directory,
        )
        _openssl(
            "req",
            *ec,
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
            cwd=directory,
        )
        (directory / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            cwd=directory,
        )
        return cls(
            directory, directory / "ca.crt", directory / "server.crt", directory / "server.key"
        )

    def certs_dir(self, where: Path, host: str) -> Path:
        """A certs.d tree trusting this CA for ``host`` (``127.0.0.1:PORT``)."""
        d = where / host
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca_cert, d / "ca.crt")
        return where


# --------------------------------------------------------------------------- docker-registry


@dataclass
class Registry:
    """A running docker-registry."""

    port: int
    storage: Path
    proc: subprocess.Popen[bytes]
    log: Path
    username: str | None = None
    password: str | None = None
    ca: TestCA | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        htpasswd: tuple[str, str] | None = None,
        ca: TestCA | None = None,
    ) -> Registry:
        workdir.mkdir(parents=True, exist_ok=True)
        storage = workdir / "storage"
        storage.mkdir(exist_ok=True)
        port = free_port()
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{port}",
            "  secret: pyctr-fast-tests",
        ]
        if ca is not None:
            lines += ["  tls:", f"    certificate: {ca.server_cert}", f"    key: {ca.server_key}"]
        if htpasswd is not None:
            pw_file = workdir / "htpasswd"
            pw_file.write_text(f"{htpasswd[0]}:{bcrypt_hash(htpasswd[1])}\n")
            lines += ["auth:", "  htpasswd:", "    realm: basic-realm", f"    path: {pw_file}"]
        config = workdir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        log = workdir / "registry.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=workdir,
            )
        user, password = htpasswd or (None, None)
        reg = cls(port, storage, proc, log, user, password, ca)
        reg._wait_ready()
        return reg

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                if self.ca is not None:
                    ctx = ssl.create_default_context(cafile=str(self.ca.ca_cert))
                    conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                        "127.0.0.1", self.port, timeout=2, context=ctx
                    )
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- images


def tar_layer(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """An uncompressed tar stream (PAX) of the given members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(
    name: str,
    data: bytes | None = None,
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    link: str = "",
    uid: int = 0,
    gid: int = 0,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = 1_700_000_000
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data or b"")
    return info, data if kind == tarfile.REGTYPE else None


def busybox_layer(extra: dict[str, bytes] | None = None) -> bytes:
    """/bin/busybox (Debian's busybox-static), /bin/sh → busybox, /etc/passwd and extras."""
    entries = [
        member("bin", kind=tarfile.DIRTYPE, mode=0o755),
        member("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        member("bin/sh", kind=tarfile.SYMTYPE, link="busybox", mode=0o777),
        member("etc", kind=tarfile.DIRTYPE, mode=0o755),
        member("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
    ]
    for name, data in (extra or {}).items():
        entries.append(member(name, data))
    return tar_layer(entries)


def compress(tar: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0)
    if compression == "zstd":
        return subprocess.run(
            ["zstd", "-q", "-c", "-3"], input=tar, capture_output=True, check=True, timeout=60
        ).stdout
    if compression is None:
        return tar
    raise ValueError(compression)


@dataclass
class BuiltImage:
    manifest: bytes
    manifest_digest: str
    config: bytes
    layers: list[bytes]  # as stored (compressed)
    diff_ids: list[str]

    def descriptor(self, arch: str = "amd64") -> dict[str, Any]:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(self.manifest),
            "platform": {"os": "linux", "architecture": arch},
        }


@dataclass
class OCILayout:
    """An OCI image layout directory being written."""

    dir: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.dir / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self._write_index()

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        (self.dir / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return digest

    def add_image(
        self,
        layer_tars: list[bytes],
        *,
        compression: str | None = "gzip",
        arch: str = "amd64",
        config: dict[str, Any] | None = None,
    ) -> BuiltImage:
        stored = [compress(t, compression) for t in layer_tars]
        diff_ids = [sha256(t) for t in layer_tars]
        cfg = {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], **(config or {})},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(len(stored))],
        }
        cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": self.add_blob(cfg_bytes),
                "size": len(cfg_bytes),
            },
            "layers": [
                {"mediaType": LAYER_TYPES[compression], "digest": self.add_blob(b), "size": len(b)}
                for b in stored
            ],
        }
        raw = json.dumps(manifest, indent=2).encode()
        return BuiltImage(raw, self.add_blob(raw), cfg_bytes, stored, diff_ids)

    def add_index(self, entries: list[dict[str, Any]]) -> tuple[bytes, str]:
        raw = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, indent=2
        ).encode()
        return raw, self.add_blob(raw)

    def tag(self, tag: str, media_type: str, digest: str, size: int) -> None:
        self.refs = [
            r for r in self.refs if r["annotations"]["org.opencontainers.image.ref.name"] != tag
        ]
        self.refs.append(
            {
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        self._write_index()

    def tag_image(self, tag: str, image: BuiltImage) -> None:
        self.tag(tag, OCI_MANIFEST, image.manifest_digest, len(image.manifest))

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.dir / "index.json").write_text(json.dumps(index))


def skopeo_push(
    layout: Path,
    tag: str,
    registry: Registry,
    name: str,
    *,
    fmt: str | None = None,
    all_images: bool = False,
) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://REGISTRY/NAME``."""
    cmd = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]
    if fmt:
        cmd += ["--format", fmt]
    if all_images:
        cmd += ["--all"]
    if registry.username:
        cmd += ["--dest-creds", f"{registry.username}:{registry.password}"]
    cmd += [f"oci:{layout}:{tag}", f"docker://{registry.host}/{name}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


# --------------------------------------------------------------------------- fault server


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    client_port: int


@dataclass
class FaultRegistry:
    """A Distribution API server on 127.0.0.1 that misbehaves on request.

    ``plans[digest]`` is a list of actions, one per GET of that blob (then
    ``ok``): ``ok``, ``500``, ``429:SECONDS``, ``drop`` (full Content-Length,
    half the bytes, connection closed), ``wrong-digest``, ``long``, ``short``,
    ``redirect`` (307 to ``redirect_to``).  ``auth`` is None, ``"basic"`` or
    ``"bearer"`` (tokens from ``/token`` on this server).
    """

    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    ranges: bool = True
    auth: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    token_expires_in: int = 300
    token_requests: list[Seen] = field(default_factory=list)
    redirect_to: FaultRegistry | None = None
    send_digest_header: str | None = None
    tokens: set[str] = field(default_factory=set)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultRegistry:
        fault = self

        class Handler(_FaultHandler):
            registry = fault

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_blob(self, data: bytes, media_type: str = LAYER_TYPES["gzip"]) -> dict[str, Any]:
        digest = sha256(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_manifest(
        self, name: str, tag: str | None, raw: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        digest = sha256(raw)
        self.manifests[(name, digest)] = (raw, media_type)
        if tag is not None:
            self.manifests[(name, tag)] = (raw, media_type)
        return digest

    def add_image(
        self, name: str, tag: str | None, layers: list[bytes]
    ) -> tuple[str, dict[str, Any]]:
        """An OCI image whose layers are ``layers`` (as given); returns (digest, manifest)."""
        config = self.add_blob(b'{"architecture":"amd64","os":"linux"}', OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [self.add_blob(b) for b in layers],
        }
        return self.add_manifest(name, tag, json.dumps(manifest).encode()), manifest

    def blob_gets(self, digest: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.path.endswith("/blobs/" + digest)]


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    registry: FaultRegistry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _challenge(self) -> None:
        reg = self.registry
        if reg.auth == "basic":
            hdr = 'Basic realm="fault"'
        else:
            name = self.path.split("/v2/", 1)[-1].rsplit("/", 2)[0]
            scope = f',scope="repository:{name}:pull"' if "/" in self.path[4:] else ""
            hdr = f'Bearer realm="http://{reg.host}/token",service="fault-registry"{scope}'
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self._reply(401, body, {"WWW-Authenticate": hdr, "Content-Type": "application/json"})

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        return self.registry.users.get(user) == pw

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        reg = self.registry
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = Seen(self.command, self.path, dict(self.headers.items()), self.client_address[1])
        if self.path.startswith("/token"):
            reg.token_requests.append(seen)
            auth = self.headers.get("Authorization", "")
            if (auth and not self._basic_ok(auth)) or (reg.users and not auth):
                self._reply(401, b'{"details":"incorrect username or password"}')
                return
            token = f"tok-{len(reg.token_requests)}"
            reg.tokens.add(token)
            self._reply(
                200, json.dumps({"token": token, "expires_in": reg.token_expires_in}).encode()
            )
            return
        reg.seen.append(seen)
        auth = self.headers.get("Authorization", "")
        if reg.auth == "basic" and not self._basic_ok(auth):
            return self._challenge()
        if reg.auth == "bearer" and auth.removeprefix("Bearer ") not in reg.tokens:
            return self._challenge()
        if self.path == "/v2/":
            return self._reply(200, b"{}", {"Content-Type": "application/json"})
        parts = self.path[len("/v2/") :].rsplit("/", 2)
        if len(parts) != 3:
            return self._reply(404)
        name, kind, ref = parts
        if kind == "manifests":
            found = reg.manifests.get((name, ref))
            if found is None:
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                return self._reply(404, body, {"Content-Type": "application/json"})
            raw, media_type = found
            digest = reg.send_digest_header or sha256(raw)
            return self._reply(
                200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest}
            )
        if kind == "blobs":
            return self._blob(ref)
        return self._reply(404)

    def _blob(self, digest: str) -> None:
        reg = self.registry
        data = reg.blobs.get(digest)
        if data is None:
            return self._reply(
                404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}'
            )
        plan = reg.plans.get(digest) or []
        action = plan.pop(0) if plan else "ok"
        if action == "500":
            return self._reply(500, b"oops")
        if action.startswith("429"):
            return self._reply(429, b"slow down", {"Retry-After": action.split(":")[1]})
        if action == "redirect":
            assert reg.redirect_to is not None
            return self._reply(307, b"", {"Location": f"http://{reg.redirect_to.host}{self.path}"})
        if action == "wrong-digest":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        elif action == "long":
            data = data + b"extra"
        elif action == "short":
            data = data[:-1]
        start = 0
        rng = self.headers.get("Range", "")
        if reg.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if reg.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)
