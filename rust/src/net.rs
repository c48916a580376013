//! Container networking over rtnetlink (`pyctr_core::net`): bridges, veth
//! pairs into network namespaces, links.  The GIL is released for every
//! netlink exchange; failures are `ContainerError` (step, errno, path).
//!
//! A network namespace is given as a path (`/proc/PID/ns/net`,
//! `/run/netns/NAME`) or as a descriptor the caller holds (an int, opened
//! again through `/proc/self/fd/N`, so the caller keeps ownership).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use pyctr_core::net::{self, Attach, Ipv4Cidr, Link, Mac};

use crate::to_py;

/// `str` (a path) or `int` (a descriptor) naming a network namespace.
#[derive(FromPyObject)]
enum NetnsRef {
    Fd(i32),
    Path(String),
}

impl NetnsRef {
    fn path(self) -> String {
        match self {
            NetnsRef::Fd(fd) => format!("/proc/self/fd/{fd}"),
            NetnsRef::Path(path) => path,
        }
    }
}

fn link_dict<'py>(py: Python<'py>, link: &Link) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", link.index)?;
    d.set_item("name", &link.name)?;
    d.set_item("kind", link.kind.as_deref())?;
    d.set_item("mtu", link.mtu)?;
    d.set_item("up", link.is_up())?;
    d.set_item("master", link.master)?;
    d.set_item("mac", link.mac.map(|m| m.to_string()))?;
    Ok(d)
}

fn parse<T: std::str::FromStr<Err = pyctr_core::Error>>(py: Python<'_>, s: Option<&str>) -> PyResult<Option<T>> {
    s.map(str::parse).transpose().map_err(|e| to_py(py, e))
}

/// Make sure the bridge `name` exists and is up with `addr_cidr` (the
/// gateway, e.g. "10.89.0.1/24") on it; returns its ifindex.
#[pyfunction]
#[pyo3(signature = (name, addr_cidr=None, mtu=None))]
fn net_bridge_ensure(py: Python<'_>, name: &str, addr_cidr: Option<&str>, mtu: Option<u32>) -> PyResult<u32> {
    let cidr: Option<Ipv4Cidr> = parse(py, addr_cidr)?;
    py.allow_threads(|| net::bridge_ensure(name, cidr, mtu)).map(|l| l.index).map_err(|e| to_py(py, e))
}

/// Plug the namespace `netns` into `bridge` through a veth pair
/// (`host_name` on the host, `ifname` inside); see `pyctr_core::net::attach`.
#[pyfunction]
#[pyo3(signature = (bridge, host_name, netns, ifname="eth0", addr_cidr=None, gateway=None, mac=None))]
#[allow(clippy::too_many_arguments)]
fn net_veth_attach<'py>(
    py: Python<'py>,
    bridge: &str,
    host_name: &str,
    netns: NetnsRef,
    ifname: &str,
    addr_cidr: Option<&str>,
    gateway: Option<&str>,
    mac: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let addr: Option<Ipv4Cidr> = parse(py, addr_cidr)?;
    let gateway = gateway
        .map(|g| {
            g.parse().map_err(|_| {
                let err = pyctr_core::Error::os("ipv4 address", libc::EINVAL).with_path(g);
                to_py(py, err.with_detail("expected a.b.c.d"))
            })
        })
        .transpose()?;
    let mac: Option<Mac> = parse(py, mac)?;
    let netns = netns.path();
    let req = Attach { bridge, host_name, netns: &netns, ifname, addr, gateway, mac };
    let done = py.allow_threads(|| net::veth_attach(&req)).map_err(|e| to_py(py, e))?;
    let d = PyDict::new(py);
    d.set_item("host", link_dict(py, &done.host)?)?;
    d.set_item("peer", link_dict(py, &done.peer)?)?;
    Ok(d)
}

