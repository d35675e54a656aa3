//! The fence tried from inside: the real `lectern` binary started as a fenced child,
//! attempting what a compromised decoder would.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use lectern_gate::fence::check::{Attempts, Outcomes};
use lectern_gate::fence::{CHECK_TASK, Fence, FenceError, Limits, Task};

fn fence(limits: Limits) -> Fence {
    Fence::new(PathBuf::from(env!("CARGO_BIN_EXE_lectern")), limits)
}

async fn attempt(
    fence: &Fence,
    attempts: Attempts,
    readable: Vec<PathBuf>,
    writable: PathBuf,
    time: Duration,
) -> Result<Outcomes, FenceError> {
    let task = Task {
        name: CHECK_TASK,
        input: &attempts,
        readable,
        writable,
        time,
        starts_programs: false,
    };
    fence
        .run(task, |()| {}, std::future::pending())
        .await
        .map_err(|failure| failure.error)
}

#[tokio::test]
async fn a_fenced_child_reaches_its_inputs_and_its_folder_and_nothing_else() {
    let inputs = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let source = inputs.path().join("upload.mp4");
    let secret = elsewhere.path().join("lectern.db");
    std::fs::write(&source, b"an upload").unwrap();
    std::fs::write(&secret, b"someone else's data").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let attempts = Attempts {
        connect: Some(listener.local_addr().unwrap()),
        read: vec![
            source.clone(),
            secret.clone(),
            "/etc/shadow".into(),
            "/proc/1/environ".into(),
        ],
        write: vec![
            scratch.path().join("out.ts"),
            elsewhere.path().join("planted"),
            inputs.path().join("upload.mp4"),
        ],
        exec: Some("/bin/true".into()),
        ..Default::default()
    };
    let out = attempt(
        &fence(Limits::default()),
        attempts,
        vec![source],
        scratch.path().into(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(!out.connected, "a fenced child connected out");
    assert!(listener.accept().is_err(), "the listener saw a connection");
    assert_eq!(
        out.read,
        [true, false, false, false],
        "read: the upload only"
    );
    assert_eq!(
        out.written,
        [true, false, false],
        "written: its own folder only"
    );
    assert!(!out.executed, "a fenced child started a program");
    assert!(!elsewhere.path().join("planted").exists());
    let allowed = [
        "PATH",
        "HOME",
        "XDG_CACHE_HOME",
        "LANG",
        "LC_ALL",
        "GST_PLUGIN_SYSTEM_PATH",
        "GST_PLUGIN_PATH",
        "GST_DEBUG",
        "RUST_LOG",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
        "MIMALLOC_ARENA_RESERVE",
        "MIMALLOC_PURGE_DELAY",
    ];
    let leaked: Vec<_> = out
        .env
        .iter()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "the child's environment holds {leaked:?}"
    );
}

#[tokio::test]
async fn a_child_that_may_start_programs_hands_them_its_fence() {
    let inputs = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = inputs.path().join("engine.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho ran > {}/ran\necho planted > {}/planted\n",
            scratch.path().display(),
            elsewhere.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let task = Task {
        name: CHECK_TASK,
        input: &Attempts {
            exec: Some(script.clone()),
            ..Default::default()
        },
        readable: vec![script],
        writable: scratch.path().into(),
        time: Duration::from_secs(30),
        starts_programs: true,
    };
    let out: Outcomes = fence(Limits::default())
        .run(task, |()| {}, std::future::pending())
        .await
        .unwrap();
    assert!(out.executed, "the program did not start");
    assert!(
        scratch.path().join("ran").exists(),
        "the program did not run"
    );
    assert!(
        !elsewhere.path().join("planted").exists(),
        "the program wrote outside the child's folder"
    );
}

#[tokio::test]
async fn memory_bombs_and_endless_work_end_the_child_not_the_parent() {
    let scratch = tempfile::tempdir().unwrap();
    let small = fence(Limits {
        memory_bytes: 512 << 20,
        file_bytes: 1 << 20,
    });
    let bomb = Attempts {
        allocate: 2 << 30,
        ..Default::default()
    };
    let out = attempt(
        &small,
        bomb,
        vec![],
        scratch.path().into(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(!out.allocated, "2 GiB fit in a 512 MiB fence");

    let endless = Attempts {
        spin_secs: 60,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = attempt(
        &small,
        endless,
        vec![],
        scratch.path().into(),
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FenceError::TimedOut), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the child outlived its time by {:?}",
        started.elapsed()
    );
    assert_eq!(err.refusal(), Some(lectern_gate::Refusal::Timeout));
}

#[test]
fn a_child_whose_parent_is_gone_ends_at_once() {
    use std::io::Write;
    let scratch = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lectern"))
        .args(["fenced", CHECK_TASK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let envelope = serde_json::json!({
        "limits": Limits::default(),
        "cpu_secs": 120,
        "readable": [],
        "writable": scratch.path(),
        "input": Attempts { spin_secs: 60, ..Default::default() },
    });
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{envelope}").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child should be spinning"
    );
    // What a killed parent leaves: the write end of the child's stdin closed.
    drop(stdin);
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the child outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
