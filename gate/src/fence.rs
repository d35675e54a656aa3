//! The fenced child process: work on an upload runs in a child of the `lectern`
//! binary (`lectern fenced TASK`) that can do nothing else. Its environment holds no
//! secret; before it touches the file it limits itself (private memory, CPU time, size
//! of any file it writes, no core dumps), confines the file system to reading the
//! system's libraries and the job's inputs and writing one scratch folder (Landlock),
//! and refuses itself sockets, io_uring, execve, ptrace and the administrative system
//! calls (seccomp). The parent keeps the credentials, talks to the queue and storage,
//! and kills the child when its time is up. A crash, a hang or memory exhaustion fails
//! that one job; the parent lives on.
//!
//! The two speak JSON lines: the parent writes one envelope to the child's stdin; the
//! child writes events and then one outcome to stdout, and its log to stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::Refusal;

pub mod check;

/// The subcommand of the `lectern` binary that runs a fenced task.
pub const SUBCOMMAND: &str = "fenced";
/// The task that tries the fence from inside (`check`).
pub const CHECK_TASK: &str = "check";

/// Bounds on one child, as settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Private writable memory (heap, stacks), bytes: a decoder bomb's allocation fails here.
    pub memory_bytes: u64,
    /// The largest file the child may write, bytes.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 8 << 30,
            file_bytes: 2 << 30,
        }
    }
}

/// How to start children: the program (the `lectern` binary) and their limits.
#[derive(Debug, Clone)]
pub struct Fence {
    program: PathBuf,
    limits: Limits,
}

/// One task for a child: its input, what it may read, the one folder it may write,
/// and how long it may run (wall clock; its CPU time is bounded by the same budget).
pub struct Task<'a, I> {
    pub name: &'a str,
    pub input: &'a I,
    pub readable: Vec<PathBuf>,
    pub writable: PathBuf,
    pub time: Duration,
    /// Whether the child may start programs (the OCR engine). They inherit its fence:
    /// its limits, its files, no sockets; only starting programs is allowed.
    pub starts_programs: bool,
}

/// What the parent sends: everything the child needs, nothing it could use elsewhere.
#[derive(Serialize, Deserialize)]
struct Envelope<I> {
    limits: Limits,
    cpu_secs: u64,
    readable: Vec<PathBuf>,
    writable: PathBuf,
    #[serde(default)]
    starts_programs: bool,
    input: I,
}

/// One line the child writes to stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line<E, O> {
    Event(E),
    Done(O),
    Refused(Refusal),
    /// Our own failure, not the file's: the detail is for the log only.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The file is not usable; the reason is for people.
    #[error("{0}")]
    Refused(Refusal),
    /// The child ran out of time (wall clock or CPU).
    #[error("the fenced task ran out of time")]
    TimedOut,
    /// The child died without an outcome (a crash, memory exhaustion, a write past its
    /// file size limit): the file made a decoder fail.
    #[error("the fenced task died: {0}")]
    Died(String),
    /// Stopped because the caller asked.
    #[error("the fenced task was stopped")]
    Cancelled,
    /// Starting or talking to the child failed: ours to fix, not the file's.
    #[error("the fenced task could not run: {0}")]
    Internal(String),
}

impl FenceError {
    /// The reason a person sees when this ends a lecture.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            FenceError::Refused(r) => Some(r.clone()),
            FenceError::TimedOut => Some(Refusal::Timeout),
            FenceError::Died(_) => Some(Refusal::DecoderFailed),
            FenceError::Cancelled | FenceError::Internal(_) => None,
        }
    }
}

/// Longest line read from a child: a transcode's report of thousands of segments fits.
const MAX_LINE: usize = 16 << 20;
/// Variables a child keeps: where GStreamer's plugin registry and language settings
/// are, and what to log. Credentials, database and queue URLs stay with the parent.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "XDG_CACHE_HOME",
    "LANG",
    "LC_ALL",
    "GST_PLUGIN_SYSTEM_PATH",
    "GST_PLUGIN_PATH",
    "GST_DEBUG",
    "RUST_LOG",
];