/// Delete the link `name` (a veth: both ends); False if there was none.
#[pyfunction]
#[pyo3(signature = (name, netns=None))]
fn net_link_delete(py: Python<'_>, name: &str, netns: Option<NetnsRef>) -> PyResult<bool> {
    let netns = netns.map(NetnsRef::path);
    py.allow_threads(|| net::link_delete(name, netns.as_deref())).map_err(|e| to_py(py, e))
}

/// Every link in `netns` (default: the caller's namespace).
#[pyfunction]
#[pyo3(signature = (netns=None))]
fn net_links<'py>(py: Python<'py>, netns: Option<NetnsRef>) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let netns = netns.map(NetnsRef::path);
    let links = py.allow_threads(|| net::links(netns.as_deref())).map_err(|e| to_py(py, e))?;
    links.iter().map(|l| link_dict(py, l)).collect()
}

/// Every IPv4 address in `netns` as `(ifindex, "a.b.c.d/n")`.
#[pyfunction]
#[pyo3(signature = (netns=None))]
fn net_addrs(py: Python<'_>, netns: Option<NetnsRef>) -> PyResult<Vec<(u32, String)>> {
    let netns = netns.map(NetnsRef::path);
    let addrs = py.allow_threads(|| net::addrs(netns.as_deref())).map_err(|e| to_py(py, e))?;
    Ok(addrs.iter().map(|a| (a.index, a.cidr.to_string())).collect())
}

/// Make a new network namespace bind-mounted onto `path` (which must not
/// exist); see `pyctr_core::net::netns`.
#[pyfunction]
fn net_netns_create(py: Python<'_>, path: &str) -> PyResult<()> {
    py.allow_threads(|| net::netns::create(path)).map_err(|e| to_py(py, e))
}

/// Unmount and unlink a namespace file; False if there was none.
#[pyfunction]
fn net_netns_remove(py: Python<'_>, path: &str) -> PyResult<bool> {
    py.allow_threads(|| net::netns::remove(path)).map_err(|e| to_py(py, e))
}

/// Undo `<cdir>/network.json` (veth, namespace file, lease) and remove it;
/// `lazy`: leave the veth pairs to the kernel, which destroys them with the
/// namespace after this returns (`Links::WithNamespace`).
#[pyfunction]
#[pyo3(signature = (cdir, lazy = false))]
fn net_teardown(py: Python<'_>, cdir: &str, lazy: bool) -> PyResult<()> {
    let links = if lazy { net::teardown::Links::WithNamespace } else { net::teardown::Links::Delete };
    py.allow_threads(|| net::teardown::teardown_dir(std::path::Path::new(cdir), links)).map_err(|e| to_py(py, e))
}

/// Undo one endpoint given as JSON (network.json's shape): a failed start
/// before the record is written, or `network disconnect`.
#[pyfunction]
fn net_teardown_endpoint(py: Python<'_>, endpoint_json: &str) -> PyResult<()> {
    let endpoint: net::teardown::Endpoint = serde_json::from_str(endpoint_json)
        .map_err(|e| to_py(py, pyctr_core::errors::Error::msg("endpoint json", e.to_string())))?;
    py.allow_threads(|| net::teardown::teardown(&endpoint, net::teardown::Links::Delete)).map_err(|e| to_py(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(net_bridge_ensure, m)?)?;
    m.add_function(wrap_pyfunction!(net_veth_attach, m)?)?;
    m.add_function(wrap_pyfunction!(net_link_delete, m)?)?;
    m.add_function(wrap_pyfunction!(net_links, m)?)?;
    m.add_function(wrap_pyfunction!(net_addrs, m)?)?;
    m.add_function(wrap_pyfunction!(net_netns_create, m)?)?;
    m.add_function(wrap_pyfunction!(net_netns_remove, m)?)?;
    m.add_function(wrap_pyfunction!(net_teardown, m)?)?;
    m.add_function(wrap_pyfunction!(net_teardown_endpoint, m)?)?;
    Ok(())
}
