//! The sandbox every child is in before it reads a byte from its client:
//! Landlock and a seccomp filter, so that a child taken over by its client
//! holds little more than the files it serves.
//!
//! Runs in: parent (`Plan::new`, once per generation; `missing`, for the
//! start-up log and `--check-config`), the spawner (`enter_spawner`,
//! after the privilege drop: every child it forks inherits that sandbox)
//! and child (`enter_child`, its own layer on top).
//!
//! - **Landlock** (`landlock` crate): read access (files and directory
//!   listings) beneath the sites' roots, through the `O_PATH` descriptors
//!   the parent opened, and nothing else on the filesystem: no `/etc`, no
//!   config, no `/proc/<parent>/mem`, no writing, no executing. No TCP
//!   `bind` or `connect` (ABI 4). No signal and no abstract unix socket
//!   outside the child's own domain (ABI 6): each child nests a domain
//!   of its own in the spawner's, so the parent, the spawner and its
//!   siblings are outside. Descriptors
//!   opened before (the connection, the logs, syslog, the lifeline) keep
//!   working: Landlock checks opens, not reads and writes.
//! - **seccomp** (`seccompiler`, Firecracker's filter compiler: pure Rust,
//!   no libseccomp to link, a small audited code base that turns a map of
//!   rules into BPF): an allow-list of the system calls a serving child
//!   makes (from `strace -f` of children across the test suite, plus what
//!   TLS needs: `getrandom`), with the arguments checked where the call
//!   would otherwise reach beyond the child: `fcntl` only reads and sets
//!   descriptor flags (no `F_SETFL`, which would clear `O_APPEND` on the
//!   log files' descriptions the whole server shares), `ioctl` only
//!   `FIONBIO`, no executable memory, a signal only to itself (`SIGABRT`,
//!   a panic's abort). Anything else, `socket`, `execve`, `ptrace`,
//!   `process_vm_writev`, `kill`, `ftruncate` and the rest, kills the
//!   child (`SIGSYS`), which the parent logs, rate limited.
//!
//! The filters are compiled once per generation by the parent. The
//! spawner's (the allow-list above, with `clone` to fork children) is
//! attached once, by the spawner. Each child then takes forking away
//! (`ChildLayer`): by lowering its process limit to 0, where Landlock
//! keeps its signals in and the limit binds, or else by stacking a short
//! filter of its own that takes `clone` and signals to others away, its
//! pid written over a placeholder (compiling in each child cost some 15 µs).
//!
//! The key process (`tls::keys`) has a sandbox of its own, stricter
//! still (`enter_key_process`): Landlock with no rule at all (no file,
//! no TCP, no signal or abstract socket outside itself), and a filter
//! that allows reading and writing on the descriptors it holds, its
//! memory, randomness and the clock, and nothing else: no `openat`, no
//! `socket`, no `sendfile`, `fcntl` only to read a descriptor's flags.
//! It compiles that filter itself, once.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::BorrowedFd;

use nix::sys::resource::{Resource, setrlimit};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

use crate::sys;

/// The Landlock ABI whose protections a child asks for: filesystem rights
/// up to ABI 5, TCP from ABI 4, scoping from ABI 6. Newer ABIs add nothing
/// a child needs (ABI 7 is audit logging).
const LANDLOCK_ABI: ABI = ABI::V6;

/// A pid no process has (Linux's `pid_max` is at most 2^22), compiled
/// into the parent's filter where the child's own pid goes.
const PID_PLACEHOLDER: u32 = 0x7fff_fffe;

/// The longest filter (in instructions) a child copies onto its stack to
/// put its pid in: the child's own filter compiles to some 20. A copy on
/// the stack, where the serving frames reuse the space later, writes no
/// heap page (a page a child otherwise leaves shared with the spawner).
const FILTER_ON_STACK: usize = 64;

/// The `clone` flags the spawner forks each child with (`sys::fork_sibling`),
/// the only `clone` its filter allows.
const SPAWN_FLAGS: u64 = (libc::CLONE_PARENT | libc::SIGCHLD) as u64;

