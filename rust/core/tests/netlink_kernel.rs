//! The netlink primitives against the real kernel, entirely inside network
//! namespaces these tests create for themselves: a thread unshares a new
//! namespace and hands back a descriptor of it; the namespace (and every
//! link in it) disappears when the descriptor is dropped, even if a test
//! fails half-way.  The host's namespace is never touched.  Needs root
//! (skipped otherwise).

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{unshare, CloneFlags};
use pyctr_core::net::{addr, link, route, Ipv4Cidr, Mac, Socket};

fn root() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        eprintln!("skipped: needs root");
    }
    is_root
}

/// A fresh network namespace, held by a descriptor.
fn private_netns() -> OwnedFd {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare net");
        OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open own netns"))
    })
    .join()
    .expect("netns thread")
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().expect("cidr")
}

#[test]
fn bridge_veth_move_rename_mac_address_route() {
    if !root() {
        return;
    }
    let host_ns = private_netns();
    let ctr_ns = private_netns();
    let mut host = Socket::open_in(host_ns.as_fd()).expect("socket in host ns");
    let mut ctr = Socket::open_in(ctr_ns.as_fd()).expect("socket in ctr ns");

    link::create_bridge(&mut host, "br-test", Some(1400), None).expect("bridge");
    let err = link::create_bridge(&mut host, "br-test", None, None).expect_err("duplicate");
    assert_eq!((err.step.as_str(), err.errno, err.path.as_deref()), ("create bridge", libc::EEXIST, Some("br-test")));
    let br = link::get(&mut host, "br-test").expect("get").expect("exists");
    assert_eq!((br.kind.as_deref(), br.mtu), (Some("bridge"), 1400));
    addr::add(&mut host, br.index, cidr("10.250.0.1/24")).expect("bridge address");
    link::set_up(&mut host, br.index, true).expect("bridge up");

    // Both ends on the "host", then one moved, renamed and re-addressed.
    let veth = link::Veth { name: "vh0", peer: "vtmp0", mtu: Some(1400), ..Default::default() };
    link::create_veth(&mut host, &veth).expect("veth");
    let peer = link::index(&mut host, "vtmp0").expect("peer index");
    link::set_netns(&mut host, peer, ctr_ns.as_fd()).expect("move peer");
    assert!(link::get(&mut host, "vtmp0").expect("get").is_none(), "gone from the host");
    let peer = link::index(&mut ctr, "vtmp0").expect("peer in ctr ns");
    link::rename(&mut ctr, peer, "eth0").expect("rename");
    let mac: Mac = "02:42:0a:fa:00:02".parse().expect("mac");
    link::set_mac(&mut ctr, peer, mac).expect("mac");
    addr::add(&mut ctr, peer, cidr("10.250.0.2/24")).expect("address");
    link::set_up(&mut ctr, peer, true).expect("eth0 up");
    route::add(&mut ctr, &route::Route::default_via(Ipv4Addr::new(10, 250, 0, 1), Some(peer))).expect("route");
    let dup = route::add(&mut ctr, &route::Route::default_via(Ipv4Addr::new(10, 250, 0, 1), Some(peer)));
    assert_eq!(dup.expect_err("duplicate route").errno, libc::EEXIST);

    let vh = link::index(&mut host, "vh0").expect("host end");
    link::set_master(&mut host, vh, Some(br.index)).expect("attach");
    link::set_up(&mut host, vh, true).expect("host end up");

    let eth0 = link::get(&mut ctr, "eth0").expect("get").expect("eth0");
    assert_eq!((eth0.mac, eth0.mtu, eth0.is_up()), (Some(mac), 1400, true));
    let vh0 = link::get(&mut host, "vh0").expect("get").expect("vh0");
    assert_eq!((vh0.master, vh0.kind.as_deref()), (Some(br.index), Some("veth")));
    let addrs = addr::list(&mut ctr).expect("addresses");
    assert!(addrs.contains(&addr::Addr { index: eth0.index, cidr: cidr("10.250.0.2/24") }), "{addrs:?}");
    let names: Vec<String> = link::list(&mut ctr).expect("list").into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "eth0"]);

    addr::delete(&mut ctr, eth0.index, cidr("10.250.0.2/24")).expect("delete address");
    assert!(addr::list(&mut ctr).expect("addresses").iter().all(|a| a.index != eth0.index));
    link::set_master(&mut host, vh, None).expect("detach");
    assert_eq!(link::get(&mut host, "vh0").expect("get").expect("vh0").master, None);
    // Deleting the host end takes the peer with it.
    assert!(link::delete_named(&mut host, "vh0").expect("delete"));
    assert!(!link::delete_named(&mut host, "vh0").expect("delete again"));
    assert!(link::get(&mut ctr, "eth0").expect("get").is_none());
    link::delete(&mut host, br.index).expect("delete bridge");
    assert_eq!(link::list(&mut host).expect("list").len(), 1, "only lo left");
}

#[test]
fn errors_carry_step_errno_and_kernel_message() {
    if !root() {
        return;
    }
    let ns = private_netns();
    let mut sock = Socket::open_in(ns.as_fd()).expect("socket");
    let err = link::index(&mut sock, "nope0").expect_err("missing");
    assert_eq!((err.step.as_str(), err.errno, err.path.as_deref()), ("find link", libc::ENODEV, Some("nope0")));
    let err = link::set_up(&mut sock, 999, true).expect_err("no such index");
    assert_eq!((err.step.as_str(), err.errno), ("set link up", libc::ENODEV));
    let err = link::create_bridge(&mut sock, "much-too-long-name", None, None).expect_err("long");
    assert_eq!((err.step.as_str(), err.errno), ("interface name", libc::EINVAL));
    // A gateway off every connected subnet: the kernel explains.
    let err =
        route::add(&mut sock, &route::Route::default_via(Ipv4Addr::new(10, 9, 9, 9), None)).expect_err("unreachable");
    assert_eq!(err.step, "add route");
    assert_eq!(err.errno, libc::ENETUNREACH);
    // A file that is not a network namespace.
    let file = std::fs::File::open("/proc/self/ns/uts").expect("uts ns");
    let err = Socket::open_in(file.as_fd()).expect_err("not a netns");
    assert_eq!((err.step.as_str(), err.errno), ("setns net", libc::EINVAL));
}
