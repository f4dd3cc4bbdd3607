//! The command line. Values given here override the config file.
//!
//! Runs in: parent, once at start.

use std::path::PathBuf;

use clap::Parser;

use crate::config::Overrides;

/// forkhttpd: a fork-per-connection HTTP/1.1 static-file server.
///
/// With no arguments it serves ./www on 127.0.0.1:8080 in the foreground.
#[derive(Parser, Debug)]
#[command(name = "forkhttpd", version, about, long_about = None)]
pub struct Args {
    /// Read the configuration from FILE (TOML); without it the built-in defaults apply. Relative paths, here and in FILE, are relative to the directory forkhttpd is started from, on every reload too.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on ADDR (127.0.0.1:8080, [::1]:8080, localhost:8080; port 0 picks a free port). Repeatable; replaces the file's list.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Serve files from DIR.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Stay in the foreground (the default; what systemd expects).
    #[arg(long, conflicts_with = "daemon")]
    pub foreground: bool,
    /// Detach into the background; the command returns once the server is ready.
    #[arg(long)]
    pub daemon: bool,
    /// Check everything start-up checks (config, root and openat2, user and group, listen addresses by binding each and closing it at once, log and pid file directories, syslog where a log goes there; with --daemon, what --daemon refuses), print "configuration OK" or the reasons, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// With --check-config: do not bind the listen addresses, for when they are held by the running server (before a reload) or by systemd's socket (ExecStartPre=, ExecReload=).
    #[arg(long, requires = "check_config")]
    pub no_bind: bool,
}

impl Args {
    /// The values that override the config file, and the working directory
    /// now, which every relative path is resolved against from now on.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            root: self.root.clone(),
            base_dir: std::env::current_dir().ok(),
        }
    }
}
