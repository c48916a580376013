//! `create` (and `run` = create + start [+ wait + delete]).
//!
//! The state directory is claimed first (`mkdir`), `state.json` says
//! `creating`, the cgroup is made with its limits, then the init is spawned
//! with `exec.fifo`: it sets everything up, reports `CREATED` and blocks on
//! the fifo until `start`.  With hooks, the init stops before pivot_root
//! while prestart and createRuntime run here, then runs createContainer (and
//! after `start`, startContainer) itself.  Any failure undoes all of it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::args::{self, Flag};
use super::bundle::{self, Bundle};
use super::state::{self, Saved};
use super::{absolute, hooks, Fail, Global, Result};
use crate::cgroups::Plan;
use crate::spawn::{self, InitImage, Launch, Stdio};

const CREATE_FLAGS: [Flag; 8] = [
    args::value(&["bundle", "b"]),
    args::value(&["pid-file"]),
    args::value(&["console-socket"]),
    args::switch(&["no-pivot"]),
    args::switch(&["no-new-keyring"]),
    args::value(&["preserve-fds"]),
    args::switch(&["detach", "d"]),
    args::switch(&["keep"]),
];

pub fn create_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &CREATE_FLAGS, true)?;
    let id = p.one_id("create")?;
    create(g, id, &p).map(|_| ())
}

