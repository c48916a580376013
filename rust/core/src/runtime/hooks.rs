//! OCI hooks: `path`, `args`, `env`, `timeout` (seconds), the container's
//! state JSON on stdin.  Run by the runtime (prestart, createRuntime,
//! poststart, poststop) in the runtime's namespaces.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Fail, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The hooks of `kind` in a config (`hooks.<kind>`), in order.
pub fn of(config: &serde_json::Value, kind: &str) -> Result<Vec<Hook>> {
    match config.pointer(&format!("/hooks/{kind}")) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Fail::new(format!("config.json: hooks.{kind}: {e}"))),
    }
}

/// Run every hook of `kind` with `state` on stdin; the first failure is
/// returned.
pub fn run_all(config: &serde_json::Value, kind: &str, state: &str) -> Result<()> {
    for (i, hook) in of(config, kind)?.iter().enumerate() {
        run(hook, state).map_err(|e| Fail::new(format!("{kind} hook #{i} ({}): {}", hook.path, e.msg)))?;
    }
    Ok(())
}

/// Run one hook and wait for it (killing it when its timeout passes).
pub fn run(hook: &Hook, state: &str) -> Result<()> {
    if hook.timeout.is_some_and(|t| t <= 0) {
        return Err(Fail::new("timeout must be positive"));
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
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Fail::new(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail for it.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook.timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(Fail::new(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Fail::new(format!("timed out after {} s", hook.timeout.unwrap_or(0))));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    };
    Err(Fail::new(if last.is_empty() { how } else { format!("{how}: {last}") }))
}
