//! The container's cgroup for the runtime: planned from `linux.cgroupsPath`
//! ([`crate::cgroups::layout`]), made with `linux.resources` by the core's
//! driver, plus the device rules (deny all, then the spec's rules in order,
//! the spec's `linux.devices`, then the devices every container needs): on
//! v1 written to the devices controller here, on v2 handed to the driver,
//! which attaches them as an eBPF program when it makes the group.

use super::{Fail, Result};
use crate::cgroups::devices::{container_rules, Rule as DeviceRule, DEFAULT_ALLOW};
use crate::cgroups::layout::Layout;
use crate::cgroups::{fs, manager, Plan, Resources};
use crate::spec::Spec;

fn rule_text(kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> String {
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_owned(), |n| n.to_string());
    format!("{kind} {}:{} {access}", num(major), num(minor))
}

/// The plan for `spec`'s container `id`.
pub fn plan(spec: &Spec, id: &str) -> Result<Plan> {
    let layout = Layout::detect()?;
    Ok(Plan::for_cgroups_path(&layout, spec.linux().cgroups_path.as_deref(), id)?)
}

/// Make the group with the spec's limits and device rules; on failure
/// nothing made here is left.
pub fn create(plan: &Plan, spec: &Spec, value: &serde_json::Value) -> Result<()> {
    let res_value = value.pointer("/linux/resources").cloned().unwrap_or(serde_json::Value::Null);
    let mut res: Resources = if res_value.is_null() {
        Resources::default()
    } else {
        serde_json::from_value(res_value.clone())
            .map_err(|e| Fail::new(format!("config.json: linux.resources: {e}")))?
    };
    if plan.version == 2 {
        res.devices = container_rules(&res.devices, &spec.linux().devices)
            .map_err(|e| Fail::new(format!("cgroup devices: {e}")))?;
    }
    let m = manager(plan.clone())?;
    m.create(&res).map_err(|e| Fail::new(format!("cgroup: {e}")))?;
    if let Err(e) = devices(plan, spec, &res_value) {
        let _ = m.remove(false);
        return Err(e);
    }
    Ok(())
}

fn devices(plan: &Plan, spec: &Spec, res: &serde_json::Value) -> Result<()> {
    let Some(dir) = plan.dir("devices").filter(|_| plan.version == 1) else { return Ok(()) };
    let rules: Vec<DeviceRule> = match res.get("devices") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Fail::new(format!("config.json: linux.resources.devices: {e}")))?,
        None => Vec::new(),
    };
    let write =
        |file: &str, text: &str| fs::write(dir, file, text).map_err(|e| Fail::new(format!("cgroup devices: {e}")));
    write("devices.deny", "a")?;
    for r in &rules {
        let kind = r.kind.as_deref().unwrap_or("a");
        let access = r.access.as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm");
        let text = if kind == "a" && r.major.is_none() && r.minor.is_none() {
            "a".to_owned()
        } else {
            rule_text(kind, r.major, r.minor, access)
        };
        write(if r.allow { "devices.allow" } else { "devices.deny" }, &text)?;
    }
    for dev in &spec.linux().devices {
        let kind = if dev.kind == "u" { "c" } else { dev.kind.as_str() };
        if kind != "p" {
            write("devices.allow", &rule_text(kind, Some(dev.major), Some(dev.minor), "rwm"))?;
        }
    }
    for rule in DEFAULT_ALLOW {
        write("devices.allow", rule)?;
    }
    Ok(())
}

/// Remove the group (every process must be gone).
pub fn remove(plan: &Plan) -> Result<()> {
    let m = manager(plan.clone())?;
    m.remove(false).map_err(|e| Fail::new(format!("cgroup: {e}")))
}

/// Freeze or thaw.
pub fn freeze(plan: &Plan, frozen: bool) -> Result<()> {
    Ok(manager(plan.clone())?.freeze(frozen)?)
}

/// Write new limits (`update`).
pub fn apply(plan: &Plan, res: &Resources) -> Result<()> {
    Ok(manager(plan.clone())?.apply(res)?)
}
