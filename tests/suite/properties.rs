//! Properties of the pure HTTP code, over generated inputs (proptest): no
//! decoded target reaches outside the root (checked with the real
//! `openat2` open against a tree with links in and out), a target is
//! percent-decoded exactly once, and parsing never panics.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use forkhttpd::file::{Root, find};
use forkhttpd::http::decide::Found;
use forkhttpd::http::mime::MimeTypes;
use forkhttpd::http::request::{Parse, parse};
use forkhttpd::http::resolve::resolve;
use forkhttpd::http::rules::HeaderRules;
use forkhttpd::http::site::Site;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::TempDir;

const SECRET: &[u8] = b"TOPSECRET";

fn runner(cases: u32) -> TestRunner {
    // No regression files written into the source tree: a failure prints
    // its minimal input, which then becomes a table test.
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// `<base>/secret.txt` beside `<base>/root`, with links inside the root
/// that stay in (relative and absolute) and that leave it.
fn tree(dir: &TempDir) -> std::path::PathBuf {
    let base = fs::canonicalize(dir.path()).unwrap();
    let root = base.join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(base.join("secret.txt"), SECRET).unwrap();
    fs::write(root.join("a.txt"), b"inside a").unwrap();
    fs::write(root.join("sub/b.txt"), b"inside b").unwrap();
    fs::write(root.join("sub/index.html"), b"index").unwrap();
    symlink("sub", root.join("in")).unwrap();
    symlink("..", root.join("up")).unwrap();
    symlink("../secret.txt", root.join("upsec")).unwrap();
    symlink("../../secret.txt", root.join("sub/back")).unwrap();
    symlink(root.join("sub"), root.join("abs_in")).unwrap();
    symlink(&base, root.join("abs_out")).unwrap();
    symlink(base.join("secret.txt"), root.join("abs_sec")).unwrap();
    root
}

const SEGMENTS: &[&str] = &[
    "a.txt",
    "sub",
    "b.txt",
    "index.html",
    "in",
    "up",
    "upsec",
    "back",
    "abs_in",
    "abs_out",
    "abs_sec",
    "secret.txt",
    "root",
    "..",
    ".",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e",
    "",
    "%2F",
    "%2f",
    "%00",
    "%5C",
    "%252e%252e",
    "%2e%2e%2f",
    "x",
    "%61.txt",
];

fn targets() -> impl Strategy<Value = String> {
    (vec(prop::sample::select(SEGMENTS), 0..7), any::<bool>(), any::<bool>()).prop_map(
        |(segs, slash, query)| {
            let mut t = format!("/{}", segs.join("/"));
            if slash {
                t.push('/');
            }
            if query {
                t.push_str("?q=../secret.txt");
            }
            t
        },
    )
}

/// Whatever a target decodes to, the file opened (if any) lies beneath the
/// root and is never the secret beside it.
#[test]
fn no_decoded_target_opens_anything_outside_the_root() {
    let dir = TempDir::new("prop_containment");
    let root_path = tree(&dir);
    let root_dir = File::open(&root_path).unwrap();
    let root = Root { fd: root_dir.as_fd(), path: &root_path };
    let index = vec!["index.html".to_string()];
    let (types, headers) = (MimeTypes::default(), HeaderRules::default());
    // Listings and precompressed siblings on: every lookup the file step
    // can make is exercised.
    let site = Site {
        index: &index,
        server: "forkhttpd",
        types: &types,
        listing: true,
        precompressed: true,
        fallback: None,
        headers: &headers,
        error_pages: &[],
        https_redirect: None,
        hsts: None,
    };
    runner(3000)
        .run(&targets(), |target| {
            let Ok(resolved) = resolve(&target) else {
                return Ok(());
            };
            if let Ok(Found::File(mut opened)) = find(root, &resolved, &site, Some(b"br, gzip")) {
                let mut body = Vec::new();
                opened.file.read_to_end(&mut body).unwrap();
                prop_assert_ne!(&body[..], SECRET, "{} opened the secret", target);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&opened.file);
                let real = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
                prop_assert!(real.starts_with(&root_path), "{} opened {}", target, real.display());
            }
            Ok(())
        })
        .unwrap();
}

/// A name written with its `%` as `%25` (and any other byte as `%XX` or
/// raw) decodes back to exactly that name: `%2541` is the file `%41`,
/// never `A`.
#[test]
fn targets_are_decoded_exactly_once() {
    let names = "[A-Za-z0-9%_~-][A-Za-z0-9%._~-]{0,15}";
    runner(3000)
        .run(&(names, vec(any::<bool>(), 16)), |(name, encode)| {
            let mut target = String::from("/");
            for (i, c) in name.chars().enumerate() {
                if c == '%' || encode[i % encode.len()] {
                    target.push_str(&format!("%{:02X}", c as u32));
                } else {
                    target.push(c);
                }
            }
            let resolved = resolve(&target).map_err(|s| TestCaseError::fail(format!("{target}: {s:?}")))?;
            prop_assert_eq!(resolved.rel, Path::new(&name), "{}", target);
            Ok(())
        })
        .unwrap();
    assert_eq!(resolve("/%2541").unwrap().rel, Path::new("%41"));
    assert_eq!(resolve("/%252e%252e").unwrap().rel, Path::new("%2e%2e"));
}

/// Arbitrary bytes, and arbitrary bytes in the shape of a request, never
/// make the parser panic; a complete head never claims more than it got.
#[test]
fn parsing_never_panics() {
    let check = |bytes: &[u8]| {
        if let Parse::Complete(_, len) = parse(bytes) {
            prop_assert!(len <= bytes.len());
        }
        Ok(())
    };
    runner(5000).run(&vec(any::<u8>(), 0..2048), |bytes| check(&bytes)).unwrap();
    let shaped = (vec(any::<u8>(), 0..64), vec(any::<u8>(), 0..512)).prop_map(|(target, fields)| {
        let mut r = b"GET /".to_vec();
        r.extend_from_slice(&target);
        r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n");
        r.extend_from_slice(&fields);
        r.extend_from_slice(b"\r\n\r\n");
        r
    });
    runner(5000).run(&shaped, |bytes| check(&bytes)).unwrap();
}
