//! The parent side of starting a container: clone into new namespaces,
//! exec `pyctr-init` from a sealed memfd, write id maps, ship the spec, and
//! wait for the init to report success or a structured error.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::errors::{Error, Result};
use crate::proto::{self, Overlay, Request};
use crate::spec::{IdMapping, Spec};
use crate::sys::{self, Exit, Forked};

/// The init binary, sealed in a memfd so that nothing can modify it and no
/// host file is ever executed inside a container.
pub struct InitImage {
    fd: OwnedFd,
}

impl InitImage {
    /// Copy `bytes` (a static ELF) into a sealed, executable memfd.
    pub fn seal(bytes: &[u8]) -> Result<InitImage> {
        const MFD_EXEC: libc::c_uint = 0x10;
        const F_SEAL_EXEC: libc::c_int = 0x20;
        let name = c"pyctr-init";
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a valid name; retried without MFD_EXEC on
        // kernels older than 6.3 that reject it.
        let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
        if fd < 0 {
            // SAFETY: as above.
            fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
        }
        if fd < 0 {
            return Err(Error::last_os("memfd_create"));
        }
        // SAFETY: fresh descriptor, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, bytes)
            .map_err(|e| Error::os("write init image", e.raw_os_error().unwrap_or(0)))?;
        let fd = OwnedFd::from(file);
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our own descriptor with integer arguments.
        unsafe {
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals | F_SEAL_EXEC) != 0
                && libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0
            {
                return Err(Error::last_os("seal init image"));
            }
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SEAL) != 0 {
                return Err(Error::last_os("seal init image"));
            }
        }
        Ok(InitImage { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where the container's stdio comes from.
#[derive(Clone, Copy, Debug)]
pub enum Stdio {
    /// The caller's 0, 1, 2.
    Inherit,
    /// These host descriptors become 0, 1, 2.
    Fds([RawFd; 3]),
}

/// How to launch: everything besides the spec.
#[derive(Clone, Debug)]
pub struct Launch {
    pub stdio: Stdio,
    pub overlay: Option<Overlay>,
    pub console_size: Option<(u16, u16)>,
    /// The `cgroup.procs` files of the cgroups the child joins before the
    /// init execs, so the program starts inside them.  A cgroup v2 one is
    /// joined by `clone3(CLONE_INTO_CGROUP)`: the child is born in it.  In a
    /// cgroup v1 hierarchy the child moves itself by writing `0` to the
    /// group's `tasks` file before it executes the init: a single thread
    /// moving itself skips the kernel's global threadgroup lock, whose
    /// write side (any `cgroup.procs` write of a pid) waits out an RCU grace
    /// period, 5-15 ms on an idle host.  Other files are written with the
    /// child's pid by the parent before the init gets its request.
    pub cgroup_procs: Vec<String>,
    /// Join a running container (`exec`): every namespace of the spec is
    /// given by path, and the init sets up the process only (no rootfs).
    pub join: bool,
    /// `pyctr-fast-runtime create`: the init stops before the program lookup
    /// and waits on this fifo (see [`proto::Request::exec_fifo`]);
    /// [`spawn_spec`] returns once it is waiting.  `process` may be absent.
    pub exec_fifo: Option<PathBuf>,
    /// Descriptors 3 .. 3+N are passed on to the program.
    pub preserve_fds: u32,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            stdio: Stdio::Inherit,
            overlay: None,
            console_size: None,
            cgroup_procs: Vec::new(),
            join: false,
            exec_fifo: None,
            preserve_fds: 0,
        }
    }
}

/// A started container process.
pub struct Child {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    /// The pty master, when `process.terminal` is set.
    pub master: Option<OwnedFd>,
    exit: Option<Exit>,
}

impl Child {
    /// Wait for the process (blocking) and return how it ended.
    pub fn wait(&mut self) -> Result<Exit> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        let exit = sys::pidfd_wait(self.pidfd.as_fd(), true)
            .map_err(|e| Error::os("wait", e))?
            .ok_or_else(|| Error::msg("wait", "process still running"))?;
        self.exit = Some(exit);
        Ok(exit)
    }

    /// Non-blocking [`Child::wait`].
    pub fn poll(&mut self) -> Result<Option<Exit>> {
        if self.exit.is_none() {
            self.exit = sys::pidfd_wait(self.pidfd.as_fd(), false).map_err(|e| Error::os("wait", e))?;
        }
        Ok(self.exit)
    }

    pub fn kill(&self, sig: i32) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        match sys::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Ok(()) | Err(libc::ESRCH) => Ok(()),
            Err(e) => Err(Error::os("kill", e)),
        }
    }
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

