//! `pyctr-init`: the container side.  Runs as the first process of the new
//! namespaces, executed from a sealed memfd, sets the container up from the
//! spec and execs the user program.  Every failure is reported to the parent
//! as a structured error record before exiting.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::errors::{Error, Result};
use crate::proto::{self, Request};
use crate::spec::Spec;
use crate::trace::Marks;
use crate::{namespaces, process, rootfs};

/// Exit status of an init that failed (the parent has the real error).
pub const FAILED: i32 = 125;

/// Entry point: `pyctr-init <socket-fd>`.  Anything else (for instance being
/// re-executed through `/proc/self/exe` by a hostile image) is refused.
pub fn main(args: &[String]) -> i32 {
    let Some(fd) = (args.len() == 2).then(|| args[1].parse::<RawFd>().ok()).flatten().filter(|fd| *fd > 2) else {
        eprintln!("pyctr-init: this is pyctr-fast's container init; it is not meant to be run directly");
        return 127;
    };
    // The parent is a Python process: it ignores SIGPIPE and may block
    // signals.  Dispositions set to "ignore" and the mask survive execve, so
    // reset both before anything runs in the container.
    reset_signals();
    // SAFETY: the parent passed this socket to us and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Never inherited by the program, whatever `--preserve-fds` keeps open.
    let _ = nix::fcntl::fcntl(&sock, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    match run(sock.as_fd()) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = proto::send_record(sock.as_fd(), &proto::encode_error(&e));
            FAILED
        }
    }
}

fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL has no memory effects.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

fn run(sock: BorrowedFd<'_>) -> Result<std::convert::Infallible> {
    let (rec, fd) = proto::recv_record(sock)?.ok_or_else(|| Error::msg("init", "parent went away"))?;
    let req: Request =
        serde_json::from_slice(&rec).map_err(|e| Error::msg("init", format!("bad request from parent: {e}")))?;
    let mut marks = Marks::new(req.trace);
    marks.mark("init: request received");
    let spec = Spec::from_json(&req.config)?;
    let (process, fifo) = if req.exec_fifo {
        let fifo = fd.ok_or_else(|| Error::msg("init", "no exec fifo sent with the request"))?;
        (spec.validate_for_create()?, Some(ExecFifo::prepare(fifo)?))
    } else {
        (Some(spec.validate_for_run()?), None)
    };
    if req.join {
        let process = process.ok_or_else(|| Error::msg("spec", "no process to run"))?;
        return join(sock, &spec, process, &req, marks);
    }
    namespaces::join_by_path(&spec)?;
    namespaces::unshare_late(&spec)?;

    let new_user = spec.namespace("user").is_some_and(|ns| ns.path.as_deref().is_none_or(str::is_empty));
    if spec.namespace("uts").is_some() {
        if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(|e| Error::os("sethostname", e as i32).with_path(h))?;
        }
        if let Some(d) = spec.domainname.as_deref().filter(|d| !d.is_empty()) {
            // SAFETY: pointer and length describe `d`'s bytes.
            if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                return Err(Error::last_os("setdomainname").with_path(d));
            }
        }
    }
    if spec.namespace("network").is_some_and(|ns| ns.path.as_deref().is_none_or(str::is_empty)) {
        process::loopback_up()?;
    }
    marks.mark("init: hostname, loopback");
    let own_mounts = spec.namespace("mount").is_some();
    let root = if own_mounts {
        let root = rootfs::enter(&spec, &req.rootfs, req.overlay.as_ref())?;
        marks.mark("init: rootfs in place (overlay or bind)");
        rootfs::populate(root.as_fd(), &spec, Path::new(&req.bundle), !new_user, &mut marks)?;
        root
    } else if req.overlay.is_some() {
        return Err(Error::msg("spec", "an overlay rootfs needs a mount namespace"));
    } else {
        rootfs::open_root(&req.rootfs)?
    };
    let switch_root = |root| if own_mounts { rootfs::pivot(root, &spec) } else { rootfs::chroot(root) };
    let start_hooks = match &req.hooks {
        Some(hooks) => Some(create_hooks(sock, hooks, &mut marks)?),
        None => None,
    };
    let Some(process) = process else {
        // `create` of a config without `process`: everything is set up;
        // `start` releases us and then learns there is nothing to run.
        switch_root(root)?;
        let Some(fifo) = fifo else { return Err(Error::msg("spec", "no process to run")) };
        let started = fifo.wait_for_start(sock, &marks)?;
        started.fail(&Error::msg("start", "config.json has no process to run"));
    };
    if !process.cwd.is_empty() {
        // Docker creates a missing working directory.
        crate::sys::create_in_root(root.as_fd(), &process.cwd, crate::sys::Kind::Dir)?;
    }
    set_oom_score_adj(process)?;
    switch_root(root)?;
    marks.mark("init: pivot_root");
    let fifo = fifo.map(|fifo| (fifo, start_hooks.unwrap_or_default()));
    start_program(sock, process, &req, marks, fifo)
}

