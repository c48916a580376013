//! The container's root filesystem: propagation, the rootfs bind, the spec's
//! mounts, /dev, masked and read-only paths, then pivot_root.  Everything up
//! to pivot_root addresses the rootfs through one directory fd and in-root
//! resolution, so an image's symlinks can never make us touch the host.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::stat::{fstat, makedev, Mode, SFlag};

use crate::errors::{Error, Result};
use crate::mounts::{self, locked_flags, propagation_flag, Options};
use crate::proto::Overlay;
use crate::spec::{Device, Spec};
use crate::sys::{self, create_in_root, fd_path, openat2_in_root, Kind};

/// The devices OCI requires in every container: (name, major, minor).
const DEFAULT_DEVICES: [(&str, i64, i64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Make the mount tree private, put the rootfs in place (the overlay, or a
/// bind of the directory onto itself) and open it.
pub fn enter(spec: &Spec, rootfs: &str, overlay: Option<&Overlay>) -> Result<OwnedFd> {
    let propagation = spec
        .linux()
        .rootfs_propagation
        .as_deref()
        .map(|p| propagation_flag(p).ok_or_else(|| Error::msg("spec", format!("unknown rootfsPropagation {p:?}"))))
        .transpose()?;
    // "shared" and "unbindable" are applied to the new root after
    // pivot_root: until then the host must not see our mounts, and an
    // unbindable tree could not be bound onto itself.
    let initial = match propagation {
        Some(p) if p & AFTER_PIVOT == 0 => p | libc::MS_REC,
        _ => libc::MS_REC | libc::MS_PRIVATE,
    };
    sys::mount(None, "/", None, initial, None).map_err(|e| Error::os("make mounts private", e).with_path("/"))?;
    match overlay {
        Some(ov) => crate::overlay::mount(ov, rootfs)?,
        None => sys::mount(Some(rootfs), rootfs, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| Error::os("bind rootfs", e).with_path(rootfs))?,
    }
    open_root(rootfs)
}

/// Propagation types set on the new root only once it is the root.
const AFTER_PIVOT: libc::c_ulong = libc::MS_SHARED | libc::MS_UNBINDABLE;

/// Open the rootfs directory (`O_PATH`).  Without a mount namespace of its
/// own the container shares the runtime's mounts, so this is all that is
/// done to it: nothing is mounted (it would change the host's tree) and
/// [`chroot`] enters it.
pub fn open_root(rootfs: &str) -> Result<OwnedFd> {
    let c = CString::new(rootfs).map_err(|_| Error::os("open rootfs", libc::EINVAL))?;
    // SAFETY: opening a path with a NUL-terminated name.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("open rootfs").with_path(rootfs));
    }
    // SAFETY: fresh descriptor, owned from here on.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Enter the rootfs with chroot (no mount namespace: see [`open_root`]).
pub fn chroot(root: OwnedFd) -> Result<()> {
    nix::unistd::fchdir(&root).map_err(|e| Error::os("chroot", e as i32).with_path("."))?;
    nix::unistd::chroot(".").map_err(|e| Error::os("chroot", e as i32).with_path("."))?;
    nix::unistd::chdir("/").map_err(|e| Error::os("chdir", e as i32).with_path("/"))
}

/// Everything between the rootfs bind and pivot_root.
pub fn populate(
    root: BorrowedFd<'_>,
    spec: &Spec,
    bundle: &Path,
    privileged_devices: bool,
    marks: &mut crate::trace::Marks,
) -> Result<()> {
    for m in &spec.mounts {
        mounts::mount_one(root, m, bundle)?;
    }
    marks.mark("init: spec mounts");
    let mut devices: Vec<Device> = DEFAULT_DEVICES
        .iter()
        .map(|(name, major, minor)| Device {
            kind: "c".into(),
            path: format!("/dev/{name}"),
            major: *major,
            minor: *minor,
            file_mode: Some(0o666),
            uid: Some(0),
            gid: Some(0),
        })
        .collect();
    devices.extend(spec.linux().devices.iter().cloned());
    for dev in &devices {
        create_device(root, dev, privileged_devices)?;
    }
    dev_links(root, spec)?;
    marks.mark("init: devices and /dev links");
    for (key, value) in &spec.linux().sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let fd = openat2_in_root(root, &path, libc::O_WRONLY, 0).map_err(|e| Error::os("sysctl", e).with_path(key))?;
        nix::unistd::write(&fd, value.as_bytes()).map_err(|e| Error::os("sysctl", e as i32).with_path(key))?;
    }
    mask_paths(root, &spec.linux().masked_paths)?;
    marks.mark("init: sysctls, masked paths");
    for path in &spec.linux().readonly_paths {
        readonly_path(root, path)?;
    }
    marks.mark("init: readonly paths");
    Ok(())
}

fn create_device(root: BorrowedFd<'_>, dev: &Device, can_mknod: bool) -> Result<()> {
    let step = "create device";
    let kind = match dev.kind.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => return Err(Error::msg("spec", format!("unknown device type {other:?}")).with_path(&dev.path)),
    };
    let path = Path::new(&dev.path);
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p.to_string_lossy(), n.to_string_lossy()),
        _ => return Err(Error::msg(step, "bad device path").with_path(&dev.path)),
    };
    // An O_PATH directory fd serves the *at calls below as it is.
    let dir = create_in_root(root, &parent, Kind::Dir)?;
    let mode = Mode::from_bits_truncate(dev.file_mode.unwrap_or(0o666) & 0o7777);
    let rdev = makedev(dev.major as u64, dev.minor as u64);
    let made = if can_mknod {
        nix::sys::stat::mknodat(dir.as_fd(), name.as_ref(), kind, mode, rdev)
    } else {
        Err(nix::errno::Errno::EPERM)
    };
    match made {
        Ok(()) => {
            // mknod honours the umask; the spec's mode is exact.
            nix::sys::stat::fchmodat(dir.as_fd(), name.as_ref(), mode, nix::sys::stat::FchmodatFlags::NoFollowSymlink)
                .or_else(|e| if e == nix::errno::Errno::EOPNOTSUPP { Ok(()) } else { Err(e) })
                .map_err(|e| Error::os(step, e as i32).with_path(&dev.path))?;
            let (uid, gid) = (dev.uid.map(nix::unistd::Uid::from_raw), dev.gid.map(nix::unistd::Gid::from_raw));
            nix::unistd::fchownat(dir.as_fd(), name.as_ref(), uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| Error::os(step, e as i32).with_path(&dev.path))
        }
        Err(nix::errno::Errno::EEXIST) => Ok(()),
        // In a user namespace mknod is refused: bind the host's node instead.
        Err(nix::errno::Errno::EPERM) if kind == SFlag::S_IFCHR => {
            let host = format!("/dev/{name}");
            mounts::bind(root, &host, &dev.path, &Options { flags: libc::MS_BIND, ..Default::default() }, step)
        }
        Err(e) => Err(Error::os(step, e as i32).with_path(&dev.path)),
    }
}

