//! Links (`RTM_*LINK`): bridges, veth pairs, up/down, master, namespace,
//! name, MAC and MTU, lookup, listing and deletion.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::str::FromStr;

use super::netlink::{self, Message, Socket, NLM_F_CREATE, NLM_F_EXCL};
use crate::errors::{Error, Result};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `IFLA_EXT_MASK` bit: leave the (large) statistics out of replies.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

pub const IFF_UP: u32 = 0x1;
/// `IFNAMSIZ - 1`: the longest interface name.
pub const IFNAME_MAX: usize = 15;

/// `struct ifinfomsg` for a request about link `index` (0: by name / new).
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = libc::AF_UNSPEC as u8;
    out[4..8].copy_from_slice(&index.to_ne_bytes());
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    out[12..16].copy_from_slice(&change.to_ne_bytes());
    out
}

/// Check an interface name as the kernel's `dev_valid_name` does, so a bad
/// name is reported as such rather than as a bare EINVAL.
pub fn check_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "not a valid name"
    } else if name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace()) {
        "contains '/', ':', NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(Error::os("interface name", libc::EINVAL).with_path(name).with_detail(problem))
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A random, locally administered unicast address.
    pub fn random() -> Result<Mac> {
        let mut b = [0u8; 6];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(io_err)?, &mut b).map_err(io_err)?;
        b[0] = (b[0] & 0xfe) | 0x02;
        Ok(Mac(b))
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::os("random mac", e.raw_os_error().unwrap_or(libc::EIO)).with_path("/dev/urandom")
}

impl FromStr for Mac {
    type Err = Error;

    /// `aa:bb:cc:dd:ee:ff`; multicast and all-zero addresses are refused.
    fn from_str(s: &str) -> Result<Mac> {
        let bad = |why: &str| Error::os("mac address", libc::EINVAL).with_path(s).with_detail(why.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| bad("expected six hex bytes separated by ':'"))?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad("expected six hex bytes separated by ':'"));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad("not a hex byte"))?;
        }
        if parts.next().is_some() {
            return Err(bad("expected six hex bytes separated by ':'"));
        }
        if out[0] & 1 != 0 || out == [0; 6] {
            return Err(bad("not a unicast address"));
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// What the kernel says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "bridge", "veth", ...; None for physical devices and `lo`.
    pub kind: Option<String>,
    pub mtu: u32,
    pub flags: u32,
    /// Index of the bridge (or bond) the link is attached to.
    pub master: Option<u32>,
    /// For a veth: the peer's index (in the peer's namespace).
    pub peer: Option<u32>,
    pub mac: Option<Mac>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Decode an `RTM_NEWLINK` payload (`ifinfomsg` + attributes).
    pub fn parse(payload: &[u8]) -> Option<Link> {
        let head = payload.get(..16)?;
        let index = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
        let flags = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
        let mut link =
            Link { index, name: String::new(), kind: None, mtu: 0, flags, master: None, peer: None, mac: None };
        for (kind, data) in netlink::attrs(&payload[16..]) {
            match kind {
                IFLA_IFNAME => link.name = netlink::read_str(data),
                IFLA_MTU => link.mtu = netlink::read_u32(data).unwrap_or(0),
                IFLA_MASTER => link.master = netlink::read_u32(data).filter(|m| *m != 0),
                IFLA_LINK => link.peer = netlink::read_u32(data).filter(|p| *p != 0 && *p != index),
                IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(data).ok().map(Mac),
                IFLA_LINKINFO => {
                    link.kind = netlink::find_attr(data, IFLA_INFO_KIND).map(netlink::read_str);
                }
                _ => {}
            }
        }
        Some(link)
    }
}

/// The link called `name`, or None if there is none.
pub fn get(sock: &mut Socket, name: &str) -> Result<Option<Link>> {
    check_name(name)?;
    let mut msg = Message::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
    msg.attr_str(IFLA_IFNAME, name).attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    match sock.request(msg) {
        Ok(replies) => Ok(replies.first().and_then(|p| Link::parse(p))),
        Err(f) if f.errno == libc::ENODEV => Ok(None),
        Err(f) => Err(f.at("find link", name)),
    }
}

/// The index of the link called `name`; ENODEV if there is none.
pub fn index(sock: &mut Socket, name: &str) -> Result<u32> {
    match get(sock, name)? {
        Some(link) => Ok(link.index),
        None => Err(Error::os("find link", libc::ENODEV).with_path(name)),
    }
}