fn write_id_maps(pid: libc::pid_t, spec: &Spec) -> Result<()> {
    let linux = spec.linux();
    for (file, maps) in [("uid_map", &linux.uid_mappings), ("gid_map", &linux.gid_mappings)] {
        let path = format!("/proc/{pid}/{file}");
        let text = if maps.is_empty() { "0 0 4294967295\n".to_owned() } else { map_text(maps) };
        sys::write_file(&path, text.as_bytes()).map_err(|e| Error::os(format!("write {file}"), e).with_path(&path))?;
    }
    Ok(())
}

/// Join the pid namespace at `path` for this thread's children only, and
/// return a guard that restores the thread's own afterwards.
struct PidNsGuard {
    own: OwnedFd,
}

impl PidNsGuard {
    fn enter(path: &str) -> Result<PidNsGuard> {
        let own = std::fs::File::open("/proc/thread-self/ns/pid_for_children")
            .or_else(|_| std::fs::File::open("/proc/thread-self/ns/pid"))
            .map_err(|e| Error::os("open own pid namespace", e.raw_os_error().unwrap_or(0)))?;
        let target = std::fs::File::open(path)
            .map_err(|e| Error::os("setns pid", e.raw_os_error().unwrap_or(0)).with_path(path))?;
        nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::os("setns pid", e as i32).with_path(path))?;
        Ok(PidNsGuard { own: own.into() })
    }
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        let _ = nix::sched::setns(self.own.as_fd(), CloneFlags::CLONE_NEWPID);
    }
}

/// Resolve the rootfs: `root.path` relative to `bundle`.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root.as_ref().map(|r| r.path.as_str()).unwrap_or_default();
    let path = if root.starts_with('/') { PathBuf::from(root) } else { bundle.join(root) };
    let meta = std::fs::metadata(&path)
        .map_err(|e| Error::os("rootfs", e.raw_os_error().unwrap_or(0)).with_path(path.to_string_lossy()))?;
    if !meta.is_dir() {
        return Err(Error::os("rootfs", libc::ENOTDIR).with_path(path.to_string_lossy()));
    }
    Ok(path)
}

