//! The status report (`status_path`): the scoreboard and the counters as an
//! HTML page, like Apache's `mod_status`, or in the Prometheus text
//! exposition format (`?format=prometheus`).
//!
//! Runs in: child (the one whose client asked, from a `status_allow`
//! address: the parent never answers a client). It reads the shared
//! mapping that every child can write, so everything taken from a slot is
//! escaped where it is shown; the metrics show no slot text at all.

use std::fmt::Write;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::Config;
use crate::http::civil;
use crate::scoreboard::{Counter, Scoreboard, SlotView, State, Totals, now_ns};

/// The two forms of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The HTML page.
    Html,
    /// The Prometheus text exposition format, version 0.0.4.
    Prometheus,
}

impl Format {
    /// The form a query string asks for: `format=prometheus` among its
    /// parameters, the metrics; anything else, the page.
    pub fn from_query(query: &str) -> Format {
        if query.split('&').any(|p| p == "format=prometheus") { Format::Prometheus } else { Format::Html }
    }

    /// The `Content-Type` of the form.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The report in `format`, from what `board` says now.
pub fn render(format: Format, board: &Scoreboard, config: &Config) -> Vec<u8> {
    let totals = board.totals();
    let mut slots = board.slots();
    slots.sort_by_key(|s| s.pid);
    let text = match format {
        Format::Html => html(&totals, &slots, config),
        Format::Prometheus => prometheus(&totals, &slots),
    };
    text.into_bytes()
}

/// How many children are in each state, in `State::ALL`'s order.
fn by_state(slots: &[SlotView]) -> [usize; 4] {
    State::ALL.map(|st| slots.iter().filter(|s| s.state == Some(st)).count())
}

fn signal_name(n: i32) -> String {
    Signal::try_from(n).map_or_else(|_| format!("signal {n}"), |s| s.as_str().to_string())
}

/// The counters as (metric name, label, help, value), in the order they are
/// shown; a label of `""` is none.
fn counter_lines(t: &Totals) -> Vec<(&'static str, String, &'static str, u64)> {
    let mut lines = vec![(
        "forkhttpd_connections_accepted_total",
        String::new(),
        "Connections accepted.",
        t.get(Counter::Accepted),
    )];
    for (i, n) in t.by_class.iter().enumerate() {
        lines.push((
            "forkhttpd_requests_total",
            format!("class=\"{}xx\"", i + 1),
            "Responses sent, by status class.",
            *n,
        ));
    }
    lines.push((
        "forkhttpd_sent_bytes_total",
        String::new(),
        "Response bytes sent (heads and bodies).",
        t.get(Counter::BytesSent),
    ));
    let refusals = [
        ("per_address", Counter::RefusedPerAddress),
        ("max_children", Counter::RefusedMaxChildren),
        ("fork_failed", Counter::RefusedFork),
    ];
    for (cause, c) in refusals {
        lines.push((
            "forkhttpd_refusals_total",
            format!("cause=\"{cause}\""),
            "Connections refused or kept waiting, by cause.",
            t.get(c),
        ));
    }
    lines.push((
        "forkhttpd_idle_given_back_total",
        String::new(),
        "Idle keep-alive connections their child was asked to close under pressure.",
        t.get(Counter::GivenBack),
    ));
    lines.push((
        "forkhttpd_reloads_total",
        String::new(),
        "Configuration reloads applied.",
        t.get(Counter::Reloads),
    ));
    for (sig, n) in &t.deaths {
        lines.push((
            "forkhttpd_child_deaths_total",
            format!("signal=\"{}\"", signal_name(*sig)),
            "Children killed by a signal, by signal.",
            *n,
        ));
    }
    lines.push((
        "forkhttpd_tls_handshakes_total",
        String::new(),
        "TLS handshakes completed.",
        t.get(Counter::TlsHandshakes),
    ));
    lines.push((
        "forkhttpd_tls_resumptions_total",
        String::new(),
        "TLS handshakes that resumed a session.",
        t.get(Counter::TlsResumptions),
    ));
    lines
}

fn prometheus(t: &Totals, slots: &[SlotView]) -> String {
    let mut out = String::with_capacity(4096);
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
    };
    gauge(
        "forkhttpd_start_time_seconds",
        "When the server started, in seconds since the epoch.",
        t.start_unix,
    );
    gauge(
        "forkhttpd_generation",
        "The configuration generation: 1 at start, one more per reload.",
        t.generation,
    );
    gauge("forkhttpd_max_children", "max_children in force.", t.max_children);
    let _ =
        write!(out, "# HELP forkhttpd_children Live children, by state.\n# TYPE forkhttpd_children gauge\n");
    for (st, n) in State::ALL.iter().zip(by_state(slots)) {
        let _ = writeln!(out, "forkhttpd_children{{state=\"{}\"}} {n}", st.name());
    }
    let mut named = "";
    for (name, label, help, value) in counter_lines(t) {
        if name != named {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
            named = name;
        }
        if label.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{label}}} {value}");
        }
    }
    out
}

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration as `1d 2h 3m 4s` (the largest units only).
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// Seconds since the epoch as `YYYY-MM-DD hh:mm:ss UTC`.
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86400).unwrap_or(0);
    let (y, m, d) = civil::from_days(days);
    let s = secs % 86400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .7em;text-align:left;\