/// What the spawner and each child confine themselves with, made by the
/// parent.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The spawner's filter, which every child inherits: the serving
    /// calls, one way to fork (`clone` with `SPAWN_FLAGS`), the Landlock
    /// calls a child makes to enter its own domain, and `SIGABRT` to
    /// any process (each child's own filter narrows that to itself).
    spawner: BpfProgram,
    /// The filter each child stacks on the spawner's, its pid the
    /// placeholder: no `clone`, no Landlock call, no signal but to itself.
    child: BpfProgram,
    /// Where in `child` the placeholder is compared with the pid.
    pid_at: usize,
    /// Whether this kernel scopes signals and abstract sockets (Landlock
    /// ABI 6), which each child's own domain is for.
    scoping: bool,
}

/// Why a sandbox could not be made or entered. A child that cannot enter
/// its sandbox exits without serving.
#[derive(Debug)]
pub enum SandboxError {
    /// The seccomp filter could not be made, compiled or installed.
    Seccomp(seccompiler::Error),
    /// The Landlock ruleset could not be made or enforced.
    Landlock(RulesetError),
    /// The compiled filter does not compare the pid exactly once, so a
    /// child could not put its own in.
    PidSlot(usize),
    /// The child could not lower its process limit.
    ProcessLimit(nix::errno::Errno),
}

/// How each child takes away what its spawner kept for forking children:
/// the `clone` its filter allows, and (before Landlock's scoping) a signal
/// to any process. Chosen by the spawner once confined (`enter_spawner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildLayer {
    /// `RLIMIT_NPROC` lowered to 0 for good (soft and hard): no fork can
    /// succeed, and the child's Landlock domain keeps its signals in. One
    /// system call, where a filter of its own cost a child some 40 µs
    /// (the kernel checks, converts and compiles each filter attached, and
    /// frees it at exit). Only where both hold: Landlock scopes signals
    /// (ABI 6), and the children cannot fork past the limit (not root, no
    /// `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN`).
    ProcessLimit,
    /// A short filter of its own (`child_filter`), stacked on the spawner's.
    Filter,
}

/// What each child of a confined spawner confines itself with
/// (`enter_child`), made once by the spawner (`enter_spawner`): each child
/// uses up its own copy.
#[derive(Debug)]
pub struct ChildSandbox {
    /// How the child takes forking away.
    pub layer: ChildLayer,
    /// The child's own Landlock domain, ready to enter (ABI 6 scoping:
    /// no signal and no abstract socket outside it), made once so that a
    /// child enters it in one call, where making it cost each child three.
    scope: Option<RulesetCreated>,
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::Seccomp(e) => write!(f, "seccomp: {e}"),
            SandboxError::Landlock(e) => write!(f, "landlock: {e}"),
            SandboxError::PidSlot(n) => write!(f, "seccomp: the filter compares the pid {n} times, not once"),
            SandboxError::ProcessLimit(e) => write!(f, "cannot lower RLIMIT_NPROC to 0: {e}"),
        }
    }
}

impl std::error::Error for SandboxError {}

impl From<seccompiler::Error> for SandboxError {
    fn from(e: seccompiler::Error) -> Self {
        SandboxError::Seccomp(e)
    }
}

impl From<seccompiler::BackendError> for SandboxError {
    fn from(e: seccompiler::BackendError) -> Self {
        SandboxError::Seccomp(seccompiler::Error::Backend(e))
    }
}

impl From<RulesetError> for SandboxError {
    fn from(e: RulesetError) -> Self {
        SandboxError::Landlock(e)
    }
}

/// One condition: argument `arg` (a 64-bit value) equals `value`.
fn arg_eq(arg: u8, value: u64) -> Result<SeccompCondition, SandboxError> {
    Ok(SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)?)
}

/// A rule that allows a call whatever its arguments.
fn any() -> Vec<SeccompRule> {
    Vec::new()
}

/// Rules allowing a call only when argument `arg` is one of `values`.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, SandboxError> {
    values.iter().map(|&v| Ok(SeccompRule::new(vec![arg_eq(arg, v)?])?)).collect()
}

