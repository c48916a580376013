//! `exec`: start another process in a created or running container, through
//! the core's join path (every namespace by `/proc/<pid>/ns/*`, the
//! container's cgroup, the init from the sealed memfd).

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use serde_json::{json, Value};

use super::args::{self, Flag};
use super::state::{self, Status};
use super::{absolute, Fail, Global, Result};
use crate::spawn::{self, Launch, Stdio};
use crate::spec::{Process, Spec};

const EXEC_FLAGS: [Flag; 16] = [
    args::value(&["process", "p"]),
    args::switch(&["detach", "d"]),
    args::value(&["pid-file"]),
    args::value(&["console-socket"]),
    args::switch(&["tty", "t"]),
    args::value(&["cwd"]),
    args::value(&["env", "e"]),
    args::value(&["user", "u"]),
    args::value(&["additional-gids", "g"]),
    args::value(&["cap", "c"]),
    args::switch(&["no-new-privs"]),
    args::value(&["process-label"]),
    args::value(&["apparmor"]),
    args::value(&["preserve-fds"]),
    args::switch(&["ignore-paused"]),
    args::value(&["cgroup"]),
];

/// The `/proc/<pid>/ns/` file of an OCI namespace type.
fn ns_file(kind: &str) -> &str {
    match kind {
        "network" => "net",
        "mount" => "mnt",
        other => other,
    }
}

fn parse_user(text: &str) -> Result<(u32, u32)> {
    let bad = || Fail::new(format!("invalid --user {text:?}: want uid[:gid]"));
    let (u, g) = text.split_once(':').unwrap_or((text, "0"));
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// The process to run: `--process FILE`, or the container's own process
/// with the command-line arguments and overrides.
fn process(c: &state::Container, p: &args::Parsed) -> Result<Process> {
    if let Some(file) = p.get("process") {
        let text = std::fs::read_to_string(file).map_err(|e| Fail::new(format!("process {file}: {e}")))?;
        return serde_json::from_str(&text).map_err(|e| Fail::new(format!("process {file}: {e}")));
    }
    let args: Vec<String> = p.positional.iter().skip(1).cloned().collect();
    if args.is_empty() {
        return Err(Fail::new("\"exec\" requires a command (or --process FILE)"));
    }
    let base = c.saved.config.get("process").cloned().unwrap_or(Value::Null);
    let mut proc: Process = if base.is_null() {
        Process { cwd: "/".into(), ..Process::default() }
    } else {
        serde_json::from_value(base).map_err(|e| Fail::new(format!("container process: {e}")))?
    };
    proc.args = args;
    proc.terminal = p.is_set("tty");
    proc.env.extend(p.all("env").into_iter().map(str::to_owned));
    if let Some(cwd) = p.get("cwd") {
        proc.cwd = cwd.to_owned();
    }
    if let Some(user) = p.get("user") {
        let (uid, gid) = parse_user(user)?;
        proc.user.uid = uid;
        proc.user.gid = gid;
    }
    for g in p.all("additional-gids") {
        proc.user.additional_gids.push(g.parse().map_err(|_| Fail::new(format!("invalid additional gid {g:?}")))?);
    }
    let caps = p.all("cap");
    if !caps.is_empty() {
        let sets = proc.capabilities.get_or_insert_with(Default::default);
        for cap in caps {
            crate::caps::number_of(cap).map_err(|_| Fail::new(format!("unknown capability {cap:?}")))?;
            for set in [&mut sets.bounding, &mut sets.effective, &mut sets.permitted, &mut sets.ambient] {
                if !set.iter().any(|c| c == cap) {
                    set.push(cap.to_owned());
                }
            }
        }
    }
    if p.is_set("no-new-privs") {
        proc.no_new_privileges = true;
    }
    Ok(proc)
}

pub fn exec_cmd(g: &Global, argv: &[String]) -> Result<i32> {
    let p = args::parse(argv, &EXEC_FLAGS, true)?;
    let Some(id) = p.positional.first() else { return Err(Fail::new("\"exec\" requires a container id")) };
    let c = state::Container::load(g, id)?;
    match c.status() {
        Status::Created | Status::Running => {}
        Status::Paused if p.is_set("ignore-paused") => {}
        Status::Paused => return Err(Fail::new("cannot exec in a paused container")),
        _ => return Err(Fail::new("cannot exec in a stopped container")),
    }
    let proc = process(&c, &p)?;
    if proc.args.is_empty() {
        return Err(Fail::new("process.args must not be empty"));
    }
    let console = p.get("console-socket");
    if proc.terminal && console.is_none() {
        return Err(Fail::new("exec with a terminal needs --console-socket"));
    }
    let console = console
        .map(|s| UnixStream::connect(absolute(s)).map_err(|e| Fail::new(format!("console socket {s}: {e}"))))
        .transpose()?;
    let pid = c.saved.pid;
    let container: Spec =
        serde_json::from_value(c.saved.config.clone()).map_err(|e| Fail::new(format!("container config: {e}")))?;
    let mut kinds: Vec<String> = container.linux().namespaces.iter().map(|n| n.kind.clone()).collect();
    for k in ["pid", "mount"] {
        if !kinds.iter().any(|x| x == k) {
            kinds.push(k.to_owned());
        }
    }
    let namespaces: Vec<Value> =
        kinds.iter().map(|k| json!({"type": k, "path": format!("/proc/{pid}/ns/{}", ns_file(k))})).collect();
    let doc = json!({
        "ociVersion": super::OCI_VERSION,
        "process": proc,
        "root": container.root,
        "linux": {"namespaces": namespaces},
    });
    let config = doc.to_string();
    let spec = Spec::from_json(&config)?;
    let preserve: u32 = match p.get("preserve-fds") {
        Some(n) => n.parse().map_err(|_| Fail::new(format!("invalid --preserve-fds {n:?}")))?,
        None => 0,
    };
    let launch = Launch {
        stdio: Stdio::Inherit,
        cgroup_procs: c.cgroup_procs(),
        join: true,
        preserve_fds: preserve,
        ..Launch::default()
    };
    let image = super::create::own_image()?;
    let bundle = std::path::PathBuf::from(&c.saved.bundle);
    let mut child = spawn::spawn_spec(&image, &spec, &config, &bundle, &launch)
        .map_err(|e| Fail::new(format!("exec failed: {e}")))?;
    drop(image);
    if let (Some(master), Some(sock)) = (child.master.take(), &console) {
        super::create::send_console(sock, &master)?;
    }
    if let Some(pid_file) = p.get("pid-file") {
        super::create::write_pid_file(&absolute(pid_file), child.pid)?;
    }
    if p.is_set("detach") {
        return Ok(0);
    }
    let exit = crate::sys::pidfd_wait(child.pidfd.as_fd(), true)
        .map_err(|e| Fail::new(format!("wait: {}", nix::errno::Errno::from_raw(e).desc())))?;
    Ok(exit.map_or(255, |e| e.status()))
}
