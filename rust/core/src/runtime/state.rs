//! The state directory `<root>/<id>/` (mode 0700): `state.json`, `exec.fifo`
//! (from `create` until `start`) and `lock` (flock: commands on one id take
//! turns).  The status is computed, never stored: see [`Saved::status`].

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Fail, Global, Result};
use crate::cgroups::Plan;

pub const STATE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
pub const LOCK: &str = "lock";

/// What `create` records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    #[serde(default)]
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat when the init started (pid reuse check).
    #[serde(default)]
    pub pid_start: u64,
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub rootfs: String,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub cgroup: Option<Plan>,
    /// `create` is still in progress.
    #[serde(default)]
    pub creating: bool,
    /// The container has its own pid namespace (else `kill --all` and
    /// `delete` end every process of its cgroup).
    #[serde(default)]
    pub pid_ns: bool,
    /// config.json as given (hooks, the process, namespaces for `exec`).
    #[serde(default)]
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The OCI state (`state` command), in runc's field order.
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'a str,
    pub bundle: &'a str,
    pub rootfs: &'a str,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

/// Container ids: `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, at most 1024 bytes.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Fail::new(format!("invalid container id format: {id:?}")))
    }
}

/// (state char, start time) of a live pid from /proc/<pid>/stat.
fn proc_stat(pid: i32) -> Option<(u8, u64)> {
    let data = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = data.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(data.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is still the process that started at `start` and has not
/// exited (a zombie waiting for its reaper counts as gone).
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && proc_stat(pid).is_some_and(|(state, t)| t == start && !matches!(state, b'Z' | b'X' | b'x'))
}

pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// `pid` as its own (innermost) pid namespace sees it: the last field of
/// `NSpid` in `/proc/<pid>/status`.
pub fn inner_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// One container's directory.
pub struct Container {
    pub dir: PathBuf,
    pub saved: Saved,
}

impl Container {
    pub fn dir_of(g: &Global, id: &str) -> PathBuf {
        g.root.join(id)
    }

    /// Load `id`'s state: "container does not exist" if there is none.
    pub fn load(g: &Global, id: &str) -> Result<Container> {
        check_id(id)?;
        let dir = Self::dir_of(g, id);
        let text = match std::fs::read(dir.join(STATE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Fail::new(format!("container does not exist: {id}")));
            }
            Err(e) => return Err(Fail::new(format!("read state of {id}: {e}"))),
        };
        let saved: Saved =
            serde_json::from_slice(&text).map_err(|e| Fail::new(format!("state of {id} is corrupt: {e}")))?;
        Ok(Container { dir, saved })
    }

    pub fn status(&self) -> Status {
        let s = &self.saved;
        if s.creating {
            return if s.pid == 0 || alive(s.pid, s.pid_start) { Status::Creating } else { Status::Stopped };
        }
        if !alive(s.pid, s.pid_start) {
            return Status::Stopped;
        }
        if self.dir.join(FIFO).exists() {
            return Status::Created;
        }
        if self.frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    fn frozen(&self) -> bool {
        let Some(plan) = &self.saved.cgroup else { return false };
        let file = match plan.version {
            1 => plan.dir("freezer").map(|d| d.join("freezer.state")),
            _ => plan.dirs.first().map(|d| Path::new(d).join("cgroup.freeze")),
        };
        let text = file.and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
        matches!(text.trim(), "FROZEN" | "FREEZING" | "1")
    }

    /// The pid to show: 0 once stopped, as runc.
    pub fn shown_pid(&self, status: Status) -> i32 {
        if status == Status::Stopped {
            0
        } else {
            self.saved.pid
        }
    }

    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        let s = &self.saved;
        OciState {
            oci_version: super::OCI_VERSION,
            id: &s.id,
            pid: self.shown_pid(status),
            status: status.name(),
            bundle: &s.bundle,
            rootfs: &s.rootfs,
            created: &s.created,
            owner: "",
            annotations: &s.annotations,
        }
    }

    /// The state JSON as given to hooks (status as named).
    pub fn hook_state(&self, status: &str) -> String {
        let mut st = self.oci_state(Status::Running);
        st.status = status;
        st.pid = self.saved.pid;
        serde_json::to_string(&st).unwrap_or_default()
    }

    /// The group's `cgroup.procs` files, for joining it.
    pub fn cgroup_procs(&self) -> Vec<String> {
        self.saved.cgroup.as_ref().map(procs_files).unwrap_or_default()
    }

    /// Host pids in the container's cgroup (freezer's, else the first).
    pub fn pids(&self) -> Vec<i32> {
        let Some(plan) = &self.saved.cgroup else {
            return if self.saved.pid > 0 { vec![self.saved.pid] } else { Vec::new() };
        };
        let Some(first) = plan.dirs.first() else { return Vec::new() };
        let text = std::fs::read_to_string(Path::new(first).join("cgroup.procs")).unwrap_or_default();
        text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

pub fn procs_files(plan: &Plan) -> Vec<String> {
    plan.dirs.iter().map(|d| format!("{d}/cgroup.procs")).collect()
}

/// Write `saved` as `dir/state.json` atomically (tmp + rename).
pub fn write(dir: &Path, saved: &Saved) -> Result<()> {
    let text = serde_json::to_vec(saved).map_err(|e| Fail::new(format!("encode state: {e}")))?;
    write_atomic(&dir.join(STATE), &text)
}

/// Write `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Fail::new(format!("write {}: {e}", path.display())))
}

/// The root directory, made (0700) if missing.
pub fn ensure_root(g: &Global) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&g.root)
        .map_err(|e| Fail::new(format!("create root {}: {e}", g.root.display())))
}

/// Make `<root>/<id>` exclusively: the id is ours from here on.
pub fn make_dir(g: &Global, id: &str) -> Result<PathBuf> {
    let dir = Container::dir_of(g, id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Fail::new(format!("container with id exists: {id}")))
        }
        Err(e) => Err(Fail::new(format!("create state directory {}: {e}", dir.display()))),
    }
}

/// `dir/lock`, held (flock LOCK_EX) while the returned file lives.
pub fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Fail::new("container does not exist"),
            _ => Fail::new(format!("lock {}: {e}", path.display())),
        })?;
    loop {
        // SAFETY: flock on our own descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Fail::new(format!("lock {}: {e}", path.display())));
        }
    }
}

/// Load `id` and take its lock (re-reading the state under it).
pub fn load_locked(g: &Global, id: &str) -> Result<(Container, File)> {
    let c = Container::load(g, id)?;
    let lock = lock(&c.dir)?;
    let c = Container::load(g, id)?;
    Ok((c, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "A1", "x_y.z-0"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "..", &"x".repeat(1025)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own stat");
        assert!(alive(me, t));
        assert!(!alive(me, t + 1));
        assert!(!alive(0, 0));
    }
}
