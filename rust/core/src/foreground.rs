//! Running a container in the foreground: wait for it, forward the caller's
//! signals, and relay a pty between the caller's terminal and the container.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

use crate::errors::{Error, Result};
use crate::spawn::{self, Child, InitImage, Launch};
use crate::sys::Exit;

/// Signals a foreground container receives from its caller, as `docker run`
/// forwards them.
const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Forward FORWARDED signals to the container (CLI main thread only).
    pub forward_signals: bool,
    /// Relay the caller's stdin to the pty (`-i` with `-t`).
    pub relay_stdin: bool,
}

/// Restores the thread's signal mask when dropped.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// Restores the terminal's mode when dropped.
struct RawGuard {
    saved: Termios,
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Called with the container's pid once its program has been exec'd, before
/// waiting.  An error kills the container and is what `run` returns.
pub type OnStart<'a> = &'a mut dyn FnMut(libc::pid_t) -> Result<()>;

/// Spawn the container and run it to completion in the foreground.
pub fn run(
    init: &InitImage,
    config: &str,
    bundle: &Path,
    launch: Launch,
    opts: Options,
    on_start: Option<OnStart<'_>>,
) -> Result<Exit> {
    let mut set = SigSet::empty();
    if opts.forward_signals {
        FORWARDED.iter().for_each(|s| set.add(*s));
    }
    set.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| Error::os("block signals", e as i32))?;
    let _mask = MaskGuard(old);
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("signalfd", e as i32))?;
    // The terminal is sized and raw before the program starts: it may ask
    // for its size (or print) right away.
    let spec = crate::spec::Spec::from_json(config)?;
    let terminal = spec.process.as_ref().is_some_and(|p| p.terminal);
    let mut launch = launch;
    let _raw = if terminal {
        launch.console_size = caller_size();
        raw_mode(opts)?
    } else {
        None
    };
    let mut child = spawn::spawn_spec(init, &spec, config, bundle, &launch)?;
    let started = match on_start {
        Some(hook) => hook(child.pid),
        None => Ok(()),
    };
    let result = started.and_then(|()| supervise(&mut child, &sigfd, opts));
    if result.is_err() {
        let _ = child.kill(libc::SIGKILL);
    }
    let exit = child.wait();
    // Drain what arrived while blocked, so nothing fires after the mask lifts.
    while let Ok(Some(_)) = sigfd.read_signal() {}
    result.and(exit)
}

fn winsize_copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    // SAFETY: winsize is plain old data and both ioctls take a pointer to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut p, PollTimeout::NONE);
            }
            Err(e) => return Err(Error::os("relay output", e as i32)),
        }
    }
    Ok(())
}

/// The caller's terminal size as (rows, cols), from stdout or stdin.
fn caller_size() -> Option<(u16, u16)> {
    let fd = if is_tty(1) {
        1
    } else if is_tty(0) {
        0
    } else {
        return None;
    };
    // SAFETY: winsize is plain old data; TIOCGWINSZ fills it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0).then_some((ws.ws_row, ws.ws_col))
    }
}

/// Put the caller's terminal in raw mode while its input is relayed.
fn raw_mode(opts: Options) -> Result<Option<RawGuard>> {
    if !(opts.relay_stdin && is_tty(0)) {
        return Ok(None);
    }
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).map_err(|e| Error::os("tcgetattr", e as i32))?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(|e| Error::os("tcsetattr", e as i32))?;
    Ok(Some(RawGuard { saved }))
}

fn supervise(child: &mut Child, sigfd: &SignalFd, opts: Options) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let master: Option<OwnedFd> = child.master.take();
    if let Some(m) = &master {
        nix::fcntl::fcntl(m, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(|e| Error::os("relay", e as i32))?;
    }
    let mut stdin_open = master.is_some() && opts.relay_stdin;
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds =
            vec![PollFd::new(child.pidfd.as_fd(), PollFlags::POLLIN), PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (&master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let stdin_slot = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e as i32)),
        }
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let (exited, signalled, master_ready, stdin_ready) =
            (ready(0), ready(1), master_open && ready(2), stdin_open && ready(stdin_slot));
        drop(fds);
        if signalled {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let Some(m) = &master {
                        winsize_copy(stdout.as_fd(), m.as_fd());
                    }
                } else {
                    child.kill(sig)?;
                }
            }
        }
        if master_ready {
            if let Some(m) = &master {
                master_open = pump(m.as_fd(), stdout.as_fd(), &mut buf)?;
            }
        }
        if stdin_ready {
            if let Some(m) = &master {
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => write_all(m.as_fd(), &buf[..n])?,
                }
            }
        }
        if exited {
            // Drain what the container wrote before it exited.
            if let (Some(m), true) = (&master, master_open) {
                while pump(m.as_fd(), stdout.as_fd(), &mut buf)? {}
            }
            return Ok(());
        }
    }
}

/// Copy what is readable from `from` to `to`; false once `from` is done.
fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>, buf: &mut [u8]) -> Result<bool> {
    match nix::unistd::read(from, buf) {
        Ok(0) => Ok(false),
        Ok(n) => write_all(to, &buf[..n]).map(|_| true),
        Err(nix::errno::Errno::EAGAIN) => Ok(false),
        Err(nix::errno::Errno::EINTR) => Ok(true),
        // EIO: every slave descriptor is closed.
        Err(_) => Ok(false),
    }
}
