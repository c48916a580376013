//! The engine's side of a supervisor: start it through fork, setsid, fork
//! (so it is nobody's child and outlives the CLI), read its status lines,
//! and for an attached container wait for the exit record while forwarding
//! the caller's signals.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::errors::{Error, Result};
use crate::sys::{self, Forked};

/// argv[0] of a supervisor: `pyctr-init` dispatches on it.
pub const ARGV0: &str = "pyctr-supervise";

/// Signals an attached caller forwards to the container, as `docker run` does.
const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

fn supervisor_error(detail: impl Into<String>) -> Error {
    Error::msg("supervisor", detail)
}

/// `pidfd_open(2)`; None if the process is gone.
pub fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a fresh descriptor that we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads newline-terminated JSON records from the status pipe.
struct StatusReader {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl StatusReader {
    /// A complete buffered line, if there is one.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.iter().position(|b| *b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        Some(line)
    }

    /// Read once more into the buffer; false on EOF.
    fn fill(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 512];
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::os("read supervisor status", e as i32)),
            }
        }
    }

    /// The next line (blocking); None on EOF.
    fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }
}

/// A status record from the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Started { pid: i32, supervisor_pid: i32 },
    Exit(i32),
}

/// Parse one status line: `{"pid": N, "supervisor_pid": M}`, `{"exit": N}` or
/// `{"error": {...}}` (returned as the error).
pub fn parse_status(line: &[u8]) -> Result<Status> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|_| supervisor_error(format!("bad status record {:?}", String::from_utf8_lossy(line))))?;
    let int = |key: &str| v.get(key).and_then(serde_json::Value::as_i64).map(|n| n as i32);
    if let Some(err) = v.get("error") {
        let text = |k: &str| err.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        return Err(Error {
            step: text("step").unwrap_or_else(|| "supervisor".into()),
            errno: err.get("errno").and_then(serde_json::Value::as_i64).unwrap_or(0) as i32,
            path: text("path"),
            detail: text("detail"),
        });
    }
    if let Some(pid) = int("pid") {
        return Ok(Status::Started { pid, supervisor_pid: int("supervisor_pid").unwrap_or(0) });
    }
    if let Some(code) = int("exit") {
        return Ok(Status::Exit(code));
    }
    Err(supervisor_error(format!("unknown status record {:?}", String::from_utf8_lossy(line))))
}

/// The caller's terminal, put in raw mode while an attached container with a
/// pty reads it; restored on drop.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        // SAFETY: termios is plain old data filled by tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid out-pointer.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(Error::last_os("tcgetattr"));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return Err(Error::last_os("tcsetattr"));
            }
        }
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSADRAIN, &self.saved) };
    }
}

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// A container started under a supervisor.
pub struct Supervised {
    pub pid: i32,
    pub supervisor_pid: i32,
    /// Attached: the status pipe, still open for the exit record.
    status: Option<StatusReader>,
    pidfd: Option<OwnedFd>,
    supervisor_pidfd: Option<OwnedFd>,
    raw: Option<RawTerminal>,
    exit: Option<i32>,
}

/// Restores the thread's signal mask when dropped.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

