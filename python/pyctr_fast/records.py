"""Containers on disk: directories, names, id prefixes, and the truth about state.

Each container is ``<root>/containers/<id>/`` (see docs/lifecycle.md).  Names
are symlinks ``<root>/names/<name> -> <id>``: ``symlink`` is atomic, so two
concurrent creates can never get the same name.  A foreground ``run --rm``
links to the id's first :data:`SHORT_TARGET` digits instead: a symlink target
of at most 59 bytes lives in the inode, while a longer one costs a disk block
whose release (with ``discard``) takes milliseconds on the start path.  A container's runtime state
is what its supervisor wrote in ``state.json``, checked against the kernel:
``running`` is believed only while the supervisor holds ``supervisor.lock``
or the recorded pid still runs with the recorded start time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = [
    "DEFAULT_ROOT",
    "NEVER",
    "ROOT_ENV",
    "SHORT_TARGET",
    "Record",
    "all_records",
    "claim_name",
    "containers_dir",
    "frozen_in",
    "generate_name",
    "names_dir",
    "now",
    "pid_start_time",
    "release_name",
    "resolve",
    "resolve_root",
    "supervisor_alive",
    "valid_name",
    "write_json",
]

DEFAULT_ROOT = "/var/lib/pyctr-fast"
ROOT_ENV = "PYCTR_ROOT"

NEVER = "0001-01-01T00:00:00Z"
SHORT_TARGET = 48
"""Digits of the id in a short name link (a "fast" symlink: in the inode)."""
"""Docker's zero time: a container that never started or never finished."""

STATUSES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


def resolve_root(root: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``root``, else $PYCTR_ROOT, else /var/lib/pyctr-fast; made absolute."""
    if environ is None:
        environ = os.environ
    chosen = root or environ.get(ROOT_ENV) or DEFAULT_ROOT
    return os.path.abspath(chosen)


def containers_dir(root: str) -> str:
    return os.path.join(root, "containers")


def names_dir(root: str) -> str:
    return os.path.join(root, "names")


def now() -> str:
    """The current time as Docker prints it: RFC 3339, UTC, nanoseconds."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def write_json(path: str, obj: Any) -> None:
    """Replace ``path`` atomically (write a sibling, rename over)."""
    from .compact_json import dumps  # not json: it costs ~13 ms to import

    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(obj))
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    """``json.load`` of a UTF-8 file (without importing json: ~13 ms)."""
    from .compact_json import loads

    with open(path, "rb") as f:
        return loads(f.read())


