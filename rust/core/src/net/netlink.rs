//! A small synchronous rtnetlink (`NETLINK_ROUTE`) client: message encoding,
//! attribute parsing and a request/ack socket.
//!
//! Why not a crate: `rtnetlink` is async (tokio); `netlink-packet-route` +
//! `netlink-sys` are synchronous and well kept, but bring five crates and a
//! typed model of every rtnetlink message for the dozen requests the engine
//! sends.  The wire format is a 16-byte header, a fixed struct and
//! type-length-value attributes (4-byte aligned), which this module encodes
//! and decodes in ~300 lines with unit tests, no `unsafe` but one
//! `setsockopt`, and no allocation beyond one buffer per message.
//!
//! Integers are in host byte order (the kernel's); addresses are raw
//! network-order octets.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

use crate::errors::{Error, Result};

pub const NLMSG_HDRLEN: usize = 16;
const RTA_HDRLEN: usize = 4;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// In an ack: the request was not echoed in full.
const NLM_F_CAPPED: u16 = 0x100;
/// In an ack: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Extended ack: the kernel's error message (a C string).
const NLMSGERR_ATTR_MSG: u16 = 1;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Largest datagram read at once: the kernel sizes dump batches to the
/// reader's buffer but never beyond 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Retries of a dump whose results changed while it ran (`NLM_F_DUMP_INTR`).
const DUMP_RETRIES: usize = 5;

/// `NLMSG_ALIGN`/`RTA_ALIGN`: round up to 4 bytes.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A request under construction: header, fixed struct, attributes.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
}

impl Message {
    /// A request of type `kind` (`RTM_*`) with `flags` (`NLM_F_REQUEST` is
    /// implied) and the family struct `header` (`ifinfomsg`, ...).
    pub fn new(kind: u16, flags: u16, header: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // seq, pid: set by the socket
        let mut msg = Message { buf };
        msg.raw(header);
        msg
    }

    /// Append raw bytes, padded to the alignment (a struct inside a nest).
    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Append the attribute `kind` with `data` as its payload.
    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        // Lengths are ours (names, addresses, small nests), far below 64 KiB;
        // an impossible overflow yields a length the kernel refuses (EINVAL).
        let len = u16::try_from(RTA_HDRLEN + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.raw(data)
    }

    pub fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// A NUL-terminated string attribute (`IFLA_IFNAME`, `IFLA_INFO_KIND`).
    pub fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut data = Vec::with_capacity(value.len() + 1);
        data.extend_from_slice(value.as_bytes());
        data.push(0);
        self.attr(kind, &data)
    }

    /// Open a nested attribute; close it with [`Message::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    pub fn end_nest(&mut self, nest: Nest) -> &mut Self {
        let len = u16::try_from(self.buf.len() - nest.0).unwrap_or(u16::MAX);
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished message with sequence number `seq`.
    pub fn finish(&mut self, seq: u32) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// An open nested attribute (its offset in the message).
#[must_use = "close the nest with Message::end_nest"]
#[derive(Debug)]
pub struct Nest(usize);

/// A received message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

fn ne_u16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// `u32` payload of an attribute, if it has the size of one.
pub fn read_u32(data: &[u8]) -> Option<u32> {
    (data.len() >= 4).then(|| ne_u32(data))
}

/// A NUL-terminated (or plain) string payload.
pub fn read_str(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// Split a datagram into messages: `(header, payload)`.  A truncated or
/// malformed message ends the iteration with an error.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = std::result::Result<(Header, &[u8]), Failure>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < NLMSG_HDRLEN {
            rest = &[];
            return Some(Err(Failure::malformed("short netlink header")));
        }
        let len = ne_u32(rest) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            rest = &[];
            return Some(Err(Failure::malformed("bad netlink message length")));
        }
        let header = Header {
            kind: ne_u16(&rest[4..]),
            flags: ne_u16(&rest[6..]),
            seq: ne_u32(&rest[8..]),
            pid: ne_u32(&rest[12..]),
        };
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[align(len).min(rest.len())..];
        Some(Ok((header, payload)))
    })
}

/// Iterate the attributes in `buf`: `(type, payload)`, the type without
/// the nested/byte-order flags.  Stops at the first malformed attribute.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < RTA_HDRLEN {
            return None;
        }
        let len = ne_u16(rest) as usize;
        if len < RTA_HDRLEN || len > rest.len() {
            rest = &[];
            return None;
        }
        let item = (ne_u16(&rest[2..]) & NLA_TYPE_MASK, &rest[RTA_HDRLEN..len]);
        rest = &rest[align(len).min(rest.len())..];
        Some(item)
    })
}

