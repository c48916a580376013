//! cgroup v1: one directory per controller hierarchy, a file per knob.

use std::path::{Path, PathBuf};

use super::resources::{self, Resources};
use super::{fs, Manager, Plan, FREEZE_TIMEOUT};
use crate::errors::{Error, Result};

pub struct V1 {
    plan: Plan,
}

impl V1 {
    pub fn new(plan: Plan) -> V1 {
        V1 { plan }
    }

    /// The directory of `controller`, or an error naming what was asked for.
    fn need(&self, controller: &str, what: &str) -> Result<&Path> {
        self.plan.dir(controller).ok_or_else(|| {
            Error::msg("cgroup", format!("{what} needs the cgroup v1 {controller} controller, which is not mounted"))
        })
    }

    fn apply_cpu(&self, res: &Resources) -> Result<()> {
        let Some(cpu) = &res.cpu else { return Ok(()) };
        let wants_cpu = cpu.shares.is_some()
            || cpu.quota.is_some()
            || cpu.period.is_some()
            || cpu.realtime_period.is_some()
            || cpu.realtime_runtime.is_some();
        if wants_cpu {
            let dir = self.need("cpu", "a CPU limit")?;
            if let Some(shares) = cpu.shares.filter(|s| *s != 0) {
                fs::write(dir, "cpu.shares", &shares.to_string())?;
            }
            set_bandwidth(dir, cpu.quota, cpu.period)?;
            if let Some(p) = cpu.realtime_period.filter(|p| *p != 0) {
                fs::write(dir, "cpu.rt_period_us", &p.to_string())?;
            }
            if let Some(r) = cpu.realtime_runtime.filter(|r| *r != 0) {
                fs::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
            }
        }
        for (value, file) in [(&cpu.cpus, "cpuset.cpus"), (&cpu.mems, "cpuset.mems")] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                fs::write(self.need("cpuset", "--cpuset")?, file, v)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, res: &Resources) -> Result<()> {
        let Some(mem) = &res.memory else { return Ok(()) };
        if mem == &Default::default() {
            return Ok(());
        }
        let dir = self.need("memory", "a memory limit")?;
        set_memory_and_swap(dir, mem.limit, mem.swap)?;
        if let Some(r) = mem.reservation.filter(|r| *r != 0) {
            fs::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(s) = mem.swappiness {
            fs::write(dir, "memory.swappiness", &s.to_string())?;
        }
        if mem.disable_oom_killer == Some(true) {
            fs::write(dir, "memory.oom_control", "1")?;
        }
        Ok(())
    }

    fn apply_pids(&self, res: &Resources) -> Result<()> {
        let Some(pids) = &res.pids else { return Ok(()) };
        let value = if pids.limit > 0 { pids.limit.to_string() } else { "max".to_owned() };
        fs::write(self.need("pids", "a pids limit")?, "pids.max", &value)
    }

    fn apply_blkio(&self, res: &Resources) -> Result<()> {
        let Some(io) = &res.block_io else { return Ok(()) };
        if io == &Default::default() {
            return Ok(());
        }
        let dir = self.need("blkio", "a block I/O limit")?;
        let weight_file = if fs::exists(dir, "blkio.weight") { "blkio.weight" } else { "blkio.bfq.weight" };
        if let Some(w) = io.weight.filter(|w| *w != 0) {
            if !fs::exists(dir, weight_file) {
                return Err(Error::msg(
                    "write blkio.weight",
                    "this kernel's blkio controller has no weights (no CFQ/BFQ)",
                )
                .with_path(dir.to_string_lossy()));
            }
            fs::write(dir, weight_file, &w.to_string())?;
        }
        if let Some(w) = io.leaf_weight.filter(|w| *w != 0) {
            fs::write(dir, "blkio.leaf_weight", &w.to_string())?;
        }
        for wd in &io.weight_device {
            if let Some(w) = wd.weight {
                fs::write(dir, weight_file, &format!("{}:{} {w}", wd.major, wd.minor))?;
            }
            if let Some(w) = wd.leaf_weight {
                fs::write(dir, "blkio.leaf_weight_device", &format!("{}:{} {w}", wd.major, wd.minor))?;
            }
        }
        for (file, _, devices) in resources::throttles(io) {
            for d in devices {
                fs::write(dir, file, &format!("{}:{} {}", d.major, d.minor, d.rate))?;
            }
        }
        Ok(())
    }
}

impl Manager for V1 {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn make(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        for (controller, dir) in &self.plan.controllers {
            let Some(mount) = self.plan.mounts.get(controller) else {
                return Err(Error::msg("cgroup plan", format!("no mount point for {controller}")));
            };
            // A new cpuset group starts with no CPUs and no memory nodes, and
            // takes no processes until it has some: give each level its
            // parent's before going down.
            let cpuset = controller == "cpuset";
            fs::make_dirs(Path::new(mount), Path::new(dir), made)?;
            if cpuset {
                inherit_cpuset(Path::new(mount), Path::new(dir))?;
            }
        }
        Ok(())
    }

