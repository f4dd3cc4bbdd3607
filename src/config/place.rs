//! Where in the configuration file a value is written: its line, and the
//! `[[site]]` table it is in, for every error to name; and the same for
//! the errors of the TOML parser itself.
//!
//! Runs in: parent, when the config is read.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, StartupError};
use crate::safeopen::Guard;

use super::raw::At;

/// The error for a config file `path` that could not be read.
pub fn unreadable(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        site: None,
        key: None,
        what: format!("cannot read: {e}"),
    }
}

/// Locates a `toml` error: its line (from the error's span), and, from
/// the document parsed again with spans, the `[[site]]` entry it is in
/// and the key it is under. A text search would miss `[[ site ]]` and
/// sub-tables such as `[site.headers]`.
pub(super) fn describe_toml_error(err: &toml::de::Error, file: &Path, text: &str) -> ConfigError {
    let mut located = ConfigError {
        file: Some(file.to_path_buf()),
        line: None,
        site: None,
        key: None,
        what: err.message().trim().to_string(),
    };
    let Some(span) = err.span() else { return located };
    let at = span.start.min(text.len());
    located.line = Some(text[..at].matches('\n').count() + 1);
    // Best effort: a syntax error still leaves the tables before it.
    let (doc, _) = DeTable::parse_recoverable(text);
    let doc = doc.get_ref();
    let mut table = doc;
    let sites = doc.get("site").and_then(|s| match s.get_ref() {
        DeValue::Array(a) => Some(a),
        _ => None,
    });
    for (i, entry) in sites.into_iter().flat_map(|a| a.iter()).enumerate() {
        if let DeValue::Table(t) = entry.get_ref()
            && extent(entry).contains(&at)
        {
            let first = t.get("hosts").and_then(|h| match h.get_ref() {
                DeValue::Array(a) => a.first().and_then(|v| v.get_ref().as_str()),
                _ => None,
            });
            located.site = Some(site_name(i, first));
            table = t;
            break;
        }
    }
    let path = key_path(table, at);
    if !path.is_empty() {
        located.key = Some(path.join("."));
    }
    located
}

/// The byte range a parsed value covers: its own span (for a table, only
/// its header) together with those of every key and value beneath it.
fn extent(value: &Spanned<DeValue<'_>>) -> Range<usize> {
    let mut range = value.span();
    let mut widen = |r: Range<usize>| {
        if !r.is_empty() {
            range = if range.is_empty() { r } else { range.start.min(r.start)..range.end.max(r.end) };
        }
    };
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                widen(k.span());
                widen(extent(v));
            }
        }
        DeValue::Array(a) => a.iter().for_each(|v| widen(extent(v))),
        _ => {}
    }
    range
}

/// The keys, outermost first, leading from `table` to the innermost key
/// whose name or value covers byte `at` (array entries add no key).
fn key_path(table: &DeTable<'_>, at: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut here = table.iter().find(|(k, v)| k.span().contains(&at) || extent(v).contains(&at));
    while let Some((k, v)) = here {
        path.push(key_text(k.get_ref()));
        let mut value = v;
        while let DeValue::Array(a) = value.get_ref() {
            match a.iter().find(|v| extent(v).contains(&at)) {
                Some(v) => value = v,
                None => break,
            }
        }
        here = match value.get_ref() {
            DeValue::Table(t) => t.iter().find(|(k, v)| k.span().contains(&at) || extent(v).contains(&at)),
            _ => None,
        };
    }
    path
}

/// A key as it would be written: bare when it can be, else quoted.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_string() } else { format!("{key:?}") }
}

/// How errors and logs name the `[[site]]` table at index `i`: its
/// number, counted from 1, and its first host when it has one.
pub(super) fn site_name(i: usize, first_host: Option<&str>) -> String {
    match first_host {
        Some(host) => format!("[[site]] #{} ({host})", i + 1),
        None => format!("[[site]] #{}", i + 1),
    }
}

/// Validation with access to the file text, so each error can name its line.
pub(super) struct Checker<'a> {
    /// The file read, if any.
    pub(super) path: Option<&'a Path>,
    /// Its text.
    pub(super) text: &'a str,
    /// The guard `mime_types` files are read under.
    pub(super) guard: Option<Guard>,
}

/// Where in the file a value is: its span, and the site table it is in.
#[derive(Clone, Copy)]
pub(super) struct Place<'s> {
    /// The value's byte range in the file.
    pub(super) span: (usize, usize),
    /// The name of the `[[site]]` table it is in, if any.
    pub(super) site: Option<&'s str>,
}

impl Place<'_> {
    pub(super) fn top<T>(at: &At<T>) -> Place<'static> {
        let r = at.span();
        Place { span: (r.start, r.end), site: None }
    }
}

impl Checker<'_> {
    /// An error for `key`, naming the file, the line its value is written
    /// on (from the value's span) and the site table it is in.
    pub(super) fn error(&self, key: &str, place: Place<'_>, what: &str) -> StartupError {
        ConfigError {
            file: self.path.map(Path::to_path_buf),
            line: self.line_at(place.span),
            site: place.site.map(str::to_string),
            key: Some(key.to_string()),
            what: what.to_string(),
        }
        .into()
    }

    /// The 1-based line a span starts on; `None` for an empty span (a
    /// built-in default or a command-line value, written nowhere in the file).
    fn line_at(&self, (start, end): (usize, usize)) -> Option<usize> {
        if start == end || start > self.text.len() {
            return None;
        }
        Some(self.text[..start].matches('\n').count() + 1)
    }
}

impl Place<'static> {
    /// A value written nowhere in the file (a command-line override).
    pub(super) fn nowhere() -> Place<'static> {
        Place { span: (0, 0), site: None }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_str;

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = load_str("backlog = 5\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = load_str("max_children = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("max_children"), "{e}");
    }

    #[test]
    fn top_level_errors_name_the_line_of_the_value_not_a_comment() {
        let e = load_str("# backlog = 5 is the usual value\nbacklog = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("backlog"), "{e}");
        let e = load_str("\n\nheaders = { \"X-A\" = \"\" , \"Date\" = \"x\" }\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("set by the server") && !e.contains("[[site]]"), "{e}");
    }
}
