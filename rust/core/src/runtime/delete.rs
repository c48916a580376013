//! `delete [--force] ID`: a stopped container's cgroup and state directory go
//! (then its poststop hooks run); a created, running or paused one is
//! refused unless `--force`, which kills it first.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::args;
use super::state::{self, Container, Status};
use super::{hooks, Fail, Global, Result};

/// How long `--force` waits for the killed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn delete_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::switch(&["force", "f"])], false)?;
    let id = p.one_id("delete")?;
    delete(g, id, p.is_set("force"))
}

pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    state::check_id(id)?;
    let c = match Container::load(g, id) {
        Ok(c) => c,
        Err(e) => {
            // An aborted create may have left a directory without state.
            let dir = Container::dir_of(g, id);
            if force {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            return Err(e);
        }
    };
    let _lock = state::lock(&c.dir)?;
    let status = c.status();
    if status != Status::Stopped {
        if !force {
            return Err(Fail::new(format!("cannot delete container {id} that is not stopped: {}", status.name())));
        }
        kill_all(&c)?;
    } else if !c.saved.pid_ns {
        // Without its own pid namespace the init's exit ends nothing else.
        kill_all(&c)?;
    }
    if let Some(plan) = &c.saved.cgroup {
        super::cgroup::remove(plan)?;
    }
    std::fs::remove_dir_all(&c.dir).map_err(|e| Fail::new(format!("remove {}: {e}", c.dir.display())))?;
    if let Err(e) = hooks::run_all(&c.saved.config, "poststop", &c.hook_state("stopped")) {
        super::warn(g, &e.msg);
    }
    Ok(())
}

/// SIGKILL the init (and, without a pid namespace, everything in the
/// cgroup), thawing a frozen group so the signal is delivered, and wait
/// until they are gone.
fn kill_all(c: &Container) -> Result<()> {
    let mut pidfds = Vec::new();
    let init = state::alive(c.saved.pid, c.saved.pid_start).then_some(c.saved.pid);
    let mut pids: Vec<i32> = init.into_iter().collect();
    if !c.saved.pid_ns {
        pids.extend(c.pids());
    }
    for pid in pids {
        if let Some(fd) = crate::supervisor::launch::pidfd_open(pid) {
            let _ = crate::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), libc::SIGKILL);
            pidfds.push(fd);
        }
    }
    if let Some(plan) = &c.saved.cgroup {
        let _ = super::cgroup::freeze(plan, false);
    }
    let deadline = Instant::now() + KILL_WAIT;
    for fd in &pidfds {
        loop {
            let mut p = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            let left = deadline.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: a valid one-element pollfd array.
            let n = unsafe { libc::poll(p.as_mut_ptr(), 1, left) };
            if n > 0 {
                break;
            }
            if n == 0 {
                return Err(Fail::new("the container's processes did not exit after SIGKILL"));
            }
        }
    }
    Ok(())
}
