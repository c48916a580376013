//! A classic-BPF compiler for seccomp filters: per-syscall rules with
//! argument conditions, dispatched on the syscall number through a small
//! binary search tree.
//!
//! The program is emitted backwards (last instruction first), so the
//! distance to every jump target is known when a jump is emitted: a
//! conditional jump can only skip 255 instructions, and a farther target is
//! reached through an unconditional `JA` (32-bit offset) placed right after
//! the jump.

/// One classic BPF instruction, as the kernel reads it.
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// x86_64 syscalls made through the x32 ABI carry this bit in their number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A comparison of one syscall argument with the rule's value(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & value) == value_two`.
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    /// Argument index, 0..6.
    pub index: u8,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

/// `ret` when every condition holds (no conditions: always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub conds: Vec<Cond>,
    pub ret: u32,
}

/// The rules of one syscall, tried in order; none matching gives the
/// program's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    pub nr: u32,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The AUDIT_ARCH_* value the rules are for; any other arch gets `bad_arch`.
    pub arch: u32,
    /// x86_64: numbers with [`X32_SYSCALL_BIT`] (the x32 ABI) get `bad_arch`,
    /// as libseccomp does for a filter without the x32 architecture.
    pub reject_x32: bool,
    /// Unique numbers.
    pub syscalls: Vec<Syscall>,
    pub default: u32,
    pub bad_arch: u32,
}

/// Index of an instruction counted from the END of the program (the
/// emitter builds it backwards).
type Label = usize;

struct Emitter {
    rev: Vec<Insn>,
}

