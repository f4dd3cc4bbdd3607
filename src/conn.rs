//! One connection's request loop: read a head within its deadline, have
//! `http::decide` answer it, send that reply, log it, and keep the
//! connection open if the reply says so.
//!
//! Runs in: child. Two clocks bound every wait (see `Input::read_more`):
//! the idle clock before a request's first byte (`header_timeout` for the
//! first request, `keepalive_timeout` between requests) and the head clock
//! from that first byte (`header_timeout`), which is absolute, so a client
//! sending one byte a second cannot stretch it. Pipelined requests that
//! arrive together stay in the buffer and are answered in order.

use std::io;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, RealIpHeader};
use crate::file::{self, KeptFiles, Root};
use crate::generation::ServedSite;
use crate::http::decide::{self, Found, Lookup};
use crate::http::host;
use crate::http::https;
use crate::http::reply::{Body, Reply};
use crate::http::request::{self, Method, Parse, Request};
use crate::http::resolve::{self, Resolved};
use crate::http::rules::ReqPath;
use crate::http::site::Site;
use crate::http::status::Status;
use crate::listener::Wire;
use crate::log::{AccessLog, Entry};
use crate::proxy;
use crate::scoreboard::{Counter, Scoreboard, Slot, State};
use crate::status;
use crate::tls::{self, Tls};
use crate::transport::{self, ReadOutcome, SendLimits, Transport};

/// What the child needs to serve a connection.
#[derive(Debug)]
pub struct Context<'a> {
    /// The configuration in force when the connection was accepted.
    pub config: &'a Config,
    /// The sites, each with its document root: a request's path is
    /// resolved beneath its site's root.
    pub sites: &'a [ServedSite],
    /// Where access-log lines go.
    pub access_log: &'a AccessLog,
    /// Read end of the parent's lifeline pipe; it hangs up when the server
    /// stops, and the connection then closes after the response in flight.
    pub lifeline: BorrowedFd<'a>,
    /// The certificates and TLS configuration, for an HTTPS listener's
    /// connection.
    pub tls: Option<&'a Tls>,
    /// The ACME webroot (`acme_webroot`), when one is configured: challenge
    /// tokens are looked up beneath it for every site.
    pub acme_webroot: Option<BorrowedFd<'a>>,
    /// The scoreboard: the counters, every child's slot (read for the
    /// status page), and this child's own (`None`: it has none).
    pub scoreboard: &'a Scoreboard,
    /// This child's slot, written as the connection goes.
    pub slot: Option<Slot<'a>>,
}

/// How slowly `cfg` lets a client accept a response: what a transport for
/// one of its connections is built with.
pub fn send_limits(cfg: &Config) -> SendLimits {
    SendLimits {
        timeout: cfg.limits.send_timeout,
        min_rate: cfg.limits.min_send_rate,
        grace: cfg.limits.min_send_rate_grace,
    }
}

