//! A site's response-header rules: which configured header fields a reply
//! for a path carries, with the path patterns (prefixes and globs) that
//! choose them.
//!
//! Runs in: parent (building and validating the rules when the config is
//! read) and child (matching, per request). Pure: no I/O. Everything is
//! built once in the parent and inherited through `fork`; matching a path
//! compares borrowed bytes and allocates nothing, and the fields a reply
//! gets borrow their names and values from these rules.

use std::fmt;

use crate::http::reply::{Reply, Value};

/// Header fields the server sets itself, which a configured header may not
/// duplicate or override: framing and connection management (a second
/// `Content-Length` or a `Transfer-Encoding` would desynchronise clients),
/// and the fields computed per reply. `X-Content-Type-Options` has its own
/// switch (`nosniff`).
const RESERVED: [&str; 19] = [
    "accept-ranges",
    "allow",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "location",
    "proxy-connection",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The field `nosniff` adds.
const NOSNIFF: (&str, &str) = ("X-Content-Type-Options", "nosniff");

/// Which request paths a header rule applies to: a prefix (`/assets/`) or,
/// when it holds `*` or `?`, a glob over the whole path (`/fonts/*.woff2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// Every path that starts with these bytes.
    Prefix(String),
    /// A glob: `?` is one character other than `/`, `*` any run of them,
    /// `**` any run of characters including `/`.
    Glob(Glob),
}

/// The longest glob accepted, in bytes: its states fit in a fixed bit set
/// on the stack, so that matching allocates nothing. Far above any useful
/// pattern.
pub const MAX_GLOB_LEN: usize = 1024;

impl PathPattern {
    /// Parses a configured pattern, which must start with `/`. Returns why
    /// it is refused.
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        if !pattern.starts_with('/') {
            return Err(format!("{pattern:?} must start with '/'"));
        }
        if !pattern.contains(['*', '?']) {
            return Ok(PathPattern::Prefix(pattern.to_string()));
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(format!("is a glob of {} bytes; at most {MAX_GLOB_LEN} are allowed", pattern.len()));
        }
        Ok(PathPattern::Glob(Glob::new(pattern.as_bytes())))
    }

    /// Whether the request path `path` (decoded, normalised, starting with
    /// `/`) matches.
    pub fn matches(&self, path: &ReqPath<'_>) -> bool {
        match self {
            PathPattern::Prefix(p) => path.starts_with(p.as_bytes()),
            PathPattern::Glob(g) => g.run(path, || {}),
        }
    }
}

/// One element of a glob, read left to right: `**` is taken before `*`,
/// so `***` is `**` then `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This byte.
    Byte(u8),
    /// `?`: one byte other than `/`.
    One,
    /// `*`: any run of bytes other than `/`.
    Star,
    /// `**`: any run of bytes.
    AnyRun,
}

/// A glob compiled when the config is read. It is matched by simulating
/// its automaton over the path: the set of pattern positions reachable
/// after each path byte, never backtracking, so a match costs at most
/// (pattern length + 1) × path length steps whatever the path holds (a
/// backtracking matcher is polynomial in the path, with the number of
/// stars as the exponent: seconds of CPU for a hostile path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

/// Words of the state set: one bit per pattern position, the end included.
const STATE_WORDS: usize = (MAX_GLOB_LEN + 1).div_ceil(64);

/// A set of pattern positions.
#[derive(Clone, Copy)]
struct States([u64; STATE_WORDS]);

