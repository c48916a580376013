//! `pyctr-supervise`: one small process per started container, like conmon.
//!
//! It is the `pyctr-init` binary run from `<root>/bin/pyctr-supervise-<hash>`
//! with argv[0] `pyctr-supervise` (docs/lifecycle.md has the contract).  It
//! holds `supervisor.lock` for its whole life, spawns the container, relays
//! its output to the json-file log (and to the caller when attached), reaps
//! it, records the state, applies the restart policy, and finally removes
//! the cgroups and, with `auto_remove`, the container directory.
//!
//! One thread, one `poll` loop, no busy waiting; buffers are small and
//! reused, and the init image sealed for a spawn is dropped right after it.

mod cleanup;
pub mod launch;
pub mod logs;
mod memory;
pub mod state;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::Deserialize;

use crate::errors::{Error, Result};
use crate::proto::Overlay;
use crate::spawn::{Child, InitImage, Launch, Stdio};
use crate::spec::Spec;
use crate::sys::Exit;
use logs::{LogWriter, Stream};
use state::State;

/// Grace period between SIGTERM and SIGKILL when the supervisor is told to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long output is still read after the container's init has exited
/// (EOF normally comes at once: the kernel kills the rest of its pid namespace).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Size of the one read buffer.
const READ_BUF: usize = 32 * 1024;
/// Docker's restart back-off: first delay, cap, and the run time that resets it.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// `launch.json` (docs/lifecycle.md).
#[derive(Debug, Clone, Deserialize)]
pub struct LaunchConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub root: String,
    #[serde(default)]
    pub stdin_open: bool,
    #[serde(default)]
    pub overlay: Option<Overlay>,
    #[serde(default)]
    pub log_path: String,
    #[serde(default)]
    pub log_max_size: u64,
    #[serde(default = "one")]
    pub log_max_files: u32,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub cgroup_procs: Vec<String>,
    #[serde(default)]
    pub cgroup_dirs: Vec<String>,
    #[serde(default)]
    pub oom_file: Option<String>,
}

fn one() -> u32 {
    1
}

/// Docker's `--restart`: `no`, `always`, `unless-stopped`, `on-failure`
/// (`max_retries` 0: unlimited).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RestartPolicy {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub max_retries: u32,
}

impl RestartPolicy {
    /// Whether a run that ended with `status` is restarted, after
    /// `restart_count` restarts so far (the `stopped` marker is checked by the
    /// caller).
    pub fn applies(&self, status: i32, restart_count: u32) -> bool {
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => status != 0 && (self.max_retries == 0 || restart_count < self.max_retries),
            _ => false,
        }
    }
}

/// Docker's restart delay: 100 ms doubling per restart up to a minute, back
/// to 100 ms after a run of at least 10 s.
#[derive(Debug, Default)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET || self.delay.is_zero() {
            self.delay = BACKOFF_FIRST;
        } else {
            self.delay = (self.delay * 2).min(BACKOFF_MAX);
        }
        self.delay
    }
}

/// Docker's status for a container that could not start: 127 when the
/// command was not found, 126 when it could not be executed, else 125.
pub fn exit_code_for(err: &Error) -> i32 {
    if err.step == "execve" || err.step == "lookup" {
        match err.errno {
            libc::ENOENT => return 127,
            libc::EACCES | libc::EPERM | libc::ENOEXEC => return 126,
            _ => {}
        }
    }
    125
}

/// The `{"error": {...}}` status record.
pub fn error_record(err: &Error) -> String {
    let v =
        serde_json::json!({"error": {"step": err.step, "errno": err.errno, "path": err.path, "detail": err.detail}});
    format!("{v}\n")
}

