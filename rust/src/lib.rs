//! `pyctr_fast._native`: the thin PyO3 layer over `pyctr-core`.
//!
//! Every call that blocks or does I/O releases the GIL; every failure becomes
//! a `ContainerError` carrying `step`, `errno` and `path`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use pyctr_core::foreground;
use pyctr_core::proto::Overlay;
use pyctr_core::spawn::{Child, InitImage, Launch, Stdio};

mod cgroups;
mod net;
mod supervised;

create_exception!(pyctr_fast._native, ContainerError, PyException);

/// The static init, embedded at build time.
static INIT_BYTES: &[u8] = include_bytes!(env!("PYCTR_INIT_PATH"));

fn init_image() -> Result<&'static InitImage, pyctr_core::Error> {
    static IMAGE: OnceLock<InitImage> = OnceLock::new();
    if let Some(img) = IMAGE.get() {
        return Ok(img);
    }
    let img = InitImage::seal(INIT_BYTES)?;
    Ok(IMAGE.get_or_init(|| img))
}

fn to_py(py: Python<'_>, err: pyctr_core::Error) -> PyErr {
    let pyerr = ContainerError::new_err(err.to_string());
    let value = pyerr.value(py);
    let _ = value.setattr("step", err.step.as_str());
    let _ = value.setattr("errno", err.errno);
    let _ = value.setattr("path", err.path.as_deref());
    pyerr
}

/// A started container process.
#[pyclass(module = "pyctr_fast._native")]
struct Process {
    child: Child,
}

#[pymethods]
impl Process {
    #[getter]
    fn pid(&self) -> i32 {
        self.child.pid
    }

    /// Block until the process exits; Docker's status (code or 128+signal).
    fn wait(&mut self, py: Python<'_>) -> PyResult<i32> {
        let child = &mut self.child;
        py.allow_threads(|| child.wait()).map(|e| e.status()).map_err(|e| to_py(py, e))
    }

    fn poll(&mut self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.child.poll().map(|e| e.map(|x| x.status())).map_err(|e| to_py(py, e))
    }

    fn kill(&self, py: Python<'_>, signal: i32) -> PyResult<()> {
        self.child.kill(signal).map_err(|e| to_py(py, e))
    }
}

/// `{"lower": [...], "upper": ..., "work": ..., "volatile": bool}` → Overlay.
fn overlay_from(d: Option<&Bound<'_, PyDict>>) -> PyResult<Option<Overlay>> {
    let Some(d) = d else { return Ok(None) };
    let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?.ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("overlay needs {k:?}")))
    };
    Ok(Some(Overlay {
        lower: get("lower")?.extract()?,
        upper: get("upper")?.extract()?,
        work: get("work")?.extract()?,
        volatile: match d.get_item("volatile")? {
            Some(v) => v.extract()?,
            None => false,
        },
    }))
}

#[pyfunction]
#[pyo3(signature = (config, bundle, *, stdio=None, overlay=None))]
fn spawn(
    py: Python<'_>,
    config: &str,
    bundle: &str,
    stdio: Option<(i32, i32, i32)>,
    overlay: Option<&Bound<'_, PyDict>>,
) -> PyResult<Process> {
    let stdio = stdio.map_or(Stdio::Inherit, |(a, b, c)| Stdio::Fds([a, b, c]));
    let launch = Launch { stdio, overlay: overlay_from(overlay)?, ..Launch::default() };
    py.allow_threads(|| {
        let init = init_image()?;
        pyctr_core::spawn::spawn(init, config, Path::new(bundle), &launch)
    })
    .map(|child| Process { child })
    .map_err(|e| to_py(py, e))
}

/// The container's stdio for a foreground run: the caller's, or the
/// caller's with /dev/null as stdin (Docker without `-i`).  The returned fd
/// must outlive the spawn.
fn foreground_stdio(stdin: bool) -> (Stdio, Option<OwnedFd>) {
    let devnull: Option<OwnedFd> = if stdin { None } else { std::fs::File::open("/dev/null").map(OwnedFd::from).ok() };
    // With a terminal the pty is stdin and this only stops the relay.
    let stdio = match &devnull {
        Some(null) => Stdio::Fds([null.as_raw_fd(), 1, 2]),
        None => Stdio::Inherit,
    };
    (stdio, devnull)
}

/// Calls a Python `on_start(pid)` with the GIL held; an exception is kept in
/// `raised` (and becomes an error that makes the caller kill the container).
fn call_on_start(
    hook: Option<&Py<PyAny>>,
    raised: &mut Option<PyErr>,
    pid: libc::pid_t,
) -> Result<(), pyctr_core::Error> {
    let Some(hook) = hook else { return Ok(()) };
    Python::with_gil(|py| hook.call1(py, (pid,)).map(|_| ())).map_err(|e| {
        *raised = Some(e);
        pyctr_core::Error::msg("on_start", "the on_start callback raised")
    })
}