impl States {
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn add(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

impl Glob {
    /// Compiles `pattern` (at most `MAX_GLOB_LEN` bytes).
    fn new(pattern: &[u8]) -> Glob {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut i = 0;
        while i < pattern.len() {
            let (token, len) = match pattern[i] {
                b'*' if pattern.get(i + 1) == Some(&b'*') => (Token::AnyRun, 2),
                b'*' => (Token::Star, 1),
                b'?' => (Token::One, 1),
                b => (Token::Byte(b), 1),
            };
            tokens.push(token);
            i += len;
        }
        Glob { tokens }
    }

    /// Whether `path` matches the whole glob. `step` is called once per
    /// live state per path byte: the cost, which tests count.
    fn run(&self, path: &ReqPath<'_>, mut step: impl FnMut()) -> bool {
        let end = self.tokens.len();
        let words = (end + 1).div_ceil(64);
        let mut live = States([0; STATE_WORDS]);
        live.add(0);
        self.skip_stars(&mut live);
        for i in 0..path.len() {
            let b = path.at(i);
            let mut next = States([0; STATE_WORDS]);
            for (j, token) in self.tokens.iter().enumerate().filter(|&(j, _)| live.has(j)) {
                step();
                match token {
                    Token::Byte(c) if *c == b => next.add(j + 1),
                    Token::One if b != b'/' => next.add(j + 1),
                    Token::Star if b != b'/' => next.add(j),
                    Token::AnyRun => next.add(j),
                    _ => {}
                }
            }
            self.skip_stars(&mut next);
            if next.0[..words].iter().all(|&w| w == 0) {
                return false;
            }
            live = next;
        }
        live.has(end)
    }

    /// Adds to `states` the positions reached by matching stars with
    /// nothing: in increasing order, so that a run of stars is crossed in
    /// one pass.
    fn skip_stars(&self, states: &mut States) {
        for (j, token) in self.tokens.iter().enumerate() {
            if matches!(token, Token::Star | Token::AnyRun) && states.has(j) {
                states.add(j + 1);
            }
        }
    }
}

/// A decoded, normalised request path without allocating it: `/`, then the
/// relative path `rel`, then `/` again when the client named a directory.
#[derive(Clone, Copy, Debug)]
pub struct ReqPath<'p> {
    rel: &'p [u8],
    dir_form: bool,
}

impl<'p> ReqPath<'p> {
    /// The path `/rel` (with a trailing `/` for `dir_form`, unless `rel` is
    /// empty: the root is `/`).
    pub fn new(rel: &'p [u8], dir_form: bool) -> ReqPath<'p> {
        ReqPath { rel, dir_form: dir_form && !rel.is_empty() }
    }

    fn len(&self) -> usize {
        1 + self.rel.len() + usize::from(self.dir_form)
    }

    fn at(&self, i: usize) -> u8 {
        if i == 0 || i == self.rel.len() + 1 { b'/' } else { self.rel[i - 1] }
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        prefix.len() <= self.len() && prefix.iter().enumerate().all(|(i, &b)| self.at(i) == b)
    }
}

/// A configured header field, validated: a token name (RFC 9110 5.1) and a
/// value of visible characters, spaces and tabs (5.5), so neither can end
/// the field or the head early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name, as it is sent.
    pub name: String,
    /// The value, as it is sent.
    pub value: String,
}

/// Why a configured header field is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The name is empty or holds a character a token may not.
    BadName,
    /// The value holds CR, LF, NUL or another control character, or
    /// starts or ends with blanks.
    BadValue,
    /// The server sets this field itself.
    Reserved,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::BadName => "is not a valid field name (letters, digits and !#$%&'*+-.^_`|~ only)",
            HeaderError::BadValue => {
                "has a value with a control character (CR, LF, NUL...) or leading or trailing blanks"
            }
            HeaderError::Reserved => "is set by the server itself and cannot be configured",
        })
    }
}

impl Header {
    /// Validates `name: value`.
    pub fn new(name: &str, value: &str) -> Result<Header, HeaderError> {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(tchar) {
            return Err(HeaderError::BadName);
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) || name.eq_ignore_ascii_case(NOSNIFF.0) {
            return Err(HeaderError::Reserved);
        }
        let ok_byte = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
        if !value.bytes().all(ok_byte) || value.trim_matches([' ', '\t']).len() != value.len() {
            return Err(HeaderError::BadValue);
        }
        Ok(Header { name: name.to_string(), value: value.to_string() })
    }
}

/// Header fields for the paths a pattern matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    /// The paths.
    pub path: PathPattern,
    /// The fields.
    pub headers: Vec<Header>,
}

/// A site's response-header configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRules {
    /// Send `X-Content-Type-Options: nosniff` on every response.
    pub nosniff: bool,
    /// Fields added to every response.
    pub always: Vec<Header>,
    /// Fields added, by path, to successful and redirect responses.
    pub rules: Vec<HeaderRule>,
}

impl Default for HeaderRules {
    fn default() -> Self {
        HeaderRules { nosniff: true, always: Vec::new(), rules: Vec::new() }
    }
}