/// The first of `cgroup_procs` that is a cgroup v2 `cgroup.procs`: its
/// directory (an `O_PATH` descriptor for `clone3`'s `CLONE_INTO_CGROUP`) and
/// its index.  None when there is none or it cannot be opened (the write
/// then reports the problem).
fn cgroup2_dir(cgroup_procs: &[String]) -> Option<(OwnedFd, usize)> {
    cgroup_procs.iter().enumerate().find_map(|(i, procs)| {
        let path = Path::new(procs);
        if path.file_name()? != "cgroup.procs" {
            return None;
        }
        let dir = nix::fcntl::open(
            path.parent()?,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let fs = nix::sys::statfs::fstatfs(&dir).ok()?;
        (fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then_some((dir, i))
    })
}

/// Start the container described by `config` (config.json text).
///
/// Returns once the user program is being exec'd (with
/// [`Launch::exec_fifo`]: once the init waits on the fifo).  On any error the
/// child is killed and reaped: all of its mounts and namespaces go with it.
pub fn spawn(init: &InitImage, config: &str, bundle: &Path, launch: &Launch) -> Result<Child> {
    spawn_spec(init, &Spec::from_json(config)?, config, bundle, launch)
}

/// [`spawn`] for a caller that has parsed `config` into `spec` already.
pub fn spawn_spec(init: &InitImage, spec: &Spec, config: &str, bundle: &Path, launch: &Launch) -> Result<Child> {
    spawn_hooked(init, spec, config, bundle, launch, None)
}

/// The OCI hooks of a `pyctr-fast-runtime create` (see [`spawn_hooked`]).
pub struct Hooks<'a> {
    /// The hooks the init runs itself (createContainer, startContainer).
    pub init: proto::InitHooks,
    /// Called with the init's pid when it reports `HOOKS` (its namespaces
    /// and mounts are in place, pivot_root comes next): runs the runtime's
    /// prestart and createRuntime hooks and returns the states the init's
    /// hooks get.  An error aborts the spawn (the init is killed).
    pub at_pause: &'a mut dyn FnMut(libc::pid_t) -> Result<proto::HookStates>,
}

/// [`spawn_spec`] with hooks: the init stops once before pivot_root for
/// `hooks.at_pause`, then runs `hooks.init` itself.  Without hooks there is
/// no stop (the engine's path).
pub fn spawn_hooked(
    init: &InitImage,
    spec: &Spec,
    config: &str,
    bundle: &Path,
    launch: &Launch,
    hooks: Option<Hooks<'_>>,
) -> Result<Child> {
    if hooks.is_some() && launch.exec_fifo.is_none() {
        // startContainer runs between `start` and the program: only a
        // created container has that point.
        return Err(Error::msg("spawn", "hooks need an exec fifo"));
    }
    let mut marks = crate::trace::Marks::new(crate::trace::requested());
    marks.mark("engine: spawn");
    let fifo = match &launch.exec_fifo {
        Some(path) => {
            spec.validate_for_create()?;
            let fd = nix::fcntl::open(
                path.as_path(),
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::os("open exec fifo", e as i32).with_path(path.to_string_lossy()))?;
            Some(fd)
        }
        None => {
            spec.validate_for_run()?;
            None
        }
    };
    let rootfs = if launch.join {
        // exec: the container's root is already in place in its mount
        // namespace; nothing of the host's view of it is used.
        crate::namespaces::check_join(spec)?;
        if launch.overlay.is_some() {
            return Err(Error::msg("spec", "exec: an overlay cannot be mounted into a running container"));
        }
        PathBuf::new()
    } else {
        rootfs_path(spec, bundle)?
    };
    if let Some(ov) = &launch.overlay {
        if ov.lower.is_empty() {
            return Err(Error::msg("overlay", "no lower layers"));
        }
    }
    let flags = crate::namespaces::clone_flags(spec)?;
    let new_user = flags.contains(CloneFlags::CLONE_NEWUSER);
    let request = serde_json::to_vec(&Request {
        config: config.to_owned(),
        rootfs: rootfs.to_string_lossy().into_owned(),
        bundle: bundle.to_string_lossy().into_owned(),
        overlay: launch.overlay.clone(),
        console_size: launch.console_size,
        trace: marks.enabled,
        join: launch.join,
        exec_fifo: fifo.is_some(),
        preserve_fds: launch.preserve_fds,
        hooks: hooks.as_ref().map(|h| h.init.clone()),
    })
    .map_err(|e| Error::msg("spawn", e.to_string()))?;

    let (parent_sock, child_sock) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| Error::os("socketpair", e as i32))?;
    // Everything the child needs after fork is prepared now: it may not
    // allocate (the caller is multi-threaded).
    let arg0 = c"pyctr-init";
    let arg1 = CString::new(child_sock.as_raw_fd().to_string()).map_err(|_| Error::os("spawn", libc::EINVAL))?;
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let mut exec_error = proto::encode_error(&Error::os("exec pyctr-init", 0));
    let mut userns_error = proto::encode_error(&Error::os("become root in the user namespace", 0));
    let stdio_fds = match launch.stdio {
        Stdio::Inherit => None,
        Stdio::Fds(fds) => Some(fds),
    };

    let pid_guard = match spec.namespace("pid").and_then(|ns| ns.path.as_deref()).filter(|p| !p.is_empty()) {
        Some(path) => Some(PidNsGuard::enter(path)?),
        None => None,
    };
    let mut into_cgroup = cgroup2_dir(&launch.cgroup_procs);
    let born_in = into_cgroup.as_ref().map(|(_, i)| *i);
    let mut self_join = SelfJoin::prepare(&launch.cgroup_procs, born_in)?;
    // SAFETY: the child branch below only makes async-signal-safe syscalls
    // on memory prepared before the fork, then execs or exits.
    let fork = |cgroup: Option<RawFd>| unsafe { sys::clone3_fork(flags.bits() as u64, cgroup) };
    let mut forked = fork(into_cgroup.as_ref().map(|(dir, _)| dir.as_raw_fd()));
    if forked.is_err() && into_cgroup.is_some() {
        // Refused (Linux before 5.7, a group that takes no processes...):
        // fork as usual and let the cgroup.procs write say why.
        into_cgroup = None;
        forked = fork(None);
    }
    drop(pid_guard);
    let (pid, pidfd) = match forked {
        Err(e) => return Err(Error::os("clone", e).with_detail(format!("namespaces {flags:?}"))),
        Ok(Forked::Child) => {
            // SAFETY: async-signal-safe calls only; see above.
            unsafe {
                let sock = child_sock.as_raw_fd();
                if launch.join {
                    // Until execveat replaces it, this copy of the engine sits
                    // in the running container's pid namespace: keep its
                    // memory, /proc/<pid>/exe and descriptors out of reach of
                    // the container's processes.
                    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                }
                // Still the host's uid (even in a new user namespace, until
                // the id maps are written): allowed to move itself.
                self_join.join_in_child(sock);
                if new_user {
                    child_become_root(sock, &mut userns_error);
                }
                child_exec_init(init.fd().as_raw_fd(), sock, stdio_fds, &argv, &envp, &mut exec_error)
            }
        }
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
    };
    drop(child_sock);
    marks.mark("engine: clone3 returned");
    let joined = into_cgroup.map(|(_, i)| i);
    let to_write: Vec<&str> = launch
        .cgroup_procs
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != joined && !self_join.covers(*i))
        .map(|(_, p)| p.as_str())
        .collect();
    let mut child = Child { pid, pidfd, master: None, exit: None };
    let cgroups = Cgroups { write: &to_write, born_in: joined.is_some(), moved_itself: self_join.len() };
    let request =
        Outgoing { record: &request, fifo: fifo.as_ref().map(|f| f.as_fd()), at_pause: hooks.map(|h| h.at_pause) };
    match handshake(&mut child, parent_sock.as_fd(), request, spec, new_user, cgroups, &mut marks) {
        Ok(init_marks) => {
            marks.marks.extend(init_marks);
            marks.mark(if fifo.is_some() {
                "engine: created (init waits on the fifo)"
            } else {
                "engine: program exec'd (socket closed)"
            });
            marks.report();
            Ok(child)
        }
        Err(e) => {
            let _ = child.kill(libc::SIGKILL);
            let _ = child.wait();
            Err(e)
        }
    }
}