impl Supervised {
    /// Attached only: block until the supervisor reports the container done
    /// for good; Docker's status.  With `forward_signals` the usual signals
    /// received meanwhile go to the container (SIGWINCH to the supervisor,
    /// which resizes the pty).
    pub fn wait(&mut self, forward_signals: bool) -> Result<i32> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        let result = self.wait_exit(forward_signals);
        self.raw = None;
        if let Ok(code) = result {
            self.exit = Some(code);
            self.status = None;
        }
        result
    }

    fn wait_exit(&mut self, forward_signals: bool) -> Result<i32> {
        let Some(reader) = self.status.as_mut() else {
            return Err(supervisor_error("the container was started detached: nothing to wait for"));
        };
        let mut guard = None;
        let mut sigfd = None;
        if forward_signals {
            let mut set = SigSet::empty();
            FORWARDED.iter().for_each(|s| set.add(*s));
            set.add(Signal::SIGWINCH);
            let mut old = SigSet::empty();
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
                .map_err(|e| Error::os("block signals", e as i32))?;
            guard = Some(MaskGuard(old));
            sigfd = Some(
                SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                    .map_err(|e| Error::os("signalfd", e as i32))?,
            );
        }
        let result = loop {
            if let Some(line) = reader.take_line() {
                match parse_status(&line) {
                    Ok(Status::Exit(code)) => break Ok(code),
                    Ok(Status::Started { .. }) => continue,
                    Err(e) => break Err(e),
                }
            }
            let mut fds = [
                libc::pollfd { fd: reader.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd {
                    fd: sigfd.as_ref().map_or(-1, |s| s.as_fd().as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid pollfd array for the call.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                if e == libc::EINTR {
                    continue;
                }
                break Err(Error::os("poll", e));
            }
            if fds[1].revents != 0 {
                if let Some(sfd) = &sigfd {
                    while let Ok(Some(info)) = sfd.read_signal() {
                        let sig = info.ssi_signo as i32;
                        let target = if sig == libc::SIGWINCH { &self.supervisor_pidfd } else { &self.pidfd };
                        if let Some(fd) = target {
                            let _ = sys::pidfd_send_signal(fd.as_fd(), sig);
                        }
                    }
                }
            }
            if fds[0].revents != 0 {
                match reader.fill() {
                    Ok(true) => {}
                    Ok(false) => {
                        break Err(supervisor_error("supervisor died before the container's exit was recorded"))
                    }
                    Err(e) => break Err(e),
                }
            }
        };
        if let Some(sfd) = &sigfd {
            // Drop what arrived while blocked, so nothing fires when the mask lifts.
            while let Ok(Some(_)) = sfd.read_signal() {}
        }
        drop(guard);
        result
    }
}

/// Start `<binary> <cdir> <status-fd> attach|detach` as `pyctr-supervise`
/// and return once it has started the container (or failed to).
///
/// `raw_terminal`: put the caller's terminal in raw mode first (attached
/// container with a pty reading the caller's input), restored when `wait`
/// returns or the result is dropped.
pub fn start(binary: &Path, cdir: &Path, attach: bool, raw_terminal: bool) -> Result<Supervised> {
    let raw = if attach && raw_terminal && is_tty(0) { Some(RawTerminal::enter()?) } else { None };
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe", e as i32))?;
    // Above the standard descriptors, so the child's dup2 onto 0..2 cannot
    // clobber it.
    // SAFETY: fcntl on our own descriptor.
    let high = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if high < 0 {
        return Err(Error::last_os("pipe"));
    }
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we own.
    let writer = unsafe { OwnedFd::from_raw_fd(high) };
    let devnull = if attach {
        None
    } else {
        Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| Error::os("open", e.raw_os_error().unwrap_or(libc::EIO)).with_path("/dev/null"))?,
        )
    };
    // Everything the children need is prepared before the fork: the caller
    // is a multi-threaded Python process, so they may not allocate.
    let c = |s: &str| CString::new(s).map_err(|_| Error::os("start supervisor", libc::EINVAL).with_path(s));
    let bin_str = binary.to_string_lossy();
    let cdir_str = cdir.to_string_lossy();
    let path = c(&bin_str)?;
    // The status fd becomes 3 in the supervisor; everything above is closed.
    let args = [c(ARGV0)?, c(&cdir_str)?, c("3")?, c(if attach { "attach" } else { "detach" })?];
    let argv = [args[0].as_ptr(), args[1].as_ptr(), args[2].as_ptr(), args[3].as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let quoted = serde_json::to_string(&*bin_str).unwrap_or_else(|_| "null".into());
    let exec_prefix = b"{\"error\":{\"step\":\"exec supervisor\",\"errno\":".to_vec();
    let exec_suffix = format!(",\"path\":{quoted},\"detail\":null}}}}\n").into_bytes();
    let fork_prefix = b"{\"error\":{\"step\":\"fork supervisor\",\"errno\":".to_vec();
    let fork_suffix = b",\"path\":null,\"detail\":null}}\n".to_vec();
    let null_fd = devnull.as_ref().map_or(-1, |f| f.as_raw_fd());
    let status_fd = writer.as_raw_fd();

    // No signal handler of the caller may run in the children (Python's
    // would write to its wakeup fd); the supervisor sets its own mask.
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old))
        .map_err(|e| Error::os("block signals", e as i32))?;
    let mask = MaskGuard(old);
    // SAFETY: the child only makes async-signal-safe calls on memory prepared
    // above, then execs or exits.
    let forked = unsafe { sys::clone3_fork(0, None) };
    let intermediate = match forked {
        Err(e) => return Err(Error::os("fork supervisor", e)),
        Ok(Forked::Child) => {
            // SAFETY: async-signal-safe calls only; see above.
            unsafe {
                libc::setsid();
                match sys::clone3_fork(0, None) {
                    Ok(Forked::Child) => {
                        exec_supervisor(&path, &argv, &envp, null_fd, status_fd, &exec_prefix, &exec_suffix)
                    }
                    Ok(Forked::Parent { .. }) => libc::_exit(0),
                    Err(e) => {
                        write_error(status_fd, &fork_prefix, e, &fork_suffix);
                        libc::_exit(1)
                    }
                }
            }
        }
        Ok(Forked::Parent { pidfd, .. }) => pidfd,
    };
    drop(mask);
    drop(writer);
    drop(devnull);
    let _ = sys::pidfd_wait(intermediate.as_fd(), true);
    drop(intermediate);

    let mut status = StatusReader { fd: reader, buf: Vec::new() };
    let line =
        status.next_line()?.ok_or_else(|| supervisor_error("supervisor exited without starting the container"))?;
    let Status::Started { pid, supervisor_pid } = parse_status(&line)? else {
        return Err(supervisor_error("supervisor reported an exit before a start"));
    };
    Ok(Supervised {
        pid,
        supervisor_pid,
        pidfd: pidfd_open(pid),
        supervisor_pidfd: if supervisor_pid > 0 { pidfd_open(supervisor_pid) } else { None },
        status: attach.then_some(status),
        raw,
        exit: None,
    })
}

