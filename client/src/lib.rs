//! lectern-client: `lectern upload`, the owners' command-line client.
//!
//! It owns everything on the client's side of the API: choosing and ordering the files
//! (`files`), the resume journal (`journal`), the HTTP calls with their retries and the
//! server's error shape (`api`), the tus 1.0 upload of one file (`tus`), following
//! lectures to ready (`follow`), and what the person or the script sees (`report`).
//! It speaks only HTTP to Lectern and depends on no service crate.

mod api;
mod args;
mod files;
mod follow;
mod journal;
mod report;
mod run;
mod tus;

pub use args::UploadArgs;
pub use run::{Exit, upload};