/// The hooks of `create`, before pivot_root: tell the runtime (`HOOKS`),
/// wait while it runs prestart and createRuntime in its namespaces (`GO`
/// with the state JSON), then run createContainer here, in the container's
/// namespaces with the host's root still reachable.  Returns what
/// startContainer needs.
fn create_hooks(sock: BorrowedFd<'_>, hooks: &proto::InitHooks, marks: &mut Marks) -> Result<StartHooks> {
    proto::send_record(sock, &[proto::HOOKS])?;
    let states: proto::HookStates = match proto::recv_record(sock)? {
        Some((rec, _)) if rec.first() == Some(&proto::GO) => serde_json::from_slice(&rec[1..])
            .map_err(|e| Error::msg("init", format!("bad hook state from parent: {e}")))?,
        _ => return Err(Error::msg("init", "the runtime did not finish its hooks")),
    };
    marks.mark("init: runtime hooks done");
    crate::hooks::run_all("createContainer", &hooks.create_container, &states.creating)?;
    marks.mark("init: createContainer hooks");
    Ok(StartHooks { hooks: hooks.start_container.clone(), state: states.created })
}

/// startContainer hooks and the state they get, run after `start`.
#[derive(Default)]
struct StartHooks {
    hooks: Vec<crate::hooks::Hook>,
    state: String,
}

/// `exec.fifo` of `pyctr-fast-runtime create` (see [`Request::exec_fifo`]):
/// the `O_PATH` descriptor the parent sent, and the host's `/proc/self/fd`
/// opened before any namespace or root change, through which it is reopened
/// for writing once everything is set up (the container needs no /proc).
struct ExecFifo {
    fifo: OwnedFd,
    fd_dir: OwnedFd,
}

impl ExecFifo {
    fn prepare(fifo: OwnedFd) -> Result<ExecFifo> {
        let fd_dir = nix::fcntl::open(
            "/proc/self/fd",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::os("open exec fifo", e as i32).with_path("/proc/self/fd"))?;
        Ok(ExecFifo { fifo, fd_dir })
    }

    /// Tell the parent the container is created, then block until `start`
    /// opens the fifo; write the `0` byte that says "released".  The parent
    /// is gone after `CREATED`: failures from here on go to the fifo.
    fn wait_for_start(self, sock: BorrowedFd<'_>, marks: &Marks) -> Result<Started> {
        let name = std::os::fd::AsRawFd::as_raw_fd(&self.fifo).to_string();
        let mut record = vec![proto::CREATED];
        if marks.enabled {
            record.extend(serde_json::to_vec(&marks.marks).unwrap_or_default());
        }
        proto::send_record(sock, &record)?;
        let fd = loop {
            match nix::fcntl::openat(
                &self.fd_dir,
                name.as_str(),
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) {
                Ok(fd) => break fd,
                Err(nix::errno::Errno::EINTR) => continue,
                // Nobody can be told any more: `start` sees the init gone.
                Err(_) => std::process::exit(FAILED),
            }
        };
        drop(self);
        let started = Started { fd };
        if nix::unistd::write(&started.fd, &[0]).is_err() {
            std::process::exit(FAILED);
        }
        Ok(started)
    }
}