/// The supervisor-to-be: stdio, the status fd kept across exec, every other
/// inherited descriptor closed at exec, then execve (retried while another
/// thread's fork briefly holds the freshly written binary open for writing).
///
/// # Safety
/// Only async-signal-safe calls; all memory was prepared before the fork.
unsafe fn exec_supervisor(
    path: &CString,
    argv: &[*const libc::c_char; 5],
    envp: &[*const libc::c_char; 1],
    null_fd: RawFd,
    status_fd: RawFd,
    prefix: &[u8],
    suffix: &[u8],
) -> ! {
    if null_fd >= 0 {
        for target in 0..3 {
            if libc::dup2(null_fd, target) < 0 {
                fail(status_fd, prefix, suffix);
            }
        }
    }
    // The status fd moves to 3 and every other inherited descriptor is closed
    // now, not at exec: a descriptor another thread had open for writing on
    // the binary would otherwise make our own execve fail with ETXTBSY.
    const STATUS: RawFd = 3;
    if status_fd != STATUS && libc::dup2(status_fd, STATUS) < 0 {
        fail(status_fd, prefix, suffix);
    }
    if libc::fcntl(STATUS, libc::F_SETFD, 0) < 0 {
        fail(STATUS, prefix, suffix);
    }
    // SAFETY (of the call): close_range only closes descriptors of this process.
    if libc::syscall(libc::SYS_close_range, STATUS as libc::c_uint + 1, libc::c_uint::MAX, 0) != 0
        && sys::cloexec_from(STATUS as u32 + 1).is_err()
    {
        fail(STATUS, prefix, suffix);
    }
    let status_fd = STATUS;
    for _ in 0..100 {
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        if *libc::__errno_location() != libc::ETXTBSY {
            break;
        }
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        libc::nanosleep(&pause, std::ptr::null_mut());
    }
    fail(status_fd, prefix, suffix)
}

/// Report the current errno as an error record and exit.
unsafe fn fail(fd: RawFd, prefix: &[u8], suffix: &[u8]) -> ! {
    write_error(fd, prefix, *libc::__errno_location(), suffix);
    libc::_exit(127)
}

/// `prefix`, `errno` in decimal, `suffix`: no allocation.
unsafe fn write_error(fd: RawFd, prefix: &[u8], errno: i32, suffix: &[u8]) {
    let mut digits = [0u8; 12];
    let mut at = digits.len();
    let mut n = errno.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for part in [prefix, &digits[at..], suffix] {
        libc::write(fd, part.as_ptr().cast(), part.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status(br#"{"pid": 12, "supervisor_pid": 10}"#),
            Ok(Status::Started { pid: 12, supervisor_pid: 10 })
        );
        assert_eq!(parse_status(br#"{"exit": 137}"#), Ok(Status::Exit(137)));
        let err = parse_status(br#"{"error":{"step":"execve","errno":2,"path":"nope","detail":null}}"#)
            .expect_err("an error record");
        assert_eq!((err.step.as_str(), err.errno, err.path.as_deref()), ("execve", 2, Some("nope")));
        assert_eq!(parse_status(b"garbage").expect_err("bad").step, "supervisor");
    }

    #[test]
    fn preformatted_error_records_are_valid_json() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        // SAFETY: writes to our own pipe.
        unsafe { write_error(w.as_raw_fd(), b"{\"error\":{\"step\":\"x\",\"errno\":", 13, b",\"path\":null}}\n") };
        drop(w);
        let mut reader = StatusReader { fd: r, buf: Vec::new() };
        let line = reader.next_line().expect("read").expect("a line");
        let err = parse_status(&line).expect_err("error record");
        assert_eq!((err.step.as_str(), err.errno), ("x", 13));
        assert_eq!(reader.next_line().expect("read"), None);
    }
}