/// `run`: create, start; without `--detach` wait for the init, delete, and
/// exit with its status.
pub fn run_cmd(g: &Global, argv: &[String]) -> Result<i32> {
    let p = args::parse(argv, &CREATE_FLAGS, true)?;
    let id = p.one_id("run")?;
    let detach = p.is_set("detach");
    let pidfd = create(g, id, &p)?;
    if let Err(e) = super::start::start(g, id) {
        let _ = super::delete::delete(g, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let status = wait_exit(&pidfd);
    if !p.is_set("keep") {
        super::delete::delete(g, id, true)?;
    }
    Ok(status)
}

/// Wait for our child behind `pidfd` and return Docker's status for it.
fn wait_exit(pidfd: &OwnedFd) -> i32 {
    use std::os::fd::AsFd;
    match crate::sys::pidfd_wait(pidfd.as_fd(), true) {
        Ok(Some(exit)) => exit.status(),
        _ => 255,
    }
}

/// What is undone if create fails.
struct Undo {
    dir: PathBuf,
    plan: Option<Plan>,
    child: Option<spawn::Child>,
    done: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(libc::SIGKILL);
            let _ = child.wait();
        }
        if let Some(plan) = &self.plan {
            let _ = super::cgroup::remove(plan);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn create(g: &Global, id: &str, p: &args::Parsed) -> Result<OwnedFd> {
    state::check_id(id)?;
    let bundle_dir = absolute(p.get("bundle").unwrap_or("."));
    let bundle = bundle::load(&bundle_dir)?;
    let terminal = bundle.spec.process.as_ref().is_some_and(|p| p.terminal);
    let console = p.get("console-socket");
    if terminal && console.is_none() {
        return Err(Fail::new("cannot allocate tty if the runtime will detach without setting console socket"));
    }
    if !terminal && console.is_some() {
        return Err(Fail::new("cannot use console socket if the runtime will not detach or allocate tty"));
    }
    let mut preserve: u32 = match p.get("preserve-fds") {
        Some(n) => n.parse().map_err(|_| Fail::new(format!("invalid --preserve-fds {n:?}")))?,
        None => 0,
    };
    preserve += listen_fds(&bundle);
    let console =
        console.map(|c| UnixStream::connect(absolute(c)).map_err(|e| Fail::new(format!("console socket {c}: {e}"))));
    let console = console.transpose()?;

    state::ensure_root(g)?;
    let dir = state::make_dir(g, id)?;
    let mut undo = Undo { dir: dir.clone(), plan: None, child: None, done: false };
    let _lock = state::lock(&dir)?;
    let rootfs = spawn::rootfs_path(&bundle.spec, &bundle.dir)?;
    let mut saved = Saved {
        id: id.to_owned(),
        bundle: bundle.dir.to_string_lossy().into_owned(),
        rootfs: rootfs.to_string_lossy().into_owned(),
        created: crate::supervisor::state::now_rfc3339(),
        annotations: bundle.spec.annotations.clone(),
        creating: true,
        pid_ns: bundle.spec.namespace("pid").is_some_and(|ns| ns.path.as_deref().is_none_or(str::is_empty)),
        config: bundle.value.clone(),
        ..Saved::default()
    };
    state::write(&dir, &saved)?;

    let plan = super::cgroup::plan(&bundle.spec, id)?;
    super::cgroup::create(&plan, &bundle.spec, &bundle.value)?;
    undo.plan = Some(plan.clone());
    let fifo = dir.join(state::FIFO);
    make_fifo(&fifo)?;

    let launch = Launch {
        stdio: Stdio::Inherit,
        cgroup_procs: state::procs_files(&plan),
        exec_fifo: Some(fifo),
        preserve_fds: preserve,
        ..Launch::default()
    };
    let image = own_image()?;
    let hooks = CreateHooks::of(&bundle.value)?;
    let mut child = if hooks.any() {
        let mut at_pause = |pid| hooks.run_runtime(&dir, &saved, pid);
        let hooked = spawn::Hooks { init: hooks.init.clone(), at_pause: &mut at_pause };
        spawn::spawn_hooked(&image, &bundle.spec, &bundle.text, &bundle.dir, &launch, Some(hooked))?
    } else {
        spawn::spawn_spec(&image, &bundle.spec, &bundle.text, &bundle.dir, &launch)?
    };
    drop(image);
    let master = child.master.take();
    let pid = child.pid;
    undo.child = Some(child);
    if let (Some(master), Some(sock)) = (master, &console) {
        send_console(sock, &master)?;
    }
    saved.pid = pid;
    saved.pid_start = state::start_time(pid).unwrap_or(0);
    saved.cgroup = Some(plan);
    if let Some(pid_file) = p.get("pid-file") {
        write_pid_file(&absolute(pid_file), pid)?;
    }
    saved.creating = false;
    state::write(&dir, &saved)?;
    undo.done = true;
    let child = undo.child.take().ok_or_else(|| Fail::new("internal: child lost"))?;
    Ok(child.pidfd)
}

/// The create-time hooks of a config: prestart and createRuntime run here
/// (in the runtime's namespaces) while the init waits before pivot_root;
/// createContainer and startContainer are the init's.
struct CreateHooks {
    prestart: Vec<hooks::Hook>,
    create_runtime: Vec<hooks::Hook>,
    init: crate::proto::InitHooks,
}

impl CreateHooks {
    fn of(config: &serde_json::Value) -> Result<CreateHooks> {
        Ok(CreateHooks {
            prestart: hooks::of(config, "prestart")?,
            create_runtime: hooks::of(config, "createRuntime")?,
            init: crate::proto::InitHooks {
                create_container: hooks::of(config, "createContainer")?,
                start_container: hooks::of(config, "startContainer")?,
            },
        })
    }

    /// Whether the init has to stop for hooks at all.
    fn any(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.init.create_container.is_empty()
            && self.init.start_container.is_empty())
    }

    /// At the init's `HOOKS` stop: prestart then createRuntime with the state
    /// (the init's host pid) on stdin.  Returns the states the init's hooks
    /// get: they run in the container's namespaces, so the pid in them is the
    /// init's pid there, as the spec says.  The status every create-time hook
    /// sees is `created`, as crun reports it and the OCI validation suite
    /// (`hooks_stdin`) requires, though `state` says `creating` until
    /// create returns.
    fn run_runtime(&self, dir: &Path, saved: &Saved, pid: i32) -> crate::Result<crate::proto::HookStates> {
        let state_with = |pid, status| {
            let c = state::Container { dir: dir.to_owned(), saved: Saved { pid, ..saved.clone() } };
            c.hook_state(status)
        };
        let state = state_with(pid, "created");
        crate::hooks::run_all("prestart", &self.prestart, &state)?;
        crate::hooks::run_all("createRuntime", &self.create_runtime, &state)?;
        let inner = state::inner_pid(pid).unwrap_or(pid);
        let inner_state = state_with(inner, "created");
        Ok(crate::proto::HookStates { creating: inner_state.clone(), created: inner_state })
    }
}

/// `LISTEN_FDS` (socket activation) passes that many more descriptors: from
/// the runtime's own environment (runc) or, failing that, the process's.
fn listen_fds(bundle: &Bundle) -> u32 {
    if let Some(n) = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    let env = bundle.spec.process.as_ref().map(|p| p.env.as_slice()).unwrap_or_default();
    env.iter().find_map(|e| e.strip_prefix("LISTEN_FDS=")).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// This binary sealed in a memfd: what the container's init runs.
pub fn own_image() -> Result<InitImage> {
    let bytes = std::fs::read("/proc/self/exe").map_err(|e| Fail::new(format!("read own executable: {e}")))?;
    Ok(InitImage::seal(&bytes)?)
}

fn make_fifo(path: &Path) -> Result<()> {
    let fail = |e: nix::errno::Errno| Fail::new(format!("create {}: {}", path.display(), e.desc()));
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(fail)?;
    // mkfifo honours the umask; the init may run as any user: 0622 exactly.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::sys::stat::Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(fail)
}

/// Write the pid file atomically (tmp + rename), as runc.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    state::write_atomic(path, pid.to_string().as_bytes())
}

/// Send the pty master over the console socket (SCM_RIGHTS), the message
/// being the pty's name as runc sends it.
pub fn send_console(sock: &UnixStream, master: &OwnedFd) -> Result<()> {
    let name = pty_name(master).unwrap_or_else(|| "/dev/ptmx".to_owned());
    let fds = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| Fail::new(format!("send the console to the console socket: {}", e.desc())))?;
    Ok(())
}

fn pty_name(master: &OwnedFd) -> Option<String> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int that lives for the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    (rc == 0).then(|| format!("/dev/pts/{n}"))
}
