//! A container's device rules: the OCI spec's `linux.resources.devices`
//! (allow or deny, type, major, minor, access), in order.
//!
//! cgroup v1 takes them as `devices.allow`/`devices.deny` writes (the
//! runtime does that, `runtime/cgroup.rs`); cgroup v2 has no devices file,
//! only a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the group, which
//! [`install`] generates from the list ([`devices_bpf`]).
//!
//! Semantics (what the program enforces):
//! - a rule of type `a` (all devices) resets: everything before it is
//!   dropped and its allow/deny becomes the default (the v1 kernel reads any
//!   `a` rule so); without one the default is allow, as with no program;
//! - for each access bit a request asks for (`m`, `r`, `w`), the last rule
//!   that matches the device (type, major and minor, `None`/-1 matching any)
//!   and names that bit decides it; a bit no rule names gets the default;
//! - the request is allowed only if every bit it asks for is (an allow rule
//!   of `r` does not let `open(O_RDWR)` through).
//!
//! For lists where each device is named by one pattern, this is what v1
//! does.  v1 differs where a rule names a *different* pattern than an
//! earlier one of the other action: `deny c 1:3` after `allow c 1:*` is
//! silently ignored by v1 (it only removes identical exceptions) and runc
//! refuses it; here the later rule wins, so /dev/null is denied.

use std::path::Path;

use serde::Deserialize;

use super::devices_bpf::{self, DevRule, Policy, ACC_ALL, ACC_MKNOD, ACC_READ, ACC_WRITE, DEV_BLOCK, DEV_CHAR};
use crate::errors::{Error, Result};
use crate::spec::Device;

/// What runc allows every container after the spec's rules: mknod of any
/// device (opening one is another matter), /dev/null, zero, full, random,
/// urandom, tty, console, ptmx and the pty slaves (devpts, major 136).
pub const DEFAULT_ALLOW: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// One `linux.resources.devices` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rule {
    pub allow: bool,
    /// `a` (also when absent), `b` or `c`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Absent or negative: any.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// A subset of `rwm`; absent or empty: `rwm`.
    pub access: Option<String>,
}

fn invalid(detail: String) -> Error {
    Error::os("devices", libc::EINVAL).with_detail(detail)
}

impl Rule {
    /// A rule in the v1 file syntax: `a`, or `TYPE MAJOR:MINOR ACCESS` with
    /// `*` for any number.
    pub fn parse(allow: bool, text: &str) -> Result<Rule> {
        let bad = || invalid(format!("device rule {text:?}: expected \"a\" or \"TYPE MAJOR:MINOR ACCESS\""));
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (kind, numbers, access) = match fields.as_slice() {
            ["a"] => return Ok(Rule { allow, kind: Some("a".to_owned()), ..Rule::default() }),
            [kind, numbers, access] => (*kind, *numbers, *access),
            _ => return Err(bad()),
        };
        let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
        let number = |n: &str| -> Result<Option<i64>> {
            if n == "*" {
                Ok(None)
            } else {
                n.parse::<u32>().map(|n| Some(i64::from(n))).map_err(|_| bad())
            }
        };
        Ok(Rule {
            allow,
            kind: Some(kind.to_owned()),
            major: number(major)?,
            minor: number(minor)?,
            access: Some(access.to_owned()),
        })
    }

    /// The canonical rule; None for a type `a` rule (a reset).
    fn canonical(&self) -> Result<Option<DevRule>> {
        let kind = match self.kind.as_deref().unwrap_or("a") {
            "a" => return Ok(None),
            "b" => DEV_BLOCK,
            "c" => DEV_CHAR,
            other => return Err(invalid(format!("device rule type {other:?}: expected a, b or c"))),
        };
        let number = |n: Option<i64>, what: &str| -> Result<Option<u32>> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => {
                    u32::try_from(n).map(Some).map_err(|_| invalid(format!("device {what} number {n} is too large")))
                }
            }
        };
        let mut access = 0;
        for c in self.access.as_deref().unwrap_or("").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(invalid(format!(
                        "device access {:?}: expected a subset of \"rwm\"",
                        self.access.as_deref().unwrap_or("")
                    )))
                }
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        Ok(Some(DevRule {
            allow: self.allow,
            kind,
            major: number(self.major, "major")?,
            minor: number(self.minor, "minor")?,
            access,
        }))
    }
}

/// The program's policy for `rules` (see the module's semantics).
pub fn policy(rules: &[Rule]) -> Result<Policy> {
    let mut policy = Policy { default_allow: true, rules: Vec::new() };
    for rule in rules {
        match rule.canonical()? {
            None => policy = Policy { default_allow: rule.allow, rules: Vec::new() },
            Some(r) => policy.rules.push(r),
        }
    }
    // Rules of the default's action before the first one of the other
    // action decide nothing the default would not.
    let first = policy.rules.iter().position(|r| r.allow != policy.default_allow).unwrap_or(policy.rules.len());
    policy.rules.drain(..first);
    Ok(policy)
}

