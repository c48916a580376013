//! Undo what the engine set up for one container on a bridge network, from
//! the record Python writes at start (`<cdir>/network.json`, see
//! docs/networking.md): the veth pair, the persistent namespace file and
//! the address lease.  Every step is idempotent, so the supervisor, `rm`
//! and a later clean-up after a crash may all run it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Deserialize;

use super::{link_delete, netns};
use crate::errors::{Error, Result};

/// The address lease in a lease table of `pyctr_fast.ipam`.
#[derive(Debug, Clone, Deserialize)]
pub struct Lease {
    /// `networks/ipam/<network>.json`
    pub table: String,
    /// `networks/ipam/<network>.lock`, flock'd around every change.
    pub lock: String,
    pub owner: String,
}

/// The nftables commands that undo a container's published ports
/// (`delete element ...`, one per line), and the `nft` to run them with.
#[derive(Debug, Clone, Deserialize)]
pub struct NftUndo {
    pub tool: String,
    pub script: String,
}

/// The part of `network.json` that teardown needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    #[serde(default)]
    pub veth: Option<String>,
    #[serde(default)]
    pub netns: Option<String>,
    #[serde(default)]
    pub ipam: Option<Lease>,
    /// The published ports' registry entries (same table format as IPAM's).
    #[serde(default)]
    pub port_lease: Option<Lease>,
    #[serde(default)]
    pub nft: Option<NftUndo>,
    /// Endpoints on further networks (`network connect`), in the same
    /// namespace: each has its own veth and lease.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// How teardown gets rid of the veth pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Delete each pair (an RCU grace period each, ~20 ms here): they are
    /// gone when teardown returns.
    Delete,
    /// Remove the namespace file first: once nothing else holds the
    /// namespace, the kernel destroys it and the pairs with it, in its own
    /// worker, after teardown returns.  For a caller whose container is
    /// dead and who should not wait (a foreground `run --rm`).
    WithNamespace,
}

/// Read `<cdir>/network.json`, undo it and remove the record.  No record:
/// nothing to do.  Every step is tried; the first error is returned.
pub fn teardown_dir(cdir: &Path, links: Links) -> Result<()> {
    let path = cdir.join("network.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            return Err(Error::os("read network.json", errno).with_path(path.to_string_lossy()));
        }
    };
    let endpoint: Endpoint = serde_json::from_str(&text)
        .map_err(|e| Error::msg("network.json", e.to_string()).with_path(path.to_string_lossy()))?;
    let result = teardown(&endpoint, links);
    let _ = std::fs::remove_file(&path);
    result
}

/// Delete the published ports' DNAT entries, the veths (both ends), the
/// namespace file, and release the address and port leases.
pub fn teardown(endpoint: &Endpoint, links: Links) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if let Some(nft) = &endpoint.nft {
        note(run_nft(nft));
    }
    // With `WithNamespace`, the links go with the namespace when its file
    // was there to remove; otherwise (no file: an earlier, partial
    // teardown) they are deleted here.
    let mut delete_links = true;
    if let Some(path) = endpoint.netns.as_deref() {
        if links == Links::WithNamespace {
            match netns::remove(path) {
                Ok(removed) => delete_links = !removed,
                Err(e) => note(Err(e)),
            }
        }
    }
    undo(endpoint, delete_links, &mut note);
    if let Some(path) = endpoint.netns.as_deref() {
        note(netns::remove(path).map(|_| ()));
    }
    first.map_or(Ok(()), Err)
}

/// An endpoint's veth (unless the namespace takes it) and leases, and those
/// of its further endpoints.
fn undo(endpoint: &Endpoint, delete_links: bool, note: &mut impl FnMut(Result<()>)) {
    for extra in &endpoint.endpoints {
        undo(extra, delete_links, note);
    }
    if delete_links {
        if let Some(veth) = endpoint.veth.as_deref() {
            note(link_delete(veth, None).map(|_| ()));
        }
    }
    for lease in [&endpoint.ipam, &endpoint.port_lease].into_iter().flatten() {
        note(release(lease));
    }
}

fn nft_once(tool: &str, script: &str) -> std::io::Result<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut child = Command::new(tool)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    Ok(child.wait()?.success())
}

/// Run the undo script as one transaction; if that fails (an entry already
/// gone after an earlier, interrupted teardown), line by line.
fn run_nft(nft: &NftUndo) -> Result<()> {
    let spawn_err = |e: std::io::Error| io_err("run nft", &nft.tool, &e);
    if nft.script.trim().is_empty() || nft_once(&nft.tool, &nft.script).map_err(spawn_err)? {
        return Ok(());
    }
    for line in nft.script.lines().filter(|l| !l.trim().is_empty()) {
        nft_once(&nft.tool, &format!("{line}\n")).map_err(spawn_err)?;
    }
    Ok(())
}

fn io_err(step: &str, path: &str, e: &std::io::Error) -> Error {
    Error::os(step, e.raw_os_error().unwrap_or(libc::EIO)).with_path(path)
}

/// Hold the lease table's lock as `pyctr_fast.filelock.FileLock` does: a
/// lock on a file its holder has since unlinked is retaken on the new file.
fn lock_table(path: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open ipam lock", path, &e))?;
        let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::os("lock ipam", e as i32).with_path(path))?;
        let mine = held.metadata().map_err(|e| io_err("stat ipam lock", path, &e))?;
        match std::fs::metadata(path) {
            Ok(now) if (now.ino(), now.dev()) == (mine.ino(), mine.dev()) => return Ok(held),
            _ => continue,
        }
    }
}

/// Drop every lease of `lease.owner` from the table.
pub fn release(lease: &Lease) -> Result<()> {
    if Path::new(&lease.lock).parent().is_some_and(|d| !d.exists()) {
        return Ok(()); // no table was ever made there
    }
    let _held = lock_table(&lease.lock)?;
    let text = match std::fs::read_to_string(&lease.table) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read ipam table", &lease.table, &e)),
    };
    let mut table: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::msg("ipam table", e.to_string()).with_path(&lease.table))?;
    let Some(leases) = table.get_mut("leases").and_then(|l| l.as_object_mut()) else {
        return Err(Error::msg("ipam table", "no leases object").with_path(&lease.table));
    };
    let before = leases.len();
    leases.retain(|_, owner| owner.as_str() != Some(lease.owner.as_str()));
    if leases.len() == before {
        return Ok(());
    }
    let tmp = format!("{}.tmp.{}", lease.table, std::process::id());
    std::fs::write(&tmp, table.to_string()).map_err(|e| io_err("write ipam table", &tmp, &e))?;
    std::fs::rename(&tmp, &lease.table).map_err(|e| io_err("replace ipam table", &lease.table, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_drops_only_the_owners_lease() {
        let dir = tempfile::tempdir().expect("tmp");
        let table = dir.path().join("bridge.json");
        let body = r#"{"subnet":"10.89.0.0/24","gateway":"10.89.0.1","last":"10.89.0.3","leases":{"10.89.0.2":"a","10.89.0.3":"b"}}"#;
        std::fs::write(&table, body).expect("write");
        let lease = Lease {
            table: table.to_string_lossy().into_owned(),
            lock: dir.path().join("bridge.lock").to_string_lossy().into_owned(),
            owner: "a".into(),
        };
        release(&lease).expect("release");
        release(&lease).expect("again: nothing to do");
        let after: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&table).expect("read")).expect("json");
        assert_eq!(after["leases"], serde_json::json!({"10.89.0.3": "b"}));
        assert_eq!(after["last"], "10.89.0.3");
    }
}
