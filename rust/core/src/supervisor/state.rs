//! `state.json`: the container's runtime state as the supervisor records it
//! (docs/lifecycle.md), and Docker's time format (RFC 3339, UTC, nanoseconds)
//! without a date-time crate.

use std::path::Path;

use serde::Serialize;

use crate::errors::{Error, Result};

/// Docker's zero time: never started, never finished.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// Length of `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const TIME_LEN: usize = 30;

/// One `state.json`, field names and order as docs/lifecycle.md has them.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(rename = "Status")]
    pub status: &'static str,
    #[serde(rename = "Pid")]
    pub pid: i32,
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "StartedAt")]
    pub started_at: String,
    #[serde(rename = "FinishedAt")]
    pub finished_at: String,
    #[serde(rename = "RestartCount")]
    pub restart_count: u32,
    #[serde(rename = "SupervisorPid")]
    pub supervisor_pid: i32,
    #[serde(rename = "PidStartTime")]
    pub pid_start_time: u64,
}

impl State {
    /// A container that has not started (yet), supervised by this process.
    pub fn created() -> State {
        State {
            status: "created",
            pid: 0,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: NEVER.to_owned(),
            finished_at: NEVER.to_owned(),
            restart_count: 0,
            supervisor_pid: std::process::id() as i32,
            pid_start_time: 0,
        }
    }

    /// The program is running as `pid` (FinishedAt keeps the last run's, as
    /// Docker's does).
    pub fn running(&mut self, pid: i32) {
        self.status = "running";
        self.pid = pid;
        self.pid_start_time = pid_start_time(pid).unwrap_or(0);
        self.started_at = now_rfc3339();
        self.exit_code = 0;
        self.oom_killed = false;
        self.error.clear();
    }

    /// The program ended with Docker's `status`.
    pub fn finished(&mut self, status: i32, oom_killed: bool) {
        self.status = "exited";
        self.pid = 0;
        self.pid_start_time = 0;
        self.exit_code = status;
        self.oom_killed = oom_killed;
        self.finished_at = now_rfc3339();
    }

    /// Replace `<cdir>/state.json` atomically (a sibling written, renamed over).
    pub fn write(&self, cdir: &Path) -> Result<()> {
        let path = cdir.join("state.json");
        let tmp = cdir.join("state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| Error::msg("write state", e.to_string()))?;
        let shown = || path.to_string_lossy().into_owned();
        std::fs::write(&tmp, data)
            .map_err(|e| Error::os("write state", e.raw_os_error().unwrap_or(libc::EIO)).with_path(shown()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::os("write state", e.raw_os_error().unwrap_or(libc::EIO)).with_path(shown()))
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot,
/// which tells a pid from a later process that reuses it.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let data = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&data)
}

fn parse_start_time(stat: &[u8]) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count the
    // fields after its closing parenthesis, which is the last one.
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// CLOCK_REALTIME as (seconds, nanoseconds) since the epoch.
pub fn now() -> (i64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills a timespec that lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// The current time as Docker prints it.
pub fn now_rfc3339() -> String {
    let (secs, nanos) = now();
    let mut buf = [0u8; TIME_LEN];
    format_time(&mut buf, secs, nanos).to_owned()
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Format `secs.nanos` (UTC) as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` into `buf`
/// without allocating (log records take one per read).
pub fn format_time(buf: &mut [u8; TIME_LEN], secs: i64, nanos: u32) -> &str {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let year = year.clamp(0, 9999) as u32;
    let fields: [(usize, u32, usize); 7] = [
        (0, year, 4),
        (5, month, 2),
        (8, day, 2),
        (11, (sod / 3600) as u32, 2),
        (14, (sod / 60 % 60) as u32, 2),
        (17, (sod % 60) as u32, 2),
        (20, nanos.min(999_999_999), 9),
    ];
    for (at, mut value, width) in fields {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (29, b'Z')] {
        buf[at] = c;
    }
    // Only ASCII digits and separators were written.
    std::str::from_utf8(buf).unwrap_or(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64, nanos: u32) -> String {
        let mut buf = [0u8; TIME_LEN];
        format_time(&mut buf, secs, nanos).to_owned()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(fmt(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(fmt(4_102_444_799, 999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // days_from_civil, the inverse, checks civil_from_days day by day.
        let days_from_civil = |y: i64, m: u32, d: u32| -> i64 {
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let mp = i64::from((m + 9) % 12);
            let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        };
        for days in -146_097..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn start_time_is_field_22_even_with_parens_in_the_name() {
        let stat = b"42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time(b"42 (x"), None);
        assert!(pid_start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn state_serializes_with_docker_names() {
        let mut s = State::created();
        s.running(std::process::id() as i32);
        let v: serde_json::Value = serde_json::to_value(&s).expect("serialize");
        assert_eq!(v["Status"], "running");
        assert_eq!(v["OOMKilled"], false);
        assert_eq!(v["FinishedAt"], NEVER);
        assert!(v["PidStartTime"].as_u64().is_some_and(|t| t > 0));
        assert_eq!(v["StartedAt"].as_str().map(str::len), Some(TIME_LEN));
    }
}
