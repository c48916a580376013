//! Keeping an idle supervisor small: its own image mapped (not copied) for
//! the one moment a spawn needs it, freed heap pages returned, and the pages
//! of the binary it no longer runs unmapped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use crate::errors::{Error, Result};

/// `/proc/self/exe` mapped read-only (page-cache pages, no copy on the heap).
pub struct SelfImage {
    addr: *mut libc::c_void,
    len: usize,
}

impl SelfImage {
    pub fn map() -> Result<SelfImage> {
        let file = File::open("/proc/self/exe").map_err(|e| {
            Error::os("open own image", e.raw_os_error().unwrap_or(libc::EIO)).with_path("/proc/self/exe")
        })?;
        let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
        if len == 0 {
            return Err(Error::msg("open own image", "empty executable").with_path("/proc/self/exe"));
        }
        // SAFETY: a private read-only mapping of a file we hold open; it is
        // unmapped in Drop and only read through `bytes`.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if addr == libc::MAP_FAILED {
            return Err(Error::last_os("map own image").with_path("/proc/self/exe"));
        }
        Ok(SelfImage { addr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is readable for `len` bytes while self lives;
        // the binary is content-addressed and never rewritten in place.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for SelfImage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Give freed heap pages back to the kernel (glibc keeps them otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
}

/// Unmap from this process the pages of its own executable that it has not
/// modified: after a spawn nearly all of the binary is mapped, but the idle
/// loop needs a few pages of it, which fault back in (one by one) from the
/// page cache.
/// Only read-only mappings without a single private (copied) page are
/// touched, so nothing but page-table entries is dropped.
pub fn release_image_pages() {
    let (Ok(exe), Ok(smaps)) = (std::fs::metadata("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps"))
    else {
        return;
    };
    for ((start, end), anonymous) in own_clean_mappings(&smaps, exe.ino()) {
        if anonymous != 0 {
            continue;
        }
        // SAFETY: a whole read-only mapping of our executable without a
        // private page: dropping its page-table entries loses nothing (the
        // next access re-reads the page cache).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// ((start, end), Anonymous kB) of each non-writable mapping of inode `ino`
/// in /proc/self/smaps text.
fn own_clean_mappings(smaps: &str, ino: u64) -> Vec<((usize, usize), u64)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).and_then(|i| i.parse::<u64>().ok());
            current = None;
            if let (Ok(start), Ok(end), Some(inode)) =
                (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16), inode)
            {
                if inode == ino && perms.as_bytes().get(1) == Some(&b'-') && perms.ends_with('p') {
                    current = Some((start, end));
                }
            }
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                found.push((range, fields.next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn own_mappings_are_found_with_their_private_page_count() {
        let smaps = "00200000-00248000 r--p 00000000 fe:00 77 /bin/x\nRss: 4 kB\nAnonymous:  0 kB\n\
                     00248000-00350000 r-xp 00047000 fe:00 77 /bin/x\nAnonymous: 0 kB\n\
                     00350000-00355000 r--p 0014e000 fe:00 77 /bin/x\nAnonymous: 20 kB\n\
                     00355000-00359000 rw-p 00152000 fe:00 77 /bin/x\nAnonymous: 16 kB\n\
                     7f00-7f10 r-xp 00000000 fe:00 78 /lib/other\nAnonymous: 0 kB\n";
        let found = own_clean_mappings(smaps, 77);
        assert_eq!(found, [((0x200000, 0x248000), 0), ((0x248000, 0x350000), 0), ((0x350000, 0x355000), 20)]);
        // Our own test binary: its text is found and clean.
        let exe = std::fs::metadata("/proc/self/exe").expect("stat").ino();
        let text = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(own_clean_mappings(&text, exe).iter().any(|(_, anon)| *anon == 0));
    }
}
