//! The forkhttpd binary: the start-up recipe, in privilege order.

use std::process::ExitCode;

use clap::Parser;

use forkhttpd::cli::Args;
use forkhttpd::config::Config;
use forkhttpd::error::StartupError;
use forkhttpd::listener;
use forkhttpd::log::{self as logging, AccessLog};
use forkhttpd::server::Server;

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init_stderr();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Config → bind → open logs → signals → accept loop.
fn run(args: &Args) -> Result<(), StartupError> {
    let config = Config::load(args.config.as_deref(), &args.overrides())?;
    if args.check_config {
        println!("configuration OK");
        return Ok(());
    }
    let listeners = listener::bind_all(&config.listen, config.backlog)?;
    let access_log = AccessLog::open(&config.access_log)?;
    for l in &listeners {
        log::info!("listening on {}", l.addr);
    }
    log::info!(
        "forkhttpd {} serving {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        config.root.display(),
        std::process::id()
    );
    Server::new(config, listeners, access_log)?.run()
}
