//! Thin wrappers over the syscalls that `nix` does not cover (openat2, clone3,
//! pidfds, execveat, capabilities, close_range).  Each `unsafe` block is a
//! single FFI call whose pointer arguments are valid for the call's duration.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path};

use crate::errors::{Error, Result};

fn check(ret: libc::c_long) -> std::result::Result<libc::c_long, i32> {
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(ret)
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
/// resolve `path` as if `dirfd` were `/`, so neither `..` nor symlinks
/// (absolute or relative) can lead out of it.  Returns the raw errno on error.
pub fn openat2_in_root(dirfd: BorrowedFd<'_>, path: &str, flags: i32, mode: u32) -> std::result::Result<OwnedFd, i32> {
    openat2(dirfd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// `openat2(2)` with explicit `RESOLVE_*` flags.
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> std::result::Result<OwnedFd, i32> {
    let cpath = CString::new(path).map_err(|_| libc::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 { u64::from(mode) } else { 0 },
        resolve,
    };
    // SAFETY: `cpath` and `how` outlive the call; the kernel copies both.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The normal, relative components of `path` (drops `/`, `.`; keeps `..` for
/// the kernel's in-root resolution to clamp).
fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

/// What `create_in_root` should make if the final component is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Dir,
    File,
}

/// Open `path` inside `root` as an `O_PATH` descriptor, creating missing
/// parents as directories (0755) and the last component as `kind`.  Every
/// lookup is scoped to `root`.
pub fn create_in_root(root: BorrowedFd<'_>, path: &str, kind: Kind) -> Result<OwnedFd> {
    let step = "resolve in rootfs";
    let rel = components(path).join("/");
    if rel.is_empty() {
        return openat2_in_root(root, ".", libc::O_PATH, 0).map_err(|e| Error::os(step, e).with_path(path));
    }
    match openat2_in_root(root, &rel, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) => {}
        Err(e) => return Err(Error::os(step, e).with_path(path)),
    }
    let parts = components(path);
    let mut dir = openat2_in_root(root, ".", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| Error::os(step, e).with_path(path))?;
    let mut walked = String::new();
    for (i, name) in parts.iter().enumerate() {
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(name);
        let last = i + 1 == parts.len();
        let want_dir = !last || kind == Kind::Dir;
        let flags = libc::O_PATH | if want_dir { libc::O_DIRECTORY } else { 0 };
        match openat2_in_root(root, &walked, flags, 0) {
            Ok(fd) => {
                dir = fd;
                continue;
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(Error::os(step, e).with_path(path)),
        }
        let cname = CString::new(name.as_str()).map_err(|_| Error::os(step, libc::EINVAL).with_path(path))?;
        // SAFETY: `dir` is a valid directory fd and `cname` a NUL-terminated name;
        // a single component cannot lead outside `dir`, and an existing symlink
        // there makes the call fail with EEXIST rather than follow it.
        let rc = unsafe {
            if want_dir {
                libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755)
            } else {
                libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), libc::S_IFREG | 0o644, 0)
            }
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            if err != libc::EEXIST {
                return Err(Error::os(if want_dir { "mkdir" } else { "mknod" }, err).with_path(path));
            }
        }
        dir = openat2_in_root(root, &walked, flags, 0).map_err(|e| Error::os(step, e).with_path(path))?;
    }
    Ok(dir)
}

/// `/proc/self/fd/N`: the magic link through which a mount targets exactly
/// the inode that `fd` holds, without resolving any path again.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Arguments of `clone3(2)`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_PIDFD: u64 = 0x1000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Result of [`clone3_fork`].
pub enum Forked {
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
    Child,
}

/// Fork-like `clone3` with namespace `flags`, returning a pidfd for the child.
/// `cgroup_fd` places the child straight into a cgroup v2 group.
///
/// # Safety
/// In a multi-threaded caller the child may only use async-signal-safe
/// functions until it execs (no allocation, no locks).
pub unsafe fn clone3_fork(flags: u64, cgroup_fd: Option<RawFd>) -> std::result::Result<Forked, i32> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let ret = check(libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()))?;
    if ret == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent { pid: ret as libc::pid_t, pidfd: OwnedFd::from_raw_fd(pidfd) })
    }
}

/// Send `sig` to the process behind `pidfd` (never a recycled PID).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> std::result::Result<(), i32> {
    // SAFETY: plain syscall on a valid fd; a null siginfo means "as kill(2)".
    check(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    })
    .map(|_| ())
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// Docker's convention: the exit code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

const P_PIDFD: libc::idtype_t = 3;

/// Reap the child behind `pidfd`.  With `block` false, `Ok(None)` means it is
/// still running.
pub fn pidfd_wait(pidfd: BorrowedFd<'_>, block: bool) -> std::result::Result<Option<Exit>, i32> {
    loop {
        // SAFETY: siginfo_t is plain old data; zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let options = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let rc = unsafe { libc::waitid(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, options) };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            if errno == libc::EINTR {
                continue;
            }
            return Err(errno);
        }
        // SAFETY: waitid filled `info` for a child event (or left it zeroed).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match code {
            libc::CLD_EXITED => Exit::Code(status),
            _ => Exit::Signal(status),
        }));
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`; returns only on failure.
///
/// # Safety
/// The pointer arrays must be NULL-terminated arrays of valid C strings.
pub unsafe fn execveat_fd(fd: RawFd, argv: *const *const libc::c_char, envp: *const *const libc::c_char) -> i32 {
    let empty = c"";
    libc::syscall(libc::SYS_execveat, fd, empty.as_ptr(), argv, envp, libc::AT_EMPTY_PATH);
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Mark every descriptor from `first` upwards close-on-exec: one
/// close_range call, or, where that is refused (kernels before 5.11, or a
/// seccomp profile that predates the call and is already installed because
/// the process has no no_new_privs), one fcntl per descriptor listed in
/// /proc/self/fd.
pub fn cloexec_from(first: u32) -> std::result::Result<(), i32> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags of this process.
    match check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) }) {
        Ok(_) => Ok(()),
        Err(libc::ENOSYS | libc::EPERM | libc::EINVAL) => cloexec_listed(first),
        Err(e) => Err(e),
    }
}

fn cloexec_listed(first: u32) -> std::result::Result<(), i32> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    for fd in dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok())) {
        if fd >= first as RawFd {
            // SAFETY: F_SETFD changes one descriptor flag; a descriptor that
            // is gone (the directory's own) gives EBADF, which is ignored.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set this thread's effective, permitted and inheritable capability sets.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> std::result::Result<(), i32> {
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: effective as u32, permitted: permitted as u32, inheritable: inheritable as u32 },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and the two-element data array are valid for the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) }).map(|_| ())
}

/// `mount(2)` with plain strings; `None` passes NULL.
pub fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::result::Result<(), i32> {
    let c = |s: Option<&str>| s.map(CString::new).transpose().map_err(|_| libc::EINVAL);
    let (source, fstype, data) = (c(source)?, c(fstype)?, c(data)?);
    let target = CString::new(target).map_err(|_| libc::EINVAL)?;
    let ptr = |s: &Option<CString>| s.as_deref().map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a NUL-terminated string alive for the call.
    let rc =
        unsafe { libc::mount(ptr(&source), target.as_ptr(), ptr(&fstype), flags, ptr(&data).cast::<libc::c_void>()) };
    check(rc as libc::c_long).map(|_| ())
}

/// Write `data` to the file at `path` (used for /proc and /sys knobs).
pub fn write_file(path: &str, data: &[u8]) -> std::result::Result<(), i32> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().write(true).open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    f.write_all(data).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}
