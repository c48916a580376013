//! `features` (the runtime-spec features document) and `spec` (a default
//! config.json, runc's).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::args;
use super::{absolute, Fail, Result, OCI_VERSION};

pub fn features_cmd(argv: &[String]) -> Result<()> {
    args::parse(argv, &[], true)?;
    let mount_options = [
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "unbindable",
    ];
    let doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options.to_vec(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": crate::caps::NAMES.to_vec(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::ACTIONS,
                "operators": crate::seccomp::OPERATORS,
                "archs": crate::seccomp::ARCHITECTURES,
                "knownFlags": crate::seccomp::FLAGS,
                "supportedFlags": crate::seccomp::FLAGS,
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Fail::new(e.to_string()))?;
    println!("{text}");
    Ok(())
}

const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// runc's default spec.
fn default_spec(rootless: bool) -> serde_json::Value {
    let mut spec = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                           {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if rootless {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
            linux.remove("resources");
            linux.insert("uidMappings".into(), json!([{"containerID": 0, "hostID": uid, "size": 1}]));
            linux.insert("gidMappings".into(), json!([{"containerID": 0, "hostID": gid, "size": 1}]));
            if let Some(ns) = linux.get_mut("namespaces").and_then(|n| n.as_array_mut()) {
                ns.retain(|n| n["type"] != "network" && n["type"] != "cgroup");
                ns.push(json!({"type": "user"}));
            }
        }
        if let Some(mounts) = spec.get_mut("mounts").and_then(|m| m.as_array_mut()) {
            mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
            for m in mounts.iter_mut() {
                if m["destination"] == "/sys" {
                    *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                }
                if m["destination"] == "/dev/pts" {
                    if let Some(opts) = m.get_mut("options").and_then(|o| o.as_array_mut()) {
                        opts.retain(|o| o != "gid=5");
                    }
                }
            }
        }
    }
    spec
}

pub fn spec_cmd(argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::value(&["bundle", "b"]), args::switch(&["rootless"])], true)?;
    let dir = absolute(p.get("bundle").unwrap_or("."));
    if !Path::new(&dir).is_dir() {
        return Err(Fail::new(format!("bundle {} is not a directory", dir.display())));
    }
    let path = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(&default_spec(p.is_set("rootless"))).map_err(|e| Fail::new(e.to_string()))?;
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Fail::new("File config.json exists. Remove it first"));
        }
        Err(e) => return Err(Fail::new(format!("create {}: {e}", path.display()))),
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| Fail::new(format!("write {}: {e}", path.display())))
}