#[pyfunction]
#[pyo3(signature = (config, bundle, *, stdin=true, forward_signals=false, overlay=None, on_start=None, cgroup_procs=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    config: &str,
    bundle: &str,
    stdin: bool,
    forward_signals: bool,
    overlay: Option<&Bound<'_, PyDict>>,
    on_start: Option<Py<PyAny>>,
    cgroup_procs: Vec<String>,
) -> PyResult<i32> {
    let overlay = overlay_from(overlay)?;
    let mut raised = None;
    let result = py.allow_threads(|| {
        let init = init_image()?;
        let (stdio, _devnull) = foreground_stdio(stdin);
        let opts = foreground::Options { forward_signals, relay_stdin: stdin };
        let mut hook = |pid| call_on_start(on_start.as_ref(), &mut raised, pid);
        let launch = Launch { stdio, overlay, cgroup_procs, ..Launch::default() };
        foreground::run(init, config, Path::new(bundle), launch, opts, Some(&mut hook))
    });
    if let Some(err) = raised {
        return Err(err);
    }
    result.map(|e| e.status()).map_err(|e| to_py(py, e))
}

#[pyfunction]
#[pyo3(signature = (config, *, cgroup_procs=Vec::new(), stdio=None, stdin=true, forward_signals=false, detach=false))]
fn exec_process(
    py: Python<'_>,
    config: &str,
    cgroup_procs: Vec<String>,
    stdio: Option<(i32, i32, i32)>,
    stdin: bool,
    forward_signals: bool,
    detach: bool,
) -> PyResult<PyObject> {
    let join = |stdio| Launch { stdio, cgroup_procs: cgroup_procs.clone(), join: true, ..Launch::default() };
    let bundle = Path::new("/");
    if detach {
        let launch = join(stdio.map_or(Stdio::Inherit, |(a, b, c)| Stdio::Fds([a, b, c])));
        let child = py
            .allow_threads(|| pyctr_core::spawn::spawn(init_image()?, config, bundle, &launch))
            .map_err(|e| to_py(py, e))?;
        return Ok(Py::new(py, Process { child })?.into_any());
    }
    let result = py.allow_threads(|| {
        let init = init_image()?;
        let (default_stdio, _devnull) = foreground_stdio(stdin);
        let launch = join(stdio.map_or(default_stdio, |(a, b, c)| Stdio::Fds([a, b, c])));
        let opts = foreground::Options { forward_signals, relay_stdin: stdin };
        foreground::run(init, config, bundle, launch, opts, None)
    });
    let status = result.map(|e| e.status()).map_err(|e| to_py(py, e))?;
    Ok(status.into_pyobject(py)?.into_any().unbind())
}

#[pyfunction]
#[pyo3(signature = (root, path, limit=1_048_576))]
fn read_file_in_root(py: Python<'_>, root: &str, path: &str, limit: usize) -> PyResult<Option<Py<PyBytes>>> {
    let data = py.allow_threads(|| -> std::io::Result<Option<Vec<u8>>> {
        let dir = std::fs::File::open(root)?;
        match pyctr_core::sys::openat2_in_root(dir.as_fd(), path, libc::O_RDONLY, 0) {
            Ok(fd) => {
                let mut buf = Vec::new();
                let file = std::fs::File::from(fd);
                std::io::Read::read_to_end(&mut std::io::Read::take(file, limit as u64), &mut buf)?;
                Ok(Some(buf))
            }
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(std::io::Error::from_raw_os_error(e)),
        }
    });
    match data {
        Ok(Some(bytes)) => Ok(Some(PyBytes::new(py, &bytes).unbind())),
        Ok(None) => Ok(None),
        Err(e) => Err(PyErr::from(e)),
    }
}

#[pyfunction]
#[pyo3(signature = (blob, dest, media_type=""))]
fn extract_layer(py: Python<'_>, blob: &str, dest: &str, media_type: &str) -> PyResult<(String, u64)> {
    py.allow_threads(|| pyctr_core::layer::extract_file(Path::new(blob), Path::new(dest), media_type))
        .map(|x| (x.diff_id, x.size))
        .map_err(|e| to_py(py, e))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ContainerError", m.py().get_type::<ContainerError>())?;
    m.add("CAPABILITIES", pyo3::types::PyTuple::new(m.py(), pyctr_core::caps::NAMES)?)?;
    m.add("SECCOMP_ARCHITECTURES", pyo3::types::PyTuple::new(m.py(), pyctr_core::seccomp::ARCHITECTURES)?)?;
    m.add("SECCOMP_ACTIONS", pyo3::types::PyTuple::new(m.py(), pyctr_core::seccomp::ACTIONS)?)?;
    m.add("SECCOMP_OPERATORS", pyo3::types::PyTuple::new(m.py(), pyctr_core::seccomp::OPERATORS)?)?;
    m.add("SECCOMP_FLAGS", pyo3::types::PyTuple::new(m.py(), pyctr_core::seccomp::FLAGS)?)?;
    m.add_class::<Process>()?;
    m.add_function(wrap_pyfunction!(spawn, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(exec_process, m)?)?;
    m.add_function(wrap_pyfunction!(read_file_in_root, m)?)?;
    m.add_function(wrap_pyfunction!(extract_layer, m)?)?;
    supervised::register(m)?;
    cgroups::register(m)?;
    net::register(m)?;
    Ok(())
}
