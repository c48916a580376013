//! IPv4 routes in the main table (`RTM_NEWROUTE`/`RTM_DELROUTE`).

use std::net::Ipv4Addr;

use super::addr::Ipv4Cidr;
use super::netlink::{Message, Socket, NLM_F_CREATE, NLM_F_EXCL};
use crate::errors::Result;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_BOOT`: what `ip route add` uses for routes added by hand.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// A unicast route: to `dst` via `gateway` (or directly) out of `oif`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

impl Route {
    /// The default route (`0.0.0.0/0`) via `gateway`.
    pub fn default_via(gateway: Ipv4Addr, oif: Option<u32>) -> Route {
        Route { dst: Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 }, gateway: Some(gateway), oif }
    }

    fn message(&self, kind: u16, flags: u16) -> Message {
        // A route via a gateway has universe scope; a direct one link scope.
        let scope = if self.gateway.is_some() { RT_SCOPE_UNIVERSE } else { RT_SCOPE_LINK };
        let rtmsg = [libc::AF_INET as u8, self.dst.prefix, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST];
        let mut msg = Message::new(kind, flags, &[&rtmsg[..], &[0; 4]].concat());
        if self.dst.prefix > 0 {
            msg.attr(RTA_DST, &self.dst.addr.octets());
        }
        if let Some(gw) = self.gateway {
            msg.attr(RTA_GATEWAY, &gw.octets());
        }
        if let Some(oif) = self.oif {
            msg.attr_u32(RTA_OIF, oif);
        }
        msg
    }
}

fn describe(route: &Route) -> String {
    match route.gateway {
        Some(gw) => format!("{} via {gw}", route.dst),
        None => route.dst.to_string(),
    }
}

/// Add `route` (EEXIST if the table has it; ENETUNREACH if the gateway is
/// not on a connected subnet).
pub fn add(sock: &mut Socket, route: &Route) -> Result<()> {
    sock.request(route.message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL))
        .map(drop)
        .map_err(|f| f.at("add route", &describe(route)))
}

/// Delete `route` (ESRCH if there is no such route).
pub fn delete(sock: &mut Socket, route: &Route) -> Result<()> {
    sock.request(route.message(RTM_DELROUTE, 0)).map(drop).map_err(|f| f.at("delete route", &describe(route)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netlink::{find_attr, read_u32, NLMSG_HDRLEN};

    #[test]
    fn default_route_layout() {
        let route = Route::default_via(Ipv4Addr::new(10, 89, 0, 1), Some(4));
        let bytes = route.message(RTM_NEWROUTE, 0).finish(1).to_vec();
        let payload = &bytes[NLMSG_HDRLEN..];
        assert_eq!(&payload[..8], &[libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, 1]);
        let attrs = &payload[12..];
        assert_eq!(find_attr(attrs, RTA_DST), None, "a /0 has no destination");
        assert_eq!(find_attr(attrs, RTA_GATEWAY), Some(&[10, 89, 0, 1][..]));
        assert_eq!(find_attr(attrs, RTA_OIF).and_then(read_u32), Some(4));
        assert_eq!(describe(&route), "0.0.0.0/0 via 10.89.0.1");
    }

    #[test]
    fn direct_route_has_link_scope_and_destination() {
        let route = Route { dst: "10.1.0.0/16".parse().expect("valid"), gateway: None, oif: Some(2) };
        let bytes = route.message(RTM_NEWROUTE, 0).finish(1).to_vec();
        let payload = &bytes[NLMSG_HDRLEN..];
        assert_eq!(payload[1], 16);
        assert_eq!(payload[6], RT_SCOPE_LINK);
        assert_eq!(find_attr(&payload[12..], RTA_DST), Some(&[10, 1, 0, 0][..]));
    }
}