/// The first attribute of type `kind` in `buf`.
pub fn find_attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// A failed request: the kernel's errno and its extended-ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub errno: i32,
    pub detail: Option<String>,
}

impl Failure {
    fn os(errno: i32) -> Self {
        Failure { errno, detail: None }
    }

    fn malformed(what: &str) -> Self {
        Failure { errno: libc::EPROTO, detail: Some(what.to_owned()) }
    }

    /// As an engine error for `step` on `path` (a link name, a netns).
    pub fn at(self, step: &str, path: &str) -> Error {
        let mut err = Error::os(step, self.errno).with_path(path);
        err.detail = self.detail;
        err
    }
}

impl From<nix::Error> for Failure {
    fn from(e: nix::Error) -> Self {
        Failure::os(e as i32)
    }
}

/// Decode an `NLMSG_ERROR` payload: `Ok(())` for an ack, else the failure
/// with the kernel's extended-ack message if there is one.
pub fn parse_error(flags: u16, payload: &[u8]) -> std::result::Result<(), Failure> {
    if payload.len() < 4 {
        return Err(Failure::malformed("short netlink error"));
    }
    let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    if code == 0 {
        return Ok(());
    }
    let mut failure = Failure::os(code.checked_neg().filter(|e| *e > 0).unwrap_or(libc::EPROTO));
    if flags & NLM_F_ACK_TLVS != 0 && payload.len() >= 4 + NLMSG_HDRLEN {
        // The echoed request: its header only when capped, else all of it.
        let echoed = if flags & NLM_F_CAPPED != 0 { NLMSG_HDRLEN } else { ne_u32(&payload[4..]) as usize };
        if let Some(tlvs) = payload.get(4 + align(echoed)..) {
            failure.detail = find_attr(tlvs, NLMSGERR_ATTR_MSG).map(read_str).filter(|s| !s.is_empty());
        }
    }
    Err(failure)
}

