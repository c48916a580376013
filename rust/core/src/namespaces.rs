//! Namespace kinds, clone flags and joining namespaces by path.

use std::os::fd::AsFd;

use nix::sched::{setns, CloneFlags};

use crate::errors::{Context, Error, Result};
use crate::spec::Spec;

/// The clone flag for an OCI namespace type.
pub fn flag_of(kind: &str) -> Result<CloneFlags> {
    Ok(match kind {
        "pid" => CloneFlags::CLONE_NEWPID,
        "network" => CloneFlags::CLONE_NEWNET,
        "mount" => CloneFlags::CLONE_NEWNS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "user" => CloneFlags::CLONE_NEWUSER,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "time" => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        other => return Err(Error::msg("spec", format!("unknown namespace type {other:?}"))),
    })
}

/// Flags for the namespaces the spec asks to create (entries without a path).
pub fn clone_flags(spec: &Spec) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    for ns in &spec.linux().namespaces {
        if ns.path.as_deref().is_none_or(str::is_empty) {
            flags |= flag_of(&ns.kind)?;
        }
    }
    Ok(flags)
}

/// Join the namespaces the spec gives by path, user namespace first (it
/// decides what the others may do).  The pid namespace is joined by the
/// parent before clone, since it only affects children.
pub fn join_by_path(spec: &Spec) -> Result<()> {
    let mut joined: Vec<_> = spec
        .linux()
        .namespaces
        .iter()
        .filter(|ns| ns.kind != "pid" && ns.path.as_deref().is_some_and(|p| !p.is_empty()))
        .collect();
    joined.sort_by_key(|ns| ns.kind != "user");
    for ns in joined {
        let path = ns.path.as_deref().unwrap_or_default();
        let step = format!("setns {}", ns.kind);
        let file = std::fs::File::open(path).step_path(&step, path)?;
        setns(file.as_fd(), flag_of(&ns.kind)?).step_path(&step, path)?;
    }
    Ok(())
}
