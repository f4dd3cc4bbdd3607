//! Shared harness for the forkhttpd integration tests.
//!
//! Every test starts the real `forkhttpd` binary on loopback (port 0) with its
//! own temporary document root, and talks to it over real TCP sockets.  All
//! reads carry timeouts so that a hung server fails a test instead of hanging
//! the suite, and every loop is bounded in both iterations and time.
//!
//! Each file here does one job; everything is re-exported from this module,
//! so a test names any helper as `crate::common::X` wherever it lives.

#![allow(dead_code)]

mod clf;
mod client;
mod config;
mod data;
mod dates;
mod error_page;
mod latency;
mod output;
mod poll;
mod process;
mod procfs;
mod server;
mod skip;
mod tempdir;
mod tls;

pub use clf::*;
pub use client::*;
pub use config::*;
pub use data::*;
pub use dates::*;
pub use error_page::*;
pub use latency::*;
pub use output::*;
pub use poll::*;
pub use process::*;
pub use procfs::*;
pub use server::*;
pub use skip::*;
pub use tempdir::*;
pub use tls::*;

use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_forkhttpd");
/// Read/write timeout used on every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the server to report its listening sockets.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
