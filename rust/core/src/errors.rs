//! Structured errors: which step failed, the errno and the path involved.

use std::fmt;

/// A failure while setting up or running a container.
///
/// `step` names the operation (`"pivot_root"`, `"mount /proc"`, `"execve"`),
/// `errno` is the OS error (0 if the failure is not an OS error) and `path` the
/// path that was being worked on, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub step: String,
    pub errno: i32,
    pub path: Option<String>,
    pub detail: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An OS error from the current `errno`.
    pub fn last_os(step: impl Into<String>) -> Self {
        Self::os(step, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub fn os(step: impl Into<String>, errno: i32) -> Self {
        Error { step: step.into(), errno, path: None, detail: None }
    }

    /// A failure that is not an OS error (bad spec, protocol violation, ...).
    pub fn msg(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Error { step: step.into(), errno: 0, path: None, detail: Some(detail.into()) }
    }

    pub fn with_path(mut self, path: impl AsRef<str>) -> Self {
        self.path = Some(path.as_ref().to_owned());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::os("syscall", e as i32)
    }
}

/// Attach a step (and optionally a path) to a `nix` result.
pub trait Context<T> {
    fn step(self, step: &str) -> Result<T>;
    fn step_path(self, step: &str, path: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn step(self, step: &str) -> Result<T> {
        self.map_err(|e| Error::os(step, e as i32))
    }
    fn step_path(self, step: &str, path: &str) -> Result<T> {
        self.map_err(|e| Error::os(step, e as i32).with_path(path))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn step(self, step: &str) -> Result<T> {
        self.map_err(|e| match e.raw_os_error() {
            Some(errno) => Error::os(step, errno),
            None => Error::msg(step, e.to_string()),
        })
    }
    fn step_path(self, step: &str, path: &str) -> Result<T> {
        self.step(step).map_err(|e| e.with_path(path))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step)?;
        if let Some(path) = &self.path {
            write!(f, " {path}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if self.errno != 0 {
            write!(f, ": {}", nix::errno::Errno::from_raw(self.errno).desc())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_step_path_and_errno() {
        let e = Error::os("mount /proc", libc::ENOENT).with_path("/rootfs/proc");
        assert_eq!(e.to_string(), "mount /proc /rootfs/proc: No such file or directory");
    }

    #[test]
    fn display_without_errno_shows_detail_only() {
        let e = Error::msg("spec", "process.args must not be empty");
        assert_eq!(e.to_string(), "spec: process.args must not be empty");
    }
}
