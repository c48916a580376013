//! OCI `linux.resources` (runtime-spec config-linux.md), the part the
//! cgroup drivers write.  Absent fields are left as they are.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::errors::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Resources {
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub pids: Option<Pids>,
    #[serde(rename = "blockIO")]
    pub block_io: Option<BlockIo>,
    /// cgroup v2 files written as given (`"memory.high": "1G"`).
    pub unified: BTreeMap<String, String>,
    /// Device rules in order; enforced when the group is made (on v2: an
    /// eBPF program, [`super::devices`]), not by `update`.
    pub devices: Vec<super::devices::Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Memory {
    /// Bytes; -1 is unlimited.
    pub limit: Option<i64>,
    /// The soft limit (v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub reservation: Option<i64>,
    /// Memory plus swap, as on v1; -1 is unlimited.
    pub swap: Option<i64>,
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    pub disable_oom_killer: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Cpu {
    pub shares: Option<u64>,
    /// Microseconds per period; -1 is unlimited.
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pids {
    /// 0 or less is unlimited.
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Vec<WeightDevice>,
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

impl Resources {
    /// Parse a `linux.resources` object (`""` or `null`: nothing to write).
    pub fn from_json(text: &str) -> Result<Resources> {
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(Resources::default());
        }
        serde_json::from_str(text).map_err(|e| Error::msg("linux.resources", e.to_string()))
    }
}

/// The blkio throttle lists with the name of each one's file (v1) and key (v2).
pub fn throttles(io: &BlockIo) -> [(&'static str, &'static str, &[ThrottleDevice]); 4] {
    [
        ("blkio.throttle.read_bps_device", "rbps", &io.throttle_read_bps_device),
        ("blkio.throttle.write_bps_device", "wbps", &io.throttle_write_bps_device),
        ("blkio.throttle.read_iops_device", "riops", &io.throttle_read_iops_device),
        ("blkio.throttle.write_iops_device", "wiops", &io.throttle_write_iops_device),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_oci_names_including_the_odd_ones() {
        let r = Resources::from_json(
            r#"{"memory": {"limit": 33554432, "swap": -1, "disableOOMKiller": true},
                "cpu": {"quota": 50000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 20},
                "blockIO": {"weight": 500, "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}]},
                "devices": [{"allow": false, "access": "rwm"}]}"#,
        )
        .unwrap();
        let mem = r.memory.unwrap();
        assert_eq!((mem.limit, mem.swap, mem.disable_oom_killer), (Some(33554432), Some(-1), Some(true)));
        assert_eq!(r.cpu.unwrap().cpus.as_deref(), Some("0"));
        assert_eq!(r.pids.unwrap().limit, 20);
        let io = r.block_io.unwrap();
        assert_eq!(io.weight, Some(500));
        assert_eq!(io.throttle_read_iops_device[0].rate, 10);
        assert_eq!(r.devices.len(), 1);
        assert!(!r.devices[0].allow);
    }

    #[test]
    fn empty_or_null_means_nothing_to_write() {
        assert_eq!(Resources::from_json("").unwrap(), Resources::default());
        assert_eq!(Resources::from_json("null").unwrap(), Resources::default());
        assert!(Resources::from_json("{\"pids\": {\"limit\": \"x\"}}").is_err());
    }
}
