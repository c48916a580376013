//! The overlayfs rootfs: image layers read-only below, the container's
//! copy-on-write directory on top.
//!
//! Layers are added one by one with the new mount API (`lowerdir+`, Linux
//! 6.8+), so the number of layers is not bounded by the one-page limit of
//! mount(2)'s option string; older kernels get that string, and a clear
//! error when it is too long.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::errors::{Error, Result};
use crate::proto::Overlay;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::os("mount overlay", libc::EINVAL).with_path(s))
}

fn owned(ret: libc::c_long, step: &str) -> std::result::Result<OwnedFd, Error> {
    if ret < 0 {
        return Err(Error::last_os(step));
    }
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// `fsconfig(2)`; commands take neither key nor value (NULL).
fn set(fs: &OwnedFd, cmd: libc::c_uint, key: Option<&str>, value: Option<&str>) -> std::result::Result<(), i32> {
    let k = key.map(CString::new).transpose().map_err(|_| libc::EINVAL)?;
    let v = value.map(CString::new).transpose().map_err(|_| libc::EINVAL)?;
    let kptr = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
    let vptr = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: key and value are NULL or NUL-terminated strings alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, kptr, vptr, 0) };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(())
    }
}

/// Mount `ov` on `target`.
pub fn mount(ov: &Overlay, target: &str) -> Result<()> {
    match mount_api(ov, target) {
        Ok(()) => Ok(()),
        Err(e) if e.errno == libc::ENOSYS || (e.errno == libc::EINVAL && e.step == "overlay lowerdir+") => {
            mount_legacy(ov, target)
        }
        Err(e) => Err(e),
    }
}

fn mount_api(ov: &Overlay, target: &str) -> Result<()> {
    let name = c"overlay";
    // SAFETY: fsopen with a NUL-terminated filesystem name.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) }, "fsopen overlay")?;
    for dir in &ov.lower {
        set(&fs, FSCONFIG_SET_STRING, Some("lowerdir+"), Some(dir))
            .map_err(|e| Error::os("overlay lowerdir+", e).with_path(dir))?;
    }
    set(&fs, FSCONFIG_SET_STRING, Some("upperdir"), Some(&ov.upper))
        .map_err(|e| Error::os("overlay upperdir", e).with_path(&ov.upper))?;
    set(&fs, FSCONFIG_SET_STRING, Some("workdir"), Some(&ov.work))
        .map_err(|e| Error::os("overlay workdir", e).with_path(&ov.work))?;
    if ov.volatile {
        set(&fs, FSCONFIG_SET_FLAG, Some("volatile"), None).map_err(|e| Error::os("overlay volatile", e))?;
    }
    set(&fs, FSCONFIG_CMD_CREATE, None, None).map_err(|e| Error::os("mount overlay", e).with_path(target))?;
    // SAFETY: fsmount on the configured filesystem context.
    let mnt =
        owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) }, "fsmount overlay")?;
    let t = cstring(target)?;
    // SAFETY: moves the detached mount onto a NUL-terminated target path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(Error::last_os("move overlay into place").with_path(target));
    }
    Ok(())
}

fn mount_legacy(ov: &Overlay, target: &str) -> Result<()> {
    let mut data = format!("lowerdir={},upperdir={},workdir={}", ov.lower.join(":"), ov.upper, ov.work);
    if ov.volatile {
        data.push_str(",volatile");
    }
    let page = 4096;
    if data.len() >= page {
        return Err(Error::msg(
            "mount overlay",
            format!(
                "{} layers do not fit in one mount option page on this kernel (Linux 6.8+ has no such limit)",
                ov.lower.len()
            ),
        ));
    }
    crate::sys::mount(Some("overlay"), target, Some("overlay"), 0, Some(&data))
        .map_err(|e| Error::os("mount overlay", e).with_path(target))
}