/// Every link in the socket's namespace.
pub fn list(sock: &mut Socket) -> Result<Vec<Link>> {
    let mut msg = Message::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
    msg.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    let replies = sock.dump(msg).map_err(|f| f.at("list links", ""))?;
    Ok(replies.iter().filter_map(|p| Link::parse(p)).collect())
}

/// Create the bridge `name` (EEXIST if the name is taken).  A fixed MAC
/// keeps the bridge's address from following its ports as they come and go.
pub fn create_bridge(sock: &mut Socket, name: &str, mtu: Option<u32>, mac: Option<Mac>) -> Result<()> {
    check_name(name)?;
    let mut msg = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
    msg.attr_str(IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        msg.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = mac {
        msg.attr(IFLA_ADDRESS, &mac.0);
    }
    let info = msg.begin_nest(IFLA_LINKINFO);
    msg.attr_str(IFLA_INFO_KIND, "bridge");
    msg.end_nest(info);
    sock.request(msg).map(drop).map_err(|f| f.at("create bridge", name))
}

/// A veth pair to create.
#[derive(Debug, Clone, Default)]
pub struct Veth<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    /// Create the peer directly in this network namespace: it never
    /// appears in the caller's, so its name only has to be free there.
    pub peer_netns: Option<BorrowedFd<'a>>,
    pub peer_mac: Option<Mac>,
    pub mtu: Option<u32>,
}

/// Create a veth pair in one request (both ends or neither).
pub fn create_veth(sock: &mut Socket, veth: &Veth<'_>) -> Result<()> {
    check_name(veth.name)?;
    check_name(veth.peer)?;
    let mut msg = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
    msg.attr_str(IFLA_IFNAME, veth.name);
    if let Some(mtu) = veth.mtu {
        msg.attr_u32(IFLA_MTU, mtu);
    }
    let info = msg.begin_nest(IFLA_LINKINFO);
    msg.attr_str(IFLA_INFO_KIND, "veth");
    let data = msg.begin_nest(IFLA_INFO_DATA);
    let peer = msg.begin_nest(VETH_INFO_PEER);
    msg.raw(&ifinfomsg(0, 0, 0));
    msg.attr_str(IFLA_IFNAME, veth.peer);
    if let Some(mtu) = veth.mtu {
        msg.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = veth.peer_mac {
        msg.attr(IFLA_ADDRESS, &mac.0);
    }
    if let Some(ns) = veth.peer_netns {
        msg.attr_u32(IFLA_NET_NS_FD, ns.as_raw_fd() as u32);
    }
    msg.end_nest(peer);
    msg.end_nest(data);
    msg.end_nest(info);
    sock.request(msg).map(drop).map_err(|f| f.at("create veth", veth.name))
}

/// `RTM_SETLINK` on link `index` with `flags`/`change` and `attrs`.
fn set(sock: &mut Socket, index: u32, flags: u32, change: u32, attrs: &[(u16, &[u8])], step: &str) -> Result<()> {
    let mut msg = Message::new(RTM_SETLINK, 0, &ifinfomsg(index, flags, change));
    for (kind, data) in attrs {
        msg.attr(*kind, data);
    }
    sock.request(msg).map(drop).map_err(|f| f.at(step, &format!("ifindex {index}")))
}

/// Bring link `index` up or down.
pub fn set_up(sock: &mut Socket, index: u32, up: bool) -> Result<()> {
    set(sock, index, if up { IFF_UP } else { 0 }, IFF_UP, &[], if up { "set link up" } else { "set link down" })
}

/// Attach link `index` to the bridge `master` (None: detach it).
pub fn set_master(sock: &mut Socket, index: u32, master: Option<u32>) -> Result<()> {
    set(sock, index, 0, 0, &[(IFLA_MASTER, &master.unwrap_or(0).to_ne_bytes())], "set link master")
}

/// Move link `index` into the network namespace `netns`; it gets a new
/// index there, and its name must be free there.
pub fn set_netns(sock: &mut Socket, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
    let fd = netns.as_raw_fd() as u32;
    set(sock, index, 0, 0, &[(IFLA_NET_NS_FD, &fd.to_ne_bytes())], "move link to netns")
}

/// Rename link `index` (it must be down: EBUSY otherwise).
pub fn rename(sock: &mut Socket, index: u32, name: &str) -> Result<()> {
    check_name(name)?;
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    set(sock, index, 0, 0, &[(IFLA_IFNAME, &data)], "rename link").map_err(|e| e.with_detail(format!("to {name}")))
}

pub fn set_mac(sock: &mut Socket, index: u32, mac: Mac) -> Result<()> {
    set(sock, index, 0, 0, &[(IFLA_ADDRESS, &mac.0)], "set link mac")
}

pub fn set_mtu(sock: &mut Socket, index: u32, mtu: u32) -> Result<()> {
    set(sock, index, 0, 0, &[(IFLA_MTU, &mtu.to_ne_bytes())], "set link mtu")
}

/// Delete link `index` (for a veth: both ends).
pub fn delete(sock: &mut Socket, index: u32) -> Result<()> {
    let msg = Message::new(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0));
    sock.request(msg).map(drop).map_err(|f| f.at("delete link", &format!("ifindex {index}")))
}