/// A container's whole list, as the runtime enforces it on v1: deny
/// everything, the spec's `rules`, an allow of each of the spec's
/// `linux.devices` (`u` is `c`; FIFOs, `p`, need no rule), then
/// [`DEFAULT_ALLOW`].
pub fn container_rules(rules: &[Rule], linux_devices: &[Device]) -> Result<Vec<Rule>> {
    let mut all = vec![Rule { allow: false, kind: Some("a".to_owned()), ..Rule::default() }];
    all.extend(rules.iter().cloned());
    for dev in linux_devices {
        let kind = if dev.kind == "u" { "c" } else { dev.kind.as_str() };
        if kind != "p" {
            all.push(Rule {
                allow: true,
                kind: Some(kind.to_owned()),
                major: Some(dev.major),
                minor: Some(dev.minor),
                access: Some("rwm".to_owned()),
            });
        }
    }
    for text in DEFAULT_ALLOW {
        all.push(Rule::parse(true, text)?);
    }
    Ok(all)
}

/// Enforce `rules` on the cgroup v2 directory `dir`: generate the program,
/// load it and attach it (next to programs of ancestors, which keep their
/// say).  The program's descriptor is closed on return; the cgroup holds the
/// program until it is removed.
pub fn install(dir: &Path, rules: &[Rule]) -> Result<()> {
    let policy = policy(rules).map_err(|e| e.with_path(dir.to_string_lossy()))?;
    devices_bpf::install(&policy, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, text: &str) -> Rule {
        Rule::parse(allow, text).unwrap()
    }

    #[test]
    fn the_v1_syntax_parses_to_oci_rules() {
        assert_eq!(
            rule(true, "c 1:3 rwm"),
            Rule { allow: true, kind: Some("c".into()), major: Some(1), minor: Some(3), access: Some("rwm".into()) }
        );
        assert_eq!(rule(true, "b *:* m").major, None);
        assert_eq!(rule(false, "a").kind.as_deref(), Some("a"));
        for bad in ["c 1:3", "c 1-3 rwm", "c x:3 rwm", ""] {
            assert!(Rule::parse(true, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_a_rule_resets_and_leading_rules_of_the_default_action_go() {
        let p = policy(&[rule(true, "c 1:3 r"), rule(false, "a"), rule(false, "c 1:5 rwm"), rule(true, "c 1:3 rw")])
            .unwrap();
        assert!(!p.default_allow);
        assert_eq!(
            p.rules,
            [DevRule { allow: true, kind: DEV_CHAR, major: Some(1), minor: Some(3), access: ACC_READ | ACC_WRITE }]
        );
        assert_eq!(policy(&[]).unwrap(), Policy { default_allow: true, rules: vec![] });
        // OCI's wildcard: an absent type is `a`, -1 any number, no access rwm.
        let oci: Vec<Rule> = serde_json::from_str(
            r#"[{"allow": false}, {"allow": true, "type": "b", "major": -1, "minor": 2, "access": ""}]"#,
        )
        .unwrap();
        assert_eq!(
            policy(&oci).unwrap().rules,
            [DevRule { allow: true, kind: DEV_BLOCK, major: None, minor: Some(2), access: ACC_ALL }]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_devices_step() {
        for json in [
            r#"[{"allow": true, "type": "p", "access": "rwm"}]"#,
            r#"[{"allow": true, "type": "c", "access": "rx"}]"#,
            r#"[{"allow": true, "type": "c", "major": 4294967296}]"#,
        ] {
            let rules: Vec<Rule> = serde_json::from_str(json).unwrap();
            let e = policy(&rules).unwrap_err();
            assert_eq!((e.step.as_str(), e.errno), ("devices", libc::EINVAL), "{json}");
        }
    }

    #[test]
    fn the_container_list_ends_with_the_defaults_runc_gives() {
        let dev: Device =
            serde_json::from_str(r#"{"type": "u", "path": "/dev/fuse", "major": 10, "minor": 229}"#).unwrap();
        let fifo: Device = serde_json::from_str(r#"{"type": "p", "path": "/dev/f"}"#).unwrap();
        let all = container_rules(&[rule(false, "c 1:3 w")], &[dev, fifo]).unwrap();
        assert_eq!(all.len(), 1 + 1 + 1 + DEFAULT_ALLOW.len());
        assert_eq!(all[0], rule(false, "a"));
        assert_eq!(all[2], rule(true, "c 10:229 rwm"));
        let p = policy(&all).unwrap();
        assert!(!p.default_allow);
        let prog = devices_bpf::program(&p).unwrap();
        let run = super::super::devices_bpf::tests::run;
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 4), (10, 229)] {
            assert!(run(&prog, DEV_CHAR, ACC_READ, major, minor), "{major}:{minor}");
        }
        // the spec's deny of writes to /dev/null came before the defaults
        assert!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 3));
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 1, 1));
        assert!(!run(&prog, DEV_BLOCK, ACC_READ, 8, 0));
        assert!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0));
        assert!(!run(&prog, DEV_CHAR, ACC_MKNOD | ACC_READ, 1, 1));
    }
}