/// Entry point: `pyctr-supervise <cdir> <status-fd> attach|detach`.
pub fn main(args: &[String]) -> i32 {
    let fd = args.get(2).and_then(|a| a.parse::<RawFd>().ok()).filter(|fd| *fd > 2);
    let mode = args.get(3).map(String::as_str);
    let (Some(fd), Some(mode @ ("attach" | "detach")), 4) = (fd, mode, args.len()) else {
        eprintln!("pyctr-supervise: this is pyctr-fast's container supervisor; it is not meant to be run directly");
        return 2;
    };
    // SAFETY: the launcher passed us this descriptor; nothing else owns it.
    let status = unsafe { OwnedFd::from_raw_fd(fd) };
    // The container must never inherit it.
    let _ = nix::fcntl::fcntl(&status, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let cdir = PathBuf::from(&args[1]);
    let attach = mode == "attach";
    let sigfd = match setup_process() {
        Ok(s) => s,
        Err(e) => {
            write_status(Some(&status), &error_record(&e));
            return 1;
        }
    };
    let _lock = match take_lock(&cdir) {
        Ok(lock) => lock,
        Err(e) => {
            write_status(Some(&status), &error_record(&e));
            return 1;
        }
    };
    let mut sup = match Supervisor::load(cdir.clone(), attach, sigfd) {
        Ok(s) => s,
        Err(e) => {
            let mut st = State::created();
            st.error = e.to_string();
            st.exit_code = 125;
            let _ = st.write(&cdir);
            write_status(Some(&status), &error_record(&e));
            return 1;
        }
    };
    sup.status = Some(status);
    sup.supervise()
}

/// Subreaper, signal dispositions, the signalfd, cwd `/`.
fn setup_process() -> Result<SignalFd> {
    let _ = nix::sys::prctl::set_child_subreaper(true);
    for sig in [Signal::SIGINT, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: installing SIG_IGN runs no code of ours.
        unsafe { nix::sys::signal::signal(sig, SigHandler::SigIgn) }.map_err(|e| Error::os("signal", e as i32))?;
    }
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGCHLD, Signal::SIGWINCH] {
        // An ignored signal is discarded even while blocked: take these back
        // from whatever the launcher's caller had.
        // SAFETY: installing SIG_DFL runs no code of ours.
        unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }.map_err(|e| Error::os("signal", e as i32))?;
        set.add(sig);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&set), None)
        .map_err(|e| Error::os("sigprocmask", e as i32))?;
    let _ = nix::unistd::chdir("/");
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("signalfd", e as i32))
}

/// `supervisor.lock`, held (flock LOCK_EX) until the process exits.  A
/// supervisor that is just finishing gets a moment to let go.
fn take_lock(cdir: &Path) -> Result<File> {
    let path = cdir.join("supervisor.lock");
    let shown = path.to_string_lossy().into_owned();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::os("lock", e.raw_os_error().unwrap_or(libc::EIO)).with_path(&shown))?;
    for _ in 0..200 {
        // SAFETY: flock on our own descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        match std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) {
            libc::EWOULDBLOCK | libc::EINTR => std::thread::sleep(Duration::from_millis(10)),
            e => return Err(Error::os("lock", e).with_path(&shown)),
        }
    }
    Err(Error::os("lock", libc::EWOULDBLOCK).with_path(&shown).with_detail("the container already has a supervisor"))
}

fn write_status(fd: Option<&OwnedFd>, line: &str) {
    if let Some(fd) = fd {
        let _ = write_all(fd.as_fd(), line.as_bytes());
    }
}

/// Write everything, waiting for a non-blocking descriptor to drain.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> std::result::Result<(), i32> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 }];
                poll(&mut p, -1);
            }
            Err(e) => return Err(e as i32),
        }
    }
    Ok(())
}

/// `poll(2)` on a fixed array; a descriptor of -1 is skipped.  Errors other
/// than EINTR cannot happen with valid arguments and are treated like it.
fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) {
    // SAFETY: `fds` is a valid, writable pollfd array for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::os("fcntl", e as i32))?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
        .map_err(|e| Error::os("fcntl", e as i32))?;
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe", e as i32))
}

/// The terminal size of `fd` as (rows, cols), if it is a terminal.
fn tty_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data; TIOCGWINSZ fills it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::isatty(fd) == 1 && libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0).then_some((ws.ws_row, ws.ws_col))
    }
}

