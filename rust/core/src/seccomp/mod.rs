//! Seccomp from the spec's `linux.seccomp`: parse, compile to classic BPF
//! ([`bpf`]) and install, without libseccomp.
//!
//! Like runc, the filter goes in as late as possible: with
//! `noNewPrivileges` right before execve (nothing the init does afterwards
//! has to be allowed by the profile), without it just before the
//! capabilities are dropped (installing a filter without no_new_privs needs
//! CAP_SYS_ADMIN).  [`prepare`] does the latter and keeps the former for
//! [`install_pending`].
//!
//! Rules apply to the native architecture (x86_64 or aarch64).  Syscalls
//! from any other ABI (i386 or x32 on x86_64, arm32 on aarch64) kill the
//! process, listed in `architectures` or not: there are no tables for them.
//! Names the native table lacks are skipped, as runc does.

pub mod bpf;
mod tables;

use std::sync::OnceLock;

use serde::Deserialize;

use crate::errors::{Error, Result};

const STEP: &str = "seccomp";

/// What the runtime supports, for `features`.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
pub const OPERATORS: &[&str] =
    &["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"];
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
/// Accepted in `architectures` (libseccomp's names); only the native one
/// gets rules.
pub const ARCHITECTURES: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

#[cfg(target_arch = "x86_64")]
const NATIVE: (u32, &[(&str, u16)]) = (0xC000_003E, tables::X86_64);
#[cfg(target_arch = "aarch64")]
const NATIVE: (u32, &[(&str, u16)]) = (0xC000_00B7, tables::AARCH64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("seccomp: syscall tables exist for x86_64 and aarch64 only (see gen_tables.sh)");

/// `linux.seccomp` as the runtime spec (config-linux.md) has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// A compiled filter, ready for [`Filter::install`].
#[derive(Debug, Clone)]
pub struct Filter {
    pub prog: Vec<bpf::Insn>,
    pub flags: libc::c_uint,
}

fn bad(field: &str, detail: impl std::fmt::Display) -> Error {
    Error::msg(STEP, format!("linux.seccomp.{field}: {detail}"))
}

/// The return value of `action`; `errno_ret` is ERRNO's errno (and TRACE's
/// message), EPERM if not given.
fn action(field: &str, name: &str, errno_ret: Option<u32>) -> Result<u32> {
    let data = match errno_ret {
        Some(n) if n > 0xffff => return Err(bad(field, format!("errno {n} is out of range"))),
        Some(n) => n,
        None => libc::EPERM as u32,
    };
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_ERRNO" => RET_ERRNO | data,
        "SCMP_ACT_TRACE" => RET_TRACE | data,
        "SCMP_ACT_LOG" => RET_LOG,
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_NOTIFY" => return Err(bad(field, "SCMP_ACT_NOTIFY is not supported")),
        other => return Err(bad(field, format!("unknown action {other:?}"))),
    })
}

fn op(field: &str, name: &str) -> Result<bpf::Op> {
    Ok(match name {
        "SCMP_CMP_NE" => bpf::Op::Ne,
        "SCMP_CMP_LT" => bpf::Op::Lt,
        "SCMP_CMP_LE" => bpf::Op::Le,
        "SCMP_CMP_EQ" => bpf::Op::Eq,
        "SCMP_CMP_GE" => bpf::Op::Ge,
        "SCMP_CMP_GT" => bpf::Op::Gt,
        "SCMP_CMP_MASKED_EQ" => bpf::Op::MaskedEq,
        other => return Err(bad(field, format!("unknown operator {other:?}"))),
    })
}

fn flag(field: &str, name: &str) -> Result<libc::c_uint> {
    Ok(match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => 1,
        "SECCOMP_FILTER_FLAG_LOG" => 2,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
        // Only meaningful with a listener (refused below); harmless alone.
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 0,
        other => return Err(bad(field, format!("unknown flag {other:?}"))),
    })
}

/// The native number of `name`, None if this architecture lacks it.
pub fn syscall_number(name: &str) -> Option<u32> {
    let table = NATIVE.1;
    table.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| u32::from(table[i].1))
}