/// Serves requests on `client` until the client closes, a limit is reached,
/// or an error ends the connection. From a PROXY listener (`wire.proxy`) the
/// connection must start with a PROXY header from a trusted proxy (see
/// `read_proxy_header`), and the address it names is the client's. From an
/// HTTPS listener (`wire.tls`), the plain `client` then becomes a TLS one
/// whose handshake must end within `header_timeout`. Returns `Err` only for
/// socket errors (reset, send timeout), which end the connection quietly.
/// The connection is served with `buffers`, borrowed: a child exits right
/// after, and what it never frees costs no call to `free` (with musl, an
/// `munmap` and a TLB flush for a block alone in its pages).
pub fn serve(
    mut client: Transport,
    peer_ip: IpAddr,
    wire: Wire,
    ctx: &Context<'_>,
    buffers: &mut Buffers,
) -> io::Result<()> {
    let cfg = ctx.config;
    let Buffers { input, out, scratch, path, kept } = buffers;
    let mut input = Input::new(input, cfg.limits.max_header_bytes, ctx.lifeline);
    let client_ip = if wire.proxy {
        if !proxy::trusted(&cfg.proxy.trusted, peer_ip) {
            crate::log::client_warning(format_args!(
                "{peer_ip} is not in trusted_proxies but connected to a PROXY listener; closed"
            ));
            return Ok(());
        }
        match input.read_proxy_header(&mut client, cfg.proxy.timeout)? {
            Some(source) => source.unwrap_or(peer_ip),
            None => {
                crate::log::client_warning(format_args!(
                    "{peer_ip} sent no valid PROXY header within proxy_timeout; closed"
                ));
                return Ok(());
            }
        }
    } else {
        peer_ip
    };
    if wire.tls {
        let Some(tls) = ctx.tls else {
            // Start-up and reloads refuse an HTTPS listener without a certificate.
            return Ok(());
        };
        client = client.into_tls(Arc::clone(&tls.config), input.received())?;
        input.consume(input.filled);
        if !handshake(&mut client, client_ip, Instant::now() + cfg.limits.header_timeout, ctx)? {
            return Ok(());
        }
        ctx.scoreboard.count(Counter::TlsHandshakes);
        if client.resumed() {
            ctx.scoreboard.count(Counter::TlsResumptions);
        }
        if let Some(s) = ctx.slot {
            s.set(State::Reading);
        }
    }
    let sni_site = client
        .server_name()
        .map(|name| tls::sni_site(Some(name), ctx.sites.iter().map(|s| &s.config.hosts)).unwrap_or(0));
    let mut conn = Conn {
        client,
        client_ip,
        sni_site,
        over_tls: wire.tls,
        proxied: wire.proxy,
        ctx,
        site: ctx.sites[0].config.site(decide::server_field(cfg.server_version), &cfg.mime),
        out,
        head_len: 0,
        scratch,
        path,
        access_log_failed: false,
        kept,
        counted: 0,
    };
    let mut idle = cfg.limits.header_timeout;
    for served in 1..=cfg.limits.max_requests_per_connection {
        input.begin_head(idle, cfg.limits.header_timeout);
        // Parse what has arrived; read more only while the head is partial.
        // Each head is parsed once complete, and answered from that parse.
        loop {
            if input.filled > 0 {
                match request::parse(input.received()) {
                    Parse::Complete(req, len) => {
                        let may_keep = served < cfg.limits.max_requests_per_connection && !input.draining;
                        let request_line = first_line(input.received());
                        if let Some(s) = ctx.slot {
                            s.sending(request_line);
                        }
                        let kept = conn.respond(&req, request_line, may_keep);
                        conn.answered(matches!(kept, Ok(true)));
                        let kept = kept?;
                        let linger = req.has_body;
                        input.consume(len);
                        if !kept {
                            conn.client.finish(linger || input.filled > 0);
                            return Ok(());
                        }
                        break;
                    }
                    Parse::Reject(status) => return conn.reject(status, input.first_line()),
                    Parse::Partial => {}
                }
            }
            let was_idle = input.filled == 0 && served > 1;
            match input.read_more(&mut conn.client, cfg.limits.header_timeout)? {
                More::Read if was_idle && input.filled > 0 => {
                    if let Some(s) = ctx.slot {
                        s.set(State::Reading);
                    }
                }
                More::Read => {}
                More::Closed => return Ok(()),
                More::Reject(status) => return conn.reject(status, input.first_line()),
            }
        }
        idle = cfg.limits.keepalive_timeout;
    }
    Ok(())
}

