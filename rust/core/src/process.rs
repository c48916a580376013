//! The container process itself: identity, limits, terminal, working
//! directory and the final execve.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;

use nix::unistd::{Gid, Uid};

use crate::caps;
use crate::errors::{Error, Result};
use crate::proto;
use crate::spec::{Process, Rlimit};

fn rlimit_resource(name: &str) -> Result<libc::__rlimit_resource_t> {
    Ok(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        other => return Err(Error::msg("rlimits", format!("unknown rlimit {other:?}"))),
    })
}

/// Apply the spec's rlimits.  Raising a hard limit needs CAP_SYS_RESOURCE;
/// the error says so rather than a bare EPERM.
pub fn set_rlimits(limits: &[Rlimit]) -> Result<()> {
    for l in limits {
        let res = rlimit_resource(&l.kind)?;
        let lim = libc::rlimit { rlim_cur: l.soft, rlim_max: l.hard };
        // SAFETY: `lim` is a valid rlimit for the call.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            let err = Error::last_os("setrlimit").with_path(&l.kind);
            return Err(if err.errno == libc::EPERM {
                err.with_detail(format!(
                    "hard limit {} is above the caller's (raising it needs CAP_SYS_RESOURCE)",
                    l.hard
                ))
            } else {
                err
            });
        }
    }
    Ok(())
}

/// Bring the loopback interface up in a fresh network namespace.
pub fn loopback_up() -> Result<()> {
    // SAFETY: socket(2) with constant arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Error::last_os("loopback up"));
    }
    // SAFETY: fresh descriptor, owned from here on.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ioctls on a socket with a valid ifreq.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::last_os("loopback up").with_path("lo"));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::last_os("loopback up").with_path("lo"));
        }
    }
    Ok(())
}

/// Open a pty from the container's devpts instance, make its slave our
/// controlling terminal and stdio, and hand the master to the parent.
pub fn setup_terminal(sock: BorrowedFd<'_>, uid: u32, gid: u32, size: Option<(u16, u16)>) -> Result<()> {
    let step = "open terminal";
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::os(step, e as i32).with_path("/dev/ptmx"))?;
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK/TIOCGPTN take pointers to ints that live for the call.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) < 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) < 0
        {
            return Err(Error::last_os(step).with_path("/dev/ptmx"));
        }
    }
    let slave_path = format!("/dev/pts/{n}");
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::os(step, e as i32).with_path(&slave_path))?;
    let _ = nix::unistd::fchown(&slave, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    if let Some((rows, cols)) = size {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    nix::unistd::setsid().map_err(|e| Error::os("setsid", e as i32))?;
    // SAFETY: TIOCSCTTY with an integer argument on our own pty.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::last_os("set controlling terminal").with_path(&slave_path));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::last_os("dup2 terminal"));
        }
    }
    proto::send_fd(sock, proto::MASTER, master.as_raw_fd())
}

/// Switch to the spec's uid/gid/groups, keeping capabilities across the uid
/// change, then set the capability sets (holding CAP_SYS_ADMIN on top when
/// `hold_sys_admin`: a seccomp filter still to install needs it).
pub fn switch_user(p: &Process, hold_sys_admin: bool) -> Result<()> {
    let sets = match &p.capabilities {
        Some(c) => caps::Sets::from_spec(c)?,
        None => caps::Sets::default(),
    };
    let last = caps::last_cap();
    caps::drop_bounding(sets.bounding, last)?;
    let groups: Vec<Gid> = p.user.additional_gids.iter().copied().map(Gid::from_raw).collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // setgroups is denied in user namespaces mapped with "deny".
        Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(Error::os("setgroups", e as i32)),
    }
    let gid = Gid::from_raw(p.user.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| Error::os("setresgid", e as i32).with_path(p.user.gid.to_string()))?;
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::os("keepcaps", e as i32))?;
    let uid = Uid::from_raw(p.user.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| Error::os("setresuid", e as i32).with_path(p.user.uid.to_string()))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::os("keepcaps", e as i32))?;
    if hold_sys_admin {
        caps::apply_holding_sys_admin(&sets, last)?;
    } else {
        caps::apply(&sets, last)?;
    }
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| Error::os("no_new_privs", e as i32))?;
    }
    Ok(())
}

