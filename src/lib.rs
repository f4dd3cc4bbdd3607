//! forkhttpd: a Unix HTTP/1.1 static-file server in the classic
//! accept-and-fork design.
//!
//! The parent (`server`) binds, then loops on `ppoll` + `accept`, with one
//! child per connection, forked for it by the spawner (`spawner`: a process
//! the parent forks once per generation, already sandboxed, so every child
//! is born confined); the child (`child`, `conn`) serves that connection's
//! requests and exits. The modules, by the process they run in:
//!
//! - parent: `cli`, `config`, `generation`, `account`, `check`, `listener`, `signals`,
//!   `notify`, `daemon`, `safeopen`, `server`, `error` (start-up errors)
//! - spawner: `spawner` (its loop; the parent's handle on it), `child::confine`
//! - child: `child`, `conn`, `transport`, `stream`, `file`, `proxy`, `status`
//!   (the status page and metrics)
//! - pure, no I/O (child, and the parent's own 503): `http` (`request`,
//!   `resolve`, `mime`, `status`, `decide`, `reply`, `site`, `host`, `rules`)
//! - both: `log`, `privileges` (lookup in the parent, the drop in the child), `sys`,
//!   `scoreboard` (slots handed out by the parent, written by each child; the
//!   counters),
//!   `tls` (certificates loaded by the parent; the handshake and the
//!   encrypted connection in the child)
//!
//! The only code the compiler cannot check lives in `sys`: `fork` and the
//! spawner's `clone`, receiving descriptors, signal
//! dispositions, `_exit`, adopting inherited descriptors and closing them by
//! range, emptying the capability bounding set, counters (and the
//! scoreboard) shared across forks, a do-nothing signal handler, `listen`
//! and two socket options, and the binary's constructor.

pub mod account;
pub mod check;
pub mod child;
pub mod cli;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod error;
pub mod file;
pub mod generation;
pub mod http;
pub mod listener;
pub mod log;
pub mod notify;
pub mod privileges;
pub mod proxy;
pub mod safeopen;
pub mod sandbox;
pub mod scoreboard;
pub mod server;
pub mod signals;
pub mod spawner;
pub mod status;
pub mod stream;
pub mod sys;
pub mod tls;
pub mod transport;
