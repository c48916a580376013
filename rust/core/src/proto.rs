//! The wire between the engine (parent) and `pyctr-init` (child): one
//! `SOCK_SEQPACKET` socketpair, one record per packet.
//!
//! parent → child: `GO` once the id maps of a new user namespace are written
//! (consumed before the init is exec'd), then the `Request` (JSON; with
//! `exec_fifo`, an `O_PATH` descriptor of the fifo is attached to it).
//! init → parent: `HOOKS` (only with `Request::hooks`: namespaces and mounts
//! are in place, pivot_root comes next; the init waits for `GO` followed by
//! [`HookStates`] while the runtime runs its prestart and createRuntime
//! hooks), `MASTER` (a pty master fd attached with SCM_RIGHTS), `EXEC`
//! (everything is ready, execve comes next), `CREATED` (with `exec_fifo`:
//! everything but the program lookup is done, the init now blocks on the
//! fifo; the parent stops listening here) or `ERROR`.
//! The socket is close-on-exec, so after `EXEC` the parent sees EOF when the
//! user program starts, or an `ERROR` if execve failed.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recv, recvmsg, send, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
use crate::hooks::Hook;

pub const GO: u8 = b'G';
pub const MASTER: u8 = b'M';
pub const EXEC: u8 = b'X';
pub const ERROR: u8 = b'E';
pub const CREATED: u8 = b'C';
pub const HOOKS: u8 = b'H';

/// An overlay rootfs, mounted by the init inside the container's mount
/// namespace (so it goes away with the container).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Overlay {
    /// Layer directories, top-most first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
    /// Skip syncs: for containers whose upper dir is thrown away.
    #[serde(default)]
    pub volatile: bool,
}

/// The OCI hooks the init runs itself (`pyctr-fast-runtime create`): in the
/// container's namespaces, with the state JSON from [`HookStates`] on stdin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InitHooks {
    /// Before pivot_root, after the runtime's hooks; the path resolves in
    /// the runtime's mount namespace (the host's root is still ours).
    pub create_container: Vec<Hook>,
    /// After `start` released the init, before the program is looked up;
    /// the path resolves in the container's root.
    pub start_container: Vec<Hook>,
}

/// The answer to `HOOKS` (after the `GO` byte, JSON): the container's state
/// as the init's hooks get it (the pid is the init's in its pid namespace).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HookStates {
    /// The state for createContainer (status `created`: see `runtime::create`).
    pub creating: String,
    /// Status `created`: for startContainer.
    pub created: String,
}

/// What the init needs besides the spec.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// config.json text.
    pub config: String,
    /// Absolute path of the rootfs on the host.
    pub rootfs: String,
    /// The bundle directory: relative bind sources are anchored here.
    pub bundle: String,
    /// Mount this overlay on the rootfs path first.
    #[serde(default)]
    pub overlay: Option<Overlay>,
    /// The caller's terminal size (rows, cols), set on the pty before exec.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Record start-path timestamps and send them with `EXEC`.
    #[serde(default)]
    pub trace: bool,
    /// Join a running container (`exec`): the spec's namespaces are all given
    /// by path; set up the process only, leave the rootfs alone.
    #[serde(default)]
    pub join: bool,
    /// `pyctr-fast-runtime create`: the request record carries an `O_PATH`
    /// descriptor of `exec.fifo`.  The init sends `CREATED` once everything
    /// but the program lookup is done, then opens the fifo for writing
    /// (blocking until `start` opens it for reading), writes one `0` byte and
    /// goes on; a failure after that is written to the fifo as one line.
    #[serde(default)]
    pub exec_fifo: bool,
    /// Descriptors 3 .. 3+N stay open into the program (`--preserve-fds`,
    /// `LISTEN_FDS`).
    #[serde(default)]
    pub preserve_fds: u32,
    /// Hooks (`pyctr-fast-runtime create` of a config with create or start
    /// hooks): the init stops before pivot_root, sends `HOOKS` and waits for
    /// `GO`, then runs these.  None: no round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<InitHooks>,
}

/// Encode an error record: tag, errno (le i32), then step, path, detail as
/// u16-length-prefixed strings (empty = none).
pub fn encode_error(err: &Error) -> Vec<u8> {
    let mut out = vec![ERROR];
    out.extend_from_slice(&err.errno.to_le_bytes());
    for s in [Some(err.step.as_str()), err.path.as_deref(), err.detail.as_deref()] {
        let bytes = s.unwrap_or("").as_bytes();
        let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Offset of the errno field in an encoded error record, so a pre-encoded
/// record can be patched without allocating (after fork, before exec).
pub const ERRNO_OFFSET: usize = 1;

pub fn decode_error(rec: &[u8]) -> Error {
    let bad = || Error::msg("protocol", "malformed error record from pyctr-init");
    let mut pos = 1;
    let Some(errno) = rec.get(pos..pos + 4).and_then(|b| b.try_into().ok()).map(i32::from_le_bytes) else {
        return bad();
    };
    pos += 4;
    let mut fields = [None, None, None];
    for f in fields.iter_mut() {
        let Some(len) = rec.get(pos..pos + 2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes) else {
            return bad();
        };
        pos += 2;
        let Some(s) = rec.get(pos..pos + len as usize) else { return bad() };
        pos += len as usize;
        if !s.is_empty() {
            *f = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    let [step, path, detail] = fields;
    Error { step: step.unwrap_or_else(|| "init".into()), errno, path, detail }
}

pub fn send_record(sock: BorrowedFd<'_>, rec: &[u8]) -> Result<()> {
    send(sock.as_raw_fd(), rec, MsgFlags::MSG_NOSIGNAL).map_err(|e| Error::os("send to peer", e as i32))?;
    Ok(())
}

pub fn send_fd(sock: BorrowedFd<'_>, tag: u8, fd: RawFd) -> Result<()> {
    send_record_with_fd(sock, std::slice::from_ref(&tag), fd)
}

/// Send one record with descriptor `fd` attached (SCM_RIGHTS).
pub fn send_record_with_fd(sock: BorrowedFd<'_>, rec: &[u8], fd: RawFd) -> Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(rec)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| Error::os("send fd to peer", e as i32))?;
    Ok(())
}

/// Receive one record; `Ok(None)` on EOF.  A descriptor attached to the
/// record is returned with it.
pub fn recv_record(sock: BorrowedFd<'_>) -> Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let step = "receive from peer";
    let size = loop {
        match recv(sock.as_raw_fd(), &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os(step, e as i32)),
        }
    };
    let mut buf = vec![0u8; size.max(1)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fd = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: SCM_RIGHTS hands us fresh descriptors we now own.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                }
                break (msg.bytes, fd);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os(step, e as i32)),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some((buf, fd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_records_round_trip() {
        let e = Error::os("execve", libc::ENOENT).with_path("/bin/nope");
        assert_eq!(decode_error(&encode_error(&e)), e);
        let e = Error::msg("spec", "bad").with_path("x");
        assert_eq!(decode_error(&encode_error(&e)), e);
    }

    #[test]
    fn truncated_error_record_is_reported_not_panicking() {
        let rec = encode_error(&Error::os("mount", 2));
        assert_eq!(decode_error(&rec[..4]).step, "protocol");
    }
}
