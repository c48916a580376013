//! The spec's `mounts`, one at a time, each target resolved inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::errors::{Error, Result};
use crate::spec::Mount;
use crate::sys::{self, create_in_root, fd_path, Kind};

/// Mount options split into flags, propagation and filesystem data.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: libc::c_ulong,
    pub clear: libc::c_ulong,
    pub propagation: libc::c_ulong,
    pub data: Vec<String>,
    pub bind: bool,
}

impl Options {
    pub fn parse(options: &[String]) -> Options {
        let mut o = Options::default();
        for opt in options {
            let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
                "ro" => (libc::MS_RDONLY, 0),
                "rw" => (0, libc::MS_RDONLY),
                "nosuid" => (libc::MS_NOSUID, 0),
                "suid" => (0, libc::MS_NOSUID),
                "nodev" => (libc::MS_NODEV, 0),
                "dev" => (0, libc::MS_NODEV),
                "noexec" => (libc::MS_NOEXEC, 0),
                "exec" => (0, libc::MS_NOEXEC),
                "sync" => (libc::MS_SYNCHRONOUS, 0),
                "async" => (0, libc::MS_SYNCHRONOUS),
                "dirsync" => (libc::MS_DIRSYNC, 0),
                "mand" => (libc::MS_MANDLOCK, 0),
                "nomand" => (0, libc::MS_MANDLOCK),
                "noatime" => (libc::MS_NOATIME, 0),
                "atime" => (0, libc::MS_NOATIME),
                "nodiratime" => (libc::MS_NODIRATIME, 0),
                "diratime" => (0, libc::MS_NODIRATIME),
                "relatime" => (libc::MS_RELATIME, 0),
                "norelatime" => (0, libc::MS_RELATIME),
                "strictatime" => (libc::MS_STRICTATIME, 0),
                "nostrictatime" => (0, libc::MS_STRICTATIME),
                "bind" => {
                    o.bind = true;
                    (libc::MS_BIND, 0)
                }
                "rbind" => {
                    o.bind = true;
                    (libc::MS_BIND | libc::MS_REC, 0)
                }
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                    o.propagation = propagation_flag(opt).unwrap_or(0);
                    (0, 0)
                }
                "tmpcopyup" | "defaults" => (0, 0),
                other => {
                    o.data.push(other.to_owned());
                    (0, 0)
                }
            };
            o.flags = (o.flags | set) & !clear;
            o.clear |= clear;
        }
        o
    }

    fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// `MS_*` flags of a propagation name (`rprivate`, `slave`, ...).
pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    let (rec, base) = match name.strip_prefix('r') {
        Some(b) if b != "o" && b != "w" => (libc::MS_REC, b),
        _ => (0, name),
    };
    let flag = match base {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some(rec | flag)
}

/// Flags a bind remount must keep: those the kernel locks on the source mount.
pub fn locked_flags(fd: BorrowedFd<'_>) -> libc::c_ulong {
    flags_of(nix::sys::statvfs::fstatvfs(fd))
}

/// [`locked_flags`] by path.
pub fn locked_flags_of(path: &str) -> libc::c_ulong {
    flags_of(nix::sys::statvfs::statvfs(path))
}

fn flags_of(st: nix::Result<nix::sys::statvfs::Statvfs>) -> libc::c_ulong {
    match st {
        Ok(st) => {
            use nix::sys::statvfs::FsFlags;
            let f = st.flags();
            let mut out = 0;
            for (st_flag, ms) in [
                (FsFlags::ST_NOSUID, libc::MS_NOSUID),
                (FsFlags::ST_NODEV, libc::MS_NODEV),
                (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
                (FsFlags::ST_NOATIME, libc::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, libc::MS_RELATIME),
            ] {
                if f.contains(st_flag) {
                    out |= ms;
                }
            }
            out
        }
        Err(_) => 0,
    }
}

/// Bind `source` (a host path or a `/proc/self/fd/N` link) onto the
/// in-root `dest`, then apply read-only and other per-mount flags.
pub fn bind(root: BorrowedFd<'_>, source: &str, dest: &str, opts: &Options, step: &str) -> Result<()> {
    let meta =
        std::fs::metadata(source).map_err(|e| Error::os(step, e.raw_os_error().unwrap_or(0)).with_path(source))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target = create_in_root(root, dest, kind)?;
    let rec = opts.flags & libc::MS_REC;
    sys::mount(Some(source), &fd_path(target.as_fd()), None, libc::MS_BIND | rec, None)
        .map_err(|e| Error::os(step, e).with_path(dest))?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC);
    if extra != 0 {
        let mounted = create_in_root(root, dest, kind)?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | rec | extra | (locked_flags(mounted.as_fd()) & !opts.clear);
        sys::mount(None, &fd_path(mounted.as_fd()), None, flags, None)
            .map_err(|e| Error::os(format!("{step} (remount)"), e).with_path(dest))?;
    }
    set_propagation(root, dest, opts.propagation, step)
}

fn set_propagation(root: BorrowedFd<'_>, dest: &str, propagation: libc::c_ulong, step: &str) -> Result<()> {
    if propagation == 0 {
        return Ok(());
    }
    let target = create_in_root(root, dest, Kind::Dir)?;
    sys::mount(None, &fd_path(target.as_fd()), None, propagation, None)
        .map_err(|e| Error::os(format!("{step} (propagation)"), e).with_path(dest))
}