/// The system calls a serving child makes once sandboxed, and with which
/// arguments.
fn child_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let mut rules = BTreeMap::new();
    let unconditional = [
        // Reading requests and files, sending responses and log lines.
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendfile,
        libc::SYS_shutdown,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_ppoll,
        // Files beneath the roots (Landlock decides which).
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_close,
        libc::SYS_lseek,
        libc::SYS_statx,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_getdents64,
        // Absolute links in a root are read to judge where they lead
        // (Landlock does not govern reading a link).
        libc::SYS_readlinkat,
        // Memory (never executable: see `mmap` below), threads' locks, time.
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_sched_yield,
        // TLS (rustls with ring) draws its randomness here.
        libc::SYS_getrandom,
        // Process state a library may ask for, and the way out.
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getppid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_uname,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        // A wait stopped and continued (SIGSTOP, SIGCONT: an administrator
        // or a debugger) resumes here; without it the child would be killed.
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    for call in unconditional {
        rules.insert(call, any());
    }
    #[cfg(target_arch = "x86_64")]
    for call in [libc::SYS_poll, libc::SYS_readlink, libc::SYS_gettimeofday, libc::SYS_time] {
        rules.insert(call, any());
    }
    // Descriptor flags only: `F_SETFL` would clear `O_APPEND` on the log
    // files' open descriptions, which every process of the server shares.
    let fcntl_cmds = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_DUPFD_CLOEXEC];
    rules.insert(libc::SYS_fcntl, one_of(1, &fcntl_cmds.map(|c| c as u64))?);
    // FIONBIO is a `c_ulong` in glibc's headers and a `c_int` in musl's:
    // the cast is a no-op on one and needed on the other.
    #[allow(clippy::unnecessary_cast)]
    let fionbio = libc::FIONBIO as u64;
    rules.insert(libc::SYS_ioctl, one_of(1, &[fionbio])?);
    // No executable memory: a child runs the code it was forked with.
    let not_exec = || -> Result<Vec<SeccompRule>, SandboxError> {
        let prot = libc::PROT_EXEC as u64;
        Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            2,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(prot),
            0,
        )?])?])
    };
    rules.insert(libc::SYS_mmap, not_exec()?);
    rules.insert(libc::SYS_mprotect, not_exec()?);
    Ok(rules)
}

/// The system calls the key process makes once sandboxed: records on its
/// sockets (and descriptors passed with them), its daemon log lines,
/// memory, randomness for signing, the clock, and the way out.
fn key_process_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let mut rules = BTreeMap::new();
    let unconditional = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_ppoll,
        libc::SYS_close,
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        // A wait stopped and continued (SIGSTOP, SIGCONT) resumes here.
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    for call in unconditional {
        rules.insert(call, any());
    }
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_poll, any());
    // The standard library checks that a descriptor is open before it
    // closes it (in debug builds): reading its flags, nothing more.
    rules.insert(libc::SYS_fcntl, one_of(1, &[libc::F_GETFD as u64])?);
    let prot = libc::PROT_EXEC as u64;
    let not_exec = vec![SeccompRule::new(vec![SeccompCondition::new(
        2,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(prot),
        0,
    )?])?];
    rules.insert(libc::SYS_mmap, not_exec.clone());
    rules.insert(libc::SYS_mprotect, not_exec);
    Ok(rules)
}

/// `rules` and a signal to itself only (`SIGABRT`, how a panic ends) for
/// the process `pid`, compiled for `arch`.
fn compile(
    mut rules: BTreeMap<i64, Vec<SeccompRule>>,
    pid: u32,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![arg_eq(0, u64::from(pid))?, arg_eq(2, libc::SIGABRT as u64)?])?],
    );
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch)?;
    Ok(filter.try_into()?)
}