/// Runs the TLS handshake of `client` (from `client_ip`) within
/// `deadline`: the handshake is part of the first head, and is bounded by
/// its clock. Returns whether it completed; a client that failed it (one
/// speaking plain HTTP, sending garbage, or too slow) is reported through
/// the rate-limited client warning, and its connection is to be closed
/// without an HTTP reply.
fn handshake(
    client: &mut Transport,
    client_ip: IpAddr,
    deadline: Instant,
    ctx: &Context<'_>,
) -> io::Result<bool> {
    match client.handshake(deadline, Some(ctx.lifeline)) {
        Ok(ReadOutcome::Data(_)) => Ok(true),
        Ok(ReadOutcome::Timeout) => {
            crate::log::client_warning(format_args!(
                "{client_ip} did not complete its TLS handshake within header_timeout; closed"
            ));
            Ok(false)
        }
        Ok(ReadOutcome::Eof | ReadOutcome::Drain) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            crate::log::client_warning(format_args!("{client_ip}: TLS handshake failed: {e}; closed"));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The writing half of a connection.
struct Conn<'a> {
    client: Transport,
    client_ip: IpAddr,
    /// Over HTTPS with SNI, the site the handshake named (the default site
    /// for a name no site answers): a request for another site's host is
    /// misdirected.
    sni_site: Option<usize>,
    /// The connection is HTTPS: `Strict-Transport-Security` goes out on
    /// it, and no site redirects it.
    over_tls: bool,
    /// The connection came through a PROXY listener: `client_ip` is from
    /// its header, and forwarding fields are not read.
    proxied: bool,
    ctx: &'a Context<'a>,
    /// The default site: for heads that cannot be parsed, and the `Server` value.
    site: Site<'a>,
    out: &'a mut Vec<u8>,
    /// Bytes of the head of the reply being sent.
    head_len: usize,
    scratch: &'a mut Vec<u8>,
    /// The buffer each request's resolved path is built in, kept across
    /// requests so that a keep-alive request allocates nothing.
    path: &'a mut Vec<u8>,
    /// An access-log write failed already (reported once).
    access_log_failed: bool,
    /// Files served lately, kept open for the requests that follow.
    kept: &'a mut KeptFiles,
    /// Bytes sent on the connection already added to the scoreboard.
    counted: u64,
}

impl Conn<'_> {
    /// A response is over (sent, or failed part-way): the bytes sent go
    /// to the counters, and the slot says idle if the connection is `kept`.
    fn answered(&mut self, kept: bool) {
        let sent = self.client.sent();
        self.ctx.scoreboard.add(Counter::BytesSent, sent - self.counted);
        self.counted = sent;
        if let Some(s) = self.ctx.slot {
            s.answered(sent, kept);
        }
    }

    /// Answers a head we could not accept, then closes (lingering, since
    /// the client may still be sending).
    fn reject(&mut self, status: Status, request_line: &[u8]) -> io::Result<()> {
        let mut reply = decide::rejection(status, &self.site, SystemTime::now());
        self.site.headers.apply(&mut reply, None);
        https::add_hsts(&mut reply, self.site.hsts, self.over_tls);
        let sent = self.send_logged(&reply, request_line, None);
        self.answered(false);
        sent?;
        self.client.finish(true);
        Ok(())
    }

    /// Answers one parsed request: picks the site its host names, decides
    /// the reply (looking the target up only when the request wants a file,
    /// with the site's fallback for a missing one), puts the site's error
    /// page and header fields in, sends and logs it. Returns whether the
    /// connection stays open.
    fn respond(&mut self, req: &Request<'_>, request_line: &[u8], may_keep: bool) -> io::Result<bool> {
        let resolved = resolve::resolve_in(req.target, std::mem::take(self.path));
        let kept = self.answer(req, &resolved, request_line, may_keep);
        if let Ok(r) = resolved {
            *self.path = r.into_buffer();
        }
        kept
    }

    /// `respond`'s work, for the request's target resolved as `resolved`,
    /// as a straight line of steps. Before the file: the health check, then
    /// the site the host names, an ACME challenge (served for any site),
    /// the site's redirect to HTTPS over plain HTTP, and its method rules. The file step, with
    /// the site's fallback for a missing file. After it: the steps of
    /// `after_file`, which sends. Then the file the request's own path
    /// named is kept open for the requests that follow.
    fn answer(
        &mut self,
        req: &Request<'_>,
        resolved: &Result<Resolved<'_>, Status>,
        request_line: &[u8],
        may_keep: bool,
    ) -> io::Result<bool> {
        let now = SystemTime::now();
        // Answered before any site or file, and never logged: a load
        // balancer asks every few seconds.
        if let Some(reply) = decide::health(req, &self.ctx.config.health_path, &self.site, now, may_keep) {
            self.ctx.scoreboard.response(reply.status.code());
            self.send(&reply)?;
            return Ok(reply.keep_alive);
        }
        if let Some(format) = self.status_format(req) {
            let body = status::render(format, self.ctx.scoreboard, self.ctx.config);
            let reply = decide::status_report(req, &self.site, &body, format.content_type(), now, may_keep);
            self.send_logged(&reply, request_line, Some(req))?;
            return Ok(reply.keep_alive);
        }
        let which = self.site_for(req);
        if let Some(s) = self.ctx.slot {
            s.site(&self.ctx.sites[which].config.name);
        }
        if let Some(sni) = self.sni_site
            && which != 0
            && which != sni
        {
            let reply = decide::misdirected(req, &self.site, now, may_keep);
            self.send_logged(&reply, request_line, Some(req))?;
            return Ok(reply.keep_alive);
        }
        let site = self.ctx.sites[which].config.site(self.site.server, &self.ctx.config.mime);
        if let Some(webroot) = self.ctx.acme_webroot
            && let Ok(r) = resolved
            && let Some(token) = https::challenge(&r.rel, r.dir_form)
        {
            return self.challenge(
                webroot,
                token.map(|()| r.rel.as_path()),
                &site,
                req,
                request_line,
                may_keep,
            );
        }
        if let Some(port) = site.https_redirect
            && !self.over_tls
        {
            // No host to name (an HTTP/1.0 request without `Host`): the
            // client cannot be sent anywhere, and is not served in plain.
            let location = host::request_host(req).and_then(|h| https::location(h, port, req.target));
            let no_host: Lookup<'_> = Err(Status::BadRequest);
            let mut reply = match &location {
                Some(location) => decide::https_redirect(req, &site, location, now, may_keep),
                None => decide::decide(req, &site, &no_host, now, may_keep),
            };
            return self.send_with_rules(&mut reply, &site, None, req, request_line);
        }
        let root = self.ctx.sites[which].root();
        if let Some(reply) = decide::answer_without_file(req, &site, now, may_keep) {
            return self.after_file(reply, &site, root, None, req, request_line);
        }
        let (own, fallback) = self.find_file(which, root, &site, resolved, req.fields.accept_encoding);
        // What the reply serves, and the path that names it.
        let (found, served) = match &fallback {
            Some(path) => (decide::fallen_back(only_file(root, &site, path)), path),
            None => (own, resolved),
        };
        let reply = decide::decide(req, &site, &found, now, may_keep);
        let keep_alive = self.after_file(reply, &site, root, req_path(served), req, request_line)?;
        if fallback.is_none()
            && let Ok(r) = resolved
        {
            self.kept.keep(which, r, found);
        }
        Ok(keep_alive)
    }

    /// The answer to an ACME challenge request, for any site, over plain
    /// HTTP or HTTPS: the token `rel` (or the 404 of a name that is not
    /// one) beneath `webroot`. Before the site's redirect, fallback and
    /// error pages, none of which applies: the CA must read the token
    /// itself, over plain HTTP, and a 404 page of the site would be taken
    /// for a wrong key authorization. The method rules still apply.
    fn challenge(
        &mut self,
        webroot: BorrowedFd<'_>,
        rel: Result<&Path, Status>,
        site: &Site<'_>,
        req: &Request<'_>,
        request_line: &[u8],
        may_keep: bool,
    ) -> io::Result<bool> {
        let now = SystemTime::now();
        if let Some(mut reply) = decide::answer_without_file(req, site, now, may_keep) {
            return self.send_with_rules(&mut reply, site, None, req, request_line);
        }
        let found = rel.and_then(|rel| file::challenge(webroot, rel));
        let mut reply = decide::challenge(req, site, &found, now, may_keep);
        self.send_with_rules(&mut reply, site, None, req, request_line)
    }

    /// The file step: what the request's own path names beneath `root`,
    /// the root of site number `which` (from a kept file when it is one),
    /// and the resolved path of the site's fallback when that is to be
    /// served in its place (see `decide::fallback_for`). A target that does
    /// not resolve (400, a dotfile's 404) reaches neither.
    fn find_file<'r, 's: 'r>(
        &mut self,
        which: usize,
        root: Root<'_>,
        site: &Site<'s>,
        resolved: &'r Result<Resolved<'_>, Status>,
        accept_encoding: Option<&[u8]>,
    ) -> (Lookup<'r>, Option<Result<Resolved<'s>, Status>>) {
        match resolved {
            Ok(r) => {
                let own = self.kept.find(which, root, r, site, accept_encoding);
                let fallback = decide::fallback_for(&own, site).map(resolve::resolve);
                (own, fallback)
            }
            Err(status) => (Err(*status), None),
        }
    }

    /// The form of the status report `req` asks for, when it asks for
    /// `status_path` from an address of `status_allow` (from any other, the
    /// path is an ordinary one of the site: a 404 unless a file is there).
    fn status_format(&self, req: &Request<'_>) -> Option<status::Format> {
        let cfg = self.ctx.config;
        let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
        let asked = !cfg.status_path.is_empty() && path == cfg.status_path;
        let method = matches!(req.method, Method::Get | Method::Head) && !req.has_body;
        if !asked || !method || !proxy::trusted(&cfg.status_allow, self.client_ip) {
            return None;
        }
        Some(status::Format::from_query(query))
    }

    /// The index of the site `req`'s host names (in the order of
    /// `Context::sites`): the default site, first, names no host, so it is
    /// the one for a host no site names.
    fn site_for(&self, req: &Request<'_>) -> usize {
        let sites = self.ctx.sites;
        host::select(host::request_host(req), sites.iter().map(|s| &s.config.hosts)).unwrap_or(0)
    }

    /// The steps after the reply is decided: the site's error page in
    /// place of a built-in one, then the site's header fields for `path`
    /// and the send (`send_with_rules`). `path` is the path of what the
    /// reply serves, so a fallback gets the rules of its own path (as
    /// nginx's internal redirect does), never those of the missing path it
    /// stands in for; `None` for a reply decided without a file (OPTIONS,
    /// 405, 501), which serves no path. Returns whether the connection
    /// stays open.
    fn after_file<'a>(
        &mut self,
        mut reply: Reply<'a>,
        site: &Site<'a>,
        root: Root<'_>,
        path: Option<ReqPath<'_>>,
        req: &Request<'_>,
        request_line: &[u8],
    ) -> io::Result<bool> {
        let page_path = error_page_path(&reply, site).map(resolve::resolve);
        // A missing or refused page leaves the built-in one.
        let page = page_path.as_ref().and_then(|p| only_file(root, site, p));
        if let Some(Ok(Found::File(opened))) = &page {
            let head_only = req.method == Method::Head;
            let mut reply = decide::with_error_page(reply, opened, site.types, head_only);
            return self.send_with_rules(&mut reply, site, path, req, request_line);
        }
        // The reply is not moved again: it is a kilobyte of inline fields.
        self.send_with_rules(&mut reply, site, path, req, request_line)
    }

    /// The last step, then the send: the site's header fields for `path`
    /// (an error page gets none either: `apply` gives them to 2xx and 3xx
    /// replies only). Returns whether the connection stays open.
    fn send_with_rules<'a>(
        &mut self,
        reply: &mut Reply<'a>,
        site: &Site<'a>,
        path: Option<ReqPath<'_>>,
        req: &Request<'_>,
        request_line: &[u8],
    ) -> io::Result<bool> {
        site.headers.apply(reply, path);
        https::add_hsts(reply, site.hsts, self.over_tls);
        self.send_logged(reply, request_line, Some(req))?;
        Ok(reply.keep_alive)
    }

    /// Sends a reply and logs it. A send that fails part-way (the client
    /// closed or reset, stopped reading, or the file shrank) is logged too,
    /// with the body bytes that did go out, as nginx does; then its error
    /// ends the connection.
    fn send_logged(
        &mut self,
        reply: &Reply<'_>,
        request_line: &[u8],
        req: Option<&Request<'_>>,
    ) -> io::Result<()> {
        let before = self.client.sent();
        let sent = self.send(reply);
        let bytes = match sent {
            Ok(()) => reply.body_len(),
            Err(_) => (self.client.sent() - before).saturating_sub(self.head_len as u64),
        };
        self.log(request_line, req, reply.status, bytes);
        sent
    }

    /// Sends a reply: the head, coalesced with the first body bytes (one
    /// buffer with a status page; held back for a generated page or a file,
    /// see `Transport::send_with_file`). A multipart body goes part by
    /// part: the part head (after the previous part's closing line), then
    /// its range of the file.
    fn send(&mut self, reply: &Reply<'_>) -> io::Result<()> {
        self.client.begin_response();
        reply.write_head(self.out);
        self.head_len = self.out.len();
        match reply.body {
            Body::None => self.client.send(self.out, false),
            Body::Page(page) => {
                self.out.extend_from_slice(page.as_bytes());
                self.client.send(self.out, false)
            }
            Body::Generated(bytes) => {
                // Not copied behind the head: a listing can be megabytes.
                self.client.send(self.out, true)?;
                self.client.send(bytes, false)
            }
            Body::File { file, offset, len } => self.client.send_with_file(self.out, file, offset, len),
            Body::Multipart(ref parts) => {
                for (i, range) in parts.parts.iter().enumerate() {
                    parts.write_part_head(i, self.out);
                    self.client.send(self.out, true)?;
                    self.out.clear();
                    self.client.send_file(parts.file, range.first, range.size())?;
                }
                parts.write_end(self.out);
                self.client.send(self.out, false)
            }
        }
    }

    fn log(&mut self, request_line: &[u8], req: Option<&Request<'_>>, status: Status, bytes: u64) {
        let cfg = self.ctx.config;
        // Per request: a proxy's kept-alive connection carries many clients.
        // Nothing is scanned (or allocated) unless the peer is trusted.
        let client = match req {
            Some(r) if !self.proxied && proxy::trusted(&cfg.proxy.trusted, self.client_ip) => {
                let forwarded = cfg.proxy.real_ip_header == RealIpHeader::Forwarded;
                let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
                proxy::forwarded_client(r.field_lines(name), forwarded, &cfg.proxy.trusted, self.client_ip)
            }
            _ => self.client_ip,
        };
        self.ctx.scoreboard.response(status.code());
        let entry = Entry {
            client,
            request_line,
            status: status.code(),
            bytes,
            referer: req.and_then(|r| r.referer),
            user_agent: req.and_then(|r| r.user_agent),
        };
        if let Err(e) = self.ctx.access_log.record(self.scratch, &entry)
            && !self.access_log_failed
        {
            // Once per connection: a full disk must not turn every request into a message.
            log::warn!("access log: {e}");
            self.access_log_failed = true;
        }
    }
}

