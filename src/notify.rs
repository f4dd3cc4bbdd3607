//! The systemd readiness protocol (`sd_notify`): one datagram per state
//! change to the socket named by `$NOTIFY_SOCKET`.
//!
//! Runs in: parent only; children never notify (the unit's
//! `NotifyAccess=main` would ignore them anyway).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier named by `$NOTIFY_SOCKET` (a path, or `@name` for the
    /// abstract namespace); `None` when not started by systemd.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let name = name.as_bytes();
        let addr = match name.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None => SocketAddr::from_pathname(OsStr::from_bytes(name))?,
        };
        Ok(Some(Notifier { socket: UnixDatagram::unbound()?, addr }))
    }

    /// Sends `state` (for example `READY=1`). A failure is logged, never
    /// fatal: systemd's view of us is not worth stopping the server for.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            log::warn!("sd_notify {state:?}: {e}");
        }
    }
}
