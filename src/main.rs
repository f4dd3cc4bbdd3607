//! The forkhttpd binary: the start-up recipe, in privilege order.
//!
//! one generation (`Generation::build`: config → privilege plan → every
//! site's document root, opened and `openat2` probed) →
//! (check only? then the system checks, and exit) → signal handlers →
//! daemon messages routed → pid-file lock → listeners (bound while root, or
//! inherited from systemd) → access log → (detach) → pid written → the
//! accept loop. Every step that can fail for a reason an administrator must
//! see runs before detaching, so it is reported on the terminal; until the
//! server has started, daemon messages go to the terminal as well as to
//! the log, and what fails after detaching is sent back to the terminal
//! (`daemon`). The root comes before any listener, so a server that could
//! serve nothing never says "listening".

use std::process::ExitCode;

use clap::Parser;

use forkhttpd::check::{self, Bind, Launch};
use forkhttpd::cli::Args;
use forkhttpd::config::AccessLogTarget;
use forkhttpd::conn::Buffers;
use forkhttpd::daemon::{self, PidFile};
use forkhttpd::error::{ConfigError, StartupError};
use forkhttpd::generation::{Generation, Purpose};
use forkhttpd::listener;
use forkhttpd::log::{self as logging, AccessLog};
use forkhttpd::notify::Notifier;
use forkhttpd::sandbox;
use forkhttpd::server::{self, Server, Setup};
use forkhttpd::signals::Signals;

// Blocks the handled signals before the Rust runtime starts: a `SIGHUP`
// in the first instants after `exec` waits for the accept loop.
forkhttpd::run_at_load!(server::block_signals_at_load);

fn main() -> ExitCode {
    // First, before a signal can arrive to a process without handlers or a
    // launcher's descriptor can be copied anywhere.
    let taken_over = server::take_over_process();
    let buffers = Buffers::new();
    let args = Args::parse();
    logging::init();
    match taken_over.and_then(|()| run(&args, buffers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, buffers: Buffers) -> Result<(), StartupError> {
    let overrides = args.overrides();
    let config_file = match args.config.as_deref() {
        Some(p) => Some(overrides.resolve(p).map_err(|e| ConfigError {
            file: Some(p.to_path_buf()),
            line: None,
            site: None,
            key: None,
            what: format!("cannot locate: {e}"),
        })?),
        None => None,
    };
    let purpose = if args.check_config { Purpose::Check } else { Purpose::Serve };
    let generation = Generation::build(config_file.as_deref(), &overrides, None, purpose)?;
    let notifier = Notifier::from_env().map_err(StartupError::NotifySocket)?;
    let under_systemd = notifier.is_some() || std::env::var_os("INVOCATION_ID").is_some();
    if args.check_config {
        let bind = if args.no_bind { Bind::Skip } else { Bind::Try };
        let launch = Launch { detaching: args.daemon, under_systemd };
        if generation.sandbox.is_some() {
            sandbox::warn_missing();
        }
        check::system(&generation, bind, launch)?;
        println!("configuration OK");
        return Ok(());
    }
    let signals = Signals::install(&server::SIGNALS).map_err(StartupError::Signals)?;
    if let Some(plan) = &generation.drop_plan {
        plan.empty_bounding_set()?;
    }

    let config = &generation.config;
    let guard = generation.guard();
    // First, so that every later step's message reaches the log too.
    logging::route_daemon_messages(&config.logging.error_log, args.daemon, under_systemd, guard)?;
    if generation.sandbox.is_some() {
        sandbox::warn_missing();
    }
    let pid_file = config.pid_file.as_deref().map(|p| PidFile::lock(p, guard)).transpose()?;
    let inherited = listener::inherited()?;
    let socket_activated = inherited.is_some();
    let listeners = match inherited {
        Some(l) => l,
        None => listener::bind_all(&config.listeners, config.backlog)?,
    };
    listener::require_trusted(listeners.iter().any(|l| l.wire.proxy), &config.proxy.trusted)?;
    listener::require_certificate(listeners.iter().any(|l| l.wire.tls), generation.tls.is_some())?;
    for l in &listeners {
        let what = match (l.wire.proxy, l.wire.tls) {
            (false, false) => "",
            (true, false) => " (PROXY protocol)",
            (false, true) => " (HTTPS)",
            (true, true) => " (PROXY protocol, HTTPS)",
        };
        log::info!("listening on {}{what}", l.addr);
    }
    let access_log = AccessLog::open(&config.logging.access_log, guard)?;
    if args.daemon && config.logging.access_log == AccessLogTarget::Stderr {
        log::warn!("access_log = \"stderr\" is discarded once the server detaches");
    }

    let detached = if args.daemon { Some(daemon::detach()?) } else { None };
    let started = start(Setup {
        generation,
        overrides,
        listeners,
        socket_activated,
        access_log,
        notifier,
        signals,
        pid_file,
        buffers,
    });
    let server = match (started, detached) {
        (Ok(s), Some(d)) => {
            d.ready();
            s
        }
        (Ok(s), None) => s,
        (Err(e), Some(d)) => {
            d.failed(&e);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    logging::started();
    server.run()
}

/// The last start-up steps, after any detaching: the pid written into the
/// locked pid file, the server (lifeline), then the start
/// line.
fn start(mut setup: Setup) -> Result<Server, StartupError> {
    if let Some(p) = setup.pid_file.as_mut() {
        p.write()?;
    }
    let addrs: Vec<String> = setup.listeners.iter().map(|l| l.addr.to_string()).collect();
    let who = match &setup.generation.drop_plan {
        Some(p) => format!(
            "children run as {} (uid {}, gid {}){}",
            p.identity.user,
            p.identity.uid,
            p.identity.gid,
            if p.chroot.is_some() { ", chrooted" } else { "" }
        ),
        None => format!("not started as root: serving as uid {}", nix::unistd::getuid()),
    };
    let line = format!(
        "forkhttpd {} started: pid {}, serving {}{}; root {}; {who}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        addrs.join(", "),
        if setup.socket_activated { " (from systemd)" } else { "" },
        setup.generation.default_root().display(),
    );
    let server = Server::new(setup)?;
    log::info!("{line}");
    Ok(server)
}