/// The configured page of `site` for `reply`'s status, when it is an error.
fn error_page_path<'s>(reply: &Reply<'_>, site: &Site<'s>) -> Option<&'s str> {
    if reply.status.code() >= 400 { site.error_page(reply.status) } else { None }
}

/// The path a resolved target names, for header rules; `None` when it did
/// not resolve.
fn req_path<'r>(resolved: &'r Result<Resolved<'_>, Status>) -> Option<ReqPath<'r>> {
    let r = resolved.as_ref().ok()?;
    Some(ReqPath::new(r.rel.as_os_str().as_bytes(), r.dir_form))
}

/// What a configured path (a fallback or an error page), resolved at `r`,
/// names beneath `root`, when it is a regular file; `None` otherwise (it
/// does not resolve, or names a directory). Served as it is: no index
/// names, listing or precompressed sibling of `site` apply to it.
fn only_file<'n>(root: Root<'_>, site: &Site<'n>, r: &'n Result<Resolved<'_>, Status>) -> Option<Lookup<'n>> {
    let r = r.as_ref().ok()?;
    let bare = Site { index: &[], listing: false, precompressed: false, ..*site };
    match file::find(root, r, &bare, None) {
        Ok(Found::Redirect(_)) => None,
        found => Some(found),
    }
}