impl Seccomp {
    /// Validate and compile.  Errors name the offending field.
    pub fn compile(&self) -> Result<Filter> {
        if self.listener_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(bad("listenerPath", "seccomp notification listeners are not supported"));
        }
        let default = action("defaultAction", &self.default_action, self.default_errno_ret)?;
        for (i, arch) in self.architectures.iter().enumerate() {
            if !ARCHITECTURES.contains(&arch.as_str()) {
                return Err(bad(&format!("architectures[{i}]"), format!("unknown architecture {arch:?}")));
            }
        }
        let mut flags = 0;
        for (i, f) in self.flags.iter().enumerate() {
            flags |= flag(&format!("flags[{i}]"), f)?;
        }
        let mut syscalls: Vec<bpf::Syscall> = Vec::new();
        // nr -> index in `syscalls`.
        let mut slot: Vec<Option<usize>> = Vec::new();
        for (i, rule) in self.syscalls.iter().enumerate() {
            let ret = action(&format!("syscalls[{i}].action"), &rule.action, rule.errno_ret)?;
            let mut conds = Vec::with_capacity(rule.args.len());
            let mut seen = [0u8; 6];
            for (j, a) in rule.args.iter().enumerate() {
                let field = format!("syscalls[{i}].args[{j}]");
                let index = u8::try_from(a.index).ok().filter(|ix| *ix < 6).ok_or_else(|| {
                    bad(&format!("{field}.index"), format!("{} is not an argument index (0-5)", a.index))
                })?;
                seen[usize::from(index)] += 1;
                let op = op(&format!("{field}.op"), &a.op)?;
                conds.push(bpf::Cond { index, op, value: a.value, value_two: a.value_two });
            }
            if rule.names.is_empty() {
                return Err(bad(&format!("syscalls[{i}].names"), "must not be empty"));
            }
            // As runc does: several conditions on one argument are
            // alternatives (one rule each), otherwise they all must hold.
            let rules: Vec<bpf::Rule> = if seen.iter().any(|n| *n > 1) {
                conds.iter().map(|c| bpf::Rule { conds: vec![*c], ret }).collect()
            } else {
                vec![bpf::Rule { conds, ret }]
            };
            for name in &rule.names {
                let Some(nr) = syscall_number(name) else { continue };
                let nr_ix = nr as usize;
                if slot.len() <= nr_ix {
                    slot.resize(nr_ix + 1, None);
                }
                match slot[nr_ix] {
                    Some(ix) => syscalls[ix].rules.extend(rules.iter().cloned()),
                    None => {
                        slot[nr_ix] = Some(syscalls.len());
                        syscalls.push(bpf::Syscall { nr, rules: rules.clone() });
                    }
                }
            }
        }
        let program = bpf::Program {
            arch: NATIVE.0,
            reject_x32: cfg!(target_arch = "x86_64"),
            syscalls,
            default,
            bad_arch: RET_KILL_PROCESS,
        };
        let prog = bpf::compile(&program).map_err(|e| Error::msg(STEP, format!("linux.seccomp: {e}")))?;
        Ok(Filter { prog, flags })
    }
}

/// `linux.seccomp` of a config.json text, None if absent or null.
pub fn from_config(config: &str) -> Result<Option<Seccomp>> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        linux: Option<Linux>,
    }
    #[derive(Deserialize)]
    struct Linux {
        #[serde(default)]
        seccomp: Option<Seccomp>,
    }
    // Most containers have no filter: skip the second parse of the spec.
    if !config.contains("\"seccomp\"") {
        return Ok(None);
    }
    let doc: Doc = serde_json::from_str(config).map_err(|e| Error::msg(STEP, format!("linux.seccomp: {e}")))?;
    Ok(doc.linux.and_then(|l| l.seccomp))
}

impl Filter {
    /// seccomp(SECCOMP_SET_MODE_FILTER).  Needs no_new_privs or CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<()> {
        const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
        let len = u16::try_from(self.prog.len()).map_err(|_| Error::msg(STEP, "filter too long"))?;
        let fprog = libc::sock_fprog { len, filter: self.prog.as_ptr().cast_mut() };
        // SAFETY: `fprog` points at `self.prog`, alive for the call; the
        // kernel copies the program.
        let rc = unsafe {
            libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, libc::c_ulong::from(self.flags), &fprog)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = Error::last_os(STEP);
        Err(match err.errno {
            libc::EACCES => err.with_detail("installing a filter needs no_new_privs or CAP_SYS_ADMIN"),
            libc::EINVAL if self.flags != 0 => err.with_detail("the kernel rejected the filter or its flags"),
            _ => err,
        })
    }
}

/// The filter left for [`install_pending`].
static PENDING: OnceLock<Filter> = OnceLock::new();

/// In the init, once inside the container's root: compile the spec's
/// filter and keep it for [`install_pending`], the last step before execve,
/// so that nothing the init still does (getcwd, the exec fifo, hooks, the
/// program's lookup) runs under the container's profile.  Returns whether
/// installing it will need CAP_SYS_ADMIN (there is a filter and no
/// no_new_privs), which the caller must then hold until it is in.
pub fn prepare(config: &str, no_new_privs: bool) -> Result<bool> {
    let Some(seccomp) = from_config(config)? else { return Ok(false) };
    let _ = PENDING.set(seccomp.compile()?);
    Ok(!no_new_privs)
}

