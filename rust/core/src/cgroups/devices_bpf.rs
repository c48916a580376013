//! eBPF for the cgroup v2 device controller: a typed encoder for the few
//! instructions a `BPF_PROG_TYPE_CGROUP_DEVICE` program needs, the program
//! generated from a [`Policy`], and the two `bpf(2)` calls that load it and
//! attach it to a cgroup directory.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` (`access_type` = `access << 16 | type`) and returns 1 to
//! allow the access, 0 to refuse it (EPERM).  See [`program`] for the
//! semantics.  No helper is called, so any license string loads; ours is the
//! project's.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::errors::{Error, Result};

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR` (the low 16 bits of `access_type`).
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
/// `BPF_DEVCG_ACC_*` (the high 16 bits of `access_type`).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The program's license (`GPL` is only needed for GPL-only helpers, and the
/// program calls none).
pub const LICENSE: &str = "Apache-2.0";

// include/uapi/linux/bpf.h
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs attached by ancestors (systemd, a parent runtime) keep running:
/// an access must pass all of them.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

// Instruction classes, operations and sources (include/uapi/linux/bpf_common.h, bpf.h).
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const SIZE_W: u8 = 0x00;
const SIZE_DW: u8 = 0x18;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_AND: u8 = 0x50;
const OP_RSH: u8 = 0x70;
const OP_MOV: u8 = 0xb0;
const OP_JA: u8 = 0x00;
const OP_JNE: u8 = 0x50;
const OP_JSET: u8 = 0x40;
const OP_EXIT: u8 = 0x90;

/// An eBPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
}

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// `dst_reg:4, src_reg:4` as a C bitfield lays them out.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        let (dst, src) = (dst as u8, src as u8);
        #[cfg(target_endian = "little")]
        let regs = dst | (src << 4);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | src;
        Insn { code, regs, off, imm }
    }

    /// `dst = *(u32 *)(src + off)`
    pub fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_LDX | MODE_MEM | SIZE_W, dst, src, off, 0)
    }

    /// `dst = imm` (64-bit, two instruction slots).
    pub fn load_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        [
            Insn::new(CLASS_LD | MODE_IMM | SIZE_DW, dst, Reg::R0, 0, imm as u32 as i32),
            Insn { code: 0, regs: 0, off: 0, imm: (imm >> 32) as u32 as i32 },
        ]
    }

    /// `(u32) dst &= imm`
    pub fn and32(dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | OP_AND | SRC_K, dst, Reg::R0, 0, imm)
    }

    /// `(u32) dst >>= imm`
    pub fn rsh32(dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | OP_RSH | SRC_K, dst, Reg::R0, 0, imm)
    }

    /// `(u32) dst = imm`
    pub fn mov32(dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | OP_MOV | SRC_K, dst, Reg::R0, 0, imm)
    }

    /// `if dst != imm goto +off` (64-bit compare with the sign-extended imm)
    pub fn jne(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JNE | SRC_K, dst, Reg::R0, off, imm)
    }

    /// `if dst != src goto +off`
    pub fn jne_reg(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JNE | SRC_X, dst, src, off, 0)
    }

    /// `if dst & imm goto +off`
    pub fn jset(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JSET | SRC_K, dst, Reg::R0, off, imm)
    }

    /// `goto +off`
    pub fn ja(off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JA, Reg::R0, Reg::R0, off, 0)
    }

    /// `return r0`
    pub fn exit() -> Insn {
        Insn::new(CLASS_JMP | OP_EXIT, Reg::R0, Reg::R0, 0, 0)
    }
}

/// One exception in canonical form: block or character, `None` = any number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRule {
    pub allow: bool,
    /// [`DEV_BLOCK`] or [`DEV_CHAR`].
    pub kind: u32,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACC_*` bits, not empty.
    pub access: u8,
}

/// What the program decides: `default_allow` for what no rule decides, the
/// rules in order (the last matching one wins, per access bit).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub default_allow: bool,
    pub rules: Vec<DevRule>,
}

/// A jump past the end of the block being built, fixed up by [`Block::end`].
struct Block {
    insns: Vec<Insn>,
    to_end: Vec<usize>,
}

impl Block {
    fn new() -> Block {
        Block { insns: Vec::new(), to_end: Vec::new() }
    }

    fn jump_to_end(&mut self, insn: Insn) {
        self.to_end.push(self.insns.len());
        self.insns.push(insn);
    }