border-bottom:1px solid #ddd}th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font-family:ui-monospace,monospace}code.m{color:#777;font-size:.85em}.st{font-weight:600}\
.handshake{color:#8a4baf}.reading{color:#1c6fb5}.sending{color:#2b8a3e}.idle{color:#888}";

fn html(t: &Totals, slots: &[SlotView], config: &Config) -> String {
    let mut out = String::with_capacity(8192);
    let started = utc(t.start_unix);
    let uptime = span(Duration::from_nanos(t.uptime_ns));
    let states: Vec<String> = State::ALL
        .iter()
        .zip(by_state(slots))
        .map(|(st, n)| format!("<span class=\"{0}\">{n} {0}</span>", st.name()))
        .collect();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>forkhttpd status</title>\
         <style>{STYLE}</style></head><body>\n<h1>forkhttpd status</h1>\n<table>\n\
         <tr><th>Started</th><td>{started}, up {uptime}</td></tr>\n\
         <tr><th>Generation</th><td>{}</td></tr>\n\
         <tr><th>Children</th><td>{} of {} (max_children): {}</td></tr>\n</table>\n",
        t.generation,
        slots.len(),
        t.max_children,
        states.join(", ")
    );
    out.push_str(
        "<h2>Scoreboard</h2>\n<table>\n<tr><th>pid</th><th>state</th><th>for</th><th>client</th>\
         <th>site</th><th>requests</th><th>bytes sent</th><th>last request</th></tr>\n",
    );
    let now = now_ns();
    for s in slots {
        let state = s.state.map_or("?", State::name);
        let since = span(Duration::from_nanos(now.saturating_sub(s.since_ns)));
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"st {state}\">{state}</td><td class=\"n\">{since}</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            s.pid,
            s.client,
            escape(&s.site),
            s.requests,
            s.bytes,
            escape(&s.request_line)
        );
    }
    out.push_str("</table>\n<h2>Totals</h2>\n<table>\n");
    for (name, label, help, value) in counter_lines(t) {
        let label = if label.is_empty() { String::new() } else { format!("{{{label}}}") };
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{value}</td><td>{}</td><td><code class=\"m\">{}{}</code></td></tr>",
            escape(help),
            escape(name),
            escape(&label)
        );
    }
    let _ = write!(
        out,
        "</table>\n<p>The same in the Prometheus format: <a href=\"{0}?format=prometheus\">\
         <code>{0}?format=prometheus</code></a>.</p>\n</body></html>\n",
        escape(&config.status_path)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_picks_the_format() {
        assert_eq!(Format::from_query(""), Format::Html);
        assert_eq!(Format::from_query("format=prometheus"), Format::Prometheus);
        assert_eq!(Format::from_query("a=b&format=prometheus"), Format::Prometheus);
        assert_eq!(Format::from_query("format=prometheusx"), Format::Html);
    }

    #[test]
    fn what_a_child_wrote_is_escaped_in_the_page() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}
