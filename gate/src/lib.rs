//! lectern-gate: the line around uploaded bytes.
//!
//! It owns what may touch an upload: which containers and codecs are accepted, decided
//! from the file's own bytes (`formats`); the restricted decoding bins every pipeline
//! over an upload is built from (`decode`); the fixed vocabulary of reasons people see
//! (`Refusal`); and the fenced child process that probing and transcoding run in, with
//! no network, no secrets, one writable folder and bounded memory, CPU and time
//! (`fence`). Nothing here knows HTTP, the database, the queue or storage.

pub mod decode;
pub mod diagnostics;
pub mod fence;
pub mod formats;
mod refusal;
pub mod repairs;

pub use refusal::{Refusal, TypeName};

use gstreamer as gst;

/// GStreamer, initialised once; a refusal when it cannot start.
pub fn init() -> Result<(), Refusal> {
    gst::init().map_err(|e| {
        tracing::error!(error = %e, "GStreamer cannot start");
        Refusal::Unreadable
    })
}
