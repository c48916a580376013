//! cgroup writes (`pyctr_core::cgroups`): each call takes launch.json's
//! `cgroup` plan and, where it writes limits, an OCI `linux.resources`
//! object, both as JSON text.  The GIL is released for the I/O.

use pyo3::prelude::*;

use pyctr_core::cgroups::{devices, manager, Manager, Plan, Resources};

use crate::to_py;

fn with_manager<T: Send>(
    py: Python<'_>,
    plan: &str,
    f: impl FnOnce(&dyn Manager) -> pyctr_core::Result<T> + Send,
) -> PyResult<T> {
    py.allow_threads(|| f(manager(Plan::from_json(plan)?)?.as_ref())).map_err(|e| to_py(py, e))
}

/// Make the group with `resources` written before anything joins it; on
/// failure nothing made here is left.
#[pyfunction]
#[pyo3(signature = (plan, resources=""))]
fn cgroup_create(py: Python<'_>, plan: &str, resources: &str) -> PyResult<()> {
    with_manager(py, plan, |m| m.create(&Resources::from_json(resources)?))
}

/// Write `resources` into the existing group (`update`).
#[pyfunction]
fn cgroup_update(py: Python<'_>, plan: &str, resources: &str) -> PyResult<()> {
    with_manager(py, plan, |m| m.apply(&Resources::from_json(resources)?))
}

/// Freeze (`pause`) or thaw the group, waiting until the kernel is done.
#[pyfunction]
fn cgroup_freeze(py: Python<'_>, plan: &str, frozen: bool) -> PyResult<()> {
    with_manager(py, plan, |m| m.freeze(frozen))
}

/// Remove the group (retried briefly while busy); with `prune_parent` also
/// each directory's parent when it is empty.
#[pyfunction]
#[pyo3(signature = (plan, prune_parent=false))]
fn cgroup_remove(py: Python<'_>, plan: &str, prune_parent: bool) -> PyResult<()> {
    with_manager(py, plan, |m| m.remove(prune_parent))
}

/// Test hook: attach the cgroup v2 device program for `rules` (an OCI
/// `linux.resources.devices` list as JSON) to the cgroup2 directory `dir`;
/// with `container`, the list the runtime enforces (deny all, `rules`, the
/// default allow list).
#[pyfunction]
#[pyo3(signature = (dir, rules, container=false))]
fn cgroup_v2_devices_attach(py: Python<'_>, dir: &str, rules: &str, container: bool) -> PyResult<()> {
    py.allow_threads(|| {
        let rules: Vec<devices::Rule> =
            serde_json::from_str(rules).map_err(|e| pyctr_core::Error::msg("devices", e.to_string()))?;
        let rules = if container { devices::container_rules(&rules, &[])? } else { rules };
        devices::install(std::path::Path::new(dir), &rules)
    })
    .map_err(|e| to_py(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cgroup_create, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_update, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_freeze, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_remove, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_v2_devices_attach, m)?)?;
    Ok(())
}
