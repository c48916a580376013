//! Persistent network namespaces: a new namespace bind-mounted onto a file
//! (as `ip netns add` and CNI do), so that it outlives every process in it
//! and can be set up before the container's init joins it by path.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::errors::{Error, Result};

/// Make a new network namespace and bind-mount it onto `path` (created
/// empty, mode 0; it must not exist).  The namespace is made by a
/// short-lived thread that unshares its network namespace and mounts
/// `/proc/thread-self/ns/net`; the caller's namespaces never change.  On
/// failure nothing is left: no file, no mount.
pub fn create(path: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::os("create netns file", e.raw_os_error().unwrap_or(libc::EIO)).with_path(path))?;
    let target = path.to_owned();
    let made = std::thread::Builder::new()
        .name("pyctr-netns".into())
        .spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::os("unshare network namespace", e as i32))?;
            mount(Some("/proc/thread-self/ns/net"), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| Error::os("bind netns", e as i32).with_path(&target))
        })
        .map_err(|e| Error::os("spawn netns thread", e.raw_os_error().unwrap_or(libc::EAGAIN)))?
        .join()
        .unwrap_or_else(|_| Err(Error::msg("create netns", "the netns thread panicked")));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unmount (lazily) and unlink a namespace file made by [`create`]; the
/// namespace goes once no process is left in it.  A missing file, or one
/// that is no longer mounted (a crash between the steps), is fine.
pub fn remove(path: &str) -> Result<bool> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::os("unmount netns", e as i32).with_path(path)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::os("remove netns file", e.raw_os_error().unwrap_or(libc::EIO)).with_path(path)),
    }
}