/// In a new user namespace: wait until the parent has written the id maps,
/// then become the namespace's root.  This must happen before the init is
/// exec'd, since execve recomputes capabilities from the (then mapped) uid.
///
/// # Safety
/// Only async-signal-safe functions; raw syscalls rather than glibc's
/// set*id, which would try to signal the parent's threads.
unsafe fn child_become_root(sock: RawFd, error: &mut [u8]) {
    let mut go = 0u8;
    if libc::recv(sock, (&mut go as *mut u8).cast(), 1, 0) != 1 || go != proto::GO {
        libc::_exit(crate::init::FAILED);
    }
    if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0 || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0 {
        fail_child(sock, error);
    }
}

/// The forked child: put stdio in place, keep the socket across exec and run
/// the init from the memfd.
///
/// # Safety
/// Only async-signal-safe functions; all memory was prepared before fork.
unsafe fn child_exec_init(
    init_fd: RawFd,
    sock: RawFd,
    stdio: Option<[RawFd; 3]>,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
    exec_error: &mut [u8],
) -> ! {
    if let Some(fds) = stdio {
        // Move the sources out of 0..2 first so dup2 cannot clobber one of them.
        let mut high = [-1; 3];
        for (i, fd) in fds.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
        }
        for (i, fd) in high.iter().enumerate() {
            if *fd < 0 || libc::dup2(*fd, i as RawFd) < 0 {
                fail_child(sock, exec_error);
            }
        }
    }
    if libc::fcntl(sock, libc::F_SETFD, 0) < 0 {
        fail_child(sock, exec_error);
    }
    sys::execveat_fd(init_fd, argv.as_ptr(), envp.as_ptr());
    fail_child(sock, exec_error)
}

/// Report the current errno through a pre-encoded record and exit.
unsafe fn fail_child(sock: RawFd, record: &mut [u8]) -> ! {
    let errno = *libc::__errno_location();
    record[proto::ERRNO_OFFSET..proto::ERRNO_OFFSET + 4].copy_from_slice(&errno.to_le_bytes());
    libc::send(sock, record.as_ptr().cast(), record.len(), libc::MSG_NOSIGNAL);
    libc::_exit(crate::init::FAILED)
}

/// The child's cgroups: the `cgroup.procs` files still to write, whether it
/// was born in one (`CLONE_INTO_CGROUP`) and how many it moved itself into.
struct Cgroups<'a> {
    write: &'a [&'a str],
    born_in: bool,
    moved_itself: usize,
}

/// The cgroup v1 groups the child moves itself into (see
/// [`Launch::cgroup_procs`]): their `tasks` files and, for each, the error
/// record sent if the write fails, all prepared before fork.
struct SelfJoin {
    entries: Vec<(usize, CString, Vec<u8>)>,
}

