"""HTTP(S) transport to registries: connections, TLS, redirects, retries.

* HTTPS, verified, with extra CAs (and client certificates) from
  ``certs_dir/HOST[:PORT]/`` (Docker's ``certs.d``: ``*.crt`` CAs,
  ``*.cert``/``*.key`` pairs).  Loopback hosts (127.0.0.0/8, ::1,
  ``localhost``) and hosts listed as insecure may be reached over plain HTTP
  or unverified TLS (verified only against a configured CA).  With
  ``PYCTR_LOOPBACK_ONLY`` set, every other host is refused.
* One persistent connection per thread per host.
* Redirects are followed, without ``Authorization`` once the host changes.
* 5xx, 429 and dropped connections are retried with exponential backoff
  (``Retry-After`` honoured, capped).

:class:`Transport` is the base of :class:`pyctr_fast.registry.RegistryClient`,
which adds the Distribution API on top.
"""

from __future__ import annotations

import os

from .manifests import MAX_MANIFEST_BYTES, RegistryError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Callable, Iterable

__all__ = ["LOOPBACK_ONLY_ENV", "Transport", "is_loopback"]

_USER_AGENT = "pyctr-fast/0.1"
_MAX_REDIRECTS = 5
_ERROR_BODY_LIMIT = 64 << 10


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (``host`` may carry a port)."""
    name = _split_netloc(host)[0]
    if name == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: Set (to anything) to refuse every registry that is not on loopback: an
#: air-gapped mode, and the test suite's guard against reaching the network.
LOOPBACK_ONLY_ENV = "PYCTR_LOOPBACK_ONLY"


def _check_allowed(netloc: str) -> None:
    import os

    if os.environ.get(LOOPBACK_ONLY_ENV) and not is_loopback(netloc):
        raise RegistryError(
            f"refusing to contact {netloc}: {LOOPBACK_ONLY_ENV} is set "
            "(only localhost, 127.0.0.0/8 and ::1 are allowed)"
        )


def _split_netloc(netloc: str) -> tuple[str, int | None]:
    """``host:5000`` → (host, 5000); ``[::1]:5000`` → (::1, 5000)."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end], netloc[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return netloc, None


