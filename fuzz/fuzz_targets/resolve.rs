//! Target-to-path resolution on arbitrary targets: never a panic, and a
//! resolved path is relative, has no `.`, `..` or empty segment, no NUL and
//! no backslash, and so cannot name anything outside the root by itself.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::Component;

use forkhttpd::http::resolve::resolve;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(resolved) = resolve(target) else {
        return;
    };
    let bytes = resolved.rel.as_os_str().as_bytes();
    assert!(!bytes.starts_with(b"/"), "absolute: {:?}", resolved.rel);
    assert!(!bytes.contains(&0) && !bytes.contains(&b'\\'), "{:?}", resolved.rel);
    for part in resolved.rel.components() {
        assert!(matches!(part, Component::Normal(_)), "{part:?} in {:?}", resolved.rel);
    }
    if !bytes.is_empty() {
        assert!(bytes.split(|&b| b == b'/').all(|s| !s.is_empty() && s != b"." && s != b".."));
    }
    let _ = resolved.directory_location();
    let _ = resolved.file_name();
});
