//! Detached and attached containers: the supervisor binary on disk, starting
//! a supervisor, and waiting for an attached one (`pyctr_core::supervisor`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::prelude::*;

use pyctr_core::supervisor::launch;
use pyctr_core::Error;

use crate::{to_py, INIT_BYTES};

/// 64-bit FNV-1a over 8-byte words (plus the length): cheap, computed once
/// per process, and different for every build that matters.
fn content_hash() -> u64 {
    static HASH: OnceLock<u64> = OnceLock::new();
    *HASH.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ INIT_BYTES.len() as u64;
        let mut words = INIT_BYTES.chunks_exact(8);
        for w in &mut words {
            h = (h ^ u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))).wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        for b in words.remainder() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    })
}

fn io_err(step: &str, path: &Path, e: std::io::Error) -> Error {
    Error::os(step, e.raw_os_error().unwrap_or(libc::EIO)).with_path(path.to_string_lossy())
}

/// `<root>/bin/pyctr-supervise-<hash>`, written (tmp file + rename) if missing.
fn ensure_binary(root: &str) -> Result<PathBuf, Error> {
    let dir = Path::new(root).join("bin");
    let path = dir.join(format!("pyctr-supervise-{:016x}", content_hash()));
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.is_file() && meta.len() == INIT_BYTES.len() as u64 && meta.mode() & 0o111 != 0 {
            return Ok(path);
        }
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| io_err("mkdir", &dir, e))?;
    let tmp = dir.join(format!(
        ".pyctr-supervise-{:016x}.{}.{:?}.tmp",
        content_hash(),
        std::process::id(),
        std::thread::current().id()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(&tmp)?;
        f.write_all(INIT_BYTES)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("write supervisor binary", &path, e));
    }
    Ok(path)
}

#[pyfunction]
pub fn supervisor_binary(py: Python<'_>, root: &str) -> PyResult<String> {
    py.allow_threads(|| ensure_binary(root)).map(|p| p.to_string_lossy().into_owned()).map_err(|e| to_py(py, e))
}

/// A container started under its supervisor.
#[pyclass(module = "pyctr_fast._native")]
pub struct Supervised {
    inner: launch::Supervised,
}

#[pymethods]
impl Supervised {
    /// The container's pid (its init on the host).
    #[getter]
    fn pid(&self) -> i32 {
        self.inner.pid
    }

    #[getter]
    fn supervisor_pid(&self) -> i32 {
        self.inner.supervisor_pid
    }

    /// Attached only: block until the container is done for good.
    #[pyo3(signature = (forward_signals=false))]
    fn wait(&mut self, py: Python<'_>, forward_signals: bool) -> PyResult<i32> {
        let inner = &mut self.inner;
        py.allow_threads(|| inner.wait(forward_signals)).map_err(|e| to_py(py, e))
    }
}

/// Whether the caller's terminal goes raw: attached, the spec asks for a
/// terminal and the container reads input (`-i`), as `docker run -it`.
fn wants_raw_terminal(cdir: &Path) -> bool {
    let read = |name: &str| std::fs::read_to_string(cdir.join(name)).ok();
    let terminal = read("config.json")
        .and_then(|t| pyctr_core::spec::Spec::from_json(&t).ok())
        .and_then(|s| s.process)
        .is_some_and(|p| p.terminal);
    let stdin_open = read("launch.json")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("stdin_open").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    terminal && stdin_open
}

#[pyfunction]
#[pyo3(signature = (root, cdir, *, attach=false))]
pub fn start_supervisor(py: Python<'_>, root: &str, cdir: &str, attach: bool) -> PyResult<Supervised> {
    py.allow_threads(|| {
        let binary = ensure_binary(root)?;
        let cdir = std::path::absolute(cdir).map_err(|e| io_err("start supervisor", Path::new(cdir), e))?;
        let raw = attach && wants_raw_terminal(&cdir);
        launch::start(&binary, &cdir, attach, raw)
    })
    .map(|inner| Supervised { inner })
    .map_err(|e| to_py(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Supervised>()?;
    m.add_function(wrap_pyfunction!(supervisor_binary, m)?)?;
    m.add_function(wrap_pyfunction!(start_supervisor, m)?)?;
    Ok(())
}
