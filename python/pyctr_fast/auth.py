"""Registry credentials (Docker's ``config.json``) and ``WWW-Authenticate`` parsing.

``CredentialStore`` reads ``$DOCKER_CONFIG/config.json`` (default
``~/.docker/config.json``): ``credHelpers[host]`` first, then ``credsStore``,
then ``auths`` (base64 ``auth`` or ``username``/``password``, and
``identitytoken``).  Helpers are ``docker-credential-NAME get|store|erase``
with the server URL (or a JSON record) on stdin.  Docker Hub's key is
``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .registry import RegistryClient

__all__ = ["Challenge", "CredentialStore", "Credentials", "parse_challenge", "server_key"]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_HELPER_TIMEOUT = 30.0


class Credentials:
    """A user name and password, or an identity (refresh) token."""

    __slots__ = ("identity_token", "password", "username")

    def __init__(self, username: str, password: str, identity_token: str | None = None) -> None:
        self.username = username
        self.password = password
        self.identity_token = identity_token

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials({self.username!r}, ***)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.username, self.password, self.identity_token) == (
            other.username,
            other.password,
            other.identity_token,
        )

    __hash__ = None  # type: ignore[assignment]

    def basic(self) -> str:
        """The ``Authorization`` header value for Basic auth."""
        import base64

        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


class Challenge:
    """A parsed ``WWW-Authenticate``: scheme (lowercase) and its parameters."""

    __slots__ = ("params", "scheme")

    def __init__(self, scheme: str, params: dict[str, str]) -> None:
        self.scheme = scheme
        self.params = params

    def __repr__(self) -> str:
        return f"Challenge({self.scheme!r}, {self.params!r})"


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="https://auth",service="reg",scope="repository:a:pull"`` → Challenge."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return Challenge(scheme.lower(), params)


def server_key(host: str) -> str:
    """The ``auths`` key for a registry host (Docker Hub's is its legacy v1 URL)."""
    return DOCKER_HUB_KEY if host in _HUB_HOSTS else host


def _hostname(key: str) -> str:
    """Docker's ConvertToHostname: ``https://host/v1/`` → ``host``."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.split("/", 1)[0]


class CredentialStore:
    """Credentials from (and for) Docker's ``config.json``."""

    def __init__(self, config_dir: str | None = None) -> None:
        if config_dir is None:
            config_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(
                os.path.expanduser("~"), ".docker"
            )
        self.config_dir = config_dir
        self.path = os.path.join(config_dir, "config.json")

    # ------------------------------------------------------------------ config file

    def _read(self) -> dict[str, object]:
        import json

        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {self.path}: {e}") from None
        if not isinstance(data, dict):
            raise UserError(f"cannot read {self.path}: not a JSON object")
        return data

    def _write(self, data: dict[str, object]) -> None:
        import json

        os.makedirs(self.config_dir, mode=0o700, exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _helper_for(self, data: dict[str, object], host: str) -> str | None:
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key in (host, server_key(host)):
                name = helpers.get(key)
                if isinstance(name, str) and name:
                    return name
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    @staticmethod
    def _auths(data: dict[str, object]) -> dict[str, object]:
        auths = data.get("auths")
        return auths if isinstance(auths, dict) else {}

    # ------------------------------------------------------------------ helpers

    def _run_helper(self, name: str, action: str, stdin: str) -> str | None:
        import subprocess

        program = f"docker-credential-{name}"
        try:
            proc = subprocess.run(
                [program, action],
                input=stdin.encode(),
                capture_output=True,
                timeout=_HELPER_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise UserError(f"credential helper {program} not found in PATH") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"credential helper {program} {action}: timed out") from None
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0:
            if "credentials not found" in out.lower():
                return None
            msg = (out or proc.stderr.decode(errors="replace").strip()).splitlines()
            raise UserError(f"credential helper {program} {action}: {msg[0] if msg else 'failed'}")
        return out

    def _helper_get(self, name: str, key: str) -> Credentials | None:
        import json

        out = self._run_helper(name, "get", key)
        if out is None:
            return None
        try:
            record = json.loads(out)
            username, secret = str(record["Username"]), str(record["Secret"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"credential helper docker-credential-{name}: bad output") from None
        if username == "<token>":
            return Credentials("", "", identity_token=secret)
        return Credentials(username, secret)

    # ------------------------------------------------------------------ public

    def get(self, host: str) -> Credentials | None:
        """The credentials for a registry host (``host[:port]``), or None."""
        data = self._read()
        key = server_key(host)
        helper = self._helper_for(data, host)
        if helper is not None:
            found = self._helper_get(helper, key)
            if found is not None:
                return found
        auths = self._auths(data)
        entry = auths.get(key)
        if entry is None:
            for k, v in auths.items():
                if _hostname(k) == host or (key == DOCKER_HUB_KEY and _hostname(k) in _HUB_HOSTS):
                    entry = v
                    break
        if not isinstance(entry, dict):
            return None
        username, password = entry.get("username"), entry.get("password")
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            import base64
            import binascii

            try:
                decoded = base64.b64decode(auth, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise UserError(f"invalid auth configuration for {host} in {self.path}") from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise UserError(f"invalid auth configuration for {host} in {self.path}")
        token = entry.get("identitytoken")
        token = token if isinstance(token, str) and token else None
        if not isinstance(username, str) or not isinstance(password, str):
            if token is None:
                return None
            username, password = "", ""
        if not username and not password and token is None:
            return None
        return Credentials(username, password, identity_token=token)

    def store(self, host: str, credentials: Credentials) -> None:
        """Save credentials (through the host's helper if one is configured)."""
        import json

        data = self._read()
        key = server_key(host)
        helper = self._helper_for(data, host)
        if helper is not None:
            record = {"ServerURL": key, "Username": credentials.username,
                      "Secret": credentials.password}  # fmt: skip
            self._run_helper(helper, "store", json.dumps(record))
            return
        import base64

        auths = dict(self._auths(data))
        pair = f"{credentials.username}:{credentials.password}".encode()
        entry: dict[str, str] = {"auth": base64.b64encode(pair).decode()}
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
        auths[key] = entry
        data["auths"] = auths
        self._write(data)

    def login(
        self, host: str, username: str, password: str, *, client: RegistryClient | None = None
    ) -> None:
        """Check the credentials against the registry, then save them.

        Raises RegistryError ("unauthorized: ...") if the registry refuses them.
        """
        if client is None:
            from .registry import RegistryClient

            client = RegistryClient()
        creds = Credentials(username, password)
        client.check_credentials(host, creds)
        self.store(host, creds)

    def logout(self, host: str) -> bool:
        """Forget the host's credentials; False if there were none."""
        data = self._read()
        key = server_key(host)
        helper = self._helper_for(data, host)
        removed = False
        if helper is not None:
            removed = self._run_helper(helper, "erase", key) is not None
        auths = dict(self._auths(data))
        for k in list(auths):
            if k == key or _hostname(k) == host:
                del auths[k]
                removed = True
        if removed and "auths" in data:
            data["auths"] = auths
            self._write(data)
        return removed
