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

/// Flags for the namespaces the spec asks to create (entries without a
/// path) at clone time: all but the cgroup namespace, which the init
/// unshares itself ([`unshare_late`]) once the parent has placed it in the
/// container's cgroup, so that the namespace is rooted there.
pub fn clone_flags(spec: &Spec) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    for ns in &spec.linux().namespaces {
        if ns.path.as_deref().is_none_or(str::is_empty) {
            flags |= flag_of(&ns.kind)?;
        }
    }
    Ok(flags - CloneFlags::CLONE_NEWCGROUP)
}

/// In the init, after the namespaces given by path are joined: create the
/// cgroup namespace the spec asks for (see [`clone_flags`]).
pub fn unshare_late(spec: &Spec) -> Result<()> {
    let wanted = spec.namespace("cgroup").is_some_and(|ns| ns.path.as_deref().is_none_or(str::is_empty));
    if wanted {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::os("unshare cgroup namespace", e as i32))?;
    }
    Ok(())
}

/// The namespaces the spec gives by path, except pid (joined by the parent
/// before clone, since it only affects children), user namespace first: it
/// decides what may be done in the others.
pub fn paths_to_join(spec: &Spec) -> Vec<(&str, &str)> {
    let mut joined: Vec<(&str, &str)> = spec
        .linux()
        .namespaces
        .iter()
        .filter(|ns| ns.kind != "pid")
        .filter_map(|ns| ns.path.as_deref().filter(|p| !p.is_empty()).map(|p| (ns.kind.as_str(), p)))
        .collect();
    joined.sort_by_key(|(kind, _)| *kind != "user");
    joined
}

/// Join the namespaces the spec gives by path (see [`paths_to_join`]).
///
/// Every namespace file is opened before the first setns: once the mount
/// namespace (or a user namespace) is joined, host paths such as
/// `/proc/<pid>/ns/net` no longer resolve, or no longer may be opened.
pub fn join_by_path(spec: &Spec) -> Result<()> {
    let mut files = Vec::new();
    for (kind, path) in paths_to_join(spec) {
        let step = format!("setns {kind}");
        let flag = flag_of(kind)?;
        let file = std::fs::File::open(path).step_path(&step, path)?;
        files.push((step, flag, file, path));
    }
    for (step, flag, file, path) in files {
        setns(file.as_fd(), flag).step_path(&step, path)?;
    }
    Ok(())
}

/// A spec for joining a running container (`exec`): every namespace it
/// lists must be given by path (nothing is created), and the mount namespace
/// must be among them (it is what puts the process in the container's root).
pub fn check_join(spec: &Spec) -> Result<()> {
    for ns in &spec.linux().namespaces {
        flag_of(&ns.kind)?;
        if ns.path.as_deref().is_none_or(str::is_empty) {
            return Err(Error::msg("spec", format!("exec: the {} namespace has no path to join", ns.kind)));
        }
    }
    if spec.namespace("mount").is_none() {
        return Err(Error::msg("spec", "exec: the container's mount namespace is required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespace_comes_first_and_pid_is_left_to_the_parent() {
        let spec = Spec::from_json(
            r#"{"linux":{"namespaces":[
                {"type":"mount","path":"/proc/7/ns/mnt"},{"type":"pid","path":"/proc/7/ns/pid"},
                {"type":"network","path":"/proc/7/ns/net"},{"type":"user","path":"/proc/7/ns/user"},
                {"type":"uts"}]}}"#,
        )
        .expect("parse");
        let kinds: Vec<&str> = paths_to_join(&spec).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["user", "mount", "network"]);
    }

    #[test]
    fn a_join_spec_must_give_every_namespace_by_path_and_include_mount() {
        let ok = r#"{"linux":{"namespaces":[{"type":"mount","path":"/proc/7/ns/mnt"},{"type":"pid","path":"/p"}]}}"#;
        assert!(check_join(&Spec::from_json(ok).expect("parse")).is_ok());
        let unpathed = r#"{"linux":{"namespaces":[{"type":"mount","path":"/proc/7/ns/mnt"},{"type":"uts"}]}}"#;
        let err = check_join(&Spec::from_json(unpathed).expect("parse")).expect_err("uts has no path");
        assert!(err.to_string().contains("uts namespace has no path"), "{err}");
        let no_mount = r#"{"linux":{"namespaces":[{"type":"uts","path":"/proc/7/ns/uts"}]}}"#;
        assert!(check_join(&Spec::from_json(no_mount).expect("parse")).is_err());
    }
}