/// The spawner's filter: the serving calls (`child_rules`), `SIGABRT`
/// to any process, `clone` with `SPAWN_FLAGS` only, and what a child
/// needs to confine itself further (`enter_child`): `prctl` only to set
/// the parent-death signal to `SIGKILL`, `no_new_privs` or its name, `seccomp`
/// only to add a filter, and two Landlock calls. Each of these but the
/// signal, the child's own filter takes away again.
fn spawner_filter(arch: TargetArch) -> Result<BpfProgram, SandboxError> {
    let mut rules = child_rules()?;
    rules.insert(libc::SYS_tgkill, vec![SeccompRule::new(vec![arg_eq(2, libc::SIGABRT as u64)?])?]);
    rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![arg_eq(0, SPAWN_FLAGS)?])?]);
    // The fork clears the parent-death signal: each child sets it again.
    // And it stacks its own filter, which sets `no_new_privs` (set already).
    let pdeathsig = [arg_eq(0, libc::PR_SET_PDEATHSIG as u64)?, arg_eq(1, libc::SIGKILL as u64)?];
    let no_new_privs = [arg_eq(0, libc::PR_SET_NO_NEW_PRIVS as u64)?, arg_eq(1, 1)?];
    // And it takes its name back from the spawner's.
    let name = arg_eq(0, libc::PR_SET_NAME as u64)?;
    rules.insert(
        libc::SYS_prctl,
        vec![
            SeccompRule::new(pdeathsig.to_vec())?,
            SeccompRule::new(no_new_privs.to_vec())?,
            SeccompRule::new(vec![name])?,
        ],
    );
    // Or, instead of a filter, it lowers its own process limit to 0.
    let nproc = [arg_eq(0, 0)?, arg_eq(1, libc::RLIMIT_NPROC as u64)?];
    rules.insert(libc::SYS_prlimit64, vec![SeccompRule::new(nproc.to_vec())?]);
    let set_filter = [arg_eq(0, u64::from(libc::SECCOMP_SET_MODE_FILTER))?, arg_eq(1, 0)?];
    rules.insert(libc::SYS_seccomp, vec![SeccompRule::new(set_filter.to_vec())?]);
    rules.insert(libc::SYS_landlock_create_ruleset, any());
    rules.insert(libc::SYS_landlock_restrict_self, any());
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch)?;
    Ok(filter.try_into()?)
}

/// A child's own filter, stacked on the spawner's (a call runs only if
/// both allow it): it takes away what the spawner needed and a child must
/// not have, the `clone` to fork, `prctl`, `seccomp`, the Landlock calls,
/// and a signal to any process but the child `pid` itself. A deny-list, short, because
/// the spawner's allow-list already holds everything else.
fn child_filter(pid: u32, arch: TargetArch) -> Result<BpfProgram, SandboxError> {
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_clone, any());
    rules.insert(libc::SYS_prctl, any());
    rules.insert(libc::SYS_seccomp, any());
    rules.insert(libc::SYS_landlock_create_ruleset, any());
    rules.insert(libc::SYS_landlock_restrict_self, any());
    let not_self = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, u64::from(pid))?;
    rules.insert(libc::SYS_tgkill, vec![SeccompRule::new(vec![not_self])?]);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::KillProcess, arch)?;
    Ok(filter.try_into()?)
}

impl Plan {
    /// The plan for this process's spawner and children. Call in the
    /// parent, once per generation.
    pub fn new() -> Result<Plan, SandboxError> {
        let arch = TargetArch::try_from(std::env::consts::ARCH)?;
        let spawner = spawner_filter(arch)?;
        let child = child_filter(PID_PLACEHOLDER, arch)?;
        // A comparison of the accumulator with a constant (linux/filter.h).
        let jeq = u16::try_from(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K).unwrap_or(u16::MAX);
        let slots: Vec<usize> =
            (0..child.len()).filter(|&i| child[i].code == jeq && child[i].k == PID_PLACEHOLDER).collect();
        let scoping = !missing().iter().any(|m| m.contains("ABI 6") || m.starts_with("Landlock ("));
        match slots[..] {
            [pid_at] => Ok(Plan { spawner, child, pid_at, scoping }),
            _ => Err(SandboxError::PidSlot(slots.len())),
        }
    }

    /// Instruction `i` (in bounds) of the child filter for the process `pid`.
    fn instruction(&self, i: usize, pid: u32) -> sock_filter {
        let ins = self.child[i].clone();
        if i == self.pid_at { sock_filter { k: pid, ..ins } } else { ins }
    }

    /// The child filter for the process `pid`.
    #[cfg(test)]
    fn filter_for(&self, pid: u32) -> BpfProgram {
        (0..self.child.len()).map(|i| self.instruction(i, pid)).collect()
    }

