//! Every HTTP status forkhttpd sends, success and error alike, and the one
//! mapping from a filesystem error to a status. The code, the reason phrase
//! and the built-in status page of each are decided in one `match` here.
//!
//! Runs in: child, and in the parent for the one `503` it writes itself.
//! Pure: it knows nothing of the configuration.

use std::io;

/// Every HTTP status forkhttpd sends, success and error alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: a file follows (or, for `OPTIONS`, an empty body).
    Ok,
    /// 206: the byte ranges a `Range` field asked for.
    PartialContent,
    /// 301: a directory named without its trailing slash.
    MovedPermanently,
    /// 308: a site served over HTTPS only (`https_redirect`), asked over
    /// plain HTTP: unlike 301, the client must repeat the method and body.
    PermanentRedirect,
    /// 304: the client's copy is current (`If-None-Match`, `If-Modified-Since`).
    NotModified,
    /// 400: malformed request, a path that climbs out, or a body we will not read.
    BadRequest,
    /// 403: the file exists but may not be served (outside the root, not a
    /// regular file, a directory without an index, unreadable).
    Forbidden,
    /// 404: no such file (dotfiles are reported as missing too).
    NotFound,
    /// 405: a method we know but do not serve.
    MethodNotAllowed,
    /// 408: the request head did not arrive within `header_timeout`.
    RequestTimeout,
    /// 414: the request line alone exceeds `max_header_bytes`.
    UriTooLong,
    /// 421: over HTTPS, the request's host names another site than the
    /// one the connection's TLS handshake named (SNI): its certificate
    /// may not cover this host (RFC 9110 15.5.20).
    MisdirectedRequest,
    /// 412: an `If-Match` or `If-Unmodified-Since` precondition is false.
    PreconditionFailed,
    /// 416: no range of a `Range` field overlaps the file.
    RangeNotSatisfiable,
    /// 431: the request head exceeds `max_header_bytes` or the header count.
    HeaderFieldsTooLarge,
    /// 500: an unexpected local failure.
    InternalError,
    /// 501: a method we do not know.
    NotImplemented,
    /// 503: the parent could not fork a child for this connection.
    ServiceUnavailable,
    /// 505: a protocol version other than HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl Status {
    /// The numeric status code.
    pub fn code(self) -> u16 {
        self.describe().0
    }

    /// The reason phrase sent on the status line.
    pub fn reason(self) -> &'static str {
        self.describe().1
    }

    /// The small built-in HTML page sent with this status. It names only the
    /// status: what went wrong inside stays in the server's log. A constant,
    /// so an error response allocates nothing.
    pub fn page(self) -> &'static str {
        self.describe().2
    }

    fn describe(self) -> (u16, &'static str, &'static str) {
        /// Code, reason and page, spelled once per status.
        macro_rules! status {
            ($code:literal, $reason:literal) => {
                (
                    $code,
                    $reason,
                    concat!(
                        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>",
                        $code,
                        " ",
                        $reason,
                        "</title></head>\n<body><h1>",
                        $code,
                        " ",
                        $reason,
                        "</h1><hr><p>forkhttpd</p></body></html>\n"
                    ),
                )
            };
        }
        match self {
            Status::Ok => status!(200, "OK"),
            Status::PartialContent => status!(206, "Partial Content"),
            Status::MovedPermanently => status!(301, "Moved Permanently"),
            Status::NotModified => status!(304, "Not Modified"),
            Status::PermanentRedirect => status!(308, "Permanent Redirect"),
            Status::BadRequest => status!(400, "Bad Request"),
            Status::Forbidden => status!(403, "Forbidden"),
            Status::NotFound => status!(404, "Not Found"),
            Status::MethodNotAllowed => status!(405, "Method Not Allowed"),
            Status::RequestTimeout => status!(408, "Request Timeout"),
            Status::UriTooLong => status!(414, "URI Too Long"),
            Status::PreconditionFailed => status!(412, "Precondition Failed"),
            Status::RangeNotSatisfiable => status!(416, "Range Not Satisfiable"),
            Status::MisdirectedRequest => status!(421, "Misdirected Request"),
            Status::HeaderFieldsTooLarge => status!(431, "Request Header Fields Too Large"),
            Status::InternalError => status!(500, "Internal Server Error"),
            Status::NotImplemented => status!(501, "Not Implemented"),
            Status::ServiceUnavailable => status!(503, "Service Unavailable"),
            Status::VersionNotSupported => status!(505, "HTTP Version Not Supported"),
        }
    }

    /// The one mapping from a filesystem error to a status (OpenBSD httpd's
    /// errno switch): missing → 404, not allowed or a symlink where none may
    /// be → 403, anything else → 500.
    pub fn from_io(err: &io::Error) -> Status {
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => Status::NotFound,
            // EXDEV: openat2's RESOLVE_BENEATH caught a path leaving the root.
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ELOOP) | Some(libc::EXDEV) => {
                Status::Forbidden
            }
            _ => match err.kind() {
                io::ErrorKind::NotFound => Status::NotFound,
                io::ErrorKind::PermissionDenied => Status::Forbidden,
                _ => Status::InternalError,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_code_and_reason() {
        assert_eq!(
            Status::NotFound.page(),
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n\
             <body><h1>404 Not Found</h1><hr><p>forkhttpd</p></body></html>\n"
        );
        assert_eq!((Status::UriTooLong.code(), Status::UriTooLong.reason()), (414, "URI Too Long"));
        let misdirected = Status::MisdirectedRequest;
        assert_eq!((misdirected.code(), misdirected.reason()), (421, "Misdirected Request"));
    }

    #[test]
    fn errno_to_status() {
        let table = [
            (libc::ENOENT, Status::NotFound),
            (libc::ENOTDIR, Status::NotFound),
            (libc::EACCES, Status::Forbidden),
            (libc::EXDEV, Status::Forbidden),
            (libc::ELOOP, Status::Forbidden),
            (libc::EIO, Status::InternalError),
        ];
        for (errno, want) in table {
            assert_eq!(Status::from_io(&io::Error::from_raw_os_error(errno)), want, "errno {errno}");
        }
    }
}
