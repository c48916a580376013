//! Image layer extraction: a gzip, zstd or plain tar stream unpacked into one
//! layer directory, with OCI whiteouts turned into overlayfs whiteouts.
//!
//! Safety: every entry is created relative to a directory fd that was
//! resolved inside the layer with `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`, and
//! only its last component is created there (`*at` calls that do not follow
//! a final symlink).  Names with `..` or a leading `/` are refused, as is any
//! path whose parent runs through a symlink, so whatever the tar holds,
//! nothing outside the layer directory is created, changed or removed.  The
//! `tar` crate is used only to parse headers.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::errors::{Error, Result};
use crate::sys::openat2;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;
const IN_LAYER: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the media type when it says, else from the magic bytes.
    pub fn detect(media_type: &str, magic: &[u8]) -> Compression {
        if media_type.ends_with("gzip") {
            Compression::Gzip
        } else if media_type.ends_with("zstd") {
            Compression::Zstd
        } else if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What an extraction produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// `sha256:<hex>` of the uncompressed tar: the layer's diff id.
    pub diff_id: String,
    /// Uncompressed size in bytes.
    pub size: u64,
}

/// Hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

fn io_err(step: &str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::os(step, errno),
        None => Error::msg(step, e.to_string()),
    }
}

/// Extract the layer blob at `blob` into the existing directory `dest`.
///
/// Decompression and hashing run on a helper thread that feeds the tar
/// parser through a bounded channel, so inflating and creating files overlap
/// (the two costs are of the same order).
pub fn extract_file(blob: &Path, dest: &Path, media_type: &str) -> Result<Extracted> {
    let file = std::fs::File::open(blob).map_err(|e| io_err("open layer", e).with_path(blob.to_string_lossy()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = io::BufRead::fill_buf(&mut reader).map_err(|e| io_err("read layer", e))?.to_vec();
    let compression = Compression::detect(media_type, &magic);
    let root = open_dir(dest)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
    // Spent chunks go back to the producer, so the ~1000 chunks of a large
    // layer reuse a handful of allocations instead of mapping fresh memory.
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let producer = std::thread::Builder::new()
        .name("pyctr-inflate".into())
        .spawn(move || -> io::Result<(String, u64)> {
            let stream: Box<dyn Read> = match compression {
                Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
                Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
                Compression::None => Box::new(reader),
            };
            let mut hashing = Hashing { inner: stream, hash: Sha256::new(), size: 0 };
            loop {
                let mut chunk = back_rx.try_recv().unwrap_or_default();
                chunk.resize(CHUNK, 0);
                let mut filled = 0;
                while filled < chunk.len() {
                    match hashing.read(&mut chunk[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    }
                }
                if filled == 0 {
                    break;
                }
                chunk.truncate(filled);
                if tx.send(Ok(chunk)).is_err() {
                    // The consumer stopped (an error): nothing more to do.
                    break;
                }
            }
            Ok((format!("sha256:{:x}", hashing.hash.finalize()), hashing.size))
        })
        .map_err(|e| io_err("start inflate thread", e))?;
    let consumed = extract_entries(ChannelReader { rx, back: back_tx, current: Vec::new(), pos: 0 }, root.as_fd());
    let produced = producer.join().map_err(|_| Error::msg("extract", "inflate thread panicked"))?;
    consumed?;
    let (diff_id, size) = produced.map_err(|e| io_err("decompress layer", e))?;
    sync_layer(dest)?;
    Ok(Extracted { diff_id, size })
}

/// One syncfs for the whole layer, before the caller marks it complete: a
/// layer in the store must survive a crash, and one flush per layer costs far
/// less than one per file.
fn sync_layer(dest: &Path) -> Result<()> {
    let dir = std::fs::File::open(dest).map_err(|e| io_err("sync layer", e).with_path(dest.to_string_lossy()))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(Error::last_os("sync layer").with_path(dest.to_string_lossy()));
    }
    Ok(())
}

/// Reads the chunks a producer thread sends.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut self.current, chunk);
                    if spent.capacity() >= CHUNK {
                        let _ = self.back.send(spent);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn open_dir(dest: &Path) -> Result<OwnedFd> {
    let c = CString::new(dest.as_os_str().as_bytes()).map_err(|_| Error::os("open layer dir", libc::EINVAL))?;
    // SAFETY: opening a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("open layer dir").with_path(dest.to_string_lossy()));
    }
    // SAFETY: fresh descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Extract an uncompressed tar stream into the directory `root`, hashing it.
pub fn extract(stream: impl Read, root: BorrowedFd<'_>) -> Result<Extracted> {
    let mut hashing = Hashing { inner: stream, hash: Sha256::new(), size: 0 };
    extract_entries(&mut hashing, root)?;
    Ok(Extracted { diff_id: format!("sha256:{:x}", hashing.hash.finalize()), size: hashing.size })
}

/// Unpack every entry, then read the stream to its end: padding after the
/// end-of-archive blocks is part of the diff id.
fn extract_entries(mut stream: impl Read, root: BorrowedFd<'_>) -> Result<()> {
    {
        let mut archive = tar::Archive::new(&mut stream);
        let mut layer = Layer { root, cached: HashMap::new(), dir_times: Vec::new(), buf: vec![0u8; COPY_BUF] };
        let entries = archive.entries().map_err(|e| io_err("read tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io_err("read tar", e))?;
            layer.entry(&mut entry)?;
        }
        layer.finish()?;
    }
    io::copy(&mut stream, &mut io::sink()).map_err(|e| io_err("read tar", e))?;
    Ok(())
}

/// The clean, relative components of an entry name; `..` and absolute names
/// are refused.
fn clean(name: &Path) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => out.push(s.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::msg("extract", "entry name escapes the layer").with_path(name.to_string_lossy()));
            }
        }
    }
    Ok(out)
}