/// The fifo after `start` released the init: open for writing (close-on-exec,
/// so `start` sees EOF when the program is exec'd).
struct Started {
    fd: OwnedFd,
}

impl Started {
    /// Report `err` to `start` as one line and exit with Docker's status for
    /// it (127: not found, 126: not executable, else 125).
    fn fail(&self, err: &Error) -> ! {
        let line = format!("{err}\n");
        let _ = nix::unistd::write(&self.fd, line.as_bytes());
        std::process::exit(crate::supervisor::exit_code_for(err))
    }
}

/// `exec`: enter every namespace of a running container and start a process
/// there.  The container's mount namespace already has its root in place:
/// setns makes it our root and working directory, so there is nothing to
/// mount, and nothing of the host is reachable afterwards.
fn join(
    sock: BorrowedFd<'_>,
    spec: &Spec,
    process: &crate::spec::Process,
    req: &Request,
    mut marks: Marks,
) -> Result<std::convert::Infallible> {
    namespaces::check_join(spec)?;
    // Until the program is exec'd (which makes the process dumpable again),
    // nothing in the container may ptrace us or open /proc/<pid>/fd/*: we
    // still hold whatever descriptors the caller gave us.
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::os("set non-dumpable", e as i32))?;
    namespaces::join_by_path(spec)?;
    nix::unistd::chdir("/").map_err(|e| Error::os("chdir", e as i32).with_path("/"))?;
    marks.mark("init: joined the container's namespaces");
    set_oom_score_adj(process)?;
    if !process.terminal {
        // Like `docker exec`, the process is not part of the caller's session
        // or process group (a terminal's ^C reaches it only through the
        // caller's forwarding).  With a terminal, setup_terminal does this.
        nix::unistd::setsid().map_err(|e| Error::os("setsid", e as i32))?;
    }
    start_program(sock, process, req, marks, None)
}

fn set_oom_score_adj(process: &crate::spec::Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj {
        crate::sys::write_file("/proc/self/oom_score_adj", adj.to_string().as_bytes())
            .map_err(|e| Error::os("oom_score_adj", e))?;
    }
    Ok(())
}

/// What a new container and an exec'd process share once inside the
/// container's root: limits, terminal, umask, identity, cwd, and the exec.
fn start_program(
    sock: BorrowedFd<'_>,
    process: &crate::spec::Process,
    req: &Request,
    mut marks: Marks,
    fifo: Option<(ExecFifo, StartHooks)>,
) -> Result<std::convert::Infallible> {
    process::set_rlimits(&process.rlimits)?;
    if process.terminal {
        process::setup_terminal(sock, process.user.uid, process.user.gid, req.console_size)?;
    }
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(process.user.umask.unwrap_or(0o022) as libc::mode_t) };
    if let Some(profile) = process.apparmor_profile.as_deref().filter(|p| !p.is_empty()) {
        process::set_apparmor_profile(profile)?;
    }
    let filter_needs_sys_admin = crate::seccomp::prepare(&req.config, process.no_new_privileges)?;
    process::switch_user(process, filter_needs_sys_admin)?;
    process::enter_cwd(&process.cwd)?;
    if let Some((fifo, start_hooks)) = fifo {
        // Created: the program is looked up and exec'd only after `start`,
        // and after the startContainer hooks (in the container, as its user).
        marks.mark("init: process set up (rlimits, tty, user, caps, cwd)");
        let started = fifo.wait_for_start(sock, &marks)?;
        if let Err(e) = crate::hooks::run_all("startContainer", &start_hooks.hooks, &start_hooks.state) {
            started.fail(&e);
        }
        let path = process::lookup(&process.args[0], &process.env).unwrap_or_else(|e| started.fail(&e));
        let marks = Marks::new(false);
        started.fail(&process::exec(&path, &process.args, &process.env, None, req.preserve_fds, &marks));
    }
    let path = process::lookup(&process.args[0], &process.env)?;
    marks.mark("init: process set up (rlimits, tty, user, caps, cwd, lookup)");
    let sock = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
    Err(process::exec(&path, &process.args, &process.env, sock, req.preserve_fds, &marks))
}
