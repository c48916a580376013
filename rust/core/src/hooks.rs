//! Running one OCI hook: `path`, `args`, `env`, `timeout` (seconds), the
//! container's state JSON on stdin.  Used by the runtime in its own
//! namespaces (prestart, createRuntime, poststart, poststop) and by the
//! container's init in the container's (createContainer, startContainer).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// Run every hook of `kind` in order with `state` on stdin; the first
/// failure stops and is returned (step: `<kind> hook #<i> (<path>)`).
pub fn run_all(kind: &str, hooks: &[Hook], state: &str) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        run(hook, state).map_err(|why| Error::msg(format!("{kind} hook #{i} ({})", hook.path), why))?;
    }
    Ok(())
}

/// Run one hook in its own process group and wait for it; when its timeout
/// passes the whole group is killed.  The error is one line: how it ended
/// and the last line it wrote to stderr.
pub fn run(hook: &Hook, state: &str) -> std::result::Result<(), String> {
    if hook.timeout.is_some_and(|t| t <= 0) {
        return Err("timeout must be positive".to_owned());
    }
    let mut cmd = Command::new(&hook.path);
    if let Some((argv0, rest)) = hook.args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in &hook.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail for it.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook.timeout.map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    let mut delay = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            kill_group(child.id());
            let _ = child.wait();
            return Err(format!("timed out after {} s", hook.timeout.unwrap_or(0)));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let err = child.stderr.take().map(read_available).unwrap_or_default();
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    };
    Err(if last.is_empty() { how } else { format!("{how}: {last}") })
}

/// What the hook wrote to stderr, without waiting for EOF: something it
/// left running in the background may still hold the pipe.
fn read_available(mut pipe: std::process::ChildStderr) -> String {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let _ = fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
        if out.len() > 1 << 16 {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGKILL the process group led by the hook (`pid` is its id).
fn kill_group(pid: u32) {
    if let Ok(pgid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        Hook { path: "/bin/sh".into(), args: vec!["sh".into(), "-c".into(), script.into()], env: vec![], timeout }
    }

    #[test]
    fn stdin_is_the_state_and_failures_name_the_hook() {
        assert_eq!(run(&sh("read x; [ \"$x\" = state ]", None), "state\n"), Ok(()));
        let e = run_all("createRuntime", &[sh("true", None), sh("echo bad >&2; exit 3", None)], "").unwrap_err();
        assert_eq!(e.to_string(), "createRuntime hook #1 (/bin/sh): exit status 3: bad");
    }

    #[test]
    fn a_timed_out_hook_is_killed_with_its_children() {
        let t = Instant::now();
        let e = run(&sh("sleep 30 & sleep 30", Some(1)), "").unwrap_err();
        assert_eq!(e, "timed out after 1 s");
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(run(&sh("true", Some(0)), "").is_err());
    }
}
