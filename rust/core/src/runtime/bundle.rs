//! Reading a bundle's config.json: every problem is one line that names the
//! field ("config.json: process.args: ...").

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Fail, Result};
use crate::spec::Spec;

/// A loaded bundle.
pub struct Bundle {
    pub dir: PathBuf,
    pub text: String,
    pub value: Value,
    pub spec: Spec,
}

/// Load and check `dir/config.json`.
pub fn load(dir: &Path) -> Result<Bundle> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Fail::new(format!("bundle {} is not a directory", dir.display()))),
        Err(e) => return Err(Fail::new(format!("bundle {}: {e}", dir.display()))),
    }
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| Fail::new(format!("config.json: {}: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Fail::new(format!("config.json: invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Fail::new("config.json: the document must be a JSON object"));
    }
    let spec = match serde_json::from_value::<Spec>(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            let at = locate(&value, |v| serde_json::from_value::<Spec>(v.clone()).is_err());
            let at = if at.is_empty() { String::new() } else { format!("{at}: ") };
            return Err(Fail::new(format!("config.json: {at}{e}")));
        }
    };
    check(&spec, &value)?;
    Ok(Bundle { dir: dir.to_path_buf(), text, value, spec })
}

fn field(path: &str, msg: impl std::fmt::Display) -> Fail {
    Fail::new(format!("config.json: {path}: {msg}"))
}

/// The checks a runtime makes before creating anything, each naming its field.
fn check(spec: &Spec, value: &Value) -> Result<()> {
    if spec.oci_version.is_empty() {
        return Err(field("ociVersion", "required"));
    }
    if !supported_version(&spec.oci_version) {
        return Err(field("ociVersion", format!("unsupported version {:?} (1.x.y expected)", spec.oci_version)));
    }
    if spec.root.as_ref().is_none_or(|r| r.path.is_empty()) {
        return Err(field("root.path", "required"));
    }
    if let Some(p) = &spec.process {
        if p.args.is_empty() {
            return Err(field("process.args", "must not be empty"));
        }
        if p.cwd.is_empty() || !p.cwd.starts_with('/') {
            return Err(field("process.cwd", format!("must be an absolute path, got {:?}", p.cwd)));
        }
        if let Some(caps) = &p.capabilities {
            let sets = [
                ("bounding", &caps.bounding),
                ("effective", &caps.effective),
                ("inheritable", &caps.inheritable),
                ("permitted", &caps.permitted),
                ("ambient", &caps.ambient),
            ];
            for (set, names) in sets {
                for name in names.iter() {
                    if crate::caps::number_of(name).is_err() {
                        return Err(field(
                            &format!("process.capabilities.{set}"),
                            format!("unknown capability {name:?}"),
                        ));
                    }
                }
            }
        }
        for (i, r) in p.rlimits.iter().enumerate() {
            if !r.kind.starts_with("RLIMIT_") || r.soft > r.hard {
                return Err(field(&format!("process.rlimits[{i}]"), format!("invalid rlimit {:?}", r.kind)));
            }
        }
        if p.user.umask.is_some_and(|u| u > 0o777) {
            return Err(field("process.user.umask", "must be at most 0777"));
        }
        if p.apparmor_profile.as_deref().is_some_and(|a| !a.is_empty()) && !crate::process::apparmor_enabled() {
            return Err(field("process.apparmorProfile", "AppArmor is not enabled on this host"));
        }
    }
    let mut seen = Vec::new();
    for (i, ns) in spec.linux().namespaces.iter().enumerate() {
        if crate::namespaces::flag_of(&ns.kind).is_err() {
            return Err(field(&format!("linux.namespaces[{i}].type"), format!("unknown namespace type {:?}", ns.kind)));
        }
        if seen.contains(&ns.kind) {
            return Err(field(&format!("linux.namespaces[{i}]"), format!("duplicate namespace {:?}", ns.kind)));
        }
        seen.push(ns.kind.clone());
    }
    if !spec.linux().uid_mappings.is_empty() && spec.namespace("user").is_none() {
        return Err(field("linux.uidMappings", "given without a user namespace"));
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        if !m.destination.starts_with('/') {
            return Err(field(
                &format!("mounts[{i}].destination"),
                format!("must be absolute, got {:?}", m.destination),
            ));
        }
    }
    if let Some(p) = spec.linux().rootfs_propagation.as_deref() {
        if crate::mounts::propagation_flag(p).is_none() {
            return Err(field("linux.rootfsPropagation", format!("unknown propagation {p:?}")));
        }
    }
    // Limits this runtime cannot apply are errors, not silently dropped.
    for (pointer, name) in
        [("/linux/resources/hugepageLimits", "hugepageLimits"), ("/linux/resources/network", "network")]
    {
        if value.pointer(pointer).is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(field(&format!("linux.resources.{name}"), "not supported by this runtime"));
        }
    }
    if let Some(res) = value.pointer("/linux/resources") {
        if let Err(e) = serde_json::from_value::<crate::cgroups::Resources>(res.clone()) {
            let at = locate(res, |v| serde_json::from_value::<crate::cgroups::Resources>(v.clone()).is_err());
            let at = if at.is_empty() { String::new() } else { format!(".{at}") };
            return Err(field(&format!("linux.resources{at}"), e));
        }
    }
    spec.validate_for_create().map_err(|e| Fail::new(format!("config.json: {e}")))?;
    Ok(())
}

/// A runtime-spec version this runtime reads: `1.MINOR.PATCH`, with an
/// optional `-prerelease` or `+build` suffix (`1.0.2-dev`).
fn supported_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts[0] == "1" && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Where in `root` the deserialization that `fails` is: the deepest member
/// whose removal makes it succeed (every field has a default), as a path like
/// `process.args` or `linux.namespaces[1]`.  Only used on the error path.
fn locate(root: &Value, fails: impl Fn(&Value) -> bool) -> String {
    let mut path: Vec<Seg> = Vec::new();
    while let Some(node) = get(root, &path) {
        let children: Vec<Seg> = match node {
            Value::Object(m) => m.keys().cloned().map(Seg::Key).collect(),
            Value::Array(a) => (0..a.len()).map(Seg::Index).collect(),
            _ => break,
        };
        let found = children.into_iter().find(|c| {
            let mut trial = root.clone();
            if let Some(parent) = get_mut(&mut trial, &path) {
                match (parent, c) {
                    (Value::Object(m), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Seg::Index(i)) => {
                        a.remove(*i);
                    }
                    _ => return false,
                }
            }
            !fails(&trial)
        });
        match found {
            Some(c) => path.push(c),
            None => break,
        }
    }
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k),
        Seg::Index(i) => v.get_mut(i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn where_(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        locate(&v, |v| serde_json::from_value::<Spec>(v.clone()).is_err())
    }

    #[test]
    fn only_runtime_spec_1_versions_are_read() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.0", "1.1.0+dev"] {
            assert!(supported_version(ok), "{ok}");
        }
        for bad in ["invalid", "2.0.0", "1.0", "1..0", "v1.0.0", ""] {
            assert!(!supported_version(bad), "{bad}");
        }
    }

    #[test]
    fn the_failing_field_is_named() {
        assert_eq!(where_(r#"{"process":{"args":"sh","cwd":"/"}}"#), "process.args");
        assert_eq!(where_(r#"{"linux":{"namespaces":[{"type":"pid"},{"path":"/x"}]}}"#), "linux.namespaces[1]");
        assert_eq!(where_(r#"{"root":{"path":5}}"#), "root.path");
    }
}
