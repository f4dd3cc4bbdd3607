//! The reply decision on arbitrary requests and fabricated file-step
//! results: never a panic, and every head written is one head (no field
//! can end it early or smuggle a line), whatever the request or the file.
#![no_main]

use std::fs::File;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use forkhttpd::http::decide::{Found, Lookup, Opened, answer_without_file, decide};
use forkhttpd::http::fileinfo::FileInfo;
use forkhttpd::http::mime::MimeTypes;
use forkhttpd::http::request::{Parse, parse};
use forkhttpd::http::rules::HeaderRules;
use forkhttpd::http::site::Site;
use forkhttpd::http::status::Status;
use libfuzzer_sys::fuzz_target;

/// The first second an HTTP date cannot express (year 10000): the clock
/// (`now`) stays before it.
const HTTP_DATE_END: u64 = 253_402_300_800;

const STATUSES: [Status; 8] = [
    Status::BadRequest,
    Status::Forbidden,
    Status::NotFound,
    Status::UriTooLong,
    Status::InternalError,
    Status::ServiceUnavailable,
    Status::MethodNotAllowed,
    Status::NotImplemented,
];

/// The built-in content-type table, built once.
fn types() -> &'static MimeTypes {
    static TYPES: OnceLock<MimeTypes> = OnceLock::new();
    TYPES.get_or_init(MimeTypes::default)
}

/// Opened once: the reply only carries the file, decide never reads it.
fn null() -> File {
    static NULL: OnceLock<File> = OnceLock::new();
    NULL.get_or_init(|| File::open("/dev/null").expect("/dev/null")).try_clone().expect("dup /dev/null")
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let (meta, head) = data.split_at(18);
    let len = u64::from_le_bytes(meta[0..8].try_into().unwrap());
    let secs = u64::from_le_bytes(meta[8..16].try_into().unwrap());
    let (kind, flags) = (meta[16], meta[17]);
    let Parse::Complete(req, _) = parse(head) else {
        return;
    };
    let index = vec!["index.html".to_string()];
    let (types, headers) = (types(), HeaderRules::default());
    let site = Site {
        index: &index,
        server: "forkhttpd",
        types,
        listing: flags & 4 != 0,
        precompressed: flags & 8 != 0,
        fallback: None,
        headers: &headers,
        error_pages: &[],
        https_redirect: (flags & 16 != 0).then_some(8443),
        hsts: None,
    };
    let now = UNIX_EPOCH + Duration::from_secs(secs % HTTP_DATE_END);
    let may_keep = flags & 1 != 0;
    let mut out = Vec::new();
    if let Some(reply) = answer_without_file(&req, &site, now, may_keep) {
        reply.write_head(&mut out);
        check_head(&out);
        return;
    }
    let name = req.target.rsplit('/').next().unwrap_or("").as_bytes();
    let lookup: Lookup<'_> = match kind % 3 {
        0 => {
            // Any modification time at all, as `stat` may give it (before
            // 1970, past year 9999): `from_stat` keeps what a date can say.
            let mtime_sec =
                if flags & 2 != 0 { secs.rotate_left(17) as i64 } else { (secs % HTTP_DATE_END) as i64 };
            let info = FileInfo::from_stat(len, mtime_sec, i64::from(flags) * 4_000_037);
            Ok(Found::File(Opened { file: null(), info, name, encoding: None }))
        }
        1 => Ok(Found::Redirect(format!("{}/", req.target.split('?').next().unwrap_or("")))),
        _ => Err(STATUSES[usize::from(kind / 3) % STATUSES.len()]),
    };
    let reply = decide(&req, &site, &lookup, now, may_keep);
    reply.write_head(&mut out);
    check_head(&out);
    let _ = reply.body_len();
});

/// One head: a status line, fields, and the blank line only at the end.
fn check_head(head: &[u8]) {
    assert!(head.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(head));
    let end = head.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(end, Some(head.len() - 4), "{:?}", String::from_utf8_lossy(head));
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF: {:?}", String::from_utf8_lossy(head));
        }
    }
}
