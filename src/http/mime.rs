//! File extension → `Content-Type`, from a static table sorted by extension
//! (darkhttpd and thttpd keep theirs the same way): no allocation, nothing
//! built at start-up, nothing added to the parent's memory.
//!
//! Runs in: child (pure).

/// Sent when the extension is unknown: browsers then download rather than
/// guess (and `nosniff` will later stop them from sniffing).
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// Sorted by extension (lower case) for binary search. Text types carry the
/// charset so browsers never guess the encoding.
const TABLE: &[(&str, &str)] = &[
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/vnd.microsoft.icon"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
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
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xml", "text/xml; charset=utf-8"),
    ("zip", "application/zip"),
];

/// The longest extension in the table; longer ones cannot match.
const MAX_EXT: usize = 11;

/// Returns the content type for a file name, by its last extension,
/// case-insensitively; `DEFAULT_TYPE` when there is none or it is unknown.
pub fn content_type(file_name: &[u8]) -> &'static str {
    let Some(dot) = file_name.iter().rposition(|&b| b == b'.') else {
        return DEFAULT_TYPE;
    };
    let ext = &file_name[dot + 1..];
    if ext.is_empty() || ext.len() > MAX_EXT {
        return DEFAULT_TYPE;
    }
    let mut lower = [0u8; MAX_EXT];
    for (d, s) in lower.iter_mut().zip(ext) {
        *d = s.to_ascii_lowercase();
    }
    let ext = &lower[..ext.len()];
    TABLE.binary_search_by(|(e, _)| e.as_bytes().cmp(ext)).map_or(DEFAULT_TYPE, |i| TABLE[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lower_case() {
        for w in TABLE.windows(2) {
            assert!(w[0].0 < w[1].0, "{} !< {}", w[0].0, w[1].0);
        }
        assert!(TABLE.iter().all(|(e, _)| e.len() <= MAX_EXT && *e == e.to_lowercase()));
    }

    #[test]
    fn lookups() {
        assert_eq!(content_type(b"index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"A.PNG"), "image/png");
        assert_eq!(content_type(b"x.tar.gz"), "application/gzip");
        assert_eq!(content_type(b"font.woff2"), "font/woff2");
        assert_eq!(content_type(b"README"), DEFAULT_TYPE);
        assert_eq!(content_type(b"weird."), DEFAULT_TYPE);
        assert_eq!(content_type(b"x.verylongextension"), DEFAULT_TYPE);
    }
}