class _Response:
    """A finished small response: status, headers, body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Retry(Exception):
    """A transient failure: retry after ``delay`` seconds (None: the backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Transport:
    """Connections, TLS and retries for registry requests; safe to share between threads."""

    def __init__(
        self,
        *,
        insecure: Iterable[str],
        certs_dir: str,
        max_retries: int,
        timeout: float,
        retry_delay: float,
        max_retry_after: float,
    ) -> None:
        import threading

        self.insecure = frozenset(insecure)
        self.certs_dir = certs_dir
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.max_retry_after = max_retry_after
        self._lock = threading.Lock()
        self._local = threading.local()
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}

    # ------------------------------------------------------------------ connections

    def is_insecure(self, host: str) -> bool:
        """May ``host`` be reached over plain HTTP (or unverified TLS)?"""
        return host in self.insecure or _split_netloc(host)[0] in self.insecure or is_loopback(host)

    def _ca_files(self, host: str) -> tuple[list[str], list[tuple[str, str]]]:
        d = os.path.join(self.certs_dir, host)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return [], []
        cas = [os.path.join(d, n) for n in names if n.endswith(".crt")]
        pairs = [
            (os.path.join(d, n), os.path.join(d, n[: -len(".cert")] + ".key"))
            for n in names
            if n.endswith(".cert") and n[: -len(".cert")] + ".key" in names
        ]
        return cas, pairs

    def _ssl_context(self, host: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get((host, False))
            if ctx is not None:
                return ctx
            import ssl

            cas, pairs = self._ca_files(host)
            ctx = ssl.create_default_context()
            for ca in cas:
                ctx.load_verify_locations(cafile=ca)
            for cert, key in pairs:
                ctx.load_cert_chain(cert, key)
            if not cas and self.is_insecure(host):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._contexts[(host, False)] = ctx
            return ctx

    def _conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(
            self._local, "pool", None
        )
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get((scheme, netloc))
        if conn is None:
            import http.client

            _check_allowed(netloc)
            host, port = _split_netloc(netloc)
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=self._ssl_context(netloc)
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            pool[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        pool = getattr(self._local, "pool", None)
        conn = pool.pop((scheme, netloc), None) if pool else None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connections."""
        pool = getattr(self._local, "pool", None) or {}
        for conn in pool.values():
            conn.close()
        pool.clear()

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[http.client.HTTPResponse, str]:
        """One request, following redirects; returns the response and the final URL.

        ``Authorization`` is dropped once a redirect leaves the original host.
        """
        from urllib.parse import urljoin, urlsplit

        origin = urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise RegistryError(f"refusing to follow a redirect to {url}")
            if parts.scheme == "http" and not self.is_insecure(parts.netloc):
                raise RegistryError(f"refusing plain HTTP to {parts.netloc}")
            hdrs = {"User-Agent": _USER_AGENT, **headers}
            if parts.netloc != origin:
                hdrs.pop("Authorization", None)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn = self._conn(parts.scheme, parts.netloc)
            try:
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
            except BaseException:
                self._drop(parts.scheme, parts.netloc)
                raise
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                location = resp.getheader("Location", "")
                self._finish(resp, parts.scheme, parts.netloc)
                url = urljoin(url, location)
                if resp.status == 303:
                    method, body = "GET", None
                continue
            return resp, url
        raise RegistryError(f"too many redirects fetching {url}")

    def _abandon(self, resp: http.client.HTTPResponse, url: str) -> None:
        """Stop reading a response midway: its connection cannot be reused."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        resp.close()
        self._drop(parts.scheme, parts.netloc)

    def _finish(self, resp: http.client.HTTPResponse, scheme: str, netloc: str) -> bytes:
        """Read a (small) body so the connection can be reused; drop it if too big."""
        try:
            body = resp.read(_ERROR_BODY_LIMIT + 1)
        except OSError:
            body = b""
        if len(body) > _ERROR_BODY_LIMIT or not resp.isclosed():
            self._drop(scheme, netloc)
        return body[:_ERROR_BODY_LIMIT]

    # ------------------------------------------------------------------ small requests and retries

    def _small(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Response:
        """A request whose body is read whole (limited to manifest size)."""
        from urllib.parse import urlsplit

        resp, final = self._send(method, url, dict(headers or {}), body)
        parts = urlsplit(final)
        try:
            data = resp.read(MAX_MANIFEST_BYTES + 1)
        except BaseException:
            self._drop(parts.scheme, parts.netloc)
            raise
        if len(data) > MAX_MANIFEST_BYTES:
            self._drop(parts.scheme, parts.netloc)
            raise RegistryError(f"response from {url} is larger than {MAX_MANIFEST_BYTES} bytes")
        if resp.status >= 500 or resp.status == 429:
            raise _Retry(f"HTTP {resp.status} from {parts.netloc}", self._retry_after(resp))
        return _Response(resp.status, resp.headers, data)

    def _retry_after(self, resp: http.client.HTTPResponse) -> float | None:
        value = resp.getheader("Retry-After")
        if value is None or resp.status not in (429, 503):
            return None
        try:
            return min(max(float(value), 0.0), self.max_retry_after)
        except ValueError:
            return None

    def _with_retries(self, call: Callable[[], _Response]) -> _Response:
        import http.client
        import ssl
        import time

        attempt = 0
        while True:
            try:
                return call()
            except ssl.SSLCertVerificationError:
                raise
            except _Retry as e:
                reason, delay = e.reason, e.delay
            except (OSError, http.client.HTTPException) as e:
                reason, delay = f"{type(e).__name__}: {e}", None
            attempt += 1
            if attempt > self.max_retries:
                raise RegistryError(f"{reason} (after {attempt} attempts)")
            time.sleep(self._backoff(attempt) if delay is None else delay)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry_delay * (2 ** (attempt - 1)), self.max_retry_after))
