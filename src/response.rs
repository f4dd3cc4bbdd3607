//! Response heads and the generated status pages, written into a reused
//! buffer (no allocation per response once the buffer has grown).
//!
//! Runs in: child, and in the parent for the one `503` it writes itself when
//! `fork` fails. Every status page (4xx, 5xx, and the 301 body) is built by
//! `status_page`, the one place that decides what an error looks like.

use std::io::Write;
use std::time::SystemTime;

use httpdate::HttpDate;

use crate::http::status::Status;

/// `Allow` for every response that lists our methods (405, OPTIONS).
pub const ALLOW: &str = "GET, HEAD, OPTIONS";
/// Seconds a client is asked to wait after a `503`.
pub const RETRY_AFTER_SECS: u32 = 1;

/// What the `Connection` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 persistence, the default: no header needed.
    Persist,
    /// HTTP/1.0 persistence, which must be confirmed: `Connection: keep-alive`.
    KeepAlive,
    /// The server will close after this response: `Connection: close`.
    Close,
}

/// A response head to write.
#[derive(Debug)]
pub struct Head<'a> {
    /// The status.
    pub status: Status,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'static str>,
    /// `Content-Length`; `None` only for 204.
    pub content_length: Option<u64>,
    /// `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// `Location`, for redirects.
    pub location: Option<&'a str>,
    /// The `Connection` decision.
    pub connection: Connection,
}

/// Writes heads and status pages; holds the `Server` value chosen at start.
#[derive(Clone, Debug)]
pub struct Writer {
    server: &'static str,
}

impl Writer {
    /// A writer that names the version in `Server` only when asked to:
    /// version disclosure helps attackers match exploits and no client needs it.
    pub fn new(server_version: bool) -> Writer {
        let server =
            if server_version { concat!("forkhttpd/", env!("CARGO_PKG_VERSION")) } else { "forkhttpd" };
        Writer { server }
    }

    /// Replaces `out` with the head: status line, headers, blank line.
    pub fn head(&self, out: &mut Vec<u8>, head: &Head<'_>) {
        out.clear();
        let s = head.status;
        // Writing into a Vec cannot fail; the results are ignored for that reason.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {}\r\n",
            s.code(),
            s.reason(),
            HttpDate::from(SystemTime::now()),
            self.server
        );
        if let Some(ct) = head.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        if let Some(len) = head.content_length {
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        if let Some(t) = head.last_modified {
            let _ = write!(out, "Last-Modified: {}\r\n", HttpDate::from(t));
        }
        if let Some(loc) = head.location {
            let _ = write!(out, "Location: {loc}\r\n");
        }
        match s {
            Status::Ok => out.extend_from_slice(b"Accept-Ranges: none\r\n"),
            Status::MethodNotAllowed | Status::NoContent => {
                let _ = write!(out, "Allow: {ALLOW}\r\n");
            }
            Status::ServiceUnavailable => {
                let _ = write!(out, "Retry-After: {RETRY_AFTER_SECS}\r\n");
            }
            _ => {}
        }
        match head.connection {
            Connection::Persist => {}
            Connection::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Replaces `out` with a complete status-page response: the head and,
    /// unless `head_only` (a `HEAD` request), the HTML body. Returns the
    /// number of body bytes written.
    pub fn page(
        &self,
        out: &mut Vec<u8>,
        status: Status,
        location: Option<&str>,
        connection: Connection,
        head_only: bool,
    ) -> u64 {
        let body = status_page(status);
        self.head(
            out,
            &Head {
                status,
                content_type: Some("text/html; charset=utf-8"),
                content_length: Some(body.len() as u64),
                last_modified: None,
                location,
                connection,
            },
        );
        if head_only {
            return 0;
        }
        out.extend_from_slice(body.as_bytes());
        body.len() as u64
    }
}

/// The small HTML page sent with a status. It names only the status: what
/// went wrong inside stays in the server's log.
pub fn status_page(status: Status) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n\
         <body><h1>{code} {reason}</h1><hr><p>forkhttpd</p></body></html>\n",
        code = status.code(),
        reason = status.reason()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_matching_length_and_headers() {
        let w = Writer::new(false);
        let mut out = Vec::new();
        let n = w.page(&mut out, Status::MethodNotAllowed, None, Connection::Close, false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(head.contains("\r\nAllow: GET, HEAD, OPTIONS"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains("\r\nServer: forkhttpd\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert_eq!(n as usize, body.len());
    }

    #[test]
    fn head_only_page_has_no_body() {
        let w = Writer::new(true);
        let mut out = Vec::new();
        assert_eq!(w.page(&mut out, Status::NotFound, None, Connection::Persist, true), 0);
        assert!(out.ends_with(b"\r\n\r\n"));
        assert!(String::from_utf8(out).unwrap().contains("Server: forkhttpd/"));
    }
}
