//! IPv4 addresses on links (`RTM_*ADDR`) and the `a.b.c.d/n` notation.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::netlink::{self, Message, Socket, NLM_F_CREATE, NLM_F_EXCL};
use crate::errors::{Error, Result};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

/// An IPv4 address with its prefix length (`10.89.0.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The subnet's broadcast address; None for /31 and /32, which have none.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.prefix < 31).then(|| Ipv4Addr::from(u32::from(self.addr) | !self.mask()))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Ipv4Cidr> {
        let bad = || Error::os("ipv4 address", libc::EINVAL).with_path(s).with_detail("expected a.b.c.d/prefix");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub cidr: Ipv4Cidr,
}

/// `struct ifaddrmsg` (scope universe).
fn ifaddrmsg(index: u32, prefix: u8) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[0] = libc::AF_INET as u8;
    out[1] = prefix;
    out[4..8].copy_from_slice(&index.to_ne_bytes());
    out
}

fn request(kind: u16, flags: u16, index: u32, cidr: Ipv4Cidr) -> Message {
    let mut msg = Message::new(kind, flags, &ifaddrmsg(index, cidr.prefix));
    msg.attr(IFA_LOCAL, &cidr.addr.octets()).attr(IFA_ADDRESS, &cidr.addr.octets());
    if let Some(brd) = cidr.broadcast() {
        msg.attr(IFA_BROADCAST, &brd.octets());
    }
    msg
}

/// Add `cidr` to link `index` (with its broadcast address; EEXIST if the
/// link has it already).
pub fn add(sock: &mut Socket, index: u32, cidr: Ipv4Cidr) -> Result<()> {
    sock.request(request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, cidr))
        .map(drop)
        .map_err(|f| f.at("add address", &format!("{cidr} on ifindex {index}")))
}

/// Remove `cidr` from link `index` (EADDRNOTAVAIL if it is not there).
pub fn delete(sock: &mut Socket, index: u32, cidr: Ipv4Cidr) -> Result<()> {
    sock.request(request(RTM_DELADDR, 0, index, cidr))
        .map(drop)
        .map_err(|f| f.at("delete address", &format!("{cidr} on ifindex {index}")))
}

/// Decode an `RTM_NEWADDR` payload for IPv4.
pub fn parse(payload: &[u8]) -> Option<Addr> {
    let head = payload.get(..8)?;
    if i32::from(head[0]) != libc::AF_INET {
        return None;
    }
    let index = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    let attrs = &payload[8..];
    let ip = netlink::find_attr(attrs, IFA_LOCAL).or_else(|| netlink::find_attr(attrs, IFA_ADDRESS))?;
    let octets = <[u8; 4]>::try_from(ip).ok()?;
    Some(Addr { index, cidr: Ipv4Cidr { addr: Ipv4Addr::from(octets), prefix: head[1] } })
}

/// Every IPv4 address in the socket's namespace.
pub fn list(sock: &mut Socket) -> Result<Vec<Addr>> {
    let msg = Message::new(RTM_GETADDR, 0, &ifaddrmsg(0, 0));
    let replies = sock.dump(msg).map_err(|f| f.at("list addresses", ""))?;
    Ok(replies.iter().filter_map(|p| parse(p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_display_and_arithmetic() {
        let c: Ipv4Cidr = "10.89.0.1/24".parse().expect("valid");
        assert_eq!(c.to_string(), "10.89.0.1/24");
        assert_eq!(c.mask(), 0xffff_ff00);
        assert_eq!(c.broadcast(), Some(Ipv4Addr::new(10, 89, 0, 255)));
        assert!(c.contains(Ipv4Addr::new(10, 89, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 89, 1, 1)));
        let host: Ipv4Cidr = "1.2.3.4/32".parse().expect("valid");
        assert_eq!(host.broadcast(), None);
        let all: Ipv4Cidr = "0.0.0.0/0".parse().expect("valid");
        assert_eq!(all.mask(), 0);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        for bad in ["10.0.0.1", "10.0.0.1/33", "10.0.0/24", "x/1", "10.0.0.1/-1"] {
            let err = bad.parse::<Ipv4Cidr>().expect_err(bad);
            assert_eq!(err.errno, libc::EINVAL);
        }
    }

    #[test]
    fn request_and_reply_layout() {
        let cidr: Ipv4Cidr = "192.168.7.2/30".parse().expect("valid");
        let mut msg = request(RTM_NEWADDR, 0, 5, cidr);
        let bytes = msg.finish(1).to_vec();
        let payload = &bytes[netlink::NLMSG_HDRLEN..];
        assert_eq!(&payload[..2], &[libc::AF_INET as u8, 30]);
        assert_eq!(netlink::find_attr(&payload[8..], IFA_BROADCAST), Some(&[192, 168, 7, 3][..]));
        // The kernel's reply has the same shape: parse our own request.
        assert_eq!(parse(payload), Some(Addr { index: 5, cidr }));
        let mut v6 = payload.to_vec();
        v6[0] = libc::AF_INET6 as u8;
        assert_eq!(parse(&v6), None);
    }
}
