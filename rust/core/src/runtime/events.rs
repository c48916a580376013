//! `events`: the container's statistics (cpu, memory, pids) and OOM kills
//! as JSON lines, runc's format: one `stats` object with `--stats`, else a
//! stream (a `stats` object every `--interval`, an `oom` object as soon as
//! the memory controller counts a kill) until the container stops.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::args;
use super::state::{Container, Status};
use super::{Fail, Global, Result};

/// How often the stream looks at the container between `stats` objects.
const TICK: Duration = Duration::from_millis(100);

pub fn events_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::switch(&["stats"]), args::value(&["interval"])], true)?;
    let id = p.one_id("events")?;
    let c = Container::load(g, id)?;
    if c.status() == Status::Stopped {
        return Err(Fail::new("container not running"));
    }
    if p.is_set("stats") {
        println!("{}", json!({"type": "stats", "id": id, "data": stats(&c)}));
        return Ok(());
    }
    let interval = match p.get("interval") {
        Some(v) => parse_interval(v)?,
        None => Duration::from_secs(5),
    };
    let mut ooms = oom_kills(&c);
    let mut next = Instant::now() + interval;
    loop {
        if c.status() == Status::Stopped {
            return Ok(());
        }
        let now = oom_kills(&c);
        if now > ooms {
            println!("{}", json!({"type": "oom", "id": id}));
            ooms = now;
        }
        if Instant::now() >= next {
            println!("{}", json!({"type": "stats", "id": id, "data": stats(&c)}));
            next += interval;
        }
        std::thread::sleep(TICK.min(next.saturating_duration_since(Instant::now())).max(Duration::from_millis(1)));
    }
}

/// Go's duration syntax as runc takes it for `--interval`: `5s`, `250ms`,
/// `1m`, `1m30s`, `1.5s`.
fn parse_interval(v: &str) -> Result<Duration> {
    let bad = || Fail::new(format!("invalid --interval {v:?}: a duration like 5s or 250ms"));
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let split = rest.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).ok_or_else(bad)?;
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail.find(|ch: char| ch.is_ascii_digit() || ch == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += n * match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = tail;
    }
    if total <= 0.0 || !total.is_finite() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// How many processes the memory controller has OOM-killed in the group
/// (v1 `memory.oom_control`, v2 `memory.events`: `oom_kill N`).
fn oom_kills(c: &Container) -> u64 {
    let Some(plan) = &c.saved.cgroup else { return 0 };
    let (dir, file) = if plan.version == 2 {
        (plan.dirs.first().map(Path::new), "memory.events")
    } else {
        (plan.dir("memory"), "memory.oom_control")
    };
    read_keyed(dir, file).get("oom_kill").and_then(Value::as_u64).unwrap_or(0)
}

fn read_num(dir: Option<&Path>, file: &str) -> u64 {
    dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn read_keyed(dir: Option<&Path>, file: &str) -> serde_json::Map<String, Value> {
    let text = dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_owned(), json!(v))))
        .collect()
}

/// runc's `events --stats` object (cpu, memory, pids) read from the group.
fn stats(c: &Container) -> Value {
    let Some(plan) = &c.saved.cgroup else { return json!({}) };
    if plan.version == 2 {
        let dir = plan.dirs.first().map(Path::new);
        let cpu = read_keyed(dir, "cpu.stat");
        let usec = |k: &str| cpu.get(k).and_then(Value::as_u64).unwrap_or(0) * 1000;
        return json!({
            "cpu": {"usage": {"total": usec("usage_usec"), "kernel": usec("system_usec"), "user": usec("user_usec")}},
            "memory": {"usage": {"usage": read_num(dir, "memory.current"), "limit": read_num(dir, "memory.max")},
                       "raw": read_keyed(dir, "memory.stat")},
            "pids": {"current": read_num(dir, "pids.current"), "limit": read_num(dir, "pids.max")},
        });
    }
    let acct = plan.dir("cpuacct");
    let mem = plan.dir("memory");
    let pids = plan.dir("pids");
    let percpu: Vec<u64> = acct
        .and_then(|d| std::fs::read_to_string(d.join("cpuacct.usage_percpu")).ok())
        .map(|t| t.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    let ticks = read_keyed(acct, "cpuacct.stat");
    // USER_HZ is 100 on Linux: 10 ms per tick.
    let ns = |k: &str| ticks.get(k).and_then(Value::as_u64).unwrap_or(0) * 10_000_000;
    json!({
        "cpu": {"usage": {"total": read_num(acct, "cpuacct.usage"), "percpu": percpu,
                          "kernel": ns("system"), "user": ns("user")}},
        "memory": {"usage": {"usage": read_num(mem, "memory.usage_in_bytes"),
                             "max": read_num(mem, "memory.max_usage_in_bytes"),
                             "limit": read_num(mem, "memory.limit_in_bytes"),
                             "failcnt": read_num(mem, "memory.failcnt")},
                   "raw": read_keyed(mem, "memory.stat")},
        "pids": {"current": read_num(pids, "pids.current"), "limit": read_num(pids, "pids.max")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_take_gos_duration_syntax() {
        assert_eq!(parse_interval("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse_interval("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("1.5s").ok(), Some(Duration::from_millis(1500)));
        for bad in ["", "5", "s", "-1s", "0s", "5x", "1.2.3s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
