//! Where the cgroup hierarchies are (for `pyctr-fast-runtime`, which has no
//! Python to plan for it): v2 when /sys/fs/cgroup is a cgroup2 mount, else
//! v1 over the mounted hierarchies of the controllers a container uses.
//! [`Plan::for_cgroups_path`] turns a spec's `linux.cgroupsPath` into the
//! same [`Plan`] the engine's `pyctr_fast.cgroups` writes to launch.json.

use std::collections::BTreeMap;

use super::Plan;
use crate::errors::{Error, Result};

/// cgroup v1 controllers a container gets a directory in, freezer first (its
/// `cgroup.procs` lists the container), when their hierarchy is mounted.
pub const V1_CONTROLLERS: [&str; 10] =
    ["freezer", "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices", "hugetlb", "net_cls"];
/// cgroup v2 controllers enabled for a container (those the root offers).
pub const V2_CONTROLLERS: [&str; 6] = ["cpuset", "cpu", "io", "memory", "pids", "hugetlb"];

/// The host's cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// 1 or 2.
    pub version: u8,
    /// Controller → its hierarchy's mount point (v2: every offered
    /// controller, and `freezer`, to the one mount).
    pub mounts: BTreeMap<String, String>,
}

fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Layout {
    /// Read /proc/self/mountinfo (and, on v2, the root's cgroup.controllers).
    pub fn detect() -> Result<Layout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::os("read mountinfo", e.raw_os_error().unwrap_or(libc::EIO)))?;
        let mut layout = Layout::parse(&text);
        if layout.version == 2 {
            let offered = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            for c in V2_CONTROLLERS.iter().filter(|c| offered.split_whitespace().any(|o| o == **c)) {
                layout.mounts.insert((*c).to_owned(), "/sys/fs/cgroup".to_owned());
            }
        }
        Ok(layout)
    }

    /// The layout described by mountinfo `text` (v2: only `freezer` is
    /// filled in; [`Layout::detect`] adds the offered controllers).
    pub fn parse(text: &str) -> Layout {
        let mut v1 = BTreeMap::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let lf: Vec<&str> = left.split_ascii_whitespace().collect();
            let rf: Vec<&str> = right.split_ascii_whitespace().collect();
            if lf.len() < 5 || lf[3] != "/" || rf.is_empty() {
                continue; // a bind of a subtree (inside a cgroup namespace)
            }
            let point = unescape(lf[4]);
            match rf[0] {
                "cgroup2" if point == "/sys/fs/cgroup" => {
                    let mounts = BTreeMap::from([("freezer".to_owned(), point)]);
                    return Layout { version: 2, mounts };
                }
                "cgroup" => {
                    for opt in rf.get(2).copied().unwrap_or("").split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.entry(opt.to_owned()).or_insert_with(|| point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        Layout { version: 1, mounts: v1 }
    }
}

/// This process's own group in each hierarchy (`/proc/self/cgroup`):
/// controller → path (v2: the key `""`).
fn own_cgroups(text: &str) -> BTreeMap<String, String> {
    let mut own = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        for c in controllers.split(',') {
            own.insert(c.to_owned(), path.to_owned());
        }
    }
    own
}

fn clean(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::msg("config.json", format!("linux.cgroupsPath must not contain '..': {path:?}")));
    }
    Ok(parts.join("/"))
}

impl Plan {
    /// The group for `cgroups_path` (a spec's `linux.cgroupsPath`), as runc
    /// places it: absolute → relative to each hierarchy's root; relative →
    /// under this process's own group in each hierarchy; absent → `/<id>`.
    pub fn for_cgroups_path(layout: &Layout, cgroups_path: Option<&str>, id: &str) -> Result<Plan> {
        let given = cgroups_path.filter(|p| !p.is_empty());
        if given.is_some_and(|p| p.contains(':') && !p.starts_with('/')) {
            return Err(Error::msg(
                "config.json",
                "linux.cgroupsPath: a systemd slice:prefix:name path needs the systemd cgroup driver, which is not supported",
            ));
        }
        let relative = given.is_some_and(|p| !p.starts_with('/'));
        let path = clean(given.unwrap_or(id))?;
        if path.is_empty() {
            return Err(Error::msg("config.json", "linux.cgroupsPath must name a group below the root"));
        }
        let own = if relative {
            own_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default())
        } else {
            BTreeMap::new()
        };
        let mut controllers = BTreeMap::new();
        let mut dirs: Vec<String> = Vec::new();
        let order: Vec<&str> = if layout.version == 2 {
            std::iter::once("freezer").chain(V2_CONTROLLERS).collect()
        } else {
            V1_CONTROLLERS.to_vec()
        };
        for controller in order {
            let Some(mount) = layout.mounts.get(controller) else { continue };
            let key = if layout.version == 2 { "" } else { controller };
            let base = if relative { clean(own.get(key).map_or("", String::as_str))? } else { String::new() };
            let dir = [mount.as_str(), base.as_str(), path.as_str()]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            if !dirs.contains(&dir) {
                dirs.push(dir.clone());
            }
            controllers.insert(controller.to_owned(), dir);
        }
        let mounts = layout.mounts.clone();
        Ok(Plan { version: layout.version, path, controllers, mounts, dirs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 /sub /mnt/bound rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn hybrid_hosts_are_v1_with_comounted_controllers_sharing_a_directory() {
        let layout = Layout::parse(HYBRID);
        assert_eq!(layout.version, 1);
        assert_eq!(layout.mounts.get("cpuacct").map(String::as_str), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!layout.mounts.contains_key("pids"), "a subtree bind is not a hierarchy");
        let plan = Plan::for_cgroups_path(&layout, Some("/parent/c1"), "c1").expect("plan");
        assert_eq!(
            plan.dirs,
            [
                "/sys/fs/cgroup/freezer/parent/c1",
                "/sys/fs/cgroup/memory/parent/c1",
                "/sys/fs/cgroup/cpu,cpuacct/parent/c1"
            ]
        );
        assert_eq!(plan.path, "parent/c1");
    }

    #[test]
    fn absent_path_is_the_id_at_the_root_and_dotdot_is_refused() {
        let layout = Layout::parse(HYBRID);
        let plan = Plan::for_cgroups_path(&layout, None, "abc").expect("plan");
        assert_eq!(plan.controllers["memory"], "/sys/fs/cgroup/memory/abc");
        assert!(Plan::for_cgroups_path(&layout, Some("/a/../b"), "x").is_err());
        assert!(Plan::for_cgroups_path(&layout, Some("system.slice:docker:x"), "x").is_err());
    }

    #[test]
    fn unified_at_the_cgroup_root_is_v2() {
        let layout = Layout::parse("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(layout.version, 2);
        let plan = Plan::for_cgroups_path(&layout, Some("/k8s/x"), "x").expect("plan");
        assert_eq!(plan.dirs, ["/sys/fs/cgroup/k8s/x"]);
    }

    #[test]
    fn own_groups_are_read_per_controller() {
        let own = own_cgroups("4:memory:/process_api/x\n3:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own["memory"], "/process_api/x");
        assert_eq!(own["cpuacct"], "/");
        assert_eq!(own[""], "/user.slice");
    }
}