/// A `NETLINK_ROUTE` socket in the network namespace it was opened in.
/// Requests are sent one at a time and their replies read to the end.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// A socket in the caller's network namespace.
    pub fn open() -> Result<Socket> {
        let step = "netlink socket";
        let fd =
            socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
                .map_err(|e| Error::os(step, e as i32))?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| Error::os(step, e as i32))?;
        // Kernels before 4.12 lack extended acks: errors are then bare errnos.
        let _ = enable_ext_ack(fd.as_fd());
        Ok(Socket { fd, seq: 0, buf: vec![0; RECV_BUF] })
    }

    /// A socket in the network namespace `netns` (an nsfs descriptor, e.g.
    /// `/proc/PID/ns/net` or a file under `/run/netns`), opened without the
    /// caller ever changing its own namespace.
    ///
    /// Soundness: a network namespace belongs to a thread, not a process, and
    /// `setns(CLONE_NEWNET)` is allowed in a multi-threaded process.  A
    /// dedicated short-lived thread joins `netns`, creates the socket (a
    /// socket stays in the namespace it was created in for its whole life,
    /// whichever thread uses it later) and exits; it runs no other code, so
    /// nothing else ever executes in the wrong namespace and there is nothing
    /// to switch back.  The scope joins the thread before returning.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Socket> {
        std::thread::scope(|scope| {
            let helper = scope.spawn(|| {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::os("setns net", e as i32))?;
                Socket::open()
            });
            helper.join().unwrap_or_else(|_| Err(Error::msg("netlink socket", "the netns helper thread panicked")))
        })
    }

    /// Send `msg` with `NLM_F_ACK` and wait for the kernel's answer; the
    /// replies before the ack (a `GET` of one object) are returned.
    pub fn request(&mut self, mut msg: Message) -> std::result::Result<Vec<Vec<u8>>, Failure> {
        let flags = ne_u16(&msg.buf[6..]) | NLM_F_ACK;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let (replies, _) = self.exchange(&mut msg)?;
        Ok(replies)
    }

    /// Send the dump request `msg` (`NLM_F_DUMP` is added) and collect every
    /// reply's payload; restarted if the kernel reports that the table
    /// changed meanwhile.
    pub fn dump(&mut self, mut msg: Message) -> std::result::Result<Vec<Vec<u8>>, Failure> {
        let flags = ne_u16(&msg.buf[6..]) | NLM_F_DUMP;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        for _ in 0..DUMP_RETRIES {
            let (replies, interrupted) = self.exchange(&mut msg)?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Err(Failure { errno: libc::EINTR, detail: Some("the dump kept changing while it ran".to_owned()) })
    }

    /// One round trip: send, then read until the ack, the error or
    /// `NLMSG_DONE`.  Messages from anyone but the kernel, or for another
    /// request, are ignored.
    fn exchange(&mut self, msg: &mut Message) -> std::result::Result<(Vec<Vec<u8>>, bool), Failure> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let fd = self.fd.as_raw_fd();
        let data = msg.finish(seq);
        loop {
            match socket::send(fd, data, MsgFlags::empty()) {
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let (len, from_kernel) = self.receive()?;
            if !from_kernel {
                continue;
            }
            for item in messages(&self.buf[..len]) {
                let (header, payload) = item?;
                if header.seq != seq {
                    continue;
                }
                interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match header.kind {
                    NLMSG_ERROR => return parse_error(header.flags, payload).map(|()| (replies, interrupted)),
                    NLMSG_DONE => {
                        // A dump may end with an error code in place of DONE's 0.
                        if let Some(code) = read_u32(payload).map(|c| c as i32).filter(|c| *c < 0) {
                            return Err(Failure::os(-code));
                        }
                        return Ok((replies, interrupted));
                    }
                    _ => replies.push(payload.to_vec()),
                }
            }
        }
    }

    /// Read one datagram into the buffer: its length and whether the kernel
    /// (port 0) sent it.
    fn receive(&mut self) -> std::result::Result<(usize, bool), Failure> {
        loop {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            match socket::recvmsg::<NetlinkAddr>(self.fd.as_raw_fd(), &mut iov, None, MsgFlags::empty()) {
                Ok(got) => {
                    if got.flags.contains(MsgFlags::MSG_TRUNC) {
                        return Err(Failure::malformed("netlink reply larger than the receive buffer"));
                    }
                    return Ok((got.bytes, got.address.is_some_and(|a| a.pid() == 0)));
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)`: errors carry the kernel's
/// explanation ("Invalid ifname", "Master is not a bridge", ...).
fn enable_ext_ack(fd: BorrowedFd<'_>) -> std::result::Result<(), i32> {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_EXT_ACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_header_fields_and_alignment() {
        let mut msg = Message::new(16, NLM_F_CREATE, &[1, 2, 3]);
        msg.attr_str(3, "br0");
        let bytes = msg.finish(7).to_vec();
        // header 16 + struct 3 -> 4 + attr 4 + "br0\0" 4
        assert_eq!(bytes.len(), 28);
        assert_eq!(ne_u32(&bytes[0..]), 28);
        assert_eq!(ne_u16(&bytes[4..]), 16);
        assert_eq!(ne_u16(&bytes[6..]), NLM_F_CREATE | NLM_F_REQUEST);
        assert_eq!(ne_u32(&bytes[8..]), 7);
        assert_eq!(&bytes[16..20], &[1, 2, 3, 0]);
        assert_eq!(ne_u16(&bytes[20..]), 8);
        assert_eq!(ne_u16(&bytes[22..]), 3);
        assert_eq!(&bytes[24..28], b"br0\0");
    }

    #[test]
    fn attribute_padding_is_zeroed_and_length_unpadded() {
        let mut msg = Message::new(1, 0, &[]);
        msg.attr(1, &[0xaa; 5]).attr_u32(2, 0x0102_0304);
        let bytes = msg.finish(1).to_vec();
        assert_eq!(ne_u16(&bytes[16..]), 9, "rta_len excludes padding");
        assert_eq!(&bytes[25..28], &[0, 0, 0]);
        let got: Vec<_> = attrs(&bytes[16..]).collect();
        assert_eq!(got, vec![(1, &[0xaa; 5][..]), (2, &0x0102_0304u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn nests_carry_their_length_and_flag() {
        let mut msg = Message::new(1, 0, &[]);
        let outer = msg.begin_nest(18);
        msg.attr_str(1, "veth");
        let inner = msg.begin_nest(2);
        msg.attr_u32(4, 1500);
        msg.end_nest(inner);
        msg.end_nest(outer);
        let bytes = msg.finish(1).to_vec();
        assert_eq!(ne_u16(&bytes[18..]), 18 | NLA_F_NESTED);
        let (kind, linkinfo) = attrs(&bytes[16..]).next().expect("one attribute");
        assert_eq!(kind, 18, "the nested flag is masked off");
        assert_eq!(linkinfo.len(), 4 + 8 + 4 + 8);
        assert_eq!(find_attr(linkinfo, 1).map(read_str).as_deref(), Some("veth"));
        let data = find_attr(linkinfo, 2).expect("IFLA_INFO_DATA");
        assert_eq!(find_attr(data, 4).and_then(read_u32), Some(1500));
    }

    #[test]
    fn attrs_stop_at_garbage() {
        // A length beyond the buffer, then a length below the header size.
        assert_eq!(attrs(&[0xff, 0x00, 1, 0, 0, 0]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        let mut ok = 8u16.to_ne_bytes().to_vec();
        ok.extend_from_slice(&[1, 0, 9, 9, 9, 9, 0xff]);
        assert_eq!(attrs(&ok).count(), 1, "a trailing partial header is ignored");
    }

    fn reply(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut out = len.to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align(out.len()), 0);
        out
    }

    #[test]
    fn messages_split_a_multipart_datagram() {
        let mut buf = reply(16, NLM_F_MULTI, 5, &[1, 2, 3]);
        buf.extend(reply(NLMSG_DONE, NLM_F_MULTI, 5, &0i32.to_ne_bytes()));
        let got: Vec<_> = messages(&buf).collect::<std::result::Result<_, _>>().expect("well formed");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, Header { kind: 16, flags: NLM_F_MULTI, seq: 5, pid: 0 });
        assert_eq!(got[0].1, &[1, 2, 3]);
        assert_eq!(got[1].0.kind, NLMSG_DONE);
    }

    #[test]
    fn messages_reject_bad_lengths() {
        let mut buf = reply(16, 0, 1, &[0; 4]);
        buf[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(matches!(messages(&buf).next(), Some(Err(Failure { errno: libc::EPROTO, .. }))));
        assert!(matches!(messages(&[1, 2, 3]).next(), Some(Err(_))));
    }

    fn error_payload(code: i32, echoed: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = code.to_ne_bytes().to_vec();
        out.extend_from_slice(echoed);
        out.extend_from_slice(tlvs);
        out
    }

    #[test]
    fn ack_and_plain_error() {
        assert_eq!(parse_error(0, &error_payload(0, &[0; 16], &[])), Ok(()));
        let err = parse_error(0, &error_payload(-libc::EEXIST, &[0; 16], &[])).expect_err("an error");
        assert_eq!(err, Failure { errno: libc::EEXIST, detail: None });
        assert_eq!(parse_error(0, &[1]).expect_err("short").errno, libc::EPROTO);
    }

    #[test]
    fn extended_ack_message_is_read_capped_or_not() {
        let mut tlv = Message::new(0, 0, &[]);
        tlv.attr_str(NLMSGERR_ATTR_MSG, "Invalid ifname");
        let tlvs = tlv.finish(0)[NLMSG_HDRLEN..].to_vec();
        // Capped: only the request's header is echoed.
        let capped = error_payload(-libc::EINVAL, &reply(16, 0, 1, &[]), &tlvs);
        let err = parse_error(NLM_F_ACK_TLVS | NLM_F_CAPPED, &capped).expect_err("an error");
        assert_eq!(err.errno, libc::EINVAL);
        assert_eq!(err.detail.as_deref(), Some("Invalid ifname"));
        // Not capped: the whole request (header + 6 bytes, padded) precedes.
        let full = error_payload(-libc::ENODEV, &reply(16, 0, 1, &[9; 6]), &tlvs);
        let err = parse_error(NLM_F_ACK_TLVS, &full).expect_err("an error");
        assert_eq!((err.errno, err.detail.as_deref()), (libc::ENODEV, Some("Invalid ifname")));
    }

    #[test]
    fn failure_becomes_a_structured_error() {
        let err = Failure { errno: libc::EEXIST, detail: Some("File exists".into()) }.at("create bridge", "pct0");
        assert_eq!((err.step.as_str(), err.errno, err.path.as_deref()), ("create bridge", libc::EEXIST, Some("pct0")));
    }

    #[test]
    fn read_helpers() {
        assert_eq!(read_str(b"eth0\0\0"), "eth0");
        assert_eq!(read_str(b"lo"), "lo");
        assert_eq!(read_u32(&[1, 0]), None);
    }
}
