//! cgroup v2: one directory in the unified hierarchy; controllers are
//! enabled top-down in each ancestor's `cgroup.subtree_control`.  Device
//! rules become an eBPF program attached to the directory (`devices.rs`).

use std::path::{Path, PathBuf};

use super::resources::{self, Memory, Resources};
use super::{devices, fs, Manager, Plan, FREEZE_TIMEOUT};
use crate::errors::{Error, Result};

pub struct V2 {
    plan: Plan,
    dir: PathBuf,
    mount: PathBuf,
}

impl V2 {
    pub fn new(plan: Plan) -> V2 {
        let dir = plan.dirs.first().map(PathBuf::from).unwrap_or_default();
        let mount = plan.mounts.values().next().map(PathBuf::from).unwrap_or_default();
        V2 { plan, dir, mount }
    }

    /// The controllers the plan asks for (every key but the freezer, which
    /// v2 has built in).
    fn wanted(&self) -> Vec<&str> {
        self.plan.controllers.keys().map(String::as_str).filter(|c| *c != "freezer").collect()
    }

    /// Enable the wanted controllers in `level`'s subtree_control, those it
    /// offers (a controller the host lacks is reported when a limit needs it).
    fn enable(&self, level: &Path) -> Result<()> {
        let offered = fs::read(level, "cgroup.controllers")?.unwrap_or_default();
        let enabled = fs::read(level, "cgroup.subtree_control")?.unwrap_or_default();
        let missing: Vec<String> = self
            .wanted()
            .into_iter()
            .filter(|c| offered.split_whitespace().any(|o| o == *c) && !enabled.split_whitespace().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        fs::write(level, "cgroup.subtree_control", &missing.join(" "))
    }

    /// The file of a knob the kernel must offer; a clear error if it does not
    /// (its controller is missing from this hierarchy).
    fn file(&self, name: &str, what: &str) -> Result<&Path> {
        if fs::exists(&self.dir, name) {
            Ok(&self.dir)
        } else {
            Err(Error::msg(
                format!("write {name}"),
                format!("{what} needs {name}, which this cgroup v2 host does not offer"),
            )
            .with_path(self.dir.to_string_lossy()))
        }
    }

    fn apply_cpu(&self, res: &Resources) -> Result<()> {
        let Some(cpu) = &res.cpu else { return Ok(()) };
        if let Some(shares) = cpu.shares.filter(|s| *s != 0) {
            fs::write(self.file("cpu.weight", "--cpu-shares")?, "cpu.weight", &shares_to_weight(shares).to_string())?;
        }
        let quota = cpu.quota.filter(|q| *q != 0);
        let period = cpu.period.filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let dir = self.file("cpu.max", "a CPU quota")?;
            let current = fs::read(dir, "cpu.max")?.unwrap_or_default();
            fs::write(dir, "cpu.max", &cpu_max(quota, period, &current))?;
        }
        if cpu.realtime_period.is_some_and(|p| p != 0) || cpu.realtime_runtime.is_some_and(|r| r != 0) {
            return Err(Error::msg("linux.resources", "realtime CPU limits are not supported on cgroup v2"));
        }
        for (value, name) in [(&cpu.cpus, "cpuset.cpus"), (&cpu.mems, "cpuset.mems")] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                fs::write(self.file(name, "--cpuset")?, name, v)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, res: &Resources) -> Result<()> {
        let Some(mem) = &res.memory else { return Ok(()) };
        if mem.swappiness.is_some() {
            return Err(Error::msg("linux.resources", "memory swappiness is not supported on cgroup v2"));
        }
        if mem.disable_oom_killer == Some(true) {
            return Err(Error::msg("linux.resources", "disabling the OOM killer is not supported on cgroup v2"));
        }
        if let Some(swap) = swap_max(mem)? {
            fs::write(self.file("memory.swap.max", "a swap limit")?, "memory.swap.max", &swap)?;
        }
        if let Some(l) = mem.limit.filter(|l| *l != 0) {
            fs::write(self.file("memory.max", "a memory limit")?, "memory.max", &max_or(l))?;
        }
        if let Some(r) = mem.reservation.filter(|r| *r != 0) {
            fs::write(self.file("memory.low", "--memory-reservation")?, "memory.low", &max_or(r))?;
        }
        Ok(())
    }

    fn apply_io(&self, res: &Resources) -> Result<()> {
        let Some(io) = &res.block_io else { return Ok(()) };
        // BFQ takes the v1 range (10-1000) as is; io.weight is 1-10000.
        let bfq = fs::exists(&self.dir, "io.bfq.weight");
        let (file, convert): (&str, fn(u16) -> u64) =
            if bfq { ("io.bfq.weight", u64::from) } else { ("io.weight", blkio_to_io_weight) };
        if let Some(w) = io.weight.filter(|w| *w != 0) {
            fs::write(self.file(file, "--blkio-weight")?, file, &convert(w).to_string())?;
        }
        for wd in &io.weight_device {
            if let Some(w) = wd.weight {
                fs::write(
                    self.file(file, "--blkio-weight-device")?,
                    file,
                    &format!("{}:{} {}", wd.major, wd.minor, convert(w)),
                )?;
            }
        }
        for (_, key, devices) in resources::throttles(io) {
            for d in devices {
                let value = format!("{}:{} {key}={}", d.major, d.minor, d.rate);
                fs::write(self.file("io.max", "a device I/O limit")?, "io.max", &value)?;
            }
        }
        Ok(())
    }
}