impl SelfJoin {
    /// Every `cgroup.procs` but the one joined by clone3 whose directory is
    /// in a cgroup v1 hierarchy (it has a `tasks` file).
    fn prepare(cgroup_procs: &[String], born_in: Option<usize>) -> Result<SelfJoin> {
        let mut entries = Vec::new();
        for (i, procs) in cgroup_procs.iter().enumerate() {
            if Some(i) == born_in {
                continue;
            }
            let Some(dir) = procs.strip_suffix("/cgroup.procs") else { continue };
            let tasks = format!("{dir}/tasks");
            if !Path::new(&tasks).exists() {
                continue; // cgroup v2 (no tasks file), or gone: the parent's write reports it
            }
            let record = proto::encode_error(&Error::os("join cgroup", 0).with_path(&tasks));
            let tasks = CString::new(tasks).map_err(|_| Error::os("join cgroup", libc::EINVAL).with_path(procs))?;
            entries.push((i, tasks, record));
        }
        Ok(SelfJoin { entries })
    }

    fn covers(&self, index: usize) -> bool {
        self.entries.iter().any(|(i, _, _)| *i == index)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// In the forked child: write `0` (this thread) to each `tasks` file.
    ///
    /// # Safety
    /// Async-signal-safe calls only, on memory prepared before fork.
    unsafe fn join_in_child(&mut self, sock: RawFd) {
        for (_, tasks, record) in &mut self.entries {
            let fd = libc::open(tasks.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                fail_child(sock, record);
            }
            libc::close(fd);
        }
    }
}

/// The request record, the fifo descriptor attached to it, and what answers
/// the init's `HOOKS`.
struct Outgoing<'a, 'h> {
    record: &'a [u8],
    fifo: Option<BorrowedFd<'a>>,
    at_pause: Option<&'h mut dyn FnMut(libc::pid_t) -> Result<proto::HookStates>>,
}

/// Returns the init's trace marks, if it sent any.
fn handshake(
    child: &mut Child,
    sock: BorrowedFd<'_>,
    mut request: Outgoing<'_, '_>,
    spec: &Spec,
    new_user: bool,
    cgroups: Cgroups<'_>,
    marks: &mut crate::trace::Marks,
) -> Result<Vec<(String, u64)>> {
    if new_user {
        write_id_maps(child.pid, spec)?;
        proto::send_record(sock, &[proto::GO])?;
    }
    let pid = child.pid.to_string();
    for procs in cgroups.write {
        sys::write_file(procs, pid.as_bytes()).map_err(|e| Error::os("join cgroup", e).with_path(*procs))?;
    }
    if marks.enabled && (cgroups.born_in || cgroups.moved_itself > 0 || !cgroups.write.is_empty()) {
        let how = if cgroups.born_in { "v2 by clone3, " } else { "" };
        let moved = cgroups.moved_itself;
        marks.mark(&format!("engine: cgroups joined ({how}{moved} v1 by the child, {} written)", cgroups.write.len()));
    }
    match request.fifo {
        Some(fifo) => proto::send_record_with_fd(sock, request.record, fifo.as_raw_fd())?,
        None => proto::send_record(sock, request.record)?,
    }
    let mut exec_reached = false;
    let mut marks = Vec::new();
    while let Some((rec, fd)) = proto::recv_record(sock)? {
        match rec.first() {
            Some(&proto::MASTER) => child.master = fd,
            Some(&proto::HOOKS) => {
                let at_pause = request
                    .at_pause
                    .as_mut()
                    .ok_or_else(|| Error::msg("protocol", "unexpected HOOKS from pyctr-init"))?;
                let states = at_pause(child.pid)?;
                let mut answer = vec![proto::GO];
                serde_json::to_writer(&mut answer, &states).map_err(|e| Error::msg("spawn", e.to_string()))?;
                proto::send_record(sock, &answer)?;
            }
            Some(&proto::CREATED) if request.fifo.is_some() => {
                return Ok(serde_json::from_slice(&rec[1..]).unwrap_or_default());
            }
            Some(&proto::EXEC) => {
                exec_reached = true;
                marks = serde_json::from_slice(&rec[1..]).unwrap_or_default();
            }
            Some(&proto::ERROR) => return Err(proto::decode_error(&rec)),
            _ => return Err(Error::msg("protocol", "unexpected record from pyctr-init")),
        }
    }
    if !exec_reached {
        let how = match child.wait()? {
            Exit::Code(c) => format!("exited with status {c}"),
            Exit::Signal(s) => format!("was killed by signal {s}"),
        };
        return Err(Error::msg("init", format!("container init {how} before starting the program")));
    }
    Ok(marks)
}
