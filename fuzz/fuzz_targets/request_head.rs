//! Request-head parsing on arbitrary bytes: never a panic, and a complete
//! head never claims more bytes than it was given.
#![no_main]

use forkhttpd::http::request::{Parse, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parse::Complete(req, len) = parse(data) {
        assert!(len <= data.len());
        assert!(data[..len].ends_with(b"\n"), "a head ends with its blank line");
        assert!(!req.target.is_empty());
    }
});
