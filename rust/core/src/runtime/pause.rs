//! `pause`/`resume` (the freezer) and `update` (new limits).

use std::io::Read;

use serde_json::{json, Value};

use super::args;
use super::state::{self, Status};
use super::{Fail, Global, Result};
use crate::cgroups::Resources;

pub fn pause_cmd(g: &Global, argv: &[String], pause: bool) -> Result<()> {
    let p = args::parse(argv, &[], true)?;
    let (c, _lock) = state::load_locked(g, p.one_id(if pause { "pause" } else { "resume" })?)?;
    let status = c.status();
    let plan = c.saved.cgroup.as_ref().ok_or_else(|| Fail::new("the container has no cgroup"))?;
    match (pause, status) {
        (true, Status::Running | Status::Created) => super::cgroup::freeze(plan, true),
        (false, Status::Paused) => super::cgroup::freeze(plan, false),
        (true, Status::Paused) => Err(Fail::new("container already paused")),
        (false, _) => Err(Fail::new("container not paused")),
        (true, _) => Err(Fail::new("container not running")),
    }
}

const UPDATE_FLAGS: [args::Flag; 10] = [
    args::value(&["resources", "r"]),
    args::value(&["memory"]),
    args::value(&["memory-reservation"]),
    args::value(&["memory-swap"]),
    args::value(&["cpu-shares"]),
    args::value(&["cpu-quota"]),
    args::value(&["cpu-period"]),
    args::value(&["cpuset-cpus"]),
    args::value(&["cpuset-mems"]),
    args::value(&["pids-limit"]),
];

/// runc's memory sizes: a plain number of bytes or with a k/m/g suffix.
fn bytes(text: &str) -> Result<i64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if num == "-1" {
        return Ok(-1);
    }
    num.parse::<i64>().map(|n| n * mult).map_err(|_| Fail::new(format!("invalid size {text:?}")))
}

fn num(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Fail::new(format!("invalid number {text:?}")))
}

pub fn update_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &UPDATE_FLAGS, true)?;
    let (c, _lock) = state::load_locked(g, p.one_id("update")?)?;
    if c.status() == Status::Stopped {
        return Err(Fail::new("container not running"));
    }
    let plan = c.saved.cgroup.as_ref().ok_or_else(|| Fail::new("the container has no cgroup"))?;
    let mut doc: Value = match p.get("resources") {
        Some(file) => {
            let mut text = String::new();
            let read = if file == "-" {
                std::io::stdin().read_to_string(&mut text).map(|_| ())
            } else {
                std::fs::read_to_string(file).map(|t| text = t)
            };
            read.map_err(|e| Fail::new(format!("read resources {file}: {e}")))?;
            serde_json::from_str(&text).map_err(|e| Fail::new(format!("resources: invalid JSON: {e}")))?
        }
        None => json!({}),
    };
    let mut set = |ptr: &str, v: Value| {
        let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
        if doc.pointer(parent).is_none_or(|v| !v.is_object()) {
            if let Some(obj) = doc.as_object_mut() {
                obj.insert(parent.trim_start_matches('/').to_owned(), json!({}));
            }
        }
        if let Some(obj) = doc.pointer_mut(parent).and_then(Value::as_object_mut) {
            obj.insert(key.to_owned(), v);
        }
    };
    for (flag, ptr, is_bytes) in [
        ("memory", "/memory/limit", true),
        ("memory-reservation", "/memory/reservation", true),
        ("memory-swap", "/memory/swap", true),
        ("cpu-shares", "/cpu/shares", false),
        ("cpu-quota", "/cpu/quota", false),
        ("cpu-period", "/cpu/period", false),
        ("pids-limit", "/pids/limit", false),
    ] {
        if let Some(v) = p.get(flag) {
            set(ptr, json!(if is_bytes { bytes(v)? } else { num(v)? }));
        }
    }
    for (flag, ptr) in [("cpuset-cpus", "/cpu/cpus"), ("cpuset-mems", "/cpu/mems")] {
        if let Some(v) = p.get(flag) {
            set(ptr, json!(v));
        }
    }
    let res: Resources = serde_json::from_value(doc).map_err(|e| Fail::new(format!("resources: {e}")))?;
    super::cgroup::apply(plan, &res)
}