fn dev_links(root: BorrowedFd<'_>, spec: &Spec) -> Result<()> {
    let dev = create_in_root(root, "/dev", Kind::Dir)?;
    let dev = openat2_in_root(dev.as_fd(), ".", libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(|e| Error::os("open /dev", e))?;
    let has_pts = spec.mounts.iter().any(|m| m.destination == "/dev/pts");
    let ptmx = has_pts.then_some(("ptmx", "pts/ptmx"));
    for (name, target) in DEV_LINKS.iter().copied().chain(ptmx) {
        if name == "ptmx" {
            // The image's or our own /dev/ptmx gives way to the instance's.
            let _ = nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::os("symlink", e as i32).with_path(format!("/dev/{name}"))),
        }
    }
    Ok(())
}

/// Open the container's /dev/null and check that it is the null device
/// (1:3) before anything is bind-mounted from it (CVE-2025-31133).
fn verified_null(root: BorrowedFd<'_>) -> Result<OwnedFd> {
    let step = "mask paths";
    let fd =
        openat2_in_root(root, "/dev/null", libc::O_PATH, 0).map_err(|e| Error::os(step, e).with_path("/dev/null"))?;
    let st = fstat(fd.as_fd()).map_err(|e| Error::os(step, e as i32).with_path("/dev/null"))?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != makedev(1, 3) {
        return Err(Error::msg(step, "/dev/null is not the null device").with_path("/dev/null"));
    }
    Ok(fd)
}

fn mask_paths(root: BorrowedFd<'_>, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = verified_null(root)?;
    for path in paths {
        let target = match openat2_in_root(root, path, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(Error::os("mask path", e).with_path(path)),
        };
        let st = fstat(target.as_fd()).map_err(|e| Error::os("mask path", e as i32).with_path(path))?;
        let res = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            sys::mount(Some("tmpfs"), &fd_path(target.as_fd()), Some("tmpfs"), libc::MS_RDONLY, Some("size=0"))
        } else {
            sys::mount(Some(&fd_path(null.as_fd())), &fd_path(target.as_fd()), None, libc::MS_BIND, None)
        };
        res.map_err(|e| Error::os("mask path", e).with_path(path))?;
    }
    Ok(())
}

fn readonly_path(root: BorrowedFd<'_>, path: &str) -> Result<()> {
    let step = "readonly path";
    let target = match openat2_in_root(root, path, libc::O_PATH, 0) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::os(step, e).with_path(path)),
    };
    let p = fd_path(target.as_fd());
    sys::mount(Some(&p), &p, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(|e| Error::os(step, e).with_path(path))?;
    let mounted = openat2_in_root(root, path, libc::O_PATH, 0).map_err(|e| Error::os(step, e).with_path(path))?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | locked_flags(mounted.as_fd());
    sys::mount(None, &fd_path(mounted.as_fd()), None, flags, None).map_err(|e| Error::os(step, e).with_path(path))
}

/// Switch to the rootfs with pivot_root and detach the old root.
pub fn pivot(root: OwnedFd, spec: &Spec) -> Result<()> {
    nix::unistd::fchdir(&root).map_err(|e| Error::os("pivot_root", e as i32).with_path("."))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| Error::os("pivot_root", e as i32))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::os("detach old root", e as i32))?;
    nix::unistd::chdir("/").map_err(|e| Error::os("chdir", e as i32).with_path("/"))?;
    drop(root);
    if let Some(p) = spec.linux().rootfs_propagation.as_deref().and_then(propagation_flag) {
        if p & AFTER_PIVOT != 0 {
            sys::mount(None, "/", None, p, None).map_err(|e| Error::os("rootfs propagation", e))?;
        }
    }
    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | mounts::locked_flags_of("/");
        sys::mount(None, "/", None, flags, None).map_err(|e| Error::os("readonly rootfs", e).with_path("/"))?;
    }
    Ok(())
}
