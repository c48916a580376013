//! The two compound operations the engine needs: make sure a network's
//! bridge exists, and plug a container's network namespace into it.

use std::net::Ipv4Addr;

use super::addr::{self, Ipv4Cidr};
use super::link::{self, Link, Mac, Veth};
use super::route::{self, Route};
use super::{Netns, Socket};
use crate::errors::{Error, Result};

/// Make sure the bridge `name` exists and is up, with `cidr` (the gateway
/// address) among its addresses.  Safe to race with itself: a bridge or an
/// address made by a concurrent caller is taken as is.  `mtu` applies only
/// when the bridge is created here.  Refuses (EEXIST) a link of that name
/// that is not a bridge.
pub fn bridge_ensure(name: &str, cidr: Option<Ipv4Cidr>, mtu: Option<u32>) -> Result<Link> {
    link::check_name(name)?;
    let mut sock = Socket::open()?;
    let created = match link::create_bridge(&mut sock, name, mtu, Some(Mac::random()?)) {
        Ok(()) => true,
        Err(e) if e.errno == libc::EEXIST => false,
        Err(e) => return Err(e),
    };
    let result = configure_bridge(&mut sock, name, cidr);
    if result.is_err() && created {
        let _ = link::delete_named(&mut sock, name);
    }
    result
}

fn configure_bridge(sock: &mut Socket, name: &str, cidr: Option<Ipv4Cidr>) -> Result<Link> {
    let found = link::get(sock, name)?.ok_or_else(|| Error::os("find bridge", libc::ENODEV).with_path(name))?;
    if found.kind.as_deref() != Some("bridge") {
        let what = found.kind.as_deref().unwrap_or("device").to_owned();
        return Err(Error::os("ensure bridge", libc::EEXIST)
            .with_path(name)
            .with_detail(format!("a {what} of that name exists and is not a bridge")));
    }
    if let Some(cidr) = cidr {
        match addr::add(sock, found.index, cidr) {
            Err(e) if e.errno != libc::EEXIST => return Err(e.with_path(format!("{cidr} on {name}"))),
            _ => {}
        }
    }
    link::set_up(sock, found.index, true).map_err(|e| e.with_path(name))?;
    Ok(Link { flags: found.flags | link::IFF_UP, ..found })
}

/// Plug a network namespace into a bridge.
#[derive(Debug, Clone)]
pub struct Attach<'a> {
    pub bridge: &'a str,
    /// The host end's name (`veth` + a part of the container id, say).
    pub host_name: &'a str,
    /// The namespace: `/proc/PID/ns/net`, `/run/netns/NAME`, `/proc/self/fd/N`.
    pub netns: &'a str,
    /// The container end's name in the namespace (`eth0`).
    pub ifname: &'a str,
    pub addr: Option<Ipv4Cidr>,
    /// Default route via this address (on the bridge's subnet).
    pub gateway: Option<Ipv4Addr>,
    /// The container end's MAC (else the kernel's random one).
    pub mac: Option<Mac>,
}

/// The result of [`veth_attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub host: Link,
    /// The container end, as seen inside the namespace.
    pub peer: Link,
}

/// Create a veth pair whose container end is born inside the namespace
/// (named `ifname`, never visible on the host, so it cannot clash with a
/// host link), attach the host end to the bridge and bring it up, then,
/// through a socket opened inside the namespace: `lo` up, the address, the
/// link up and the default route.  Both ends take the bridge's MTU.  On any
/// failure the pair is deleted: nothing is left half-configured.
pub fn veth_attach(req: &Attach<'_>) -> Result<Attached> {
    link::check_name(req.host_name)?;
    link::check_name(req.ifname)?;
    let netns = Netns::open(req.netns)?;
    let mut ns_sock = netns.socket()?;
    let mut sock = Socket::open()?;
    let bridge = link::get(&mut sock, req.bridge)?
        .filter(|l| l.kind.as_deref() == Some("bridge"))
        .ok_or_else(|| Error::os("find bridge", libc::ENODEV).with_path(req.bridge))?;
    let veth = Veth {
        name: req.host_name,
        peer: req.ifname,
        peer_netns: Some(std::os::fd::AsFd::as_fd(&netns)),
        peer_mac: req.mac,
        mtu: Some(bridge.mtu).filter(|m| *m != 0),
    };
    link::create_veth(&mut sock, &veth)?;
    let result = configure(&mut sock, &mut ns_sock, req, &bridge);
    if result.is_err() {
        // Deleting one end deletes the pair, whichever namespace the other is in.
        let _ = link::delete_named(&mut sock, req.host_name);
    }
    result
}

fn configure(sock: &mut Socket, ns: &mut Socket, req: &Attach<'_>, bridge: &Link) -> Result<Attached> {
    let named = |e: Error, name: &str| {
        if e.path.as_deref().is_some_and(|p| p.starts_with("ifindex")) {
            e.with_path(name)
        } else {
            e
        }
    };
    let host = link::index(sock, req.host_name)?;
    link::set_master(sock, host, Some(bridge.index)).map_err(|e| named(e, req.host_name))?;
    link::set_up(sock, host, true).map_err(|e| named(e, req.host_name))?;

    let lo = link::index(ns, "lo")?;
    link::set_up(ns, lo, true).map_err(|e| named(e, "lo"))?;
    let peer = link::index(ns, req.ifname)?;
    if let Some(cidr) = req.addr {
        addr::add(ns, peer, cidr).map_err(|e| e.with_path(format!("{cidr} on {}", req.ifname)))?;
    }
    link::set_up(ns, peer, true).map_err(|e| named(e, req.ifname))?;
    if let Some(gw) = req.gateway {
        route::add(ns, &Route::default_via(gw, Some(peer)))?;
    }
    let host =
        link::get(sock, req.host_name)?.ok_or_else(|| Error::os("find link", libc::ENODEV).with_path(req.host_name))?;
    let peer = link::get(ns, req.ifname)?.ok_or_else(|| Error::os("find link", libc::ENODEV).with_path(req.ifname))?;
    Ok(Attached { host, peer })
}
