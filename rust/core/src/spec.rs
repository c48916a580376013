//! The subset of the OCI runtime spec (config.json) that pyctr executes.
//!
//! Unknown fields are ignored, as the spec requires of runtimes; missing
//! optional fields take the spec's defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::errors::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<Mount>,
    pub linux: Option<Linux>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    pub devices: Vec<Device>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: BTreeMap<String, String>,
    pub rootfs_propagation: Option<String>,
    pub cgroups_path: Option<String>,
    pub resources: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

impl Spec {
    /// Parse config.json text.
    pub fn from_json(text: &str) -> Result<Spec> {
        serde_json::from_str(text).map_err(|e| Error::msg("spec", format!("invalid config.json: {e}")))
    }

    pub fn linux(&self) -> &Linux {
        static EMPTY: std::sync::OnceLock<Linux> = std::sync::OnceLock::new();
        self.linux.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Linux::default))
    }

    /// The namespace entry of `kind`, if the spec lists one.
    pub fn namespace(&self, kind: &str) -> Option<&Namespace> {
        self.linux().namespaces.iter().find(|ns| ns.kind == kind)
    }

    /// Checks a runtime must make before creating anything.
    pub fn validate_for_run(&self) -> Result<&Process> {
        let process = self.validate_for_create()?;
        process.ok_or_else(|| Error::msg("spec", "no process to run"))
    }

    /// [`Spec::validate_for_run`] for `pyctr-fast-runtime create`, where
    /// `process` may be absent (create succeeds, start then fails).
    pub fn validate_for_create(&self) -> Result<Option<&Process>> {
        if let Some(process) = &self.process {
            Self::validate_process(process)?;
        }
        if self.root.as_ref().is_none_or(|r| r.path.is_empty()) {
            return Err(Error::msg("spec", "root.path is required"));
        }
        for ns in &self.linux().namespaces {
            crate::namespaces::flag_of(&ns.kind)?;
        }
        for m in &self.mounts {
            if !m.destination.starts_with('/') {
                return Err(Error::msg("spec", "mount destination must be absolute").with_path(&m.destination));
            }
        }
        Ok(self.process.as_ref())
    }

    fn validate_process(process: &Process) -> Result<()> {
        if process.args.is_empty() {
            return Err(Error::msg("spec", "process.args must not be empty"));
        }
        if !process.cwd.is_empty() && !process.cwd.starts_with('/') {
            return Err(Error::msg("spec", "process.cwd must be an absolute path").with_path(&process.cwd));
        }
        if let Some(caps) = &process.capabilities {
            for set in [&caps.bounding, &caps.effective, &caps.inheritable, &caps.permitted, &caps.ambient] {
                for name in set {
                    crate::caps::number_of(name)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_config_with_defaults() {
        let spec = Spec::from_json(r#"{"ociVersion":"1.0.2","process":{"args":["true"]},"root":{"path":"rootfs"}}"#)
            .expect("parse");
        let p = spec.validate_for_run().expect("valid");
        assert_eq!(p.args, vec!["true"]);
        assert!(!p.terminal);
        assert!(spec.linux().namespaces.is_empty());
    }

    #[test]
    fn rejects_empty_args_and_relative_cwd() {
        let spec = Spec::from_json(r#"{"process":{"args":[]},"root":{"path":"r"}}"#).expect("parse");
        assert!(spec.validate_for_run().is_err());
        let spec = Spec::from_json(r#"{"process":{"args":["x"],"cwd":"rel"},"root":{"path":"r"}}"#).expect("parse");
        assert_eq!(spec.validate_for_run().unwrap_err().step, "spec");
    }

    #[test]
    fn rejects_unknown_capability_and_namespace() {
        let spec = Spec::from_json(
            r#"{"process":{"args":["x"],"capabilities":{"bounding":["CAP_NOPE"]}},"root":{"path":"r"}}"#,
        )
        .expect("parse");
        assert!(spec.validate_for_run().is_err());
        let spec = Spec::from_json(
            r#"{"process":{"args":["x"]},"root":{"path":"r"},"linux":{"namespaces":[{"type":"bogus"}]}}"#,
        )
        .expect("parse");
        assert!(spec.validate_for_run().is_err());
    }
}