    /// Installs the child filter for the process `pid` on this process.
    fn apply(&self, pid: u32) -> Result<(), SandboxError> {
        let len = self.child.len();
        if len <= FILTER_ON_STACK {
            let mut on_stack = [const { sock_filter { code: 0, jt: 0, jf: 0, k: 0 } }; FILTER_ON_STACK];
            for (i, slot) in on_stack[..len].iter_mut().enumerate() {
                *slot = self.instruction(i, pid);
            }
            seccompiler::apply_filter(&on_stack[..len])?;
        } else {
            let filter: BpfProgram = (0..len).map(|i| self.instruction(i, pid)).collect();
            seccompiler::apply_filter(&filter)?;
        }
        Ok(())
    }
}

/// Confines the spawner for good, and with it every child it forks:
/// Landlock first (its own system calls are not on the seccomp list, but
/// for the two `enter_child` makes), then the spawner's seccomp filter.
/// Reads stay possible beneath `roots` only. Call in the spawner, after
/// the privilege drop; `PR_SET_NO_NEW_PRIVS` is set already (both need it).
/// The kernel makes each filter ready once, here: a child inherits it
/// with the fork, where attaching it anew cost each connection some
/// 300 µs (the kernel emulates a filter once per system call number to
/// learn which calls it always allows, and compiles it).
pub fn enter_spawner<'a>(
    plan: &Plan,
    roots: impl IntoIterator<Item = BorrowedFd<'a>>,
) -> Result<ChildSandbox, SandboxError> {
    // Asked before the filter, which has no `capget`.
    let layer = match sys::exempt_from_process_limit() {
        Ok(false) if plan.scoping => ChildLayer::ProcessLimit,
        _ => ChildLayer::Filter,
    };
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?;
    for root in roots {
        ruleset = ruleset.add_rule(PathBeneath::new(root, read))?;
    }
    ruleset.restrict_self()?;
    seccompiler::apply_filter(&plan.spawner)?;
    let scope = if plan.scoping {
        let scope = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .scope(Scope::from_all(LANDLOCK_ABI))?
            .create()?
            // Set already (inherited), and `prctl` is not on the list.
            .no_new_privs(false);
        Some(scope)
    } else {
        None
    };
    Ok(ChildSandbox { layer, scope })
}

/// Confines a child the spawner just forked, which holds the spawner's
/// Landlock domain and filter already: a Landlock domain of its own
/// nested in the spawner's (so not the spawner, a sibling or the parent
/// can be signalled), then `sandbox.layer`, which takes forking away.
/// Call first thing in the child.
pub fn enter_child(plan: &Plan, sandbox: ChildSandbox) -> Result<(), SandboxError> {
    if let Some(scope) = sandbox.scope {
        scope.restrict_self()?;
    }
    match sandbox.layer {
        ChildLayer::ProcessLimit => {
            setrlimit(Resource::RLIMIT_NPROC, 0, 0).map_err(SandboxError::ProcessLimit)
        }
        ChildLayer::Filter => {
            // A pid is positive; were it not, no signal at all is allowed.
            let pid = u32::try_from(nix::unistd::getpid().as_raw()).unwrap_or(PID_PLACEHOLDER);
            plan.apply(pid)
        }
    }
}

/// Confines the key process for good: Landlock handling every right it
/// knows with no rule granting any (no file at all, no TCP, no signal or
/// abstract socket outside itself), then the key process's own seccomp
/// filter (`key_process_rules`), compiled here for its pid. Call in the
/// key process, after its privilege drop, `PR_SET_NO_NEW_PRIVS` set.
pub fn enter_key_process() -> Result<(), SandboxError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?
        .restrict_self()?;
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let pid = u32::try_from(nix::unistd::getpid().as_raw()).unwrap_or(PID_PLACEHOLDER);
    seccompiler::apply_filter(&compile(key_process_rules()?, pid, arch)?)?;
    Ok(())
}

/// Warns, once, of each protection this kernel cannot give the children
/// (see `missing`). Call in the parent at start and in `--check-config`.
pub fn warn_missing() {
    for what in missing() {
        log::warn!("sandbox: this kernel lacks {what}; children run without it");
    }
}