/// The `oom_kill N` counter of a v1 `memory.oom_control` or v2 `memory.events`.
fn oom_kills(path: Option<&str>) -> Option<u64> {
    let text = std::fs::read_to_string(path?).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

/// One run of the container.
struct Run {
    child: Child,
    started: Instant,
    oom_before: Option<u64>,
    /// Our ends of stdout and stderr (a pty master is stdout).
    out: [Option<OwnedFd>; 2],
    /// Where relayed input goes; for a detached `-i` container the pipe's
    /// write end, kept open so the program never sees EOF.
    stdin: Option<OwnedFd>,
    exit: Option<Exit>,
}

/// Attached `-i`: the caller's fd 0, relayed through a small buffer.
#[derive(Default)]
struct StdinRelay {
    open: bool,
    buf: Vec<u8>,
    pos: usize,
}

struct Supervisor {
    cdir: PathBuf,
    attach: bool,
    status: Option<OwnedFd>,
    sigfd: SignalFd,
    config: String,
    spec: Spec,
    launch: LaunchConfig,
    terminal: bool,
    log: LogWriter,
    buf: Vec<u8>,
    /// Attached: relay stdout/stderr to our 1 and 2 (until writing fails).
    relay: [bool; 2],
    input: StdinRelay,
    state: State,
    backoff: Backoff,
    /// SIGTERM received: stop the container, never restart.
    stopping: bool,
    kill_at: Option<Instant>,
}

impl Supervisor {
    fn load(cdir: PathBuf, attach: bool, sigfd: SignalFd) -> Result<Supervisor> {
        let read = |name: &str| {
            let path = cdir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| Error::os("read", e.raw_os_error().unwrap_or(libc::EIO)).with_path(path.to_string_lossy()))
        };
        let config = read("config.json")?;
        let spec = Spec::from_json(&config)?;
        spec.validate_for_run()?;
        let launch: LaunchConfig = serde_json::from_str(&read("launch.json")?).map_err(|e| {
            Error::msg("launch.json", e.to_string()).with_path(cdir.join("launch.json").to_string_lossy())
        })?;
        let log_path = if launch.log_path.is_empty() {
            cdir.join(format!("{}-json.log", launch.id)).to_string_lossy().into_owned()
        } else {
            launch.log_path.clone()
        };
        let log = LogWriter::open(&log_path, launch.log_max_size, launch.log_max_files)?;
        let terminal = spec.process.as_ref().is_some_and(|p| p.terminal);
        let input = StdinRelay { open: attach && launch.stdin_open, ..StdinRelay::default() };
        Ok(Supervisor {
            cdir,
            attach,
            status: None,
            sigfd,
            config,
            spec,
            launch,
            terminal,
            log,
            buf: Vec::new(),
            relay: [attach, attach],
            input,
            state: State::created(),
            backoff: Backoff::default(),
            stopping: false,
            kill_at: None,
        })
    }

    /// Run the container until it is done for good; the process's exit status.
    fn supervise(&mut self) -> i32 {
        let mut next = self.start_run();
        if let Err(e) = &next {
            self.state.error = e.to_string();
            self.state.exit_code = exit_code_for(e);
            let _ = self.state.write(&self.cdir);
            write_status(self.status.as_ref(), &error_record(e));
            return 1;
        }
        let mut first = true;
        let final_status = loop {
            let (status, ran_for) = match next {
                Ok(mut run) => {
                    self.state.running(run.child.pid);
                    if let Err(e) = self.state.write(&self.cdir) {
                        if first {
                            // Nobody could ever learn about this container.
                            let _ = run.child.kill(libc::SIGKILL);
                            let _ = run.child.wait();
                            write_status(self.status.as_ref(), &error_record(&e));
                            return 1;
                        }
                    }
                    if first {
                        let line = format!("{{\"pid\":{},\"supervisor_pid\":{}}}\n", run.child.pid, std::process::id());
                        write_status(self.status.as_ref(), &line);
                        if !self.attach {
                            self.status = None;
                        }
                        first = false;
                    }
                    let exit = self.wait_run(&mut run);
                    let oom = matches!(
                        (run.oom_before, oom_kills(self.launch.oom_file.as_deref())),
                        (Some(before), Some(after)) if after > before
                    );
                    let ran_for = run.started.elapsed();
                    drop(run);
                    self.state.finished(exit.status(), oom);
                    (exit.status(), ran_for)
                }
                Err(e) => {
                    self.state.finished(exit_code_for(&e), false);
                    self.state.error = e.to_string();
                    (self.state.exit_code, Duration::ZERO)
                }
            };
            memory::trim_heap();
            if self.stopping || self.stopped_marker() || !self.launch.restart.applies(status, self.state.restart_count)
            {
                let _ = self.state.write(&self.cdir);
                break status;
            }
            self.state.status = "restarting";
            let _ = self.state.write(&self.cdir);
            let delay = self.backoff.next(ran_for);
            if !self.pause(delay) || self.stopped_marker() {
                self.state.status = "exited";
                let _ = self.state.write(&self.cdir);
                break status;
            }
            self.state.restart_count += 1;
            next = self.start_run();
        };
        self.finish(final_status)
    }

    fn stopped_marker(&self) -> bool {
        self.cdir.join("stopped").exists()
    }

    /// Spawn the container once.
    fn start_run(&mut self) -> Result<Run> {
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::os("open", e.raw_os_error().unwrap_or(libc::EIO)).with_path("/dev/null"))?;
        let mut out: [Option<OwnedFd>; 2] = [None, None];
        let mut child_ends: [Option<OwnedFd>; 3] = [None, None, None];
        let mut stdin = None;
        if !self.terminal {
            if self.launch.stdin_open {
                let (r, w) = pipe()?;
                set_nonblocking(w.as_fd())?;
                child_ends[0] = Some(r);
                stdin = Some(w);
            }
            for (i, slot) in out.iter_mut().enumerate() {
                let (r, w) = pipe()?;
                set_nonblocking(r.as_fd())?;
                *slot = Some(r);
                child_ends[i + 1] = Some(w);
            }
        }
        let raw = |o: &Option<OwnedFd>| o.as_ref().map_or(devnull.as_raw_fd(), |f| f.as_raw_fd());
        let console_size = if self.attach && self.terminal { tty_size(0).or_else(|| tty_size(1)) } else { None };
        let launch = Launch {
            stdio: Stdio::Fds([raw(&child_ends[0]), raw(&child_ends[1]), raw(&child_ends[2])]),
            overlay: self.launch.overlay.clone(),
            console_size,
            cgroup_procs: self.launch.cgroup_procs.clone(),
            ..Launch::default()
        };
        let oom_before = oom_kills(self.launch.oom_file.as_deref());
        let spawned = memory::SelfImage::map().and_then(|img| {
            let image = InitImage::seal(img.bytes())?;
            drop(img);
            crate::spawn::spawn_spec(&image, &self.spec, &self.config, &self.cdir, &launch)
        });
        drop(child_ends);
        drop(devnull);
        drop(launch);
        memory::trim_heap();
        let mut child = spawned?;
        if let Some(master) = child.master.take() {
            set_nonblocking(master.as_fd())?;
            if self.input.open {
                stdin = Some(master.try_clone().map_err(|e| Error::os("dup", e.raw_os_error().unwrap_or(libc::EIO)))?);
            }
            out[0] = Some(master);
        }
        Ok(Run { child, started: Instant::now(), oom_before, out, stdin, exit: None })
    }

    /// Relay and log until the container has exited and its output is
    /// drained; how it ended.
    fn wait_run(&mut self, run: &mut Run) -> Exit {
        // About to go idle: most of the binary is not needed any more.
        memory::release_image_pages();
        let mut drain_until: Option<Instant> = None;
        loop {
            if run.exit.is_some() && run.out.iter().all(Option::is_none) {
                break;
            }
            let now = Instant::now();
            if drain_until.is_some_and(|t| now >= t) {
                for i in 0..2 {
                    self.close_output(run, i);
                }
                break;
            }
            if self.kill_at.is_some_and(|t| now >= t) {
                let _ = run.child.kill(libc::SIGKILL);
                self.kill_at = None;
            }
            let timeout = [drain_until, self.kill_at]
                .into_iter()
                .flatten()
                .map(|t| t.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32 + 1)
                .min()
                .unwrap_or(-1);
            let none = libc::pollfd { fd: -1, events: 0, revents: 0 };
            let mut fds = [none; 5];
            fds[0] = libc::pollfd { fd: self.sigfd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
            if run.exit.is_none() {
                fds[1] = libc::pollfd { fd: run.child.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            }
            for i in 0..2 {
                if let Some(fd) = &run.out[i] {
                    fds[2 + i] = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                }
            }
            if let Some(target) = &run.stdin {
                if self.input.pos < self.input.buf.len() {
                    fds[4] = libc::pollfd { fd: target.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                } else if self.input.open && run.exit.is_none() {
                    fds[4] = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
                }
            }
            poll(&mut fds, timeout);
            if fds[0].revents != 0 {
                self.handle_signals(Some(run));
            }
            for i in 0..2 {
                if fds[2 + i].revents != 0 {
                    self.pump(run, i);
                }
            }
            if fds[4].revents != 0 {
                self.relay_input(run, fds[4].fd == 0);
            }
            if fds[1].revents != 0 {
                run.exit = Some(run.child.wait().unwrap_or(Exit::Code(255)));
                drain_until = Some(Instant::now() + DRAIN_LIMIT);
                self.kill_at = None;
            }
        }
        run.exit.unwrap_or(Exit::Code(255))
    }

    /// Read once from output `i`: log it and relay it when attached.
    fn pump(&mut self, run: &mut Run, i: usize) {
        let Some(fd) = &run.out[i] else { return };
        if self.buf.is_empty() {
            // Allocated on first use: an idle container never needs it.
            self.buf = vec![0u8; READ_BUF];
        }
        match nix::unistd::read(fd.as_fd(), &mut self.buf) {
            Ok(0) => self.close_output(run, i),
            Ok(n) => {
                let (secs, nanos) = state::now();
                let mut tb = [0u8; state::TIME_LEN];
                let time = state::format_time(&mut tb, secs, nanos);
                let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
                self.log.write(stream, &self.buf[..n], time);
                if self.relay[i] {
                    let target = if i == 0 { std::io::stdout().as_raw_fd() } else { std::io::stderr().as_raw_fd() };
                    // SAFETY: fds 1 and 2 stay open for the process's life.
                    let target = unsafe { BorrowedFd::borrow_raw(target) };
                    if write_all(target, &self.buf[..n]).is_err() {
                        self.relay[i] = false;
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            // EIO: a pty whose every slave descriptor is closed.
            Err(_) => self.close_output(run, i),
        }
    }

    fn close_output(&mut self, run: &mut Run, i: usize) {
        if run.out[i].take().is_some() {
            let (secs, nanos) = state::now();
            let mut tb = [0u8; state::TIME_LEN];
            let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
            self.log.close_stream(stream, state::format_time(&mut tb, secs, nanos));
        }
    }

    /// Attached `-i`: read the caller's input (`readable`) or pass the
    /// buffered part on to the container.
    fn relay_input(&mut self, run: &mut Run, readable: bool) {
        let input = &mut self.input;
        if readable {
            if input.buf.len() != 4096 {
                input.buf = vec![0u8; 4096];
            }
            // SAFETY: fd 0 stays open for the process's life.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            match nix::unistd::read(stdin, &mut input.buf) {
                Ok(0) | Err(nix::errno::Errno::EIO | nix::errno::Errno::EBADF) => {
                    input.open = false;
                    input.buf.clear();
                    input.pos = 0;
                    // End of input: the program sees EOF on its pipe (a pty
                    // has no EOF of its own; the shell decides).
                    if !self.terminal {
                        run.stdin = None;
                    }
                }
                Ok(n) => {
                    input.buf.truncate(n);
                    input.pos = 0;
                }
                Err(_) => {}
            }
            return;
        }
        let Some(target) = &run.stdin else { return };
        match nix::unistd::write(target.as_fd(), &input.buf[input.pos..]) {
            Ok(n) => input.pos += n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => {
                input.open = false;
                run.stdin = None;
            }
        }
        if input.pos >= input.buf.len() {
            input.buf.clear();
            input.pos = 0;
        }
    }

    /// Act on pending signals; `run` is the running container, if any.
    fn handle_signals(&mut self, mut run: Option<&mut Run>) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGTERM => {
                    self.stopping = true;
                    if let Some(run) = run.as_deref_mut() {
                        if run.exit.is_none() && self.kill_at.is_none() {
                            let _ = run.child.kill(libc::SIGTERM);
                            self.kill_at = Some(Instant::now() + STOP_GRACE);
                        }
                    }
                }
                libc::SIGCHLD => reap_strays(run.as_deref().filter(|r| r.exit.is_none()).map(|r| r.child.pid)),
                libc::SIGWINCH => {
                    if let (Some(run), Some(size)) = (run.as_deref(), tty_size(0).or_else(|| tty_size(1))) {
                        if let (true, Some(master)) = (self.terminal, &run.out[0]) {
                            let ws = libc::winsize { ws_row: size.0, ws_col: size.1, ws_xpixel: 0, ws_ypixel: 0 };
                            // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
                            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Sleep for the restart delay, still answering signals; false if told
    /// to stop meanwhile.
    fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.stopping {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            let ms = until.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32 + 1;
            let mut fds = [libc::pollfd { fd: self.sigfd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            poll(&mut fds, ms);
            if fds[0].revents != 0 {
                self.handle_signals(None);
            }
        }
    }

    /// Done for good: network, cgroups, `--rm`, the attached caller's exit record.
    fn finish(&mut self, status: i32) -> i32 {
        // The veth, the namespace file and the address lease of a bridge
        // network (`network.json`, written by Python at start).
        let _ = crate::net::teardown::teardown_dir(&self.cdir, crate::net::teardown::Links::Delete);
        for dir in &self.launch.cgroup_dirs {
            cleanup::remove_cgroup(dir);
        }
        if self.launch.auto_remove {
            self.state.status = "removing";
            let _ = self.state.write(&self.cdir);
            cleanup::release_name(&self.launch.root, &self.launch.name, &self.launch.id);
            cleanup::remove_container_dir(&self.cdir);
        }
        if self.attach {
            write_status(self.status.as_ref(), &format!("{{\"exit\":{status}}}\n"));
        }
        0
    }
}

/// Reap children that are not the container (orphans re-parented to us as
/// subreaper); `keep` is left for its pidfd.
fn reap_strays(keep: Option<libc::pid_t>) {
    loop {
        // SAFETY: siginfo_t is plain old data; zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; WNOWAIT only peeks.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        // SAFETY: waitid filled `info` (or left it zeroed).
        let pid = unsafe { info.si_pid() };
        if rc != 0 || pid == 0 || Some(pid) == keep {
            return;
        }
        // SAFETY: reaps exactly that child; no status wanted.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, max: u32) -> RestartPolicy {
        RestartPolicy { name: name.into(), max_retries: max }
    }

    #[test]
    fn restart_policies_follow_docker() {
        assert!(!policy("no", 0).applies(1, 0));
        assert!(!policy("", 0).applies(1, 0));
        assert!(policy("always", 0).applies(0, 100));
        assert!(policy("unless-stopped", 0).applies(0, 0));
        let on_failure = policy("on-failure", 2);
        assert!(!on_failure.applies(0, 0));
        assert!(on_failure.applies(3, 0) && on_failure.applies(3, 1) && !on_failure.applies(3, 2));
        assert!(policy("on-failure", 0).applies(1, 1000));
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let delays: Vec<u128> = (0..4).map(|_| b.next(short).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), BACKOFF_MAX);
        assert_eq!(b.next(Duration::from_secs(11)), BACKOFF_FIRST);
    }

    #[test]
    fn start_failures_map_to_docker_statuses() {
        assert_eq!(exit_code_for(&Error::os("execve", libc::ENOENT)), 127);
        assert_eq!(exit_code_for(&Error::os("execve", libc::EACCES)), 126);
        assert_eq!(exit_code_for(&Error::os("lookup", libc::ENOEXEC)), 126);
        assert_eq!(exit_code_for(&Error::os("mount /proc", libc::ENOENT)), 125);
    }

    #[test]
    fn error_records_carry_every_field() {
        let rec = error_record(&Error::os("execve", 2).with_path("nope").with_detail("not found"));
        assert!(rec.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&rec).expect("json");
        assert_eq!(v["error"]["step"], "execve");
        assert_eq!(v["error"]["errno"], 2);
        assert_eq!(v["error"]["path"], "nope");
        assert_eq!(v["error"]["detail"], "not found");
        let err = launch::parse_status(rec.trim_end().as_bytes()).expect_err("error");
        assert_eq!(err, Error::os("execve", 2).with_path("nope").with_detail("not found"));
    }

    #[test]
    fn launch_json_defaults() {
        let l: LaunchConfig = serde_json::from_str(r#"{"id":"abc","log_path":"/x"}"#).expect("parse");
        assert_eq!((l.log_max_files, l.log_max_size, l.auto_remove), (1, 0, false));
        assert!(l.overlay.is_none() && l.oom_file.is_none() && l.cgroup_procs.is_empty());
        assert!(!l.restart.applies(1, 0));
    }

    #[test]
    fn oom_counter_is_read_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        let v2 = dir.path().join("memory.events");
        std::fs::write(&v2, "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n").expect("write");
        assert_eq!(oom_kills(v1.to_str()), Some(3));
        assert_eq!(oom_kills(v2.to_str()), Some(1));
        assert_eq!(oom_kills(Some("/nonexistent/file")), None);
        assert_eq!(oom_kills(None), None);
    }
}
