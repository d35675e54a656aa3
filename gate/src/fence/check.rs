//! `lectern fenced check`: the fence tried from inside. The child attempts what a
//! compromised decoder would (connect out, read and write files outside its folders,
//! start a program, allocate without bound, run forever) and reports what went
//! through. The tests use it; an operator can run it on a new kernel the same way.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ChildError, Events};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Attempts {
    pub connect: Option<SocketAddr>,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Option<PathBuf>,
    /// Bytes to allocate and touch.
    pub allocate: u64,
    /// Seconds to spin the CPU.
    pub spin_secs: u64,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    pub connected: bool,
    /// For each path to read, whether it could be.
    pub read: Vec<bool>,
    pub written: Vec<bool>,
    pub executed: bool,
    pub allocated: bool,
    /// The names of the child's environment variables.
    pub env: Vec<String>,
}

pub fn attempt(a: Attempts) -> Outcomes {
    let connected = a
        .connect
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    let read = a
        .read
        .iter()
        .map(|p| {
            std::fs::File::open(p)
                .and_then(|mut f| f.read(&mut [0u8; 16]))
                .is_ok()
        })
        .collect();
    let written = a
        .write
        .iter()
        .map(|p| std::fs::write(p, b"fenced").is_ok())
        .collect();
    let executed = a
        .exec
        .is_some_and(|p| std::process::Command::new(p).status().is_ok());
    let allocated = a.allocate == 0 || {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(a.allocate as usize).is_ok() && {
            v.resize(a.allocate as usize, 1);
            v.iter().step_by(4096).map(|b| *b as u64).sum::<u64>() > 0
        }
    };
    let until = std::time::Instant::now() + Duration::from_secs(a.spin_secs);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    Outcomes {
        connected,
        read,
        written,
        executed,
        allocated,
        env: std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect(),
    }
}

pub fn serve() -> std::process::ExitCode {
    super::serve(|a: Attempts, _: &mut Events| Ok::<_, ChildError>(attempt(a)))
}