impl Fence {
    pub fn new(program: PathBuf, limits: Limits) -> Self {
        Fence { program, limits }
    }

    /// Children of the running binary.
    pub fn of_this_binary(limits: Limits) -> std::io::Result<Self> {
        Ok(Fence::new(std::env::current_exe()?, limits))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs one task in a child and returns its outcome; `on_event` sees each event as
    /// it comes. Resolving `cancel` kills the child.
    pub async fn run<I, E, O>(
        &self,
        task: Task<'_, I>,
        on_event: impl FnMut(E),
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<O, Failure>
    where
        I: Serialize,
        E: DeserializeOwned,
        O: DeserializeOwned,
    {
        let time = task.time;
        let mut running = self.start(task).await.map_err(|error| Failure {
            error,
            diagnostics: String::new(),
        })?;
        let outcome = running.converse(time, on_event, cancel).await;
        // The child has ended or was killed: its log is whole.
        drop(running.stdin);
        let log = running.log.await.unwrap_or_default();
        outcome.map_err(|error| Failure {
            error,
            diagnostics: crate::diagnostics::sanitize(&log),
        })
    }

    /// Starts the child and hands it its task.
    async fn start<I: Serialize>(&self, task: Task<'_, I>) -> Result<Running, FenceError> {
        let internal =
            |what: &str, e: &dyn std::fmt::Display| FenceError::Internal(format!("{what}: {e}"));
        let envelope = Envelope {
            limits: self.limits,
            cpu_secs: task.time.as_secs().max(1),
            readable: task.readable,
            writable: task.writable.clone(),
            starts_programs: task.starts_programs,
            input: task.input,
        };
        let mut stdin_bytes =
            serde_json::to_vec(&envelope).map_err(|e| internal("encoding the task", &e))?;
        stdin_bytes.push(b'\n');
        let mut child = tokio::process::Command::new(&self.program)
            .arg(SUBCOMMAND)
            .arg(task.name)
            .env_clear()
            .envs(
                KEPT_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            // Temporary files (ORC's compiled code among them) go to the one writable folder.
            .env("TMPDIR", &task.writable)
            .env("XDG_RUNTIME_DIR", &task.writable)
            // The binary's allocator (mimalloc) otherwise reserves writable arenas of
            // 1 GiB at a time, which the memory limit counts before a byte is used.
            .env("MIMALLOC_ARENA_RESERVE", "64MiB")
            // Freed frames go back to the system after 10 ms, not mimalloc's 1 s: a
            // second of a transcode's freed buffers was 70 MiB of its peak.
            .env("MIMALLOC_PURGE_DELAY", "10")
            .current_dir(&task.writable)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| internal("starting the child", &e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(&stdin_bytes)
            .await
            .map_err(|e| internal("sending the task", &e))?;
        let log = tokio::spawn(forward_log(
            child.stderr.take().expect("stderr is piped"),
            task.name.to_string(),
        ));
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Running {
            child,
            stdin,
            stdout,
            log,
        })
    }
}

/// A started child.
struct Running {
    child: tokio::process::Child,
    /// Held open until the child ends: its closing tells the child the parent is gone
    /// (`watch_parent`).
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    /// The child's last log lines, once it has ended.
    log: tokio::task::JoinHandle<Vec<String>>,
}

impl Running {
    /// Reads events and the outcome until the child ends, its time is up or `cancel`
    /// resolves (then it is killed).
    async fn converse<E: DeserializeOwned, O: DeserializeOwned>(
        &mut self,
        time: Duration,
        mut on_event: impl FnMut(E),
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<O, FenceError> {
        let stdout = &mut self.stdout;
        let read = async {
            let mut outcome = None;
            while let Some(line) = read_line(stdout).await? {
                match serde_json::from_slice::<Line<E, O>>(&line) {
                    Ok(Line::Event(e)) => on_event(e),
                    Ok(Line::Done(o)) => outcome = Some(Ok(o)),
                    Ok(Line::Refused(r)) => outcome = Some(Err(FenceError::Refused(r))),
                    Ok(Line::Failed(detail)) => outcome = Some(Err(FenceError::Internal(detail))),
                    Err(e) => {
                        return Err(FenceError::Died(format!(
                            "the child wrote a line that is not its protocol: {e}"
                        )));
                    }
                }
            }
            Ok(outcome)
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(time, read) => r,
            _ = cancel => {
                let _ = self.child.kill().await;
                return Err(FenceError::Cancelled);
            }
        };
        let Ok(outcome) = outcome else {
            let _ = self.child.kill().await;
            return Err(FenceError::TimedOut);
        };
        let outcome = outcome?;
        // stdout closed: the child is ending; it may not linger.
        let status = match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(s) => s.map_err(|e| FenceError::Internal(format!("waiting for the child: {e}")))?,
            Err(_) => {
                let _ = self.child.kill().await;
                return Err(FenceError::TimedOut);
            }
        };
        match outcome {
            Some(o) if status.success() => o,
            Some(Err(e)) => Err(e),
            _ => Err(died(status)),
        }
    }
}

/// A fenced task that did not produce its outcome, with what the owner of the file may
/// be told of it (`diagnostics`).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    pub error: FenceError,
    /// The child's last log lines, without paths or addresses (`crate::diagnostics`).
    pub diagnostics: String,
}

fn died(status: std::process::ExitStatus) -> FenceError {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        // RLIMIT_CPU's signal: as out of time as the wall clock.
        Some(24) => FenceError::TimedOut,
        Some(signal) => FenceError::Died(format!("killed by signal {signal}")),
        None => FenceError::Died(format!("exited with {status} and no outcome")),
    }
}

/// One line of at most MAX_LINE bytes, without its newline; None at the end.
async fn read_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Result<Option<Vec<u8>>, FenceError> {
    let mut line = Vec::new();
    let mut limited = reader.take(MAX_LINE as u64 + 1);
    let n = limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| FenceError::Died(format!("reading the child: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(FenceError::Died(
            "the child wrote a line longer than the protocol allows".into(),
        ));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(line))
}