/// The request line at the start of `bytes`, without its line end. Empty
/// lines before it are skipped, as the parser skips them (RFC 9112 2.2).
fn first_line(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let end = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    &bytes[..end]
}

/// Bytes of request buffer a connection starts with: a typical browser
/// request head fits.
const INITIAL_INPUT: usize = 2048;
/// Bytes of reply buffer a connection starts with: a head, and any body
/// the plain transport copies behind it (`transport::COPY_BODY_MAX`). Had
/// it to grow, a child's `realloc` would write malloc's state and
/// consolidate its free chunks, copying some six heap pages from the
/// spawner's (perf, page faults per connection); the capacity left
/// unwritten costs nothing.
const INITIAL_OUT: usize = 1024 + transport::COPY_BODY_MAX as usize;

/// The buffers a connection starts with, made by the parent once, before
/// its first fork, and taken over by each child: the same blocks at the
/// same addresses in every child, each child's own once it writes them.
/// A child that allocated its buffers would write malloc's state (in the
/// C library's data) and the heap pages its blocks landed in, scattered,
/// all copied out of the parent's; these are written only where used,
/// and a keep-alive request allocates nothing.
#[derive(Debug, Default)]
pub struct Buffers {
    input: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    path: Vec<u8>,
    kept: KeptFiles,
}

