//! pyctr-core: turns an OCI runtime spec into an isolated, running process.
//!
//! The crate is split by concern, after youki's libcontainer and crun's libcrun:
//! the parent side ([`spawn`], [`foreground`]) runs inside the engine's process;
//! the container side ([`init`] and everything it calls: [`namespaces`],
//! [`rootfs`], [`mounts`], [`process`], [`caps`]) runs in `pyctr-init`, a small
//! static binary executed from a sealed memfd, so no host binary ever runs
//! inside a container (CVE-2019-5736).

pub mod caps;
pub mod cgroups;
pub mod errors;
pub mod foreground;
pub mod hooks;
pub mod init;
#[cfg(feature = "layers")]
pub mod layer;
pub mod mounts;
pub mod namespaces;
pub mod net;
pub mod overlay;
pub mod process;
pub mod proto;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod spawn;
pub mod spec;
pub mod supervisor;
pub mod sys;
pub mod trace;

pub use errors::{Error, Result};