/// Log lines of a child kept for the owner's diagnostics.
const LOG_TAIL: usize = 12;

/// The child's log lines, into the parent's log (bounded in length); returns the last
/// few once the child has ended.
async fn forward_log(stderr: impl AsyncRead + Unpin, task: String) -> Vec<String> {
    let mut reader = BufReader::new(stderr);
    let mut tail = std::collections::VecDeque::with_capacity(LOG_TAIL);
    while let Ok(Some(line)) = read_line(&mut reader).await {
        let text = String::from_utf8_lossy(&line[..line.len().min(4096)])
            .trim_end()
            .to_string();
        tracing::info!(target: "lectern::fenced", task, "{text}");
        if tail.len() == LOG_TAIL {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    tail.into()
}

/// Where the child writes its events, as JSON lines on stdout.
pub struct Events {
    out: std::io::Stdout,
}

impl Events {
    pub fn send(&mut self, event: &impl Serialize) {
        self.write(&Line::<_, ()>::Event(event));
    }

    fn write<E: Serialize, O: Serialize>(&mut self, line: &Line<E, O>) {
        use std::io::Write;
        let mut bytes = serde_json::to_vec(line).expect("protocol lines serialize");
        bytes.push(b'\n');
        // The parent gone: nothing left to report to; the work ends with the next write.
        let _ = self.out.write_all(&bytes).and_then(|_| self.out.flush());
    }
}

/// Why a child's task did not produce an outcome.
#[derive(Debug)]
pub enum ChildError {
    Refused(Refusal),
    Failed(String),
}

impl From<Refusal> for ChildError {
    fn from(r: Refusal) -> Self {
        ChildError::Refused(r)
    }
}

/// The child's side: reads the envelope, fences itself in, runs `work` and reports
/// its outcome. Call it from `main` before any other thread exists (Landlock applies
/// to the calling thread and the threads it starts afterwards).
pub fn serve<I, O>(work: impl FnOnce(I, &mut Events) -> Result<O, ChildError>) -> ExitCode
where
    I: DeserializeOwned,
    O: Serialize,
{
    let mut events = Events {
        out: std::io::stdout(),
    };
    let mut line = String::new();
    let envelope: Envelope<I> = match std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&line).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => {
            events.write(&Line::<(), ()>::Failed(format!("reading the task: {e}")));
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = enter(&envelope) {
        events.write(&Line::<(), ()>::Failed(format!(
            "fencing the child in: {e}"
        )));
        return ExitCode::FAILURE;
    }
    watch_parent();
    match work(envelope.input, &mut events) {
        Ok(out) => events.write(&Line::<(), O>::Done(out)),
        Err(ChildError::Refused(r)) => {
            tracing::info!(reason = %r, "the file is refused");
            events.write(&Line::<(), ()>::Refused(r))
        }
        Err(ChildError::Failed(detail)) => events.write(&Line::<(), ()>::Failed(detail)),
    }
    ExitCode::SUCCESS
}

/// Ends the child when its parent is gone (killed, crashed): the parent holds the
/// write end of stdin open while it waits, so end-of-file means nobody will read the
/// outcome. Started after the fence is up, so the thread is fenced in too.
fn watch_parent() {
    std::thread::spawn(|| {
        let mut byte = [0u8; 1];
        loop {
            match std::io::stdin().read(&mut byte) {
                Ok(0) | Err(_) => std::process::exit(3),
                Ok(_) => {}
            }
        }
    });
}

/// Limits, Landlock and seccomp, in that order: each later step needs less than the
/// one before it may still do.
fn enter<I>(envelope: &Envelope<I>) -> Result<(), String> {
    set_limits(envelope.limits, envelope.cpu_secs)?;
    confine_files(&envelope.readable, &envelope.writable)?;
    refuse_syscalls(envelope.starts_programs)
}

fn set_limits(limits: Limits, cpu_secs: u64) -> Result<(), String> {
    use rlimit::Resource;
    let set = |r: Resource, v: u64| r.set(v, v).map_err(|e| format!("{r:?}: {e}"));
    // DATA, not AS: the allocator reserves address space it never touches, which AS
    // would count; DATA counts the private writable memory a decoder really takes.
    set(Resource::DATA, limits.memory_bytes)?;
    set(Resource::FSIZE, limits.file_bytes)?;
    set(Resource::CORE, 0)?;
    // Soft limit: SIGXCPU at the budget; hard: killed a little later.
    Resource::CPU
        .set(cpu_secs, cpu_secs + 5)
        .map_err(|e| format!("CPU: {e}"))
}

/// System folders a decoder needs to load itself and its plugins, read-only.
const SYSTEM_READABLE: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/fonts",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
];

fn confine_files(readable: &[PathBuf], writable: &Path) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V5;
    // GStreamer's plugin registry, written by the parent at its start.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .map(|c| c.join("gstreamer-1.0"));
    let read: Vec<PathBuf> = SYSTEM_READABLE
        .iter()
        .map(PathBuf::from)
        .chain(cache)
        .chain(readable.iter().cloned())
        .filter(|p| p.exists())
        .collect();
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&read, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules([writable], AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        // An old kernel: the seccomp filter and the limits still hold.
        tracing::warn!(
            "this kernel does not enforce Landlock: the fenced child's file access is not confined"
        );
    }
    Ok(())
}

/// System calls a decoder has no use for and an attacker would: every socket
/// (socketpair stays: no address can be named with it), io_uring (which opens sockets
/// of its own), starting programs, debugging others, and the administrative calls.
const REFUSED_SYSCALLS: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_open_by_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_reboot,
];

fn refuse_syscalls(starts_programs: bool) -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let starting = [libc::SYS_execve, libc::SYS_execveat];
    let rules = REFUSED_SYSCALLS
        .iter()
        .filter(|n| !(starts_programs && starting.contains(n)))
        .map(|n| (*n, vec![]))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(1), // EPERM
        std::env::consts::ARCH
            .try_into()
            .map_err(|e| format!("seccomp: {e:?}"))?,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("seccomp: {e}"))
}