fn join(parts: &[OsString]) -> String {
    let mut s = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(&p.to_string_lossy());
    }
    s
}

fn cstr(name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| Error::msg("extract", "NUL byte in entry name"))
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Decompressed data travels between the threads in chunks of this size.
const CHUNK: usize = 1 << 20;

/// How many open parent directories a layer keeps.
const DIR_CACHE: usize = 256;

/// File content is copied through one buffer of this size per layer.
const COPY_BUF: usize = 128 * 1024;

struct Layer<'a> {
    root: BorrowedFd<'a>,
    /// Open parent directories by path: entries come grouped by directory,
    /// and a tar walk returns to a parent after each subdirectory.
    cached: HashMap<Vec<OsString>, OwnedFd>,
    /// Directory mtimes, set last (creating children changes them).
    dir_times: Vec<(Vec<OsString>, i64)>,
    /// The copy buffer, reused for every file.
    buf: Vec<u8>,
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let h = entry.header();
    let bad = |what: &str| Error::msg("extract", format!("bad {what} in tar header"));
    let mut m = Meta {
        mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
        uid: h.uid().map_err(|_| bad("uid"))? as u32,
        gid: h.gid().map_err(|_| bad("gid"))? as u32,
        mtime: h.mtime().map_err(|_| bad("mtime"))? as i64,
        xattrs: Vec::new(),
    };
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || std::str::from_utf8(value).ok().and_then(|v| v.split('.').next()?.parse::<i64>().ok());
            match key {
                "uid" => m.uid = num().unwrap_or(m.uid as i64) as u32,
                "gid" => m.gid = num().unwrap_or(m.gid as i64) as u32,
                "mtime" => m.mtime = num().unwrap_or(m.mtime),
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        if let Ok(c) = CString::new(name) {
                            m.xattrs.push((c, value.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

impl Layer<'_> {
    /// The directory `parts` inside the layer, created (0755, root) where
    /// missing; no symlink may appear on the way.
    fn dir(&mut self, parts: &[OsString], entry: &str) -> Result<BorrowedFd<'_>> {
        if !self.cached.contains_key(parts) {
            let fd = self.resolve_dir(parts, entry)?;
            if self.cached.len() >= DIR_CACHE {
                self.cached.clear();
            }
            self.cached.insert(parts.to_vec(), fd);
        }
        match self.cached.get(parts) {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(Error::msg("extract", "internal: no directory").with_path(entry)),
        }
    }

    fn resolve_dir(&self, parts: &[OsString], entry: &str) -> Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let path = if parts.is_empty() { ".".to_owned() } else { join(parts) };
        match openat2(self.root, &path, flags, 0, IN_LAYER) {
            Ok(fd) => return Ok(fd),
            Err(libc::ENOENT) => {}
            Err(libc::ELOOP) | Err(libc::EXDEV) => return Err(symlink_in_path(entry)),
            Err(libc::ENOTDIR) => {
                return Err(Error::msg("extract", "parent path is not a directory").with_path(entry));
            }
            Err(e) => return Err(Error::os("extract", e).with_path(entry)),
        }
        let mut dir = openat2(self.root, ".", flags, 0, IN_LAYER).map_err(|e| Error::os("extract", e))?;
        for name in parts {
            let c = cstr(name)?;
            // SAFETY: a single component created under a directory fd that was
            // resolved inside the layer.
            let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
            if rc != 0 && last_errno() != libc::EEXIST {
                return Err(Error::os("extract", last_errno()).with_path(entry));
            }
            dir = match openat2(dir.as_fd(), &name.to_string_lossy(), flags, 0, IN_LAYER) {
                Ok(fd) => fd,
                Err(libc::ELOOP) | Err(libc::EXDEV) => return Err(symlink_in_path(entry)),
                Err(e) => return Err(Error::os("extract", e).with_path(entry)),
            };
        }
        Ok(dir)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path().map_err(|e| io_err("read tar", e))?.into_owned();
        let entry_name = raw_path.to_string_lossy().into_owned();
        let mut parts = clean(&raw_path)?;
        let Some(name) = parts.pop() else {
            return Ok(()); // "./": the layer root itself
        };
        let kind = entry.header().entry_type();
        let meta = meta_of(entry)?;
        let name_str = name.to_string_lossy().into_owned();

        if name_str == OPAQUE {
            let dir = self.dir(&parts, &entry_name)?;
            return set_opaque(dir, &entry_name);
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() {
                return Err(Error::msg("extract", "whiteout without a name").with_path(&entry_name));
            }
            if hidden.starts_with(WHITEOUT_PREFIX) {
                return Ok(()); // other AUFS metadata (.wh..wh.plnk, ...)
            }
            let hidden = CString::new(hidden).map_err(|_| Error::msg("extract", "NUL byte in entry name"))?;
            let dir = self.dir(&parts, &entry_name)?;
            return whiteout(dir, &hidden, &entry_name);
        }

        let cname = cstr(&name)?;
        let dir_fd = self.dir(&parts, &entry_name)?;
        let dir = dir_fd.as_raw_fd();
        let mut replaced = false;
        let mut dir_time = None;
        match kind {
            EntryType::Directory => {
                // SAFETY: single component under an in-layer directory fd.
                replaced =
                    make(dir_fd, &cname, true, &entry_name, || unsafe { libc::mkdirat(dir, cname.as_ptr(), 0o700) })?;
                let d = openat2(dir_fd, &name_str, libc::O_RDONLY | libc::O_DIRECTORY, 0, IN_LAYER)
                    .map_err(|e| Error::os("extract", e).with_path(&entry_name))?;
                apply_fd(d.as_fd(), &meta, &entry_name, false)?;
                parts.push(name);
                dir_time = Some((parts, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut fd = -1;
                replaced = make(dir_fd, &cname, false, &entry_name, || {
                    // SAFETY: single component under an in-layer directory fd;
                    // O_EXCL and O_NOFOLLOW never reuse or follow an existing name.
                    fd = unsafe {
                        libc::openat(
                            dir,
                            cname.as_ptr(),
                            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                            0o600,
                        )
                    };
                    fd.min(0)
                })?;
                // SAFETY: fresh descriptor, owned from here on.
                let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                copy(entry, &mut file, &mut self.buf).map_err(|e| io_err("extract", e).with_path(&entry_name))?;
                apply_fd(file.as_fd(), &meta, &entry_name, true)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::msg("extract", "symlink without a target").with_path(&entry_name))?;
                let target = CString::new(target.into_owned())
                    .map_err(|_| Error::msg("extract", "NUL byte in link target").with_path(&entry_name))?;
                // SAFETY: creating a link name under an in-layer directory fd;
                // the target is stored, never followed.
                replaced = make(dir_fd, &cname, false, &entry_name, || unsafe {
                    libc::symlinkat(target.as_ptr(), dir, cname.as_ptr())
                })?;
                apply_at(dir_fd, &cname, &meta, &entry_name, true)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| io_err("read tar", e))?
                    .ok_or_else(|| Error::msg("extract", "hardlink without a target").with_path(&entry_name))?
                    .into_owned();
                let target_rel = join(&clean(&target)?);
                let src = openat2(self.root, &target_rel, libc::O_PATH | libc::O_NOFOLLOW, 0, IN_LAYER).map_err(
                    |e| match e {
                        libc::ENOENT => {
                            Error::msg("extract", format!("hardlink target {target_rel:?} is not in the layer"))
                                .with_path(&entry_name)
                        }
                        libc::ELOOP | libc::EXDEV => symlink_in_path(&entry_name),
                        e => Error::os("extract", e).with_path(&entry_name),
                    },
                )?;
                let dir_fd = self.dir(&parts, &entry_name)?;
                let dir = dir_fd.as_raw_fd();
                // SAFETY: links the inode behind `src` (inside the layer) to a
                // single new name under an in-layer directory fd.
                replaced = make(dir_fd, &cname, false, &entry_name, || unsafe {
                    libc::linkat(src.as_raw_fd(), c"".as_ptr(), dir, cname.as_ptr(), libc::AT_EMPTY_PATH)
                })?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let (major, minor) = (h.device_major().ok().flatten(), h.device_minor().ok().flatten());
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(major.unwrap_or(0), minor.unwrap_or(0));
                // SAFETY: single component under an in-layer directory fd.
                replaced = make(dir_fd, &cname, false, &entry_name, || unsafe {
                    libc::mknodat(dir, cname.as_ptr(), fmt | 0o600, dev)
                })?;
                apply_at(dir_fd, &cname, &meta, &entry_name, false)?;
            }
            // Global/extended headers are consumed by the parser; anything
            // else carries no file.
            _ => {}
        }
        if replaced {
            // What the cache holds may have been the replaced directory.
            self.cached.clear();
        }
        if let Some(t) = dir_time {
            self.dir_times.push(t);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.cached.clear();
        for (parts, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            if let Ok(d) = openat2(self.root, &join(&parts), libc::O_RDONLY | libc::O_DIRECTORY, 0, IN_LAYER) {
                set_times(d.as_fd(), None, mtime, false);
            }
        }
        Ok(())
    }
}

fn symlink_in_path(entry: &str) -> Error {
    Error::msg("extract", "entry path runs through a symlink").with_path(entry)
}

/// Copy file content through `buf`.
fn copy<R: Read>(from: &mut R, to: &mut std::fs::File, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// Run `create` (a `*at` call returning < 0 on failure) for the entry
/// `name`; if the name is taken, make room ([`prepare_slot`]) and run it
/// again.  An existing directory stays when the new entry is a directory.
/// Returns whether something was removed.
fn make(
    dir: BorrowedFd<'_>,
    name: &CString,
    new_is_dir: bool,
    entry: &str,
    mut create: impl FnMut() -> libc::c_int,
) -> Result<bool> {
    if create() >= 0 {
        return Ok(false);
    }
    let errno = last_errno();
    if errno != libc::EEXIST {
        return Err(Error::os("extract", errno).with_path(entry));
    }
    let replaced = prepare_slot(dir, name, new_is_dir, entry)?;
    if new_is_dir && !replaced {
        return Ok(false);
    }
    if create() < 0 {
        return Err(Error::os("extract", last_errno()).with_path(entry));
    }
    Ok(replaced)
}

/// Make room for a new entry called `name`: an existing directory stays if
/// the new entry is a directory; anything else is removed.  Returns whether
/// something was removed.
fn prepare_slot(dir: BorrowedFd<'_>, name: &CString, new_is_dir: bool, entry: &str) -> Result<bool> {
    // SAFETY: stat is plain old data; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat on a name under a directory fd, not following links.
    if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Ok(false);
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && new_is_dir {
        return Ok(false);
    }
    if is_dir {
        remove_tree(dir, name).map_err(|e| Error::os("extract", e).with_path(entry))?;
    } else {
        // SAFETY: unlinking a single name under a directory fd.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            return Err(Error::os("extract", last_errno()).with_path(entry));
        }
    }
    Ok(true)
}

/// Remove the directory `name` under `parent` and everything in it, without
/// following symlinks.
fn remove_tree(parent: BorrowedFd<'_>, name: &CString) -> std::result::Result<(), i32> {
    let fd =
        openat2(parent, &name.to_string_lossy(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0, IN_LAYER)?;
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| e as i32)?;
    let dfd = dir.as_raw_fd();
    let mut names = Vec::new();
    for ent in dir.iter() {
        let ent = ent.map_err(|e| e as i32)?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push((n.to_owned(), ent.file_type() == Some(nix::dir::Type::Directory)));
        }
    }
    // SAFETY: dfd stays open as long as `dir` lives.
    let dborrow = unsafe { BorrowedFd::borrow_raw(dfd) };
    for (n, is_dir) in names {
        if is_dir {
            remove_tree(dborrow, &n)?;
        } else {
            // SAFETY: unlinking a single name under a directory fd.
            if unsafe { libc::unlinkat(dfd, n.as_ptr(), 0) } != 0 {
                return Err(last_errno());
            }
        }
    }
    drop(dir);
    // SAFETY: removing a single (now empty) directory name under `parent`.
    if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn set_opaque(dir: BorrowedFd<'_>, entry: &str) -> Result<()> {
    let d = openat2(dir, ".", libc::O_RDONLY | libc::O_DIRECTORY, 0, IN_LAYER).map_err(|e| Error::os("extract", e))?;
    // SAFETY: fsetxattr with a valid name and a one-byte value.
    let rc = unsafe { libc::fsetxattr(d.as_raw_fd(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(Error::os("extract (opaque directory)", last_errno()).with_path(entry));
    }
    Ok(())
}

/// An overlayfs whiteout: a 0:0 character device.  A name this same layer
/// already created stays: a whiteout hides only lower layers.
fn whiteout(dir: BorrowedFd<'_>, name: &CString, entry: &str) -> Result<()> {
    // SAFETY: single component under an in-layer directory fd.
    if unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFCHR, 0) } != 0 {
        let e = last_errno();
        if e != libc::EEXIST {
            return Err(Error::os("extract (whiteout)", e).with_path(entry));
        }
    }
    Ok(())
}

fn set_times(fd: BorrowedFd<'_>, name: Option<&CString>, mtime: i64, nofollow: bool) {
    let ts = libc::timespec { tv_sec: mtime as libc::time_t, tv_nsec: 0 };
    let times = [ts, ts];
    // SAFETY: `times` is a valid two-element array; a NULL name with flags 0
    // means "the file behind fd" (Linux).
    unsafe {
        match name {
            Some(n) => libc::utimensat(
                fd.as_raw_fd(),
                n.as_ptr(),
                times.as_ptr(),
                if nofollow { libc::AT_SYMLINK_NOFOLLOW } else { 0 },
            ),
            None => libc::futimens(fd.as_raw_fd(), times.as_ptr()),
        };
    }
}

fn apply_xattrs(fd: BorrowedFd<'_>, meta: &Meta, entry: &str) -> Result<()> {
    for (name, value) in &meta.xattrs {
        // SAFETY: name and value are valid for the call.
        if unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
            let e = last_errno();
            if e != libc::EOPNOTSUPP && e != libc::EPERM {
                return Err(Error::os("extract (xattr)", e).with_path(entry));
            }
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid bits), xattrs and mtime on an open
/// file or directory.
fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta, entry: &str, times: bool) -> Result<()> {
    // SAFETY: fchown/fchmod on a descriptor we own.
    unsafe {
        if libc::fchown(fd.as_raw_fd(), meta.uid, meta.gid) != 0 {
            return Err(Error::os("extract (chown)", last_errno()).with_path(entry));
        }
        if libc::fchmod(fd.as_raw_fd(), meta.mode) != 0 {
            return Err(Error::os("extract (chmod)", last_errno()).with_path(entry));
        }
    }
    apply_xattrs(fd, meta, entry)?;
    if times {
        set_times(fd, None, meta.mtime, false);
    }
    Ok(())
}

/// Owner, mode (not for symlinks) and mtime by name, never following a
/// final symlink.
fn apply_at(dir: BorrowedFd<'_>, name: &CString, meta: &Meta, entry: &str, is_link: bool) -> Result<()> {
    // SAFETY: *at calls on a single name under a directory fd.
    unsafe {
        if libc::fchownat(dir.as_raw_fd(), name.as_ptr(), meta.uid, meta.gid, libc::AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(Error::os("extract (chown)", last_errno()).with_path(entry));
        }
        if !is_link && libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), meta.mode, 0) != 0 {
            return Err(Error::os("extract (chmod)", last_errno()).with_path(entry));
        }
    }
    set_times(dir, Some(name), meta.mtime, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    fn header(kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    fn extract_bytes(data: &[u8]) -> (tempfile::TempDir, Result<Extracted>) {
        let dir = tempfile::tempdir().expect("tmp");
        let root = open_dir(dir.path()).expect("open");
        let r = extract(data, root.as_fd());
        (dir, r)
    }

    fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: Option<&str>, body: &[u8]) {
        let mut h = header(kind, body.len() as u64);
        let bytes = h.as_old_mut().name.as_mut();
        bytes.fill(0);
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            let lb = h.as_old_mut().linkname.as_mut();
            lb.fill(0);
            lb[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, body).expect("append");
    }

    #[test]
    fn extracts_files_dirs_links_and_reports_the_diff_id() {
        let data = tar_of(|b| {
            raw_entry(b, "etc/", EntryType::Directory, None, b"");
            raw_entry(b, "etc/motd", EntryType::Regular, None, b"hello\n");
            raw_entry(b, "etc/link", EntryType::Symlink, Some("motd"), b"");
            raw_entry(b, "etc/hard", EntryType::Link, Some("etc/motd"), b"");
            raw_entry(b, "deep/missing/parent.txt", EntryType::Regular, None, b"x");
        });
        let (dir, r) = extract_bytes(&data);
        let r = r.expect("extract");
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.diff_id, format!("sha256:{:x}", Sha256::digest(&data)));
        assert_eq!(std::fs::read(dir.path().join("etc/motd")).unwrap(), b"hello\n");
        assert_eq!(std::fs::read_link(dir.path().join("etc/link")).unwrap(), Path::new("motd"));
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (dir.path().join("etc/motd"), dir.path().join("etc/hard"));
        assert_eq!(std::fs::metadata(a).unwrap().ino(), std::fs::metadata(b).unwrap().ino());
        assert!(dir.path().join("deep/missing/parent.txt").exists());
    }

    #[test]
    fn refuses_parent_dir_and_absolute_names() {
        for name in ["../evil", "a/../../evil", "/abs"] {
            let data = tar_of(|b| raw_entry(b, name, EntryType::Regular, None, b"x"));
            let (_dir, r) = extract_bytes(&data);
            assert_eq!(r.unwrap_err().step, "extract", "{name}");
        }
    }

    #[test]
    fn refuses_writing_through_a_symlink_even_one_pointing_inside() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_string_lossy().into_owned();
        let data = tar_of(|b| {
            raw_entry(b, "esc", EntryType::Symlink, Some(&target), b"");
            raw_entry(b, "esc/pwned", EntryType::Regular, None, b"x");
        });
        let (_dir, r) = extract_bytes(&data);
        assert!(r.unwrap_err().detail.unwrap_or_default().contains("symlink"));
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn whiteouts_become_char_devices_and_empty_whiteout_is_an_error() {
        let data = tar_of(|b| {
            raw_entry(b, "d/", EntryType::Directory, None, b"");
            raw_entry(b, "d/.wh.gone", EntryType::Regular, None, b"");
        });
        let (dir, r) = extract_bytes(&data);
        r.expect("extract");
        use std::os::unix::fs::FileTypeExt;
        let m = std::fs::symlink_metadata(dir.path().join("d/gone")).unwrap();
        assert!(m.file_type().is_char_device());
        let data = tar_of(|b| raw_entry(b, "d/.wh.", EntryType::Regular, None, b""));
        let (_d, r) = extract_bytes(&data);
        assert!(r.is_err());
    }

    #[test]
    fn compression_is_detected_from_media_type_or_magic() {
        assert_eq!(Compression::detect("application/vnd.oci.image.layer.v1.tar+zstd", b""), Compression::Zstd);
        assert_eq!(Compression::detect("", &[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect("application/vnd.oci.image.layer.v1.tar", b"abc"), Compression::None);
    }
}
