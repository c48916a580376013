"""A Distribution API v2 client: ping, Bearer/Basic auth, manifests and blobs.

* Transport (connections, TLS from ``certs.d``, loopback/insecure hosts,
  redirects, retries) is :class:`pyctr_fast.transport.Transport`, the base
  class of :class:`RegistryClient`.  Loopback and insecure hosts try HTTPS
  first and fall back to plain HTTP.
* Auth: ``/v2/`` is pinged once per host; a Bearer challenge leads to a token
  per (realm, service, scope, user), cached until ``expires_in``; Basic sends
  the credentials.  A 401 with the credentials we have is
  "unauthorized: authentication required for HOST".
* Blobs stream to a file while being hashed; size and digest are verified;
  5xx, 429 and dropped connections are retried with exponential backoff,
  resuming with ``Range`` when the server answers 206.
"""

from __future__ import annotations

import os

from .auth import Challenge, Credentials, CredentialStore, parse_challenge
from .errors import UserError
from .manifests import (
    ACCEPT_MANIFESTS,
    INDEX_TYPES,
    Descriptor,
    Manifest,
    RegistryError,
    host_platform,
    media_type_of,
    parse_image_manifest,
    parse_platform,
    select_manifest,
)
from .transport import LOOPBACK_ONLY_ENV as LOOPBACK_ONLY_ENV
from .transport import Transport, _Response, _Retry, is_loopback

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    from collections.abc import Callable, Iterable
    from typing import BinaryIO

    from .reference import Reference

__all__ = ["Descriptor", "Manifest", "RegistryClient", "RegistryError", "is_loopback"]

_CHUNK = 1 << 20


def _registry_message(body: bytes) -> str:
    """The first ``errors[].message`` of a registry error body, or ''."""
    import json

    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return f"{str(first.get('code', '')).lower()}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""