impl Buffers {
    /// Buffers of the sizes a typical request needs; any grows as usual.
    /// Made first thing in `main`, while the heap has no holes, the blocks
    /// lie side by side in the order made, which puts what a child writes
    /// for a small request close together, to span as few pages as it
    /// can: the access-log line (when there is a log), the path, the kept
    /// file's path, the reply (head and a small body) and the request,
    /// written from the start (the input buffer's tail, zeroed here by the
    /// parent, is only read once a long head overwrote it).
    pub fn new() -> Buffers {
        let scratch = Vec::with_capacity(512);
        let path = Vec::with_capacity(256);
        let kept = KeptFiles::with_room();
        let out = Vec::with_capacity(INITIAL_OUT);
        let input = vec![0; INITIAL_INPUT];
        Buffers { input, out, scratch, path, kept }
    }
}

/// What one more read towards the current head produced.
enum More {
    /// Bytes arrived (or the lifeline hung up): look at the buffer again.
    Read,
    /// The connection is over: the client closed, stayed idle too long, or
    /// the server is stopping, before a new request began.
    Closed,
    /// The head cannot be accepted: answer this status and close.
    Reject(Status),
}

/// The reading half: a buffer holding the current head and any pipelined
/// bytes after it. It starts small and grows, up to `max_header_bytes`,
/// only for a head that needs it, so a child touches (and the kernel
/// zeroes) one page rather than the whole limit for a typical request.
struct Input<'a> {
    buf: &'a mut Vec<u8>,
    filled: usize,
    max: usize,
    /// The lifeline, until it hangs up.
    lifeline: Option<BorrowedFd<'a>>,
    /// The lifeline hung up: finish the request in hand, then close.
    draining: bool,
    /// When the wait for the current head ends.
    deadline: Instant,
}

