//! When a container is done for good: its cgroups, its name, its directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// rmdir a cgroup, retrying while its last processes are still leaving.
pub fn remove_cgroup(dir: &str) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

/// Remove `path` and everything under it, never crossing into another
/// filesystem (something mounted there is left alone, and so is its parent).
pub fn remove_tree(path: &Path, dev: u64) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.dev() != dev {
        return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
    }
    if meta.is_dir() {
        let mut result = Ok(());
        for entry in std::fs::read_dir(path)? {
            if let Err(e) = remove_tree(&entry?.path(), dev) {
                result = Err(e);
            }
        }
        result?;
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Drop `<root>/names/<name>` if that link still points at `id`.
pub fn release_name(root: &str, name: &str, id: &str) {
    if name.is_empty() || root.is_empty() {
        return;
    }
    let link = Path::new(root).join("names").join(name);
    if std::fs::read_link(&link).is_ok_and(|target| target.as_os_str() == id) {
        let _ = std::fs::remove_file(&link);
    }
}

/// Remove the container directory `cdir` (never across a mount point).
pub fn remove_container_dir(cdir: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(cdir) {
        let _ = remove_tree(cdir, meta.dev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_a_directory_on_one_filesystem() {
        let dir = tempfile::tempdir().expect("tmp");
        let top = dir.path().join("c");
        std::fs::create_dir_all(top.join("rootfs/sub")).expect("mkdir");
        std::fs::write(top.join("state.json"), "{}").expect("write");
        std::os::unix::fs::symlink("/etc", top.join("link")).expect("symlink");
        let dev = std::fs::metadata(&top).expect("stat").dev();
        remove_tree(&top, dev).expect("remove");
        assert!(!top.exists());
        assert!(Path::new("/etc").exists());
    }

    #[test]
    fn a_name_is_released_only_while_it_points_at_the_container() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_str().expect("utf-8");
        std::fs::create_dir(dir.path().join("names")).expect("mkdir");
        std::os::unix::fs::symlink("abc", dir.path().join("names/mine")).expect("symlink");
        std::os::unix::fs::symlink("xyz", dir.path().join("names/other")).expect("symlink");
        release_name(root, "other", "abc");
        release_name(root, "mine", "abc");
        assert!(dir.path().join("names/other").symlink_metadata().is_ok());
        assert!(dir.path().join("names/mine").symlink_metadata().is_err());
    }
}