/// Delete the link called `name`; false if there was none.
pub fn delete_named(sock: &mut Socket, name: &str) -> Result<bool> {
    check_name(name)?;
    let mut msg = Message::new(RTM_DELLINK, 0, &ifinfomsg(0, 0, 0));
    msg.attr_str(IFLA_IFNAME, name);
    match sock.request(msg) {
        Ok(_) => Ok(true),
        Err(f) if f.errno == libc::ENODEV => Ok(false),
        Err(f) => Err(f.at("delete link", name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dev_valid_name() {
        for ok in ["eth0", "pyctr0", "a", "veth-0123456789", "x.y"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "pct0123456789abc"] {
            let err = check_name(bad).expect_err(bad);
            assert_eq!(
                (err.step.as_str(), err.errno, err.path.as_deref()),
                ("interface name", libc::EINVAL, Some(bad))
            );
        }
    }

    #[test]
    fn mac_round_trip_and_refusals() {
        let mac: Mac = "02:42:AC:11:00:02".parse().expect("valid");
        assert_eq!(mac.0, [0x02, 0x42, 0xac, 0x11, 0, 2]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:42:ac:11:00:zz",
            "002:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        let random = Mac::random().expect("urandom");
        assert_eq!(random.0[0] & 0x03, 0x02, "local, unicast");
    }

    /// An `RTM_NEWLINK` as the kernel sends it for a veth on a bridge.
    #[test]
    fn parse_link_reply() {
        let mut msg = Message::new(RTM_NEWLINK, 0, &ifinfomsg(7, IFF_UP, 0));
        msg.attr_str(IFLA_IFNAME, "vethab").attr_u32(IFLA_MTU, 1400).attr_u32(IFLA_MASTER, 3).attr_u32(IFLA_LINK, 8);
        msg.attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]);
        let info = msg.begin_nest(IFLA_LINKINFO);
        msg.attr_str(IFLA_INFO_KIND, "veth");
        msg.end_nest(info);
        let bytes = msg.finish(1).to_vec();
        let link = Link::parse(&bytes[netlink::NLMSG_HDRLEN..]).expect("parses");
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "vethab".into(),
                kind: Some("veth".into()),
                mtu: 1400,
                flags: IFF_UP,
                master: Some(3),
                peer: Some(8),
                mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            }
        );
        assert!(link.is_up());
        assert_eq!(Link::parse(&[0; 8]), None, "short payload");
    }

    /// The veth request nests the peer's `ifinfomsg` and attributes inside
    /// IFLA_LINKINFO / IFLA_INFO_DATA / VETH_INFO_PEER.
    #[test]
    fn veth_request_layout() {
        let mut msg = Message::new(RTM_NEWLINK, 0, &ifinfomsg(0, 0, 0));
        let info = msg.begin_nest(IFLA_LINKINFO);
        msg.attr_str(IFLA_INFO_KIND, "veth");
        let data = msg.begin_nest(IFLA_INFO_DATA);
        let peer = msg.begin_nest(VETH_INFO_PEER);
        msg.raw(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, "eth0").attr_u32(IFLA_NET_NS_FD, 9);
        msg.end_nest(peer);
        msg.end_nest(data);
        msg.end_nest(info);
        let bytes = msg.finish(1).to_vec();
        let body = &bytes[netlink::NLMSG_HDRLEN + 16..];
        let info = netlink::find_attr(body, IFLA_LINKINFO).expect("linkinfo");
        let data = netlink::find_attr(info, IFLA_INFO_DATA).expect("data");
        let peer = netlink::find_attr(data, VETH_INFO_PEER).expect("peer");
        let link = Link::parse(peer).expect("peer ifinfomsg + attrs");
        assert_eq!(link.name, "eth0");
        assert_eq!(netlink::find_attr(&peer[16..], IFLA_NET_NS_FD).and_then(netlink::read_u32), Some(9));
    }
}
