//! The hooks of a config.json (`hooks.<kind>`) and running the runtime's own
//! (prestart, createRuntime, poststart, poststop) in the runtime's
//! namespaces; the init runs createContainer and startContainer itself
//! ([`crate::hooks`]).

pub use crate::hooks::Hook;

use super::{Fail, Result};

/// The hooks of `kind` in a config (`hooks.<kind>`), in order.
pub fn of(config: &serde_json::Value, kind: &str) -> Result<Vec<Hook>> {
    match config.pointer(&format!("/hooks/{kind}")) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Fail::new(format!("config.json: hooks.{kind}: {e}"))),
    }
}

/// Run every hook of `kind` with `state` on stdin; the first failure is
/// returned.
pub fn run_all(config: &serde_json::Value, kind: &str, state: &str) -> Result<()> {
    Ok(crate::hooks::run_all(kind, &of(config, kind)?, state)?)
}