    /// `if reg != value goto end` for a device number (numbers above
    /// i32::MAX go through r1, as an immediate would be sign-extended).
    fn skip_unless_eq(&mut self, reg: Reg, value: u32) {
        match i32::try_from(value) {
            Ok(imm) => self.jump_to_end(Insn::jne(reg, imm, 0)),
            Err(_) => {
                self.insns.extend(Insn::load_imm64(Reg::R1, u64::from(value)));
                self.jump_to_end(Insn::jne_reg(reg, Reg::R1, 0));
            }
        }
    }

    fn end(mut self) -> Result<Vec<Insn>> {
        let len = self.insns.len();
        for at in self.to_end {
            let off = i16::try_from(len - at - 1)
                .map_err(|_| Error::msg("devices", "a device rule compiled to an oversized block"))?;
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

/// The program for `policy`.
///
/// Registers: r2 = device type, r3 = the requested access bits not decided
/// yet, r4 = major, r5 = minor.  The rules are tested last to first; a rule
/// whose type and numbers match the device:
/// - allow: its access bits are decided (cleared from r3); once nothing is
///   left the access is allowed;
/// - deny: if it covers any undecided requested bit, the access is refused.
///
/// What is left undecided after the first rule gets the default.  So each
/// requested bit is decided by the last rule that matches the device and
/// names that bit, and an access is allowed only if every bit it asks for is
/// (`rw` needs both `r` and `w`).
pub fn program(policy: &Policy) -> Result<Vec<Insn>> {
    let mut insns = vec![
        Insn::load_u32(Reg::R2, Reg::R1, 0),
        Insn::and32(Reg::R2, 0xffff),
        Insn::load_u32(Reg::R3, Reg::R1, 0),
        Insn::rsh32(Reg::R3, 16),
        Insn::load_u32(Reg::R4, Reg::R1, 4),
        Insn::load_u32(Reg::R5, Reg::R1, 8),
    ];
    for rule in policy.rules.iter().rev() {
        let mut block = Block::new();
        block.skip_unless_eq(Reg::R2, rule.kind);
        if let Some(major) = rule.major {
            block.skip_unless_eq(Reg::R4, major);
        }
        if let Some(minor) = rule.minor {
            block.skip_unless_eq(Reg::R5, minor);
        }
        let access = i32::from(rule.access & ACC_ALL);
        if rule.allow {
            // Unknown high bits stay undecided: the default decides them.
            block.insns.push(Insn::and32(Reg::R3, !access));
            block.jump_to_end(Insn::jne(Reg::R3, 0, 0));
            block.insns.extend([Insn::mov32(Reg::R0, 1), Insn::exit()]);
        } else {
            block.insns.push(Insn::jset(Reg::R3, access, 1));
            block.jump_to_end(Insn::ja(0));
            block.insns.extend([Insn::mov32(Reg::R0, 0), Insn::exit()]);
        }
        insns.extend(block.end()?);
    }
    insns.extend([Insn::mov32(Reg::R0, i32::from(policy.default_allow)), Insn::exit()]);
    Ok(insns)
}

/// Call bpf(2) with `attr`, a prefix of `union bpf_attr`.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::result::Result<libc::c_long, i32> {
    // SAFETY: `attr` is a live #[repr(C)] prefix of union bpf_attr whose
    // size is passed along, so the kernel reads (and writes) only inside it;
    // the pointers it holds point to buffers the caller keeps alive.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(ret)
    }
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Load `insns` as a cgroup device program; the verifier's log is the
/// error's detail when it refuses them.
pub fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let count = u32::try_from(insns.len()).map_err(|_| Error::msg("devices", "too many device rules"))?;
    let license = std::ffi::CString::new(LICENSE).map_err(|_| Error::msg("devices", "bad license string"))?;
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"pyctr_devices");
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: count,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    let first = sys_bpf(BPF_PROG_LOAD, &mut attr(&mut []));
    let errno = match first {
        Ok(fd) => return Ok(owned(fd)),
        Err(errno) => errno,
    };
    // Load again with the verifier's log, for the report.
    let mut log = vec![0u8; 1 << 16];
    let detail = match sys_bpf(BPF_PROG_LOAD, &mut attr(&mut log)) {
        Ok(fd) => return Ok(owned(fd)),
        Err(_) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            format!("BPF_PROG_LOAD of {count} instructions: {}", tail.into_iter().rev().collect::<Vec<_>>().join("; "))
        }
    };
    Err(Error::os("devices", errno).with_detail(detail))
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new descriptor; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// Attach the loaded program to the cgroup v2 directory `dir`, next to any
/// program already there or above (`BPF_F_ALLOW_MULTI`).  The attachment
/// holds the program: `prog` may be closed afterwards.
pub fn attach(prog: &OwnedFd, dir: &Path) -> Result<()> {
    let fail = |errno: i32, what: &str| Error::os("devices", errno).with_path(dir.to_string_lossy()).with_detail(what);
    let dir_fd = std::fs::File::open(dir).map_err(|e| fail(e.raw_os_error().unwrap_or(libc::EIO), "open"))?;
    let mut attr = ProgAttachAttr {
        target_fd: dir_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map_err(|errno| fail(errno, "BPF_PROG_ATTACH (BPF_CGROUP_DEVICE)"))?;
    Ok(())
}

/// Generate, load and attach `policy`'s program to `dir`.
pub fn install(policy: &Policy, dir: &Path) -> Result<()> {
    let insns = program(policy)?;
    let prog = load(&insns).map_err(|e| e.with_path(dir.to_string_lossy()))?;
    attach(&prog, dir)
    // `prog` is closed here; the cgroup keeps the program until it is removed.
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn c(allow: bool, major: Option<u32>, minor: Option<u32>, access: u8) -> DevRule {
        DevRule { allow, kind: DEV_CHAR, major, minor, access }
    }

    /// (code, dst, src, off, imm) of each instruction.
    fn decode(insns: &[Insn]) -> Vec<(u8, u8, u8, i16, i32)> {
        insns
            .iter()
            .map(|i| {
                #[cfg(target_endian = "little")]
                let (dst, src) = (i.regs & 0xf, i.regs >> 4);
                #[cfg(target_endian = "big")]
                let (dst, src) = (i.regs >> 4, i.regs & 0xf);
                (i.code, dst, src, i.off, i.imm)
            })
            .collect()
    }

    const PRELUDE: [(u8, u8, u8, i16, i32); 6] = [
        (0x61, 2, 1, 0, 0),
        (0x54, 2, 0, 0, 0xffff),
        (0x61, 3, 1, 0, 0),
        (0x74, 3, 0, 0, 16),
        (0x61, 4, 1, 4, 0),
        (0x61, 5, 1, 8, 0),
    ];

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<ProgAttachAttr>(), 20);
        assert_eq!(decode(&[Insn::load_u32(Reg::R4, Reg::R1, 4)]), [(0x61, 4, 1, 4, 0)]);
        assert_eq!(decode(&[Insn::jne_reg(Reg::R5, Reg::R1, 3)]), [(0x5d, 5, 1, 3, 0)]);
        assert_eq!(decode(&[Insn::jset(Reg::R3, 6, 1)]), [(0x45, 3, 0, 1, 6)]);
        assert_eq!(
            decode(&[Insn::mov32(Reg::R0, 1), Insn::exit(), Insn::ja(-2)]),
            [(0xb4, 0, 0, 0, 1), (0x95, 0, 0, 0, 0), (0x05, 0, 0, -2, 0)]
        );
        assert_eq!(decode(&Insn::load_imm64(Reg::R1, 0xffff_fffe)), [(0x18, 1, 0, 0, -2), (0, 0, 0, 0, 0)]);
    }

    #[test]
    fn no_rules_is_the_default_alone() {
        let deny = program(&Policy { default_allow: false, rules: vec![] }).unwrap();
        let mut want = PRELUDE.to_vec();
        want.extend([(0xb4, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]);
        assert_eq!(decode(&deny), want);
        let allow = program(&Policy { default_allow: true, rules: vec![] }).unwrap();
        assert_eq!(decode(&allow).last(), Some(&(0x95, 0, 0, 0, 0)));
        assert_eq!(decode(&allow)[6], (0xb4, 0, 0, 0, 1));
    }

    #[test]
    fn rules_are_tested_last_first_and_jump_to_the_next_block() {
        // deny a; allow c 1:3 rw; deny c *:* w
        let policy = Policy {
            default_allow: false,
            rules: vec![c(true, Some(1), Some(3), ACC_READ | ACC_WRITE), c(false, None, None, ACC_WRITE)],
        };
        let mut want = PRELUDE.to_vec();
        want.extend([
            // deny c *:* w (the last rule comes first)
            (0x55, 2, 0, 4, 2), // type != char: skip the 4 that follow
            (0x45, 3, 0, 1, 4), // a pending write: refuse
            (0x05, 0, 0, 2, 0), // else skip the refusal
            (0xb4, 0, 0, 0, 0),
            (0x95, 0, 0, 0, 0),
            // allow c 1:3 rw
            (0x55, 2, 0, 6, 2),
            (0x55, 4, 0, 5, 1),
            (0x55, 5, 0, 4, 3),
            (0x54, 3, 0, 0, !6), // r and w decided
            (0x55, 3, 0, 2, 0),  // something left (m): next
            (0xb4, 0, 0, 0, 1),
            (0x95, 0, 0, 0, 0),
            // default
            (0xb4, 0, 0, 0, 0),
            (0x95, 0, 0, 0, 0),
        ]);
        assert_eq!(decode(&program(&policy).unwrap()), want);
    }

    #[test]
    fn numbers_above_i32_go_through_a_register() {
        let policy = Policy {
            default_allow: true,
            rules: vec![DevRule {
                allow: false,
                kind: DEV_BLOCK,
                major: Some(0x8000_0000),
                minor: None,
                access: ACC_ALL,
            }],
        };
        let got = decode(&program(&policy).unwrap());
        assert_eq!(
            &got[6..13],
            &[
                (0x55, 2, 0, 7, 1),
                (0x18, 1, 0, 0, i32::MIN),
                (0, 0, 0, 0, 0),
                (0x5d, 4, 1, 4, 0),
                (0x45, 3, 0, 1, 7),
                (0x05, 0, 0, 2, 0),
                (0xb4, 0, 0, 0, 0),
            ]
        );
    }

    /// Run the program on a request, as the kernel would (the instructions
    /// this module emits only).
    pub(crate) fn run(insns: &[Insn], kind: u32, access: u8, major: u32, minor: u32) -> bool {
        let ctx = [(u32::from(access) << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let (code, dst, src, off, imm) = decode(&insns[pc..=pc])[0];
            let (d, s) = (usize::from(dst), usize::from(src));
            let jump = |cond: bool| if cond { (pc as isize + 1 + off as isize) as usize } else { pc + 1 };
            pc = match code {
                0x61 => {
                    r[d] = u64::from(ctx[off as usize / 4]);
                    pc + 1
                }
                0x18 => {
                    r[d] = u64::from(imm as u32) | (u64::from(insns[pc + 1].imm as u32) << 32);
                    pc + 2
                }
                0x54 => {
                    r[d] = u64::from(r[d] as u32 & imm as u32);
                    pc + 1
                }
                0x74 => {
                    r[d] = u64::from((r[d] as u32) >> imm);
                    pc + 1
                }
                0xb4 => {
                    r[d] = u64::from(imm as u32);
                    pc + 1
                }
                0x55 => jump(r[d] != imm as i64 as u64),
                0x5d => jump(r[d] != r[s]),
                0x45 => jump(r[d] & (imm as i64 as u64) != 0),
                0x05 => jump(true),
                0x95 => return r[0] != 0,
                other => panic!("unexpected opcode {other:#x}"),
            };
        }
    }

    #[test]
    fn each_requested_bit_is_decided_by_the_last_rule_naming_it() {
        let rw = ACC_READ | ACC_WRITE;
        let p = |default_allow, rules| program(&Policy { default_allow, rules }).unwrap();
        // allow c 1:3 rwm; deny c 1:3 w
        let prog = p(false, vec![c(true, Some(1), Some(3), ACC_ALL), c(false, Some(1), Some(3), ACC_WRITE)]);
        assert!(run(&prog, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!run(&prog, DEV_CHAR, ACC_WRITE, 1, 3));
        assert!(!run(&prog, DEV_CHAR, rw, 1, 3));
        assert!(!run(&prog, DEV_BLOCK, ACC_READ, 1, 3));
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 1, 5));
        // allow c 1:3 r; allow c 1:3 w: rw is allowed, m is not
        let prog = p(false, vec![c(true, Some(1), Some(3), ACC_READ), c(true, Some(1), Some(3), ACC_WRITE)]);
        assert!(run(&prog, DEV_CHAR, rw, 1, 3));
        assert!(!run(&prog, DEV_CHAR, ACC_MKNOD, 1, 3));
        // the last one wins
        let prog = p(false, vec![c(true, Some(1), None, ACC_ALL), c(false, Some(1), Some(3), ACC_ALL)]);
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 1, 3));
        assert!(run(&prog, DEV_CHAR, ACC_READ, 1, 5));
        let prog = p(false, vec![c(false, Some(1), Some(3), ACC_ALL), c(true, Some(1), None, ACC_ALL)]);
        assert!(run(&prog, DEV_CHAR, rw, 1, 3));
        // default allow with a deny exception
        let prog = p(true, vec![c(false, None, Some(3), ACC_MKNOD)]);
        assert!(!run(&prog, DEV_CHAR, ACC_MKNOD, 7, 3));
        assert!(run(&prog, DEV_CHAR, rw, 7, 3));
        assert!(run(&prog, DEV_BLOCK, ACC_MKNOD, 7, 3));
    }
}
