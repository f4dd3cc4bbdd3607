//! Integration tests for forkhttpd.
//!
//! Everything is compiled into this single test binary: the harness lives in
//! `tests/common/` and the test modules in `tests/suite/` (subdirectories are
//! not auto-discovered by cargo, so no extra test binaries are produced).

mod common;

#[path = "suite/acme.rs"]
mod acme;
#[path = "suite/concurrency.rs"]
mod concurrency;
#[path = "suite/conditional.rs"]
mod conditional;
#[path = "suite/daemon.rs"]
mod daemon;
#[path = "suite/defenses.rs"]
mod defenses;
#[path = "suite/encoding.rs"]
mod encoding;
#[path = "suite/giveback.rs"]
mod giveback;
#[path = "suite/headers.rs"]
mod headers;
#[path = "suite/http.rs"]
mod http;
#[path = "suite/hygiene.rs"]
mod hygiene;
#[path = "suite/journal.rs"]
mod journal;
#[path = "suite/keepalive.rs"]
mod keepalive;
#[path = "suite/kept.rs"]
mod kept;
#[path = "suite/keyproc.rs"]
mod keyproc;
#[path = "suite/launch.rs"]
mod launch;
#[path = "suite/limits.rs"]
mod limits;
#[path = "suite/listing.rs"]
mod listing;
#[path = "suite/logfiles.rs"]
mod logfiles;
#[path = "suite/logging.rs"]
mod logging;
#[path = "suite/logsinks.rs"]
mod logsinks;
#[path = "suite/manpages.rs"]
mod manpages;
#[path = "suite/mime.rs"]
mod mime;
#[path = "suite/parent.rs"]
mod parent;
#[path = "suite/properties.rs"]
mod properties;
#[path = "suite/proxy.rs"]
mod proxy;
#[path = "suite/ranges.rs"]
mod ranges;
#[path = "suite/refuse.rs"]
mod refuse;
#[path = "suite/reload.rs"]
mod reload;
#[path = "suite/renewal.rs"]
mod renewal;
#[path = "suite/resumption.rs"]
mod resumption;
#[path = "suite/sending.rs"]
mod sending;
#[path = "suite/signals.rs"]
mod signals;
#[path = "suite/sites.rs"]
mod sites;
#[path = "suite/soak.rs"]
mod soak;
#[path = "suite/startup.rs"]
mod startup;
#[path = "suite/status.rs"]
mod status;
#[path = "suite/storms.rs"]
mod storms;
#[path = "suite/syslog.rs"]
mod syslog;
#[path = "suite/systemd.rs"]
mod systemd;
#[path = "suite/tls.rs"]
mod tls;
#[path = "suite/tls_clients.rs"]
mod tls_clients;
#[path = "suite/traversal.rs"]
mod traversal;
#[path = "suite/units.rs"]
mod units;
#[path = "suite/wire.rs"]
mod wire;