impl<'a> Input<'a> {
    /// An input reading into `buf`, whose bytes are only ever read once
    /// overwritten; cut to `max_header_bytes` or grown to the initial size.
    fn new(buf: &'a mut Vec<u8>, max_header_bytes: usize, lifeline: BorrowedFd<'a>) -> Self {
        buf.resize(INITIAL_INPUT.min(max_header_bytes), 0);
        Input {
            buf,
            filled: 0,
            max: max_header_bytes,
            lifeline: Some(lifeline),
            draining: false,
            deadline: Instant::now(),
        }
    }

    /// Starts the wait for a head. Before its first byte the wait is
    /// bounded by `idle`; pipelined bytes already here are that first byte,
    /// unless they are only empty lines.
    fn begin_head(&mut self, idle: Duration, header_timeout: Duration) {
        self.skip_empty_lines();
        self.deadline = Instant::now() + if self.filled > 0 { header_timeout } else { idle };
    }

    /// Reads more of the current head. From its first byte the whole head
    /// must arrive within `header_timeout`: the deadline is set once then,
    /// never extended. A full buffer grows up to `max_header_bytes`.
    fn read_more(&mut self, client: &mut Transport, header_timeout: Duration) -> io::Result<More> {
        let started = self.filled > 0;
        if self.filled == self.buf.len() {
            if self.buf.len() == self.max {
                return Ok(More::Reject(self.too_large()));
            }
            self.buf.resize((self.buf.len() * 2).min(self.max), 0);
        }
        if !started && self.draining {
            return Ok(More::Closed);
        }
        Ok(match client.read_before(&mut self.buf[self.filled..], self.deadline, self.lifeline)? {
            ReadOutcome::Data(n) => {
                self.filled += n;
                if !started {
                    self.skip_empty_lines();
                    if self.filled > 0 {
                        self.deadline = Instant::now() + header_timeout;
                    }
                }
                More::Read
            }
            ReadOutcome::Eof => More::Closed,
            ReadOutcome::Timeout if started => More::Reject(Status::RequestTimeout),
            ReadOutcome::Timeout => More::Closed,
            ReadOutcome::Drain => {
                // The hang-up stays readable: stop watching it, or poll would spin.
                self.lifeline = None;
                self.draining = true;
                More::Read
            }
        })
    }