impl HeaderRules {
    /// Adds this site's fields to `reply` (before its `Connection` field):
    /// `nosniff`, then the fields for every response, then those of each
    /// rule whose pattern matches `path`, only for `2xx` and `3xx` replies
    /// (a `Cache-Control: immutable` must not make a `404` stick). When
    /// several set one name, the last matching rule wins, and a rule wins
    /// over the fields for every response. `path` is the path of what the
    /// reply serves (see `conn.rs`), `None` for a reply that serves no
    /// path. Each rule is matched once.
    pub fn apply<'a>(&'a self, reply: &mut Reply<'a>, path: Option<ReqPath<'_>>) {
        let code = reply.status.code();
        let path = path.filter(|_| (200..400).contains(&code));
        if !self.nosniff && self.always.is_empty() && path.is_none() {
            return;
        }
        let connection = reply.fields.pop_connection();
        if self.nosniff {
            reply.fields.push(NOSNIFF.0, Value::Str(NOSNIFF.1));
        }
        let configured = reply.fields.count();
        for h in &self.always {
            reply.fields.push(&h.name, Value::Str(&h.value));
        }
        if let Some(path) = path {
            for rule in self.rules.iter().filter(|r| r.path.matches(&path)) {
                // Its fields replace those of the same name added before
                // it: the last matching rule's end up in the reply.
                for h in &rule.headers {
                    reply.fields.remove_from(configured, &h.name);
                }
                for h in &rule.headers {
                    reply.fields.push(&h.name, Value::Str(&h.value));
                }
            }
        }
        if let Some(c) = connection {
            reply.fields.push(c.name, c.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::reply::{Body, Fields};
    use crate::http::status::Status;

    fn path_matches(pattern: &str, rel: &str, dir: bool) -> bool {
        PathPattern::parse(pattern).unwrap().matches(&ReqPath::new(rel.as_bytes(), dir))
    }

    #[test]
    fn prefix_and_glob_matching_table() {
        let table: &[(&str, &str, bool, bool)] = &[
            ("/", "", false, true),
            ("/", "a/b", false, true),
            ("/assets/", "assets/app.js", false, true),
            ("/assets/", "assets", true, true),
            ("/assets/", "assets", false, false),
            ("/assets/", "assetsx/a", false, false),
            ("/assets", "assets-old/a", false, true),
            ("/fonts/*.woff2", "fonts/a.woff2", false, true),
            ("/fonts/*.woff2", "fonts/sub/a.woff2", false, false),
            ("/fonts/**.woff2", "fonts/sub/a.woff2", false, true),
            ("/fonts/*.woff2", "fonts/a.woff", false, false),
            ("/*.html", "index.html", false, true),
            ("/*.html", "d/index.html", false, false),
            ("/**/*.css", "a/b/c.css", false, true),
            ("/**/*.css", "c.css", false, false),
            ("/img/?.png", "img/a.png", false, true),
            ("/img/?.png", "img/ab.png", false, false),
            ("/d/*", "d", true, true),
            ("/*", "", false, true),
            // `*` and `**` may match nothing; `?` is exactly one byte.
            ("/a*b", "ab", false, true),
            ("/a**b", "ab", false, true),
            ("/a?b", "ab", false, false),
            ("/a?b", "a/b", false, false),
            ("/a?b", "a.b", false, true),
            // Neither `*` nor `?` crosses a `/`; `**` does, and also
            // matches the trailing `/` of a directory.
            ("/a*", "a/b", false, false),
            ("/a**", "a/b", false, true),
            ("/a*", "a", true, false),
            ("/a**", "a", true, true),
            ("/**", "", false, true),
            ("/**/", "a/b", true, true),
            ("/**/", "a/b", false, false),
            // `**` is read before `*`: `***` is `**` then `*`.
            ("/***", "a/b", false, true),
            ("/a/***/c", "a/b/c", false, true),
            ("/a/***.c", "a/b.c", false, true),
            ("/*.*.*.js", "a.b.c.js", false, true),
            ("/*.*.*.js", "a.b.js", false, false),
            ("/*.*.*.js", "a.b.c.d.js", false, true),
            ("/**/assets/**/img/**/*.png", "x/assets/y/img/z/w.png", false, true),
            ("/**/assets/**/img/**/*.png", "x/assets/img/w.png", false, false),
            // The glob is the whole path, not a prefix of it.
            ("/*.js", "a.js.map", false, false),
            ("/?", "ab", false, false),
        ];
        for (pattern, rel, dir, want) in table {
            assert_eq!(path_matches(pattern, rel, *dir), *want, "{pattern} vs /{rel} (dir {dir})");
            if pattern.contains(['*', '?']) {
                let path = ReqPath::new(rel.as_bytes(), *dir);
                assert_eq!(
                    backtracking(pattern.as_bytes(), &path, 0),
                    *want,
                    "reference: {pattern} vs /{rel}"
                );
            }
        }
        assert!(PathPattern::parse("assets/").is_err());
        assert_eq!(PathPattern::parse("/a/").unwrap(), PathPattern::Prefix("/a/".into()));
        // The longest glob fits the state set; a longer one is refused.
        let longest = format!("/{}*", "a".repeat(MAX_GLOB_LEN - 2));
        let glob = PathPattern::parse(&longest).unwrap();
        let rel = format!("{}bc", "a".repeat(MAX_GLOB_LEN - 2));
        assert!(glob.matches(&ReqPath::new(rel.as_bytes(), false)));
        assert!(!glob.matches(&ReqPath::new(rel.as_bytes(), true)));
        assert!(PathPattern::parse(&format!("{longest}?")).unwrap_err().contains("at most 1024"));
        // A prefix has no such limit.
        assert!(PathPattern::parse(&format!("/{}", "a".repeat(4 * MAX_GLOB_LEN))).is_ok());
    }

    /// The backtracking matcher the automaton replaced, kept as the
    /// reference for the semantics the automaton must keep.
    fn backtracking(pat: &[u8], path: &ReqPath<'_>, mut i: usize) -> bool {
        let mut p = 0;
        while p < pat.len() {
            match pat[p] {
                b'*' => {
                    let any = pat.get(p + 1) == Some(&b'*');
                    let rest = &pat[p + if any { 2 } else { 1 }..];
                    let mut j = i;
                    loop {
                        if backtracking(rest, path, j) {
                            return true;
                        }
                        if j == path.len() || (!any && path.at(j) == b'/') {
                            return false;
                        }
                        j += 1;
                    }
                }
                b'?' if i < path.len() && path.at(i) != b'/' => {}
                c if i < path.len() && path.at(i) == c => {}
                _ => return false,
            }
            p += 1;
            i += 1;
        }
        i == path.len()
    }

    #[test]
    fn the_automaton_matches_as_the_backtracking_glob_did() {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;
        use proptest::test_runner::{Config, TestRunner};
        // A small alphabet, so that matches are frequent: two letters (one
        // to match, one not to), the separator, and every glob character.
        let pattern = vec(select(b"ab/.*?".to_vec()), 0..12);
        let rel = (vec(select(b"ab/.".to_vec()), 0..16), any::<bool>());
        let mut runner =
            TestRunner::new(Config { cases: 20_000, failure_persistence: None, ..Config::default() });
        runner
            .run(&(pattern, rel), |(tail, (rel, dir))| {
                let pat = [b"/".as_slice(), &tail].concat();
                let path = ReqPath::new(&rel, dir);
                let want = backtracking(&pat, &path, 0);
                prop_assert_eq!(
                    Glob::new(&pat).run(&path, || {}),
                    want,
                    "{:?} vs {:?} (dir {})",
                    String::from_utf8_lossy(&pat),
                    String::from_utf8_lossy(&rel),
                    dir
                );
                Ok(())
            })
            .unwrap();
    }

    /// The patterns that made the backtracking matcher take seconds to
    /// minutes of CPU, against paths filling a request head: the
    /// automaton's steps stay within (pattern length + 1) × path length.
    #[test]
    fn a_glob_costs_at_most_its_length_times_the_paths() {
        let cases = [
            ("/*.*.*.js", ".".repeat(8190)),
            ("/*.*.*.js", "a.".repeat(4095)),
            ("/**/assets/**/img/**/*.png", "assets/img/".repeat(744)),
            ("/**a**a**a**a**b", "a".repeat(8190)),
            ("/**/a/**/a/**/a/**/b", "a/".repeat(4095)),
            ("/?*?*?*?*?*x", "a".repeat(8190)),
        ];
        for (pattern, rel) in cases {
            let PathPattern::Glob(glob) = PathPattern::parse(pattern).unwrap() else { panic!("{pattern}") };
            let path = ReqPath::new(rel.as_bytes(), false);
            let bound = (glob.tokens.len() + 1) * path.len();
            let mut steps = 0;
            let matched = glob.run(&path, || {
                steps += 1;
                assert!(steps <= bound, "{pattern}: more than {bound} steps on {} bytes", path.len());
            });
            assert!(!matched, "{pattern}");
            assert!(steps > 0, "{pattern}");
        }
    }

    #[test]
    fn header_fields_are_validated() {
        assert!(Header::new("Cache-Control", "public, max-age=31536000, immutable").is_ok());
        assert!(Header::new("X-Weird!#$", "a\tb").is_ok());
        let table: &[(&str, &str, HeaderError)] = &[
            ("", "x", HeaderError::BadName),
            ("X Bad", "x", HeaderError::BadName),
            ("X-Bad:", "x", HeaderError::BadName),
            ("X-Bad\r\nEvil", "x", HeaderError::BadName),
            ("X-A", "a\r\nSet-Cookie: x", HeaderError::BadValue),
            ("X-A", "a\nb", HeaderError::BadValue),
            ("X-A", "a\0b", HeaderError::BadValue),
            ("X-A", " a", HeaderError::BadValue),
            ("X-A", "a ", HeaderError::BadValue),
            ("Content-Length", "1", HeaderError::Reserved),
            ("transfer-encoding", "chunked", HeaderError::Reserved),
            ("Connection", "close", HeaderError::Reserved),
            ("X-Content-Type-Options", "nosniff", HeaderError::Reserved),
        ];
        for (name, value, err) in table {
            assert_eq!(Header::new(name, value), Err(err.clone()), "{name:?}: {value:?}");
        }
    }

    fn reply(status: Status) -> Reply<'static> {
        let mut fields = Fields::default();
        fields.push("Date", Value::Number(0));
        fields.push("Connection", Value::Str("close"));
        Reply { status, fields, body: Body::None, keep_alive: false }
    }

    fn names<'a>(r: &'a Reply<'_>) -> Vec<(&'a str, String)> {
        r.fields.iter().map(|f| (f.name, f.value.to_string())).collect()
    }

    fn rule(path: &str, headers: &[(&str, &str)]) -> HeaderRule {
        HeaderRule {
            path: PathPattern::parse(path).unwrap(),
            headers: headers.iter().map(|(n, v)| Header::new(n, v).unwrap()).collect(),
        }
    }

    #[test]
    fn rules_apply_by_path_and_status_before_connection() {
        let rules = HeaderRules {
            nosniff: true,
            always: vec![Header::new("Cache-Control", "no-cache").unwrap(), Header::new("X-A", "1").unwrap()],
            rules: vec![
                rule("/assets/", &[("Cache-Control", "public, max-age=31536000, immutable")]),
                rule("/assets/*.js", &[("X-B", "js")]),
                rule("/assets/late/", &[("X-B", "late")]),
                rule("/fonts/", &[("Access-Control-Allow-Origin", "*")]),
            ],
        };
        let mut r = reply(Status::Ok);
        rules.apply(&mut r, Some(ReqPath::new(b"assets/app.js", false)));
        assert_eq!(
            names(&r),
            [
                ("Date", "0".into()),
                ("X-Content-Type-Options", "nosniff".into()),
                ("X-A", "1".into()),
                ("Cache-Control", "public, max-age=31536000, immutable".into()),
                ("X-B", "js".into()),
                ("Connection", "close".into()),
            ]
        );
        let mut r = reply(Status::Ok);
        rules.apply(&mut r, Some(ReqPath::new(b"assets/late/x.js", false)));
        assert_eq!(r.fields.get("X-B"), Some(Value::Str("late")));
        assert_eq!(r.fields.iter().filter(|f| f.name == "X-B").count(), 1);
        // An error gets only the fields for every response.
        let mut r = reply(Status::NotFound);
        rules.apply(&mut r, Some(ReqPath::new(b"assets/app.js", false)));
        assert_eq!(r.fields.get("Cache-Control"), Some(Value::Str("no-cache")));
        assert_eq!(r.fields.get("X-B"), None);
        let mut r = reply(Status::MovedPermanently);
        rules.apply(&mut r, Some(ReqPath::new(b"fonts", false)));
        assert_eq!(r.fields.get("Access-Control-Allow-Origin"), None);
        rules.apply(&mut r, Some(ReqPath::new(b"fonts", true)));
        assert_eq!(r.fields.get("Access-Control-Allow-Origin"), Some(Value::Str("*")));
        assert_eq!(r.fields.iter().last().unwrap().name, "Connection");
    }

    #[test]
    fn nosniff_can_be_turned_off() {
        let rules = HeaderRules { nosniff: false, ..HeaderRules::default() };
        let mut r = reply(Status::Ok);
        rules.apply(&mut r, None);
        assert_eq!(names(&r), [("Date", "0".into()), ("Connection", "close".into())]);
        let on = HeaderRules::default();
        let mut r = reply(Status::Ok);
        on.apply(&mut r, None);
        assert_eq!(r.fields.get("x-content-type-options"), Some(Value::Str("nosniff")));
    }
}
