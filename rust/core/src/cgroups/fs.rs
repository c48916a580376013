//! File operations on a cgroup filesystem, each failure naming its file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::errors::{Error, Result};

/// Write `value` to the control file `dir/name` (one write, as the kernel
/// parses each write on its own).
pub fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    let fail = |e: std::io::Error| {
        Error::os(format!("write {name}"), e.raw_os_error().unwrap_or(libc::EIO))
            .with_path(path.to_string_lossy())
            .with_detail(format!("value {value:?}"))
    };
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).map_err(fail)?;
    f.write_all(value.as_bytes()).map_err(fail)
}

/// The text of `dir/name`, None if it does not exist.
pub fn read(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(Error::os(format!("read {name}"), e.raw_os_error().unwrap_or(libc::EIO))
                .with_path(path.to_string_lossy()))
        }
    }
}

pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

/// Make `dir` and any missing ancestors below `mount`, top-down, appending
/// each one made here to `made`.  `dir` must lie under `mount`.  An
/// ancestor that vanishes meanwhile (another container's removal pruned the
/// empty parent) is made again.
pub fn make_dirs(mount: &Path, dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    let rel = dir.strip_prefix(mount).map_err(|_| {
        Error::msg("cgroup", format!("{} is not under its hierarchy {}", dir.display(), mount.display()))
    })?;
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(
            Error::msg("cgroup", "the group path must not contain '..' or '.'").with_path(dir.to_string_lossy())
        );
    }
    let mut attempts = 0;
    'walk: loop {
        let mut level = mount.to_path_buf();
        for part in rel.components() {
            level.push(part);
            match std::fs::create_dir(&level) {
                Ok(()) => made.push(level.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && level.is_dir() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 20 => {
                    attempts += 1;
                    continue 'walk;
                }
                Err(e) => {
                    return Err(Error::os("create cgroup", e.raw_os_error().unwrap_or(libc::EIO))
                        .with_path(level.to_string_lossy()))
                }
            }
        }
        return Ok(());
    }
}

/// rmdir a cgroup, retried while it is busy (its last process is still being
/// torn down) for up to `timeout`; already gone is fine.
pub fn remove_dir(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(
                    Error::os("remove cgroup", e.raw_os_error().unwrap_or(libc::EIO)).with_path(dir.to_string_lossy())
                )
            }
        }
    }
}

/// Undo [`make_dirs`]: remove what was made, deepest first, ignoring errors
/// (the original failure is what the caller reports).
pub fn unmake(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        let _ = remove_dir(dir, Duration::from_millis(200));
    }
}

/// Poll `done` until it says yes or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