    /// Reads the PROXY header (v1 or v2) that starts a connection from a
    /// proxy, within `timeout` (a deadline set once). Returns the client
    /// address it names (`Some(None)` when it names none: the proxy's own
    /// health check), or `None` when it is not a PROXY header, is too long,
    /// or does not arrive in time: the connection is then closed. Bytes
    /// after the header, read in the same call, stay in the buffer as the
    /// start of the first request.
    fn read_proxy_header(
        &mut self,
        client: &mut Transport,
        timeout: Duration,
    ) -> io::Result<Option<Option<IpAddr>>> {
        let deadline = Instant::now() + timeout;
        loop {
            match proxy::parse(self.received()) {
                proxy::Header::Complete { len, source } => {
                    self.consume(len);
                    return Ok(Some(source));
                }
                proxy::Header::Invalid => return Ok(None),
                proxy::Header::Partial => {}
            }
            if self.filled == self.buf.len() {
                if self.buf.len() >= proxy::MAX_HEADER_BYTES.min(self.max) {
                    return Ok(None);
                }
                self.buf.resize((self.buf.len() * 2).min(self.max), 0);
            }
            match client.read_before(&mut self.buf[self.filled..], deadline, None)? {
                ReadOutcome::Data(n) => self.filled += n,
                ReadOutcome::Eof | ReadOutcome::Timeout | ReadOutcome::Drain => return Ok(None),
            }
        }
    }

    /// Drops the empty lines before a request (RFC 9112 2.2 says to ignore
    /// them): they start no head clock, so a stray CRLF after a request
    /// leaves an idle connection idle, closed quietly at `keepalive_timeout`
    /// rather than answered `408` at `header_timeout`.
    fn skip_empty_lines(&mut self) {
        let blank = self.buf[..self.filled].iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if blank > 0 {
            self.consume(blank);
        }
    }

    /// A full buffer without a complete head: 414 if not even the request
    /// line fits, 431 otherwise.
    fn too_large(&self) -> Status {
        if self.buf[..self.filled].contains(&b'\n') {
            Status::HeaderFieldsTooLarge
        } else {
            Status::UriTooLong
        }
    }

    /// The bytes received and not yet answered.
    fn received(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    fn first_line(&self) -> &[u8] {
        first_line(&self.buf[..self.filled])
    }

    /// Drops the answered head, keeping pipelined bytes for the next round.
    fn consume(&mut self, len: usize) {
        self.buf.copy_within(len..self.filled, 0);
        self.filled -= len;
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn first_line_skips_leading_empty_lines() {
        assert_eq!(first_line(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), b"GET / HTTP/1.1");
        assert_eq!(first_line(b"\r\n\r\nGET /a HTTP/1.0\r\n\r\n"), b"GET /a HTTP/1.0");
        assert_eq!(first_line(b"GARBAGE"), b"GARBAGE");
        assert_eq!(first_line(b"\r\n"), b"");
    }
}