class RegistryClient(Transport):
    """Talks to OCI/Docker registries; safe to share between threads."""

    def __init__(
        self,
        *,
        credentials: CredentialStore | None = None,
        insecure: Iterable[str] = (),
        certs_dir: str = "/etc/pyctr-fast/certs.d",
        max_retries: int = 4,
        timeout: float = 60.0,
        retry_delay: float = 0.5,
        max_retry_after: float = 30.0,
    ) -> None:
        super().__init__(
            insecure=insecure,
            certs_dir=certs_dir,
            max_retries=max_retries,
            timeout=timeout,
            retry_delay=retry_delay,
            max_retry_after=max_retry_after,
        )
        self.credentials = credentials
        self._schemes: dict[str, str] = {}
        self._challenges: dict[str, Challenge | None] = {}
        self._tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}
        self._creds_cache: dict[str, Credentials | None] = {}

    # ------------------------------------------------------------------ ping and auth

    def _base(self, host: str) -> str:
        """``https://host`` or ``http://host``: pings ``/v2/`` the first time."""
        scheme = self._schemes.get(host)
        if scheme is None:
            self._ping(host)
            scheme = self._schemes[host]
        return f"{scheme}://{host}"

    def _ping(self, host: str) -> None:
        import functools
        import ssl

        schemes = ["https", "http"] if self.is_insecure(host) else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            try:
                try:
                    if scheme != schemes[-1]:
                        # A probe: a plain-HTTP server fails the handshake; fall back at once.
                        resp = self._small("GET", url)
                    else:
                        raise _Retry("")
                except _Retry:
                    resp = self._with_retries(functools.partial(self._small, "GET", url))
            except ssl.SSLCertVerificationError as e:
                raise RegistryError(
                    f"TLS certificate of {host} not trusted: {e.verify_message}"
                ) from None
            except (OSError, RegistryError) as e:
                last = e
                continue
            if resp.status == 401:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            elif resp.status < 300:
                challenge = None
            else:
                last = RegistryError(f"registry {host} answered /v2/ with HTTP {resp.status}")
                continue
            with self._lock:
                self._schemes[host] = scheme
                self._challenges[host] = challenge
            return
        if isinstance(last, RegistryError):
            raise last
        raise RegistryError(f"cannot reach registry {host}: {last}")

    def _credentials(self, host: str) -> Credentials | None:
        if self.credentials is None:
            return None
        with self._lock:
            if host in self._creds_cache:
                return self._creds_cache[host]
        found = self.credentials.get(host)
        with self._lock:
            self._creds_cache[host] = found
        return found

    def _token(
        self, host: str, challenge: Challenge, scope: str, creds: Credentials | None, fresh: bool
    ) -> str:
        import json
        import time
        from urllib.parse import urlencode

        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        who = "" if creds is None else creds.username or "<token>"
        key = (realm, service, scope, who)
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached[1] > now and not fresh:
            return cached[0]
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {host} sent an invalid token realm {realm!r}")
        query: dict[str, str] = {"service": service} if service else {}
        if scope:
            query["scope"] = scope
        if creds is not None and creds.identity_token:
            form = {**query, "grant_type": "refresh_token", "client_id": "pyctr-fast",
                    "refresh_token": creds.identity_token}  # fmt: skip
            hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
            call = lambda: self._small("POST", realm, hdrs, urlencode(form).encode())  # noqa: E731
        else:
            hdrs = {"Authorization": creds.basic()} if creds is not None else {}
            url = realm + ("&" if "?" in realm else "?") + urlencode(query)
            call = lambda: self._small("GET", url, hdrs)  # noqa: E731
        resp = self._with_retries(call)
        if resp.status in (401, 403):
            raise RegistryError(f"unauthorized: authentication required for {host}")
        if resp.status != 200:
            raise RegistryError(f"token server for {host} answered HTTP {resp.status}")
        try:
            answer = json.loads(resp.body)
            token = answer.get("token") or answer.get("access_token")
            expires = float(answer.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server for {host} sent no token")
        with self._lock:
            self._tokens[key] = (token, now + expires * 0.9)
        return token

    def _authorization(
        self, host: str, scope: str, fresh: bool = False, challenge: Challenge | None = None
    ) -> dict[str, str]:
        challenge = challenge or self._challenges.get(host)
        if challenge is None:
            return {}
        creds = self._credentials(host)
        if challenge.scheme == "bearer":
            return {"Authorization": "Bearer " + self._token(host, challenge, scope, creds, fresh)}
        if challenge.scheme == "basic":
            return {} if creds is None else {"Authorization": creds.basic()}
        raise RegistryError(f"registry {host} asks for unsupported auth {challenge.scheme!r}")

    def _api(
        self,
        method: str,
        ref: Reference,
        path: str,
        headers: dict[str, str],
        stream: bool = False,
    ) -> tuple[http.client.HTTPResponse, str] | _Response:
        """An authenticated request for ``ref``'s repository (one re-auth on 401)."""
        import functools

        host = ref.registry_host
        url = self._base(host) + path
        scope = f"repository:{ref.path}:pull"
        challenge = None
        for attempt in (0, 1):
            hdrs = {**headers, **self._authorization(host, scope, attempt == 1, challenge)}
            if stream:
                resp, final = self._send(method, url, hdrs)
                if resp.status != 401:
                    return resp, final
                from urllib.parse import urlsplit

                parts = urlsplit(final)
                self._finish(resp, parts.scheme, parts.netloc)
                header = resp.getheader("WWW-Authenticate", "")
            else:
                small = self._with_retries(functools.partial(self._small, method, url, hdrs))
                if small.status != 401:
                    return small
                header = small.headers.get("WWW-Authenticate", "")
            challenge = parse_challenge(header) or self._challenges.get(host)
            if challenge is None:
                break
        if self._credentials(host) is None:
            raise RegistryError(
                f"pull access denied for {ref.familiar_repository}, repository does not exist "
                "or may require 'docker login'"
            )
        raise RegistryError(f"unauthorized: authentication required for {host}")

    def check_credentials(self, host: str, creds: Credentials) -> None:
        """Verify credentials against ``host`` (``login``); RegistryError if refused."""
        self._base(host)
        challenge = self._challenges.get(host)
        if challenge is None:
            return
        if challenge.scheme == "bearer":
            self._token(host, challenge, "", creds, fresh=True)
            return
        resp = self._with_retries(
            lambda: self._small("GET", self._base(host) + "/v2/", {"Authorization": creds.basic()})
        )
        if resp.status in (401, 403):
            raise RegistryError(f"unauthorized: authentication required for {host}")
        if resp.status >= 300:
            raise RegistryError(f"registry {host} answered /v2/ with HTTP {resp.status}")

    # ------------------------------------------------------------------ manifests

    def _fetch_manifest(self, ref: Reference, reference: str) -> tuple[bytes, str, str]:
        """(raw, content type, digest) of one manifest, verified if ``reference`` is a digest."""
        import hashlib

        resp = self._api(
            "GET", ref, f"/v2/{ref.path}/manifests/{reference}", {"Accept": ACCEPT_MANIFESTS}
        )
        assert isinstance(resp, _Response)
        if resp.status == 404:
            raise RegistryError(f"manifest for {ref.familiar} not found: manifest unknown")
        if resp.status != 200:
            detail = _registry_message(resp.body) or f"HTTP {resp.status}"
            raise RegistryError(f"fetching manifest for {ref.familiar}: {detail}")
        digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if reference.startswith("sha256:"):
            if digest != reference:
                raise RegistryError(
                    f"manifest digest mismatch for {ref.familiar}: expected {reference}, "
                    f"got {digest}"
                )
        else:
            claimed = resp.headers.get("Docker-Content-Digest", "")
            if claimed.startswith("sha256:") and claimed != digest:
                raise RegistryError(
                    f"manifest digest mismatch for {ref.familiar}: registry says {claimed}, "
                    f"content is {digest}"
                )
        return resp.body, resp.headers.get("Content-Type", ""), digest

    def get_manifest(self, ref: Reference, platform: str | None = None) -> Manifest:
        """The image manifest for ``ref`` (an index resolved for ``platform``)."""
        want = parse_platform(platform) if platform else host_platform()
        raw, content_type, digest = self._fetch_manifest(ref, ref.reference)
        media_type, data = media_type_of(raw, content_type)
        if media_type not in INDEX_TYPES:
            return parse_image_manifest(raw, media_type, data, digest, None)
        entry = select_manifest(data, want)
        raw2, content_type2, digest2 = self._fetch_manifest(ref, entry.digest)
        media_type2, data2 = media_type_of(raw2, content_type2)
        if media_type2 in INDEX_TYPES:
            raise RegistryError(f"unsupported manifest: nested index in {ref.familiar}")
        return parse_image_manifest(raw2, media_type2, data2, digest2, digest)

    def get_blob_bytes(self, ref: Reference, desc: Descriptor) -> bytes:
        """A small blob (an image config) in memory, verified."""
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=".blob-")
        os.close(fd)
        try:
            self.fetch_blob(ref, desc, tmp)
            with open(tmp, "rb") as f:
                return f.read()
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------------ blobs

    def fetch_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        dest: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Download ``desc`` into ``dest`` (created or truncated), verified.

        On any failure ``dest`` is removed and RegistryError raised.
        """
        from .reference import check_digest

        try:
            check_digest(desc.digest)
        except UserError as e:
            raise RegistryError(f"cannot fetch blob: {e.message}") from None
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            with open(fd, "wb", buffering=0, closefd=True) as f:
                self._download(ref, desc, f, progress)
        except BaseException:
            try:
                os.unlink(dest)
            except FileNotFoundError:
                pass
            raise

    def _download(
        self,
        ref: Reference,
        desc: Descriptor,
        f: BinaryIO,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        import hashlib
        import http.client
        import ssl
        import time

        write = f.write
        digest, size = desc.digest, desc.size
        hasher = hashlib.sha256()
        got = 0
        attempt = 0
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        path = f"/v2/{ref.path}/blobs/{digest}"
        while True:
            delay: float | None = None
            try:
                headers = {"Range": f"bytes={got}-"} if got else {}
                answer = self._api("GET", ref, path, headers, stream=True)
                assert isinstance(answer, tuple)
                resp, final = answer
                status = resp.status
                if status in (200, 206):
                    if status == 206 and not resp.getheader("Content-Range", "").startswith(
                        f"bytes {got}-"
                    ):
                        self._abandon(resp, final)  # not the range we asked for: start again
                        f.seek(0)
                        f.truncate()
                        hasher, got = hashlib.sha256(), 0
                        raise _Retry("unexpected Content-Range", 0.0)
                    if status == 200 and got:
                        f.seek(0)
                        f.truncate()
                        hasher, got = hashlib.sha256(), 0
                    length = resp.getheader("Content-Length")
                    if length is not None and length.isdigit() and got + int(length) > size:
                        self._abandon(resp, final)
                        raise RegistryError(
                            f"blob {digest}: size mismatch: registry sends "
                            f"{got + int(length)} bytes, expected {size}"
                        )
                    while True:
                        n = resp.readinto(view)
                        if not n:
                            if resp.length:  # EOF before Content-Length: a dropped connection
                                raise http.client.IncompleteRead(b"", resp.length)
                            break
                        got += n
                        if got > size:
                            self._abandon(resp, final)
                            raise RegistryError(
                                f"blob {digest}: size mismatch: more than the expected {size} bytes"
                            )
                        chunk = view[:n]
                        hasher.update(chunk)
                        write(chunk)
                        if progress is not None:
                            progress(got, size)
                    break
                from urllib.parse import urlsplit

                parts = urlsplit(final)
                body = self._finish(resp, parts.scheme, parts.netloc)
                if status >= 500 or status == 429:
                    delay = self._retry_after(resp)
                    raise _Retry(f"HTTP {status}", delay)
                if status == 404:
                    raise RegistryError(f"blob {digest} not found in {ref.repository}")
                detail = _registry_message(body) or f"HTTP {status}"
                raise RegistryError(f"fetching blob {digest}: {detail}")
            except ssl.SSLCertVerificationError as e:
                raise RegistryError(f"fetching blob {digest}: {e.verify_message}") from None
            except _Retry as e:
                reason, delay = e.reason, e.delay
            except (OSError, http.client.HTTPException) as e:
                reason = f"connection lost after {got} of {size} bytes ({type(e).__name__})"
                self.close()
            attempt += 1
            if attempt > self.max_retries:
                raise RegistryError(f"fetching blob {digest}: {reason} (after {attempt} attempts)")
            time.sleep(self._backoff(attempt) if delay is None else delay)
        if got != size:
            raise RegistryError(f"blob {digest}: size mismatch: got {got} bytes, expected {size}")
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise RegistryError(f"blob {digest}: digest mismatch: content is {actual}")