/// Install the filter [`prepare`] kept, if any: the last step before execve.
pub fn install_pending() -> Result<()> {
    PENDING.get().map_or(Ok(()), Filter::install)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Filter> {
        from_config(json)?.expect("has seccomp").compile()
    }

    fn err(json: &str) -> String {
        compile(json).expect_err("rejected").to_string()
    }

    #[test]
    fn tables_are_sorted_and_know_the_common_names() {
        assert!(NATIVE.1.windows(2).all(|w| w[0].0 < w[1].0));
        for name in ["execve", "openat", "mkdirat", "getpid", "personality", "clone3"] {
            assert!(syscall_number(name).is_some(), "{name}");
        }
        assert_eq!(syscall_number("no_such_syscall"), None);
    }

    #[test]
    fn no_seccomp_section_means_no_filter() {
        assert!(from_config(r#"{"linux":{"namespaces":[]}}"#).unwrap().is_none());
        assert!(from_config(r#"{"linux":{"seccomp":null}}"#).unwrap().is_none());
    }

    #[test]
    fn errno_rule_returns_its_errno_and_unknown_names_are_skipped() {
        let f = compile(
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["no_such_call","getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}}}"#,
        )
        .unwrap();
        let getpid = syscall_number("getpid").unwrap();
        assert_eq!(bpf::tests::run(&f.prog, getpid, NATIVE.0, [0; 6]), RET_ERRNO | 38);
        assert_eq!(bpf::tests::run(&f.prog, getpid + 1, NATIVE.0, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn several_conditions_on_one_argument_are_alternatives() {
        let f = compile(
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                    {"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}}}"#,
        )
        .unwrap();
        let nr = syscall_number("personality").unwrap();
        let run = |a: u64| bpf::tests::run(&f.prog, nr, NATIVE.0, [a, 0, 0, 0, 0, 0]);
        assert_eq!(run(0), RET_ALLOW);
        assert_eq!(run(8), RET_ALLOW);
        assert_eq!(run(1), RET_ERRNO | 1);
    }

    /// The kernel accepts a large compiled program (far jumps through JA)
    /// and enforces it: in a forked child, getppid(0) gets ERRNO 99 while
    /// getppid(5) and everything else still work.
    #[test]
    fn kernel_accepts_and_enforces_a_large_filter() {
        let mut rules: Vec<String> = NATIVE
            .1
            .iter()
            .filter(|(n, _)| *n != "getppid")
            .map(|(n, _)| {
                format!(r#"{{"names":["{n}"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":4294967296,"op":"SCMP_CMP_LT"}}]}}"#)
            })
            .collect();
        rules.push(r#"{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":99,"args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]}"#.into());
        let json = format!(
            r#"{{"linux":{{"seccomp":{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{}]}}}}}}"#,
            rules.join(",")
        );
        let f = compile(&json).unwrap();
        assert!(f.prog.len() > 2000 && f.prog.iter().any(|i| i.code == (libc::BPF_JMP | libc::BPF_JA) as u16));
        // SAFETY: the child only makes raw syscalls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: raw syscalls in the forked child; no allocation.
            unsafe {
                let mut code = 0;
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || f.install().is_err() {
                    libc::_exit(10);
                }
                if libc::syscall(libc::SYS_getppid, 0) != -1 || *libc::__errno_location() != 99 {
                    code |= 1;
                }
                if libc::syscall(libc::SYS_getppid, 5) < 0 || libc::syscall(libc::SYS_getpid) < 0 {
                    code |= 2;
                }
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        let cases = [
            (r#"{"defaultAction":"SCMP_ACT_NOPE"}"#, "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_NOPE\""),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW"},
                    {"names":["b"],"action":"X"}]}"#,
                "linux.seccomp.syscalls[1].action: unknown action \"X\"",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO",
                    "args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0].index: 6 is not an argument index (0-5)",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO",
                    "args":[{"index":1,"value":1,"op":"SCMP_CMP_ISH"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0].op: unknown operator \"SCMP_CMP_ISH\"",
            ),
            (r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["F"]}"#, "linux.seccomp.flags[0]: unknown flag \"F\""),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","Z80"]}"#,
                "linux.seccomp.architectures[1]: unknown architecture \"Z80\"",
            ),
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY is not supported"),
            (r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/l.sock"}"#, "linux.seccomp.listenerPath"),
            (r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#, "errno 70000 is out of range"),
            (r#"{"syscalls":[]}"#, "missing field `defaultAction`"),
        ];
        for (seccomp, want) in cases {
            let got = err(&format!(r#"{{"linux":{{"seccomp":{seccomp}}}}}"#));
            assert!(got.starts_with("seccomp: "), "{got}");
            assert!(got.contains(want), "{got:?} lacks {want:?}");
        }
    }
}