impl Emitter {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(Insn { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// The instruction emitted last: what follows the next one emitted.
    fn next(&self) -> Label {
        self.rev.len() - 1
    }

    fn ret(&mut self, k: u32) -> Label {
        self.push(RET_K, 0, 0, k)
    }

    fn load(&mut self, offset: u32) {
        self.push(LD_W_ABS, 0, 0, offset);
    }

    fn and(&mut self, k: u32) {
        self.push(ALU_AND_K, 0, 0, k);
    }

    /// Offset of `target` from an instruction emitted now.
    fn distance(&self, target: Label) -> usize {
        self.rev.len() - target - 1
    }

    /// `if (A <code> k) goto t else goto f`, through a `JA` for a target
    /// more than 255 instructions away.
    fn jump(&mut self, code: u16, k: u32, t: Label, f: Label) {
        let mut t = t;
        let mut f = f;
        if self.distance(f) > 255 {
            f = self.push(JMP_JA, 0, 0, self.distance(f) as u32);
        }
        if self.distance(t) > 255 {
            t = self.push(JMP_JA, 0, 0, self.distance(t) as u32);
        }
        // Both are at most 255 now: a JA just emitted is 0 or 1 away.
        let (jt, jf) = (self.distance(t) as u8, self.distance(f) as u8);
        self.push(code, jt, jf, k);
    }

    /// Fall through when `cond` holds, else go to `fail`.
    fn cond(&mut self, c: &Cond, fail: Label) {
        let pass = self.next();
        let lo_off = OFF_ARGS + 8 * u32::from(c.index) + if cfg!(target_endian = "little") { 0 } else { 4 };
        let hi_off = OFF_ARGS + 8 * u32::from(c.index) + if cfg!(target_endian = "little") { 4 } else { 0 };
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        // Forward: the high halves decide unless equal, then the low halves.
        match c.op {
            Op::Eq | Op::Ne => {
                let (eq, ne) = if c.op == Op::Eq { (pass, fail) } else { (fail, pass) };
                self.jump(JEQ, vlo, eq, ne);
                self.load(lo_off);
                let lo = self.next();
                self.jump(JEQ, vhi, lo, ne);
            }
            Op::Gt | Op::Ge => {
                self.jump(if c.op == Op::Gt { JGT } else { JGE }, vlo, pass, fail);
                self.load(lo_off);
                let lo = self.next();
                self.jump(JEQ, vhi, lo, fail);
                let eq = self.next();
                self.jump(JGT, vhi, pass, eq);
            }
            Op::Lt | Op::Le => {
                self.jump(if c.op == Op::Lt { JGE } else { JGT }, vlo, fail, pass);
                self.load(lo_off);
                let lo = self.next();
                self.jump(JEQ, vhi, lo, pass);
                let eq = self.next();
                self.jump(JGT, vhi, fail, eq);
            }
            Op::MaskedEq => {
                let (dhi, dlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
                self.jump(JEQ, dlo, pass, fail);
                self.and(vlo);
                self.load(lo_off);
                let lo = self.next();
                self.jump(JEQ, dhi, lo, fail);
                self.and(vhi);
            }
        }
        self.load(hi_off);
    }

    /// Jump to the body of `nr` among `items` (sorted by number), else to
    /// `miss`; returns the label of the first instruction.
    fn dispatch(&mut self, items: &[(u32, Label)], miss: Label) -> Label {
        if items.len() <= 4 {
            let mut next = miss;
            for &(nr, body) in items.iter().rev() {
                self.jump(JEQ, nr, body, next);
                next = self.next();
            }
            return next;
        }
        let mid = items.len() / 2;
        let high = self.dispatch(&items[mid..], miss);
        let low = self.dispatch(&items[..mid], miss);
        self.jump(JGE, items[mid].0, high, low);
        self.next()
    }
}

/// Compile `p`.  Errors only when the program is longer than the kernel allows.
pub fn compile(p: &Program) -> Result<Vec<Insn>, String> {
    let mut e = Emitter { rev: Vec::new() };
    let bad_arch = e.ret(p.bad_arch);
    let default = e.ret(p.default);
    let mut bodies = Vec::with_capacity(p.syscalls.len());
    for sc in &p.syscalls {
        // Conditional rules first (in order), then the first unconditional
        // one, which is the syscall's fallback.
        let fallback = sc.rules.iter().find(|r| r.conds.is_empty());
        let mut next = match fallback {
            Some(r) if r.ret != p.default => e.ret(r.ret),
            _ => default,
        };
        for rule in sc.rules.iter().filter(|r| !r.conds.is_empty()).rev() {
            let fail = next;
            e.ret(rule.ret);
            for c in rule.conds.iter().rev() {
                e.cond(c, fail);
            }
            next = e.next();
        }
        if next != default {
            bodies.push((sc.nr, next));
        }
    }
    bodies.sort_unstable_by_key(|b| b.0);
    let start = e.dispatch(&bodies, default);
    if p.reject_x32 {
        e.jump(JGE, X32_SYSCALL_BIT, bad_arch, start);
    }
    e.load(OFF_NR);
    let nr = e.next();
    e.jump(JEQ, p.arch, nr, bad_arch);
    e.load(OFF_ARCH);
    if e.rev.len() > MAX_INSNS {
        return Err(format!("the filter has {} instructions, the kernel allows {MAX_INSNS}", e.rev.len()));
    }
    e.rev.reverse();
    Ok(e.rev)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ARCH: u32 = 0xC000_003E;
    const ALLOW: u32 = 0x7fff_0000;
    const KILL: u32 = 0x8000_0000;
    const EPERM: u32 = 0x0005_0001;

    /// A classic-BPF interpreter for what [`compile`] emits.
    pub(crate) fn run(prog: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    a = u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
                }
                ALU_AND_K => a &= i.k,
                JMP_JA => pc += i.k as usize,
                JEQ | JGT | JGE => {
                    let hit = match i.code {
                        JEQ => a == i.k,
                        JGT => a > i.k,
                        _ => a >= i.k,
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn program(syscalls: Vec<Syscall>, default: u32) -> Vec<Insn> {
        compile(&Program { arch: ARCH, reject_x32: true, syscalls, default, bad_arch: KILL }).expect("compiles")
    }

    fn one(nr: u32, conds: Vec<Cond>, ret: u32) -> Syscall {
        Syscall { nr, rules: vec![Rule { conds, ret }] }
    }

    #[test]
    fn other_arch_and_x32_numbers_get_the_bad_arch_action() {
        let p = program(vec![one(1, vec![], ALLOW)], EPERM);
        assert_eq!(run(&p, 1, ARCH, [0; 6]), ALLOW);
        assert_eq!(run(&p, 2, ARCH, [0; 6]), EPERM);
        assert_eq!(run(&p, 1, 0x4000_0003, [0; 6]), KILL);
        assert_eq!(run(&p, 1 | X32_SYSCALL_BIT, ARCH, [0; 6]), KILL);
    }

    #[test]
    fn dispatch_over_many_syscalls_with_far_jumps_reaches_every_body() {
        // 400 syscalls, each with a 3-instruction condition: bodies are far
        // more than 255 instructions from the dispatch tree's jumps.
        let syscalls: Vec<Syscall> = (0..400u32)
            .map(|nr| one(nr * 3, vec![Cond { index: 0, op: Op::Eq, value: u64::from(nr), value_two: 0 }], ALLOW + nr))
            .collect();
        let p = program(syscalls, EPERM);
        assert!(p.len() > 1000, "{}", p.len());
        assert!(p.iter().any(|i| i.code == JMP_JA), "far jumps go through JA");
        for nr in 0..400u32 {
            let mut args = [0u64; 6];
            args[0] = u64::from(nr);
            assert_eq!(run(&p, nr * 3, ARCH, args), ALLOW + nr, "nr {}", nr * 3);
            args[0] += 1;
            assert_eq!(run(&p, nr * 3, ARCH, args), EPERM);
            assert_eq!(run(&p, nr * 3 + 1, ARCH, args), EPERM);
        }
    }

    #[test]
    fn comparisons_are_64_bit_on_both_halves() {
        let v: u64 = 0x0000_0001_0000_0005;
        let cases: [(Op, &[(u64, bool)]); 6] = [
            (Op::Eq, &[(v, true), (5, false), (v + (1 << 32), false), (v + 1, false)]),
            (Op::Ne, &[(v, false), (5, true), (v | 1 << 40, true)]),
            (Op::Gt, &[(v, false), (v + 1, true), (0x2_0000_0000, true), (0x0_ffff_ffff, false), (v - 1, false)]),
            (Op::Ge, &[(v, true), (v + 1, true), (v - 1, false), (0xffff_ffff, false), (u64::MAX, true)]),
            (Op::Lt, &[(v, false), (v - 1, true), (0xffff_ffff, true), (0x1_0000_0006, false), (u64::MAX, false)]),
            (Op::Le, &[(v, true), (v + 1, false), (0x0_0000_0009, true), (0x2_0000_0000, false)]),
        ];
        for (op, checks) in cases {
            let p = program(vec![one(7, vec![Cond { index: 2, op, value: v, value_two: 0 }], ALLOW)], EPERM);
            for &(arg, want) in checks {
                let got = run(&p, 7, ARCH, [0, 0, arg, 0, 0, 0]) == ALLOW;
                assert_eq!(got, want, "{op:?} arg={arg:#x} value={v:#x}");
            }
        }
    }

    #[test]
    fn masked_eq_masks_both_halves() {
        let cond = Cond { index: 5, op: Op::MaskedEq, value: 0xff00_0000_0000_00ff, value_two: 0x1200_0000_0000_0034 };
        let p = program(vec![one(3, vec![cond], ALLOW)], EPERM);
        assert_eq!(run(&p, 3, ARCH, [0, 0, 0, 0, 0, 0x12ab_cdef_1234_5634]), ALLOW);
        assert_eq!(run(&p, 3, ARCH, [0, 0, 0, 0, 0, 0x13ab_cdef_1234_5634]), EPERM);
        assert_eq!(run(&p, 3, ARCH, [0, 0, 0, 0, 0, 0x12ab_cdef_1234_5635]), EPERM);
    }

    #[test]
    fn conditional_rules_come_before_the_unconditional_fallback() {
        let rules = vec![
            Rule { conds: vec![], ret: KILL },
            Rule { conds: vec![Cond { index: 0, op: Op::Eq, value: 8, value_two: 0 }], ret: ALLOW },
            Rule {
                conds: vec![
                    Cond { index: 0, op: Op::Ge, value: 100, value_two: 0 },
                    Cond { index: 1, op: Op::Lt, value: 3, value_two: 0 },
                ],
                ret: EPERM,
            },
        ];
        let p = program(vec![Syscall { nr: 9, rules }], ALLOW);
        assert_eq!(run(&p, 9, ARCH, [8, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, 9, ARCH, [100, 2, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, 9, ARCH, [100, 3, 0, 0, 0, 0]), KILL);
        assert_eq!(run(&p, 9, ARCH, [7, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(&p, 10, ARCH, [7, 0, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn too_long_a_program_is_an_error() {
        let cond = Cond { index: 0, op: Op::Lt, value: 1, value_two: 0 };
        let syscalls = (0..600).map(|nr| one(nr, vec![cond, cond], ALLOW)).collect();
        let err = compile(&Program { arch: ARCH, reject_x32: true, syscalls, default: EPERM, bad_arch: KILL })
            .expect_err("too long");
        assert!(err.contains("kernel allows 4096"), "{err}");
    }
}
