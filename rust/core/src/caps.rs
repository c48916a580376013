//! Linux capabilities: names, the bounding set and the final capset.

use crate::errors::{Error, Result};
use crate::spec::Capabilities;
use crate::sys;

/// Capability names in kernel bit order (CAP_CHOWN = 0 ...).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit number of a capability name (`CAP_` prefix required, as in the spec).
pub fn number_of(name: &str) -> Result<u32> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .ok_or_else(|| Error::msg("capabilities", format!("unknown capability {name:?}")))
}

fn mask(names: &[String]) -> Result<u64> {
    names.iter().try_fold(0u64, |acc, n| Ok(acc | 1u64 << number_of(n)?))
}

/// The five sets as bit masks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Sets {
    pub fn from_spec(caps: &Capabilities) -> Result<Sets> {
        Ok(Sets {
            bounding: mask(&caps.bounding)?,
            effective: mask(&caps.effective)?,
            permitted: mask(&caps.permitted)?,
            inheritable: mask(&caps.inheritable)?,
            ambient: mask(&caps.ambient)?,
        })
    }
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Drop everything outside `bounding` from the bounding set.  Needs
/// CAP_SETPCAP, so it runs before the uid change.
pub fn drop_bounding(bounding: u64, last: u32) -> Result<()> {
    for cap in 0..=last {
        if bounding & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // A capability this kernel lacks is not in the set anyway.
                if errno != libc::EINVAL {
                    return Err(Error::os("drop bounding capabilities", errno)
                        .with_path(NAMES.get(cap as usize).copied().unwrap_or("?")));
                }
            }
        }
    }
    Ok(())
}

/// Apply effective/permitted/inheritable, then raise the ambient set.
pub fn apply(sets: &Sets, last: u32) -> Result<()> {
    let known = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
    sys::capset(sets.effective & known, sets.permitted & known, sets.inheritable & known)
        .map_err(|e| Error::os("capset", e))?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    // The kernel keeps an ambient capability only while it is both permitted
    // and inheritable; like runc and crun, others in the spec's ambient set
    // are left out rather than failing the container.
    let raisable = sets.ambient & sets.permitted & sets.inheritable;
    for cap in 0..=last {
        if raisable & (1u64 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, libc::c_ulong::from(cap), 0, 0)
            };
            if rc != 0 {
                return Err(Error::last_os("raise ambient capability").with_path(NAMES[cap as usize]));
            }
        }
    }
    Ok(())
}

const CAP_SYS_ADMIN: u32 = 21;

/// The spec's sets, still to be set once the seccomp filter is in (see
/// [`apply_holding_sys_admin`]).
static DEFERRED: std::sync::OnceLock<Sets> = std::sync::OnceLock::new();

/// [`apply`], but keep CAP_SYS_ADMIN permitted and effective on top of the
/// spec's sets: installing a seccomp filter without no_new_privs needs it,
/// and the filter goes in last.  [`drop_held`] then sets the spec's sets.
/// The bounding set is already the spec's, so nothing the init executes
/// in between (hooks) can gain the held capability.
pub fn apply_holding_sys_admin(sets: &Sets, last: u32) -> Result<()> {
    let held = 1u64 << CAP_SYS_ADMIN;
    apply(&Sets { effective: sets.effective | held, permitted: sets.permitted | held, ..*sets }, last)?;
    let _ = DEFERRED.set(*sets);
    Ok(())
}

/// Whether [`apply_holding_sys_admin`] holds CAP_SYS_ADMIN.
pub fn holding() -> bool {
    DEFERRED.get().is_some()
}

/// Drop what [`apply_holding_sys_admin`] held, if anything.
pub fn drop_held() -> Result<()> {
    let Some(sets) = DEFERRED.get() else { return Ok(()) };
    let known = if last_cap() >= 63 { u64::MAX } else { (1u64 << (last_cap() + 1)) - 1 };
    sys::capset(sets.effective & known, sets.permitted & known, sets.inheritable & known)
        .map_err(|e| Error::os("capset", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_bits() {
        assert_eq!(number_of("CAP_CHOWN").unwrap(), 0);
        assert_eq!(number_of("CAP_SYS_ADMIN").unwrap(), 21);
        assert_eq!(number_of("CAP_CHECKPOINT_RESTORE").unwrap(), 40);
        assert!(number_of("CAP_FLY").is_err());
        assert!(number_of("chown").is_err());
    }

    #[test]
    fn docker_default_set_has_the_documented_mask() {
        let names = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        let m = mask(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        assert_eq!(m, 0xa80425fb);
    }
}