/// The protections a child asks Landlock for that this kernel does not
/// give, in words (empty when it gives them all), for the start-up log and
/// `--check-config`. seccomp is in every kernel this server runs on.
pub fn missing() -> Vec<&'static str> {
    let probe = |make: fn(Ruleset) -> Result<Ruleset, RulesetError>| {
        make(Ruleset::default().set_compatibility(CompatLevel::HardRequirement))
            .and_then(|r| r.create())
            .is_err()
    };
    let mut missing = Vec::new();
    if probe(|r| r.handle_access(AccessFs::from_all(ABI::V1))) {
        // Without Landlock at all, nothing below applies either.
        return vec!["Landlock (every filesystem, network and signal restriction)"];
    }
    if probe(|r| r.handle_access(AccessFs::from_all(LANDLOCK_ABI))) {
        missing.push(
            "Landlock's newer filesystem rights (ABI 5: rename across directories, truncate, device ioctl)",
        );
    }
    if probe(|r| r.handle_access(AccessNet::from_all(LANDLOCK_ABI))) {
        missing.push("Landlock's TCP bind and connect restriction (ABI 4)");
    }
    if probe(|r| r.scope(Scope::from_all(LANDLOCK_ABI))) {
        missing.push("Landlock's signal and abstract unix socket scoping (ABI 6)");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_filter_is_the_one_compiled_for_its_pid() {
        let plan = Plan::new().expect("plan");
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        for pid in [1, 4242, 4_194_304] {
            assert_eq!(plan.filter_for(pid), child_filter(pid, arch).unwrap());
        }
    }

    /// The filter fits the copy a child makes on its stack: a longer one
    /// still works, but each child then allocates its copy.
    #[test]
    fn the_filter_fits_on_the_stack() {
        let plan = Plan::new().expect("plan");
        assert!(plan.child.len() <= FILTER_ON_STACK, "{} instructions", plan.child.len());
    }

    /// The calls that would let a child reach beyond its connection stay
    /// off the list, whatever is added to it later.
    #[test]
    fn the_dangerous_calls_are_not_allowed() {
        let rules = child_rules().expect("rules");
        let never = [
            ("socket", libc::SYS_socket),
            ("connect", libc::SYS_connect),
            ("bind", libc::SYS_bind),
            ("execve", libc::SYS_execve),
            ("execveat", libc::SYS_execveat),
            ("kill", libc::SYS_kill),
            ("tkill", libc::SYS_tkill),
            ("ptrace", libc::SYS_ptrace),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("process_vm_writev", libc::SYS_process_vm_writev),
            ("ftruncate", libc::SYS_ftruncate),
            ("truncate", libc::SYS_truncate),
            ("prctl", libc::SYS_prctl),
            ("seccomp", libc::SYS_seccomp),
        ];
        for (name, call) in never {
            assert!(!rules.contains_key(&call), "{name} must not be allowed");
        }
        // Argument-checked, never unconditional.
        for (name, call) in [("fcntl", libc::SYS_fcntl), ("ioctl", libc::SYS_ioctl), ("mmap", libc::SYS_mmap)]
        {
            assert!(rules.get(&call).is_some_and(|r| !r.is_empty()), "{name} must be argument-checked");
        }
    }

    /// The key process reaches no file and no network, and runs nothing.
    #[test]
    fn the_key_process_opens_nothing() {
        let rules = key_process_rules().expect("rules");
        let never = [
            ("open", libc::SYS_open),
            ("openat", libc::SYS_openat),
            ("openat2", libc::SYS_openat2),
            ("socket", libc::SYS_socket),
            ("connect", libc::SYS_connect),
            ("execve", libc::SYS_execve),
            ("kill", libc::SYS_kill),
            ("ptrace", libc::SYS_ptrace),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("sendfile", libc::SYS_sendfile),
        ];
        for (name, call) in never {
            assert!(!rules.contains_key(&call), "{name} must not be allowed");
        }
        for (name, call) in [("fcntl", libc::SYS_fcntl), ("mmap", libc::SYS_mmap)] {
            assert!(rules.get(&call).is_some_and(|r| !r.is_empty()), "{name} must be argument-checked");
        }
    }
}