    fn apply(&self, res: &Resources) -> Result<()> {
        if !res.unified.is_empty() {
            return Err(Error::msg("linux.resources", "unified (cgroup v2) resources on a cgroup v1 host"));
        }
        self.apply_cpu(res)?;
        self.apply_memory(res)?;
        self.apply_pids(res)?;
        self.apply_blkio(res)
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        let dir = self.need("freezer", "pause")?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let reached = fs::wait_until(FREEZE_TIMEOUT, || {
            // Writing FROZEN again while FREEZING retries the freeze of tasks
            // that were busy in the kernel the first time.
            fs::write(dir, "freezer.state", want)?;
            Ok(fs::read(dir, "freezer.state")?.is_some_and(|s| s.trim() == want))
        })?;
        if reached {
            Ok(())
        } else {
            Err(Error::msg("freeze", format!("the cgroup did not reach {want} in time"))
                .with_path(dir.to_string_lossy()))
        }
    }
}

/// Copy the parent's `cpuset.cpus`/`cpuset.mems` into each level from the
/// hierarchy root down to `dir` that has none yet.
fn inherit_cpuset(mount: &Path, dir: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(mount) else { return Ok(()) };
    let mut parent = mount.to_path_buf();
    for part in rel.components() {
        let child = parent.join(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read(&child, file)?.unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read(&parent, file)?.unwrap_or_default();
                if !theirs.trim().is_empty() {
                    fs::write(&child, file, theirs.trim())?;
                }
            }
        }
        parent = child;
    }
    Ok(())
}

/// `cpu.cfs_period_us` and `cpu.cfs_quota_us`.  The kernel checks each write
/// against the other value: if the period write is refused, write the quota
/// first (runc does the same).
fn set_bandwidth(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<()> {
    let period = period.filter(|p| *p != 0);
    let quota = quota.filter(|q| *q != 0);
    match (quota, period) {
        (None, None) => Ok(()),
        (Some(q), None) => fs::write(dir, "cpu.cfs_quota_us", &q.to_string()),
        (None, Some(p)) => fs::write(dir, "cpu.cfs_period_us", &p.to_string()),
        (Some(q), Some(p)) => {
            if fs::write(dir, "cpu.cfs_period_us", &p.to_string()).is_ok() {
                return fs::write(dir, "cpu.cfs_quota_us", &q.to_string());
            }
            fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
            fs::write(dir, "cpu.cfs_period_us", &p.to_string())
        }
    }
}

/// `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (memory plus
/// swap), which must never be below the memory limit: when the new memsw
/// limit is above the current one (or unlimited) it goes first, else last.
fn set_memory_and_swap(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let limit = limit.filter(|l| *l != 0);
    let swap = swap.filter(|s| *s != 0);
    let has_memsw = fs::exists(dir, "memory.memsw.limit_in_bytes");
    if swap.is_some() && !has_memsw {
        return Err(Error::msg("write memory.memsw.limit_in_bytes", "swap accounting is off on this kernel")
            .with_path(dir.to_string_lossy()));
    }
    let Some(swap) = swap else {
        return match limit {
            Some(l) => fs::write(dir, "memory.limit_in_bytes", &l.to_string()),
            None => Ok(()),
        };
    };
    let current: i64 = fs::read(dir, "memory.memsw.limit_in_bytes")?
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(i64::MAX, |v| v.min(i64::MAX as u64) as i64);
    let swap_first = swap == -1 || swap > current;
    if swap_first {
        fs::write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    if let Some(l) = limit {
        fs::write(dir, "memory.limit_in_bytes", &l.to_string())?;
    }
    if !swap_first {
        fs::write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    Ok(())
}
