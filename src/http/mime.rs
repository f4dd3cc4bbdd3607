//! File extension → `Content-Type`: a table built once in the parent from
//! the built-in list, the `mime_types` files (`/etc/mime.types` format) and
//! the `mime` overrides of the configuration, then borrowed by every child
//! (it comes through `fork` for free). A lookup allocates nothing: the
//! extension is lower-cased into a stack buffer and binary-searched.
//!
//! Runs in: parent (building, at start and on reload), child (lookups).

/// The default of `default_type`: unknown extensions make browsers download
/// rather than guess (and `nosniff` will later stop them from sniffing).
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// The default of `charset`: the encoding named on `text/*` types, so that
/// browsers never guess it.
pub const DEFAULT_CHARSET: &str = "utf-8";

/// The longest extension looked up, in bytes; longer ones are unknown (and
/// entries with longer ones are skipped in files, refused in the config).
pub const MAX_EXT: usize = 32;

/// The built-in types, by lower-case extension. `text/*` get the charset
/// when the table is built.
const BUILT_IN: &[(&str, &str)] = &[
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("css", "text/css"),
    ("csv", "text/csv"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("ico", "image/vnd.microsoft.icon"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("md", "text/markdown"),
    ("mjs", "text/javascript"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xml", "text/xml"),
    ("zip", "application/zip"),
];

/// Extension → content type, as sent (charset included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeTypes {
    /// Sorted by extension (lower case), one entry per extension.
    by_ext: Vec<(Box<str>, Box<str>)>,
    /// Sent when the extension is unknown.
    default: Box<str>,
}

impl Default for MimeTypes {
    /// The built-in table with the default type and charset.
    fn default() -> Self {
        let mut b = MimeBuilder::new(DEFAULT_CHARSET);
        b.add_built_in();
        b.finish(DEFAULT_TYPE)
    }
}

impl MimeTypes {
    /// The content type for a file name, by its last extension,
    /// case-insensitively; the default type when there is none or it is
    /// unknown.
    pub fn content_type(&self, file_name: &[u8]) -> &str {
        let Some(dot) = file_name.iter().rposition(|&b| b == b'.') else {
            return &self.default;
        };
        let ext = &file_name[dot + 1..];
        if ext.is_empty() || ext.len() > MAX_EXT {
            return &self.default;
        }
        let mut lower = [0u8; MAX_EXT];
        for (d, s) in lower.iter_mut().zip(ext) {
            *d = s.to_ascii_lowercase();
        }
        let ext = &lower[..ext.len()];
        match self.by_ext.binary_search_by(|(e, _)| e.as_bytes().cmp(ext)) {
            Ok(i) => &self.by_ext[i].1,
            Err(_) => &self.default,
        }
    }
}

/// Builds a `MimeTypes`: later additions win over earlier ones for the same
/// extension (built-in, then each file in order, then the overrides).
#[derive(Debug)]
pub struct MimeBuilder {
    entries: Vec<(Box<str>, Box<str>)>,
    charset: String,
}

impl MimeBuilder {
    /// An empty table; `charset` ("" for none) is added to `text/*` types
    /// that name none.
    pub fn new(charset: &str) -> MimeBuilder {
        MimeBuilder { entries: Vec::new(), charset: charset.to_string() }
    }

    /// Adds the built-in table.
    pub fn add_built_in(&mut self) {
        for (ext, ty) in BUILT_IN {
            self.add(ext, ty);
        }
    }

    /// Adds every entry of a file in `/etc/mime.types` format: a type, then
    /// its extensions, separated by blanks; `#` starts a comment. Lines
    /// without extensions, and extensions longer than `MAX_EXT`, are skipped.
    /// Returns how many extensions were added.
    pub fn add_mime_types(&mut self, text: &str) -> usize {
        let mut added = 0;
        for (ty, ext) in parse_mime_types(text) {
            if ext.len() <= MAX_EXT && valid_type(ty) {
                self.add(ext, ty);
                added += 1;
            }
        }
        added
    }

    /// Adds one extension (without its dot; any case) with its type.
    pub fn add(&mut self, ext: &str, ty: &str) {
        self.entries.push((ext.to_ascii_lowercase().into(), self.with_charset(ty).into()));
    }

    /// `ty`, with `; charset=...` when it is `text/*` without parameters.
    fn with_charset(&self, ty: &str) -> String {
        let ty = ty.trim();
        let text = ty.as_bytes().get(..5).is_some_and(|t| t.eq_ignore_ascii_case(b"text/"));
        if !self.charset.is_empty() && text && !ty.contains(';') {
            format!("{ty}; charset={}", self.charset)
        } else {
            ty.to_string()
        }
    }

    /// The table, with `default_type` for unknown extensions.
    pub fn finish(self, default_type: &str) -> MimeTypes {
        let default = self.with_charset(default_type).into();
        let mut entries = self.entries;
        // Stable: among equal extensions the last added stays last, and is kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut by_ext: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(entries.len());
        for e in entries {
            match by_ext.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => by_ext.push(e),
            }
        }
        MimeTypes { by_ext, default }
    }
}

/// The `(type, extension)` pairs of a file in `/etc/mime.types` format.
pub fn parse_mime_types(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().flat_map(|line| {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        let mut words = line.split_ascii_whitespace();
        let ty = words.next().unwrap_or("");
        words.map(move |ext| (ty, ext))
    })
}

/// Whether `ty` can be sent as a `Content-Type`: `type/subtype` with
/// optional parameters, visible ASCII and spaces only (no CR, LF or other
/// control character can reach the head).
pub fn valid_type(ty: &str) -> bool {
    let essence = ty.split(';').next().unwrap_or("").trim();
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s))
        && ty.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Whether `ext` can be a `mime` key: what a file name's last extension can