impl Manager for V2 {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn make(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        let rel = self.dir.strip_prefix(&self.mount).map_err(|_| {
            Error::msg("cgroup plan", format!("{} is not under {}", self.dir.display(), self.mount.display()))
        })?;
        // Each level needs the controllers enabled in its parent before its
        // own children can have them: enable, then go down.
        let mut level = self.mount.clone();
        let parts: Vec<_> = rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            self.enable(&level)?;
            level.push(part);
            if i + 1 < parts.len() {
                fs::make_dirs(&self.mount, &level, made)?;
            }
        }
        fs::make_dirs(&self.mount, &self.dir, made)
    }

    fn apply(&self, res: &Resources) -> Result<()> {
        self.apply_cpu(res)?;
        self.apply_memory(res)?;
        if let Some(pids) = &res.pids {
            let value = if pids.limit > 0 { pids.limit.to_string() } else { "max".to_owned() };
            fs::write(self.file("pids.max", "a pids limit")?, "pids.max", &value)?;
        }
        self.apply_io(res)?;
        for (name, value) in &res.unified {
            if name.contains('/') || name.starts_with('.') || name.is_empty() {
                return Err(Error::msg("linux.resources", format!("invalid unified key {name:?}")));
            }
            fs::write(self.file(name, "a unified resource")?, name, value)?;
        }
        Ok(())
    }

    /// cgroup v2 has no devices controller: the rules become an eBPF
    /// program attached to the group's directory.
    fn apply_devices(&self, rules: &[devices::Rule]) -> Result<()> {
        devices::install(&self.dir, rules)
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        let dir = self.file("cgroup.freeze", "pause (Linux 5.2 or later)")?;
        fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let reached = fs::wait_until(FREEZE_TIMEOUT, || {
            Ok(fs::read(dir, "cgroup.events")?.is_some_and(|t| t.lines().any(|l| l.trim() == want)))
        })?;
        if reached {
            Ok(())
        } else {
            Err(Error::msg("freeze", format!("the cgroup did not reach \"{want}\" in time"))
                .with_path(dir.to_string_lossy()))
        }
    }
}

/// `cpu.shares` (2-262144, default 1024) to `cpu.weight` (1-10000, default
/// 100), the conversion the OCI runtimes document.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `--blkio-weight` (10-1000) to `io.weight` (1-10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// The `cpu.max` line: `$QUOTA $PERIOD`, keeping from `current` what is not given.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>, current: &str) -> String {
    let mut cur = current.split_whitespace();
    let cur_quota = cur.next().unwrap_or("max").to_owned();
    let cur_period = cur.next().unwrap_or("100000").to_owned();
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_owned(),
        None => cur_quota,
    };
    let period = period.map_or(cur_period, |p| p.to_string());
    format!("{quota} {period}")
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// OCI's `swap` is memory plus swap (the v1 meaning); `memory.swap.max` is
/// swap alone.  None: nothing to write.
pub fn swap_max(mem: &Memory) -> Result<Option<String>> {
    let limit = mem.limit.unwrap_or(0);
    match mem.swap.unwrap_or(0) {
        0 => Ok(None),
        -1 => Ok(Some("max".to_owned())),
        _ if limit <= 0 => Err(Error::msg("linux.resources", "a swap limit needs a memory limit")),
        swap if swap < limit => Err(Error::msg("linux.resources", "memory+swap must not be below the memory limit")),
        swap => Ok(Some((swap - limit).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weights_as_documented() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn cpu_max_keeps_what_is_not_given() {
        assert_eq!(cpu_max(Some(50_000), Some(100_000), ""), "50000 100000");
        assert_eq!(cpu_max(Some(25_000), None, "max 200000\n"), "25000 200000");
        assert_eq!(cpu_max(None, Some(50_000), "30000 100000"), "30000 50000");
        assert_eq!(cpu_max(Some(-1), None, "30000 100000"), "max 100000");
    }

    #[test]
    fn swap_is_memory_plus_swap_on_the_oci_side() {
        let m = |limit, swap| Memory { limit: Some(limit), swap: Some(swap), ..Memory::default() };
        assert_eq!(swap_max(&m(32 << 20, 64 << 20)).unwrap().as_deref(), Some("33554432"));
        assert_eq!(swap_max(&m(32 << 20, -1)).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(&m(32 << 20, 0)).unwrap(), None);
        assert!(swap_max(&m(64 << 20, 32 << 20)).is_err());
        assert!(swap_max(&Memory { swap: Some(1 << 20), ..Memory::default() }).is_err());
    }
}
