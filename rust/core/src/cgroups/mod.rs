//! A container's cgroup: made with its limits before the container runs,
//! limits changed while it runs (`update`), frozen (`pause`) and removed.
//!
//! Python plans *where* the group is (`pyctr_fast.cgroups`: which hierarchy
//! holds which controller, the group's path) and hands the plan over as
//! launch.json's `cgroup` object; the resources are the OCI spec's
//! `linux.resources`.  Every write happens here.
//!
//! [`Manager`] is the driver interface: [`v1::V1`] and [`v2::V2`] write the
//! cgroup filesystem directly (Docker's `cgroupfs` driver).  A `systemd`
//! driver would be a third implementation that asks systemd for a scope
//! instead, behind the same four operations.

pub mod devices;
pub mod devices_bpf;
pub mod fs;
pub mod layout;
pub mod resources;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
pub use resources::Resources;

/// How long a freeze or thaw may take before it is reported as stuck.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long removal waits for a group's last processes to leave.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a container's group is (launch.json `cgroup`, docs/lifecycle.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Plan {
    /// 1 or 2.
    pub version: u8,
    /// The group's path relative to each hierarchy's root.
    pub path: String,
    /// Controller → the group's directory for it (v2: all the same one).
    pub controllers: BTreeMap<String, String>,
    /// Controller → its hierarchy's mount point.
    pub mounts: BTreeMap<String, String>,
    /// The distinct directories.
    pub dirs: Vec<String>,
}

impl Plan {
    pub fn from_json(text: &str) -> Result<Plan> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| Error::msg("cgroup plan", e.to_string()))?;
        if plan.path.split('/').any(|p| p == "..") {
            return Err(Error::msg("cgroup plan", format!("invalid group path {:?}", plan.path)));
        }
        Ok(plan)
    }

    /// The directory holding `controller`'s files, if it is mounted.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.controllers.get(controller).map(Path::new)
    }
}

/// What a driver does with a container's group.
pub trait Manager {
    /// The group's plan.
    fn plan(&self) -> &Plan;
    /// Make the group's directories and missing ancestors, each one made
    /// appended to `made` (top-down).
    fn make(&self, made: &mut Vec<PathBuf>) -> Result<()>;
    /// Write `res` into the existing group.
    fn apply(&self, res: &Resources) -> Result<()>;
    /// Freeze (`true`) or thaw the group's processes and wait until done.
    fn freeze(&self, frozen: bool) -> Result<()>;

    /// Enforce the device rules (`linux.resources.devices`, in order) on the
    /// new group.  v2 attaches an eBPF program ([`devices`]); v1 does
    /// nothing here (the runtime writes `devices.allow`/`devices.deny`
    /// itself, the engine plans no devices group).  Only [`Manager::create`]
    /// calls this: `update` leaves the devices as they are.
    fn apply_devices(&self, _rules: &[devices::Rule]) -> Result<()> {
        Ok(())
    }

    /// Make the group (and missing ancestors), write `res` and enforce its
    /// device rules (if any); on failure nothing made here is left.
    fn create(&self, res: &Resources) -> Result<()> {
        let mut made = Vec::new();
        let result = self.make(&mut made).and_then(|()| self.apply(res)).and_then(|()| {
            if res.devices.is_empty() {
                Ok(())
            } else {
                self.apply_devices(&res.devices)
            }
        });
        if result.is_err() {
            fs::unmake(&made);
        }
        result
    }

    /// Remove the group's directories (waiting briefly while busy) and,
    /// with `prune_parent`, each one's parent when that is empty; the first
    /// failure is returned after every directory was tried.
    fn remove(&self, prune_parent: bool) -> Result<()> {
        let mut first = None;
        for dir in &self.plan().dirs {
            let dir = PathBuf::from(dir);
            if let Err(e) = fs::remove_dir(&dir, REMOVE_TIMEOUT) {
                first.get_or_insert(e);
            }
            if prune_parent {
                if let Some(parent) = dir.parent() {
                    let _ = std::fs::remove_dir(parent); // in use by others, or not ours
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The cgroupfs driver for the plan's version.
pub fn manager(plan: Plan) -> Result<Box<dyn Manager>> {
    match plan.version {
        1 => Ok(Box::new(v1::V1::new(plan))),
        2 => Ok(Box::new(v2::V2::new(plan))),
        v => Err(Error::msg("cgroup plan", format!("unknown cgroup version {v}"))),
    }
}