/// Whether the host's kernel has AppArmor enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y")
}

/// Ask AppArmor to confine the program with `profile` from its execve on
/// (`change_onexec`); an error when the host has no AppArmor, as runc.
pub fn set_apparmor_profile(profile: &str) -> Result<()> {
    if !apparmor_enabled() {
        return Err(Error::msg("apparmor", "AppArmor is not enabled on this host").with_path(profile));
    }
    let value = format!("exec {profile}");
    crate::sys::write_file("/proc/self/attr/apparmor/exec", value.as_bytes())
        .or_else(|_| crate::sys::write_file("/proc/self/attr/exec", value.as_bytes()))
        .map_err(|e| Error::os("apparmor", e).with_path(profile))
}

/// chdir into the working directory and make sure it is inside the
/// container: a cwd reached through a leaked host descriptor shows up as
/// "(unreachable)" (CVE-2024-21626).
pub fn enter_cwd(cwd: &str) -> Result<()> {
    let cwd = if cwd.is_empty() { "/" } else { cwd };
    nix::unistd::chdir(cwd).map_err(|e| Error::os("chdir", e as i32).with_path(cwd))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) | Err(nix::errno::Errno::ENOENT) => {
            Err(Error::msg("chdir", "working directory is outside the container").with_path(cwd))
        }
        Err(e) => Err(Error::os("getcwd", e as i32).with_path(cwd)),
    }
}

/// Find `name` the way execvp does, on the container's PATH.  Returns the
/// path to exec, or an error carrying ENOENT (127) or EACCES (126).
pub fn lookup(name: &str, env: &[String]) -> Result<String> {
    if name.contains('/') {
        return Ok(name.to_owned());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{dir}/{name}");
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            denied.get_or_insert(candidate);
        }
    }
    Err(match denied {
        Some(c) => Error::os("execve", libc::EACCES).with_path(c),
        None => Error::os("execve", libc::ENOENT).with_path(name).with_detail("executable file not found in $PATH"),
    })
}

/// Close every inherited descriptor at exec (but 3 .. 3+`keep_fds`), tell
/// the parent over `sock` (if it still listens), then execve.  Returns only
/// on failure.
pub fn exec(
    path: &str,
    args: &[String],
    env: &[String],
    sock: Option<RawFd>,
    keep_fds: u32,
    marks: &crate::trace::Marks,
) -> Error {
    let to_c = |v: &[String]| v.iter().map(|s| CString::new(s.as_bytes())).collect::<std::result::Result<Vec<_>, _>>();
    let (Ok(cpath), Ok(cargs), Ok(cenv)) = (CString::new(path), to_c(args), to_c(env)) else {
        return Error::msg("execve", "argument or environment contains a NUL byte").with_path(path);
    };
    if let Err(e) = crate::sys::cloexec_from(3 + keep_fds) {
        return Error::os("close inherited descriptors", e);
    }
    // The filter goes in last, so the profile need not allow anything the
    // init did before.  With no_new_privs that is after the EXEC record to
    // the parent: the profile needs nothing but what the program calls (and
    // execve).  Without, CAP_SYS_ADMIN was held to install it and is dropped
    // right after, before the record, so a profile refusing capset fails
    // the start instead of running the program with the capability.
    let install = || crate::seccomp::install_pending().and_then(|()| caps::drop_held());
    let held = caps::holding();
    if held {
        if let Err(e) = install() {
            return e;
        }
    }
    if let Some(sock) = sock {
        // SAFETY: `sock` is our own descriptor, owned by the init until exec.
        let sockfd = unsafe { BorrowedFd::borrow_raw(sock) };
        let mut record = vec![proto::EXEC];
        if marks.enabled {
            record.extend(serde_json::to_vec(&marks.marks).unwrap_or_default());
        }
        if let Err(e) = proto::send_record(sockfd.as_fd(), &record) {
            return e;
        }
    }
    if !held {
        if let Err(e) = install() {
            return e;
        }
    }
    match nix::unistd::execve(&cpath, &cargs, &cenv) {
        Err(e) => Error::os("execve", e as i32).with_path(path),
        Ok(never) => match never {},
    }
}