def supervisor_alive(cdir: str) -> bool:
    """True while some process holds ``supervisor.lock`` (a live supervisor,
    or a foreground ``run`` that is still running)."""
    try:
        fd = os.open(os.path.join(cdir, "supervisor.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


#: The freezer's state file in a v1 / v2 cgroup directory, and its held values.
_FREEZER_FILES = (("freezer.state", (b"FROZEN", b"FREEZING")), ("cgroup.freeze", (b"1",)))


def frozen_in(cgroup_dirs: Sequence[str]) -> bool:
    """Whether the freezer of a container whose cgroup directories are known
    (launch.json's ``cgroup_dirs``) holds it: the v1 ``freezer.state``
    (FROZEN or FREEZING) or v2 ``cgroup.freeze`` (1) of the first directory
    that has one, as :mod:`pyctr_fast.cgroups` drives them; read here
    without loading that module or looking up the host's layout."""
    for d in cgroup_dirs:
        for name, held in _FREEZER_FILES:
            try:
                with open(os.path.join(d, name), "rb") as f:
                    return f.read().strip() in held
            except OSError:
                continue
    return False


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if gone."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        rest = data[data.rindex(b")") + 2 :].split()
        if rest[0] == b"Z":  # a zombie no longer runs
            return None
        return int(rest[19])
    except (ValueError, IndexError):
        return None


class Record:
    """One container directory, read at a point in time."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = cid
        self.dir = os.path.join(containers_dir(root), cid)
        self.container: dict[str, Any] = read_json(os.path.join(self.dir, "container.json"))
        try:
            self.raw_state: dict[str, Any] = read_json(os.path.join(self.dir, "state.json"))
        except (OSError, ValueError):
            self.raw_state = {"Status": "created"}

    @property
    def name(self) -> str:
        """The name without Docker's leading slash."""
        return str(self.container.get("Name", "")).lstrip("/")

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def pid_alive(self) -> bool:
        pid = int(self.raw_state.get("Pid") or 0)
        want = self.raw_state.get("PidStartTime")
        got = pid_start_time(pid)
        return got is not None and (want is None or int(want) == got)

    def paused(self, cgroup_dirs: Sequence[str] | None = None) -> bool:
        """True while the container's freezer holds it.  ``cgroup_dirs``: its
        cgroup directories as launch.json records them (:func:`frozen_in`);
        None: read them from launch.json."""
        if cgroup_dirs is None:
            try:
                launch = read_json(self.path("launch.json"))
            except (OSError, ValueError):
                return False
            dirs = launch.get("cgroup_dirs") if isinstance(launch, dict) else None
            cgroup_dirs = [str(d) for d in dirs] if isinstance(dirs, list) else []
        return frozen_in(cgroup_dirs)

    def state(self, cgroup_dirs: Sequence[str] | None = None) -> dict[str, Any]:
        """Docker's ``State`` object, corrected by what the kernel says
        (``cgroup_dirs``: see :meth:`paused`)."""
        s = dict(self.raw_state)
        status = s.get("Status", "created")
        if status in ("running", "restarting") and not supervisor_alive(self.dir):
            if status == "running" and self.pid_alive():
                s["Error"] = s.get("Error") or "supervisor is gone: output is no longer logged"
            else:
                status = "exited"
                if s.get("FinishedAt", NEVER) == NEVER:
                    s["ExitCode"] = 255
                    s["FinishedAt"] = now()
                    s["Error"] = "supervisor is gone and so is the container process"
        if status == "running" and self.paused(cgroup_dirs):
            status = "paused"
        s["Status"] = status
        s["Running"] = status in ("running", "paused", "restarting")
        s["Paused"] = status == "paused"
        s["Restarting"] = status == "restarting"
        s["Dead"] = status == "dead"
        if not s["Running"]:
            s["Pid"] = 0
        s.setdefault("ExitCode", 0)
        s.setdefault("OOMKilled", False)
        s.setdefault("Error", "")
        s.setdefault("StartedAt", NEVER)
        s.setdefault("FinishedAt", NEVER)
        return s

    @property
    def status(self) -> str:
        return str(self.state()["Status"])


def _ids(root: str) -> list[str]:
    try:
        return sorted(os.listdir(containers_dir(root)))
    except FileNotFoundError:
        return []


def all_records(root: str) -> list[Record]:
    """Every container, newest first; directories being created or removed
    (no ``container.json`` yet or any more) are skipped."""
    out = []
    for cid in _ids(root):
        try:
            out.append(Record(root, cid))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda r: str(r.container.get("Created", "")), reverse=True)
    return out


def resolve(root: str, ref: str) -> Record:
    """A container by full id, name (with or without ``/``) or unique id prefix."""
    if not ref:
        raise UserError("container name or id must not be empty")
    name = ref.lstrip("/")
    ids: list[str] | None = None
    if valid_name(name):
        try:
            cid = os.readlink(os.path.join(names_dir(root), name))
            if len(cid) < 64:  # a short link: the unique id it begins
                ids = _ids(root)
                cid = next((c for c in ids if c.startswith(cid) and len(cid) >= 32), cid)
            return Record(root, cid)
        except OSError:
            pass
    if ids is None:
        ids = _ids(root)
    if ref in ids:
        try:
            return Record(root, ref)
        except OSError:
            pass
    if all(c in "0123456789abcdef" for c in ref):
        matches = [c for c in ids if c.startswith(ref)]
        if len(matches) > 1:
            raise UserError(f"multiple containers found with provided prefix: {ref}")
        if matches:
            try:
                return Record(root, matches[0])
            except OSError:
                pass
    raise UserError(f"No such container: {ref}", exit_code=1)


