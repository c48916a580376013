//! `kill [--all] ID [SIGNAL]`: signals by name (`KILL`, `SIGKILL`) or number,
//! sent through a pidfd (never to a recycled pid).

use super::args;
use super::state::{self, Status};
use super::{Fail, Global, Result};

const SIGNALS: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

/// A signal by number, name, or name with `SIG` (any case).
pub fn parse_signal(text: &str) -> Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(n) = name.strip_prefix("RTMIN+").and_then(|n| n.parse::<i32>().ok()) {
        return Ok(libc::SIGRTMIN() + n);
    }
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| Fail::new(format!("unknown signal {text:?}")))
}

pub fn kill_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::switch(&["all", "a"])], false)?;
    let (id, sig) = match p.positional.as_slice() {
        [id] => (id.as_str(), libc::SIGTERM),
        [id, sig] => (id.as_str(), parse_signal(sig)?),
        [] => return Err(Fail::new("\"kill\" requires a container id")),
        _ => return Err(Fail::new("\"kill\" takes a container id and at most one signal")),
    };
    let (c, _lock) = state::load_locked(g, id)?;
    let status = c.status();
    if matches!(status, Status::Stopped | Status::Creating) {
        return Err(Fail::new("container not running"));
    }
    if p.is_set("all") {
        for pid in c.pids() {
            let _ = signal(pid, sig);
        }
        return Ok(());
    }
    signal(c.saved.pid, sig).map_err(|e| match e {
        libc::ESRCH => Fail::new("container not running"),
        e => Fail::new(format!("kill: {}", nix::errno::Errno::from_raw(e).desc())),
    })
}

/// Send `sig` to `pid` through a pidfd.
pub fn signal(pid: i32, sig: i32) -> std::result::Result<(), i32> {
    use std::os::fd::AsFd;
    let pidfd = crate::supervisor::launch::pidfd_open(pid).ok_or(libc::ESRCH)?;
    crate::sys::pidfd_send_signal(pidfd.as_fd(), sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_with_and_without_sig_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("USR1").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
