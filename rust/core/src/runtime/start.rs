//! `start`: release a created container's init by opening `exec.fifo`.
//!
//! The fifo is opened for reading without blocking, then polled together
//! with a pidfd of the init: the init's blocked open completes, it writes
//! one `0` byte, looks the program up and execs it (the fifo is
//! close-on-exec: EOF).  Anything after the byte is the init's error line.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::args;
use super::state::{self, Status};
use super::{hooks, Fail, Global, Result};

pub fn start_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[], true)?;
    start(g, p.one_id("start")?)
}

pub fn start(g: &Global, id: &str) -> Result<()> {
    let (c, _lock) = state::load_locked(g, id)?;
    match c.status() {
        Status::Created => {}
        Status::Stopped => return Err(Fail::new("cannot start a container that has stopped")),
        Status::Running | Status::Paused => return Err(Fail::new("cannot start an already running container")),
        Status::Creating => return Err(Fail::new("cannot start a container that is still being created")),
    }
    let fifo_path = c.dir.join(state::FIFO);
    let pidfd = crate::supervisor::launch::pidfd_open(c.saved.pid)
        .ok_or_else(|| Fail::new("cannot start a container that has stopped"))?;
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Fail::new(format!("open {}: {}", fifo_path.display(), e.desc())))?;
    let data = read_until_eof(&fifo, &pidfd)?;
    let _ = std::fs::remove_file(&fifo_path);
    match data.split_first() {
        Some((0, [])) => {}
        Some((0, rest)) => {
            let msg = String::from_utf8_lossy(rest);
            return Err(Fail::new(format!("cannot start the container process: {}", msg.trim())));
        }
        _ => return Err(Fail::new("the container's init exited before it was started")),
    }
    if let Err(e) = hooks::run_all(&c.saved.config, "poststart", &c.hook_state("running")) {
        super::warn(g, &e.msg);
    }
    Ok(())
}

/// Read the fifo until EOF; give up when the init is gone without ever
/// opening it.
fn read_until_eof(fifo: &OwnedFd, pidfd: &OwnedFd) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut opened = false;
    loop {
        let mut fds = [
            libc::pollfd { fd: fifo.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: a valid pollfd array for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Fail::new(format!("poll exec fifo: {e}")));
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(fifo.as_fd(), &mut buf) {
                Ok(0) if opened || fds[0].revents & libc::POLLHUP != 0 => return Ok(data),
                Ok(0) => {}
                Ok(n) => {
                    opened = true;
                    data.extend_from_slice(&buf[..n]);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => opened = true,
                Err(e) => return Err(Fail::new(format!("read exec fifo: {}", e.desc()))),
            }
            continue;
        }
        if fds[1].revents != 0 {
            // The init exited.  Whatever it wrote is still in the pipe.
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = nix::unistd::read(fifo.as_fd(), &mut buf) {
                data.extend_from_slice(&buf[..n]);
            }
            return Ok(data);
        }
    }
}
