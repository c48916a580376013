//! Start-path timestamps, recorded only when asked (`PYCTR_TRACE=1`), so a
//! regression on the start path can be located phase by phase.
//!
//! Marks are CLOCK_MONOTONIC nanoseconds, comparable across the engine and
//! the init.  They are printed relative to `PYCTR_TRACE_T0` (set by the
//! Python front end to its own start) or else to the first mark.

use serde::{Deserialize, Serialize};

/// Named timestamps; a no-op unless enabled.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Marks {
    pub enabled: bool,
    pub marks: Vec<(String, u64)>,
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills a timespec that lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the caller asked for a trace.
pub fn requested() -> bool {
    std::env::var_os("PYCTR_TRACE").is_some_and(|v| !v.is_empty() && v != "0")
}

impl Marks {
    pub fn new(enabled: bool) -> Marks {
        Marks { enabled, marks: Vec::new() }
    }

    pub fn mark(&mut self, name: &str) {
        if self.enabled {
            self.marks.push((name.to_owned(), now_ns()));
        }
    }

    pub fn extend(&mut self, other: Marks) {
        self.marks.extend(other.marks);
    }

    /// Print one line per mark on stderr: time since T0 and since the
    /// previous mark.
    pub fn report(&self) {
        if !self.enabled || self.marks.is_empty() {
            return;
        }
        let t0 = std::env::var("PYCTR_TRACE_T0").ok().and_then(|v| v.parse().ok()).unwrap_or(self.marks[0].1);
        let mut prev = t0;
        let mut out = String::new();
        for (name, t) in &self.marks {
            let at = t.saturating_sub(t0) as f64 / 1e6;
            let step = t.saturating_sub(prev) as f64 / 1e6;
            out.push_str(&format!("pyctr-trace {at:9.3} ms  (+{step:7.3})  {name}\n"));
            prev = *t;
        }
        eprint!("{out}");
    }
}