def valid_name(name: str) -> bool:
    """Docker's rule: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``."""
    if len(name) < 2 or len(name) > 253 or not name[0].isascii() or not name[0].isalnum():
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in name[1:])


def claim_name(root: str, name: str, cid: str, *, short: bool = False) -> None:
    """Reserve ``name`` for ``cid``; a name in use is a one-line error.
    ``short``: link to the id's first :data:`SHORT_TARGET` digits."""
    if not valid_name(name):
        raise UserError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    d = names_dir(root)
    os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        os.symlink(cid[:SHORT_TARGET] if short else cid, os.path.join(d, name))
    except FileExistsError:
        try:
            owner = os.readlink(os.path.join(d, name))
        except OSError:
            owner = "?"
        if 32 <= len(owner) < 64:
            owner = next((c for c in _ids(root) if c.startswith(owner)), owner)
        raise UserError(
            f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        ) from None


def release_name(root: str, name: str, cid: str) -> None:
    """Drop ``name`` if it still points at ``cid``."""
    path = os.path.join(names_dir(root), name)
    try:
        target = os.readlink(path)
        if target == cid or (len(target) >= 32 and cid.startswith(target)):
            os.unlink(path)
    except OSError:
        pass


_LEFT = (
    "admiring adoring agitated amazing angry awesome blissful bold boring brave busy charming "
    "clever cool compassionate confident cranky dazzling determined distracted dreamy eager "
    "ecstatic elastic elated elegant eloquent epic fervent festive flamboyant focused friendly "
    "frosty gallant gifted goofy gracious happy hardcore heuristic hopeful hungry infallible "
    "inspiring jolly jovial keen kind laughing loving lucid magical modest musing mystifying "
    "naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive "
    "practical priceless quirky quizzical relaxed reverent romantic sad serene sharp silly "
    "sleepy stoic strange stupefied suspicious sweet tender thirsty trusting upbeat vibrant "
    "vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()
_RIGHT = (
    "albattani allen almeida archimedes ardinghelli babbage banach bardeen bartik bassi bell "
    "benz bhabha bohr booth borg bose brahmagupta brown carson cerf chandrasekhar clarke "
    "cohen curie darwin davinci dijkstra dubinsky easley einstein elion engelbart euclid "
    "euler faraday fermat fermi feynman franklin galileo gates goldberg goodall hamilton "
    "hawking heisenberg hermann hodgkin hopper hypatia jackson jang jennings johnson kalam "
    "keller kepler khorana knuth kowalevski lalande lamarr leakey leavitt lovelace lumiere "
    "margulis mayer mccarthy mclean meitner mendel mirzakhani montalcini moore morse napier "
    "newton nightingale nobel noether panini pare pascal pasteur payne perlman pike poincare "
    "ptolemy raman ramanujan ride ritchie rosalind sammet shannon shaw sinoussi snyder "
    "spence stonebraker sutherland swanson tesla thompson torvalds turing varahamihira "
    "villani wescoff wiles williams wilson wing wozniak wright yalow yonath zhukovsky"
).split()


def generate_name(root: str) -> str:
    """A free Docker-style name, ``adjective_scientist`` (a digit appended
    after collisions, as Docker does)."""
    # os.urandom rather than the random module (~5 ms to import).
    for attempt in range(64):
        b = os.urandom(5)
        left = int.from_bytes(b[:2], "little") % len(_LEFT)
        right = int.from_bytes(b[2:4], "little") % len(_RIGHT)
        name = f"{_LEFT[left]}_{_RIGHT[right]}"
        if attempt >= 8:
            name += str(b[4] % 10)
        if not os.path.lexists(os.path.join(names_dir(root), name)):
            return name
    return f"ctr_{os.urandom(6).hex()}"
