//! `pyctr-fast-runtime`: an OCI runtime with runc's command line, for
//! containerd, CRI-O, podman and the OCI runtime-tools validation suite.
//!
//! It is the same static ELF as `pyctr-init` and `pyctr-supervise`, run
//! under this name.  Every container runs the init from a sealed memfd copy
//! of this binary (no host file is executed in a container).  State lives in
//! `<root>/<id>/` ([`state`]); `create` leaves the init blocked on
//! `exec.fifo` with everything set up, `start` releases it (docs/runtime.md).

pub mod args;
mod bundle;
mod cgroup;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod hooks;
mod kill;
mod list;
mod pause;
mod start;
mod state;

use std::io::Write;
use std::path::PathBuf;

/// argv[0] basename under which the binary is this runtime.
pub const ARGV0: &str = "pyctr-fast-runtime";
/// The default state root, as runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/pyctr-fast-runtime";
/// The OCI runtime-spec version we implement.
pub const OCI_VERSION: &str = "1.2.0";

/// A command's failure: the one line printed (and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub msg: String,
    /// Exit status (1 like runc, or the program's status for `run`/`exec`).
    pub code: i32,
}

impl Fail {
    pub fn new(msg: impl Into<String>) -> Fail {
        Fail { msg: msg.into(), code: 1 }
    }
}

impl From<crate::Error> for Fail {
    fn from(e: crate::Error) -> Fail {
        Fail::new(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Fail>;

/// The global flags.
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_json: bool,
    pub debug: bool,
}

const GLOBAL_FLAGS: [args::Flag; 8] = [
    args::value(&["root"]),
    args::value(&["log"]),
    args::value(&["log-format"]),
    args::switch(&["systemd-cgroup"]),
    args::switch(&["debug"]),
    args::switch(&["version", "v"]),
    args::switch(&["help", "h"]),
    args::value(&["rootless", "criu"]),
];

const USAGE: &str = "usage: pyctr-fast-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [ARGS]
commands: create start run state kill delete exec ps list pause resume update events features spec";

/// Entry point: `pyctr-fast-runtime [global flags] COMMAND [flags] [args]`.
pub fn main(argv: &[String]) -> i32 {
    let rest = argv.get(1..).unwrap_or_default();
    let parsed = args::parse(rest, &GLOBAL_FLAGS, true);
    let mut global = Global { root: PathBuf::from(DEFAULT_ROOT), log: None, log_json: false, debug: false };
    let result = parsed.and_then(|p| {
        if let Some(root) = p.get("root") {
            global.root = absolute(root);
        }
        global.log = p.get("log").map(PathBuf::from);
        global.log_json = match p.get("log-format") {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(Fail::new(format!("invalid log-format: {other}"))),
        };
        global.debug = p.is_set("debug");
        if p.is_set("version") {
            println!("pyctr-fast-runtime version {}\nspec: {OCI_VERSION}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        if p.is_set("systemd-cgroup") {
            return Err(Fail::new("the systemd cgroup driver is not supported"));
        }
        let Some((cmd, cmd_args)) = p.positional.split_first() else {
            if p.is_set("help") {
                println!("{USAGE}");
                return Ok(0);
            }
            return Err(Fail::new(format!("no command given\n{USAGE}")));
        };
        dispatch(&global, cmd, cmd_args)
    });
    match result {
        Ok(code) => code,
        Err(fail) => {
            report(&global, &fail.msg);
            fail.code
        }
    }
}

fn dispatch(g: &Global, cmd: &str, args: &[String]) -> Result<i32> {
    match cmd {
        "create" => create::create_cmd(g, args).map(|()| 0),
        "start" => start::start_cmd(g, args).map(|()| 0),
        "run" => create::run_cmd(g, args),
        "state" => list::state_cmd(g, args).map(|()| 0),
        "kill" => kill::kill_cmd(g, args).map(|()| 0),
        "delete" => delete::delete_cmd(g, args).map(|()| 0),
        "exec" => exec::exec_cmd(g, args),
        "ps" => list::ps_cmd(g, args).map(|()| 0),
        "list" => list::list_cmd(g, args).map(|()| 0),
        "pause" => pause::pause_cmd(g, args, true).map(|()| 0),
        "resume" => pause::pause_cmd(g, args, false).map(|()| 0),
        "update" => pause::update_cmd(g, args).map(|()| 0),
        "events" => events::events_cmd(g, args).map(|()| 0),
        "features" => features::features_cmd(args).map(|()| 0),
        "spec" => features::spec_cmd(args).map(|()| 0),
        "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(Fail::new(format!("unknown command {other:?}\n{USAGE}"))),
    }
}

/// `path` made absolute against the working directory.
pub fn absolute(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|cwd| cwd.join(&p)).unwrap_or(p)
}

/// One line on stderr and, with `--log`, one record in the log file.
fn report(g: &Global, msg: &str) {
    let line = msg.replace('\n', " ");
    let shown = msg.lines().next().unwrap_or("");
    eprintln!("pyctr-fast-runtime: {shown}");
    log(g, "error", &line);
}

/// Append one record to the `--log` file (JSON like runc with
/// `--log-format json`, else logrus text).
pub fn log(g: &Global, level: &str, msg: &str) {
    let Some(path) = &g.log else { return };
    let time = crate::supervisor::state::now_rfc3339();
    let record = if g.log_json {
        let v = serde_json::json!({"level": level, "msg": msg, "time": time});
        format!("{v}\n")
    } else {
        format!("time={time:?} level={level} msg={msg:?}\n")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(record.as_bytes());
    }
}

/// A warning (hook failures that the spec says are not fatal): stderr and log.
pub fn warn(g: &Global, msg: &str) {
    eprintln!("pyctr-fast-runtime: warning: {msg}");
    log(g, "warning", msg);
}