/// Mount one spec entry.  `bundle` anchors relative bind sources.
pub fn mount_one(root: BorrowedFd<'_>, m: &Mount, bundle: &Path) -> Result<()> {
    let opts = Options::parse(&m.options);
    let kind = m.kind.as_deref().unwrap_or(if opts.bind { "bind" } else { "none" });
    let step = format!("mount {}", m.destination);
    if opts.bind || kind == "bind" {
        let source = m.source.as_deref().ok_or_else(|| Error::msg(&step, "bind mount without source"))?;
        let source = if source.starts_with('/') {
            source.to_owned()
        } else {
            bundle.join(source).to_string_lossy().into_owned()
        };
        return bind(root, &source, &m.destination, &opts, &step);
    }
    if kind == "cgroup" || kind == "cgroup2" {
        return mount_cgroup(root, m, &opts, &step);
    }
    let target = create_in_root(root, &m.destination, Kind::Dir)?;
    let source = m.source.as_deref().unwrap_or(kind);
    let data = opts.data();
    let res = sys::mount(Some(source), &fd_path(target.as_fd()), Some(kind), opts.flags, data.as_deref());
    match res {
        Ok(()) => {}
        // sysfs cannot be mounted fresh from a user namespace that does not
        // own the network namespace: fall back to the host's, read-only.
        Err(libc::EPERM) if kind == "sysfs" => {
            let ro =
                Options { flags: libc::MS_BIND | libc::MS_REC | (opts.flags & libc::MS_RDONLY), ..Default::default() };
            return bind(root, "/sys", &m.destination, &ro, &step);
        }
        Err(e) => return Err(Error::os(step, e).with_path(&m.destination)),
    }
    set_propagation(root, &m.destination, opts.propagation, &step)
}

/// One cgroup hierarchy of the host, from /proc/self/mountinfo.
struct Hierarchy {
    dir: String,
    fstype: String,
    options: String,
}

fn host_hierarchies() -> Vec<Hierarchy> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mountpoint = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let (fstype, _src, superopts) = (post.next().unwrap_or(""), post.next(), post.next().unwrap_or(""));
        let Some(dir) = mountpoint.strip_prefix("/sys/fs/cgroup/") else { continue };
        if (fstype == "cgroup" || fstype == "cgroup2") && !dir.contains('/') {
            let options = superopts.split(',').filter(|o| !matches!(*o, "rw" | "ro")).collect::<Vec<_>>().join(",");
            out.push(Hierarchy { dir: dir.to_owned(), fstype: fstype.to_owned(), options });
        }
    }
    out
}

/// /sys/fs/cgroup for the container: cgroup2 on a unified host; on a v1 or
/// hybrid host a tmpfs holding one mount per hierarchy.  Inside a cgroup
/// namespace each shows the container's own subtree.
fn mount_cgroup(root: BorrowedFd<'_>, m: &Mount, opts: &Options, step: &str) -> Result<()> {
    let flags = opts.flags & !libc::MS_RDONLY;
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    let target = create_in_root(root, &m.destination, Kind::Dir)?;
    if unified {
        return sys::mount(Some("cgroup2"), &fd_path(target.as_fd()), Some("cgroup2"), opts.flags, None)
            .map_err(|e| Error::os(step, e).with_path(&m.destination));
    }
    sys::mount(Some("tmpfs"), &fd_path(target.as_fd()), Some("tmpfs"), flags, Some("mode=755"))
        .map_err(|e| Error::os(step, e).with_path(&m.destination))?;
    for h in host_hierarchies() {
        let dest = format!("{}/{}", m.destination.trim_end_matches('/'), h.dir);
        let sub: OwnedFd = create_in_root(root, &dest, Kind::Dir)?;
        let data = (!h.options.is_empty()).then_some(h.options.as_str());
        sys::mount(Some("cgroup"), &fd_path(sub.as_fd()), Some(&h.fstype), opts.flags, data)
            .map_err(|e| Error::os(step, e).with_path(&dest))?;
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        let mounted = create_in_root(root, &m.destination, Kind::Dir)?;
        sys::mount(None, &fd_path(mounted.as_fd()), None, libc::MS_REMOUNT | libc::MS_RDONLY | flags, None)
            .map_err(|e| Error::os(format!("{step} (remount ro)"), e).with_path(&m.destination))?;
    }
    Ok(())
}

/// The device number of a file, as (major, minor).
pub fn device_of(meta: &std::fs::Metadata) -> (u64, u64) {
    let rdev = meta.rdev();
    (libc::major(rdev) as u64, libc::minor(rdev) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_data_and_propagation() {
        let o = Options::parse(&s(&["nosuid", "noexec", "mode=755", "size=65536k", "rslave", "ro"]));
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RDONLY);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        assert_eq!(o.propagation, libc::MS_REC | libc::MS_SLAVE);
        assert!(!o.bind);
    }

    #[test]
    fn rw_after_ro_clears_read_only_and_rbind_is_recursive() {
        let o = Options::parse(&s(&["ro", "rw", "rbind"]));
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert!(o.bind);
    }

    #[test]
    fn propagation_names() {
        assert_eq!(propagation_flag("private"), Some(libc::MS_PRIVATE));
        assert_eq!(propagation_flag("rshared"), Some(libc::MS_REC | libc::MS_SHARED));
        assert_eq!(propagation_flag("ro"), None);
    }
}
