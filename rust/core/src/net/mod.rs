//! Container networking over rtnetlink: bridges, veth pairs, addresses and
//! routes (issue 7's foundation; NAT and port publishing live elsewhere).
//!
//! * [`netlink`]: the wire format and a synchronous request/ack socket, also
//!   openable inside another network namespace ([`netlink::Socket::open_in`]).
//! * [`link`], [`addr`], [`route`]: one request per operation.
//! * [`attach`]: what the engine does per network and per container
//!   (ensure a bridge; plug a container's namespace into it).
//! * [`netns`]: persistent namespace files (made before the container runs).
//! * [`teardown`]: undo a container's endpoint from its `network.json`.
//!
//! Nothing here changes the calling thread's namespaces.

pub mod addr;
pub mod attach;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod route;
pub mod teardown;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use addr::{Addr, Ipv4Cidr};
pub use attach::{bridge_ensure, veth_attach, Attach, Attached};
pub use link::{Link, Mac};
pub use netlink::Socket;

use crate::errors::{Error, Result};

/// An open network namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`,
/// or `/proc/self/fd/N` for a descriptor the caller holds).
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    pub path: String,
}

impl Netns {
    /// Open `path` (not yet checked to be a network namespace: the first
    /// socket opened in it is, with EINVAL for anything else).
    pub fn open(path: &str) -> Result<Netns> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::os("open netns", e.raw_os_error().unwrap_or(libc::EIO)).with_path(path))?;
        Ok(Netns { fd: OwnedFd::from(file), path: path.to_owned() })
    }

    /// A netlink socket inside this namespace.
    pub fn socket(&self) -> Result<Socket> {
        Socket::open_in(self.fd.as_fd()).map_err(|e| if e.path.is_none() { e.with_path(&self.path) } else { e })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A socket in `netns`, or in the caller's namespace for None.
pub fn socket(netns: Option<&str>) -> Result<Socket> {
    match netns {
        Some(path) => Netns::open(path)?.socket(),
        None => Socket::open(),
    }
}

/// Every link in `netns` (None: the caller's namespace).
pub fn links(netns: Option<&str>) -> Result<Vec<Link>> {
    link::list(&mut socket(netns)?)
}

/// Every IPv4 address in `netns` (None: the caller's namespace).
pub fn addrs(netns: Option<&str>) -> Result<Vec<Addr>> {
    addr::list(&mut socket(netns)?)
}

/// Delete the link `name` in `netns` (a veth: both ends); false if absent.
pub fn link_delete(name: &str, netns: Option<&str>) -> Result<bool> {
    link::check_name(name)?;
    link::delete_named(&mut socket(netns)?, name)
}