/// be (no dot, no `/`), at most `MAX_EXT` bytes.
pub fn valid_ext(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= MAX_EXT
        && ext.bytes().all(|b| b.is_ascii_graphic() && b != b'.' && b != b'/')
}

/// Whether `charset` can be a `charset` value: empty (none) or a token.
pub fn valid_charset(charset: &str) -> bool {
    charset.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_is_sorted_and_lower_case() {
        for w in BUILT_IN.windows(2) {
            assert!(w[0].0 < w[1].0, "{} !< {}", w[0].0, w[1].0);
        }
        assert!(BUILT_IN.iter().all(|(e, t)| valid_ext(e) && *e == e.to_lowercase() && valid_type(t)));
    }

    #[test]
    fn default_lookups() {
        let t = MimeTypes::default();
        assert_eq!(t.content_type(b"index.html"), "text/html; charset=utf-8");
        assert_eq!(t.content_type(b"A.PNG"), "image/png");
        assert_eq!(t.content_type(b"x.tar.gz"), "application/gzip");
        assert_eq!(t.content_type(b"font.woff2"), "font/woff2");
        assert_eq!(t.content_type(b"data.json"), "application/json");
        assert_eq!(t.content_type(b"README"), DEFAULT_TYPE);
        assert_eq!(t.content_type(b"weird."), DEFAULT_TYPE);
        assert_eq!(t.content_type(b"x.averyveryveryverylongextensionnamexx"), DEFAULT_TYPE);
    }

    #[test]
    fn mime_types_format() {
        let text = "# comment line\n\
                    application/x-foo\tfoo  FOOB # trailing comment\n\
                    \n\
                    text/x-nothing\n\
                    \t  image/x-bar bar\n";
        let pairs: Vec<_> = parse_mime_types(text).collect();
        assert_eq!(
            pairs,
            [("application/x-foo", "foo"), ("application/x-foo", "FOOB"), ("image/x-bar", "bar")]
        );
    }

    #[test]
    fn later_sources_win_and_text_gets_the_charset() {
        let mut b = MimeBuilder::new("iso-8859-1");
        b.add_built_in();
        assert_eq!(b.add_mime_types("text/x-log log\nimage/x-mine png\nbad-type x\n"), 2);
        b.add("LOG", "text/plain");
        b.add("csv", "text/csv; header=present");
        let t = b.finish("text/plain");
        assert_eq!(t.content_type(b"a.log"), "text/plain; charset=iso-8859-1");
        assert_eq!(t.content_type(b"a.PNG"), "image/x-mine");
        assert_eq!(t.content_type(b"a.csv"), "text/csv; header=present");
        assert_eq!(t.content_type(b"a.css"), "text/css; charset=iso-8859-1");
        assert_eq!(t.content_type(b"a.unknown"), "text/plain; charset=iso-8859-1");

        let mut b = MimeBuilder::new("");
        b.add_built_in();
        let t = b.finish("application/x-whatever");
        assert_eq!(t.content_type(b"a.html"), "text/html");
        assert_eq!(t.content_type(b"a"), "application/x-whatever");
    }

    #[test]
    fn validation() {
        for ok in ["text/plain", "image/svg+xml", "text/csv; header=present", "application/vnd.a-b_c.d"] {
            assert!(valid_type(ok), "{ok}");
        }
        for bad in ["", "text", "text/", "/plain", "text/plain\r\nX: y", "te xt/plain", "text/plain\u{7f}"] {
            assert!(!valid_type(bad), "{bad:?}");
        }
        assert!(valid_ext("webmanifest") && valid_ext("7z"));
        assert!(!valid_ext("") && !valid_ext(".png") && !valid_ext("a/b") && !valid_ext(&"x".repeat(33)));
        assert!(valid_charset("utf-8") && valid_charset("") && !valid_charset("utf 8"));
    }
}
