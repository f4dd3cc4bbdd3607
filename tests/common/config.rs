//! Writing the server's TOML config file.

use std::fs;
use std::path::Path;

/// Quote a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds a config file: `listen` (left out when `listen` is empty, for a
/// command line that names the addresses), `root`, then raw extra lines.
pub fn config_text(listen: &[impl AsRef<str>], root: &Path, extra: &[impl AsRef<str>]) -> String {
    let mut text = String::new();
    if !listen.is_empty() {
        let quoted: Vec<String> = listen.iter().map(|a| toml_str(a.as_ref())).collect();
        text.push_str(&format!("listen = [{}]\n", quoted.join(", ")));
    }
    text.push_str(&format!("root = {}\n", toml_str(root.to_str().unwrap())));
    for line in extra {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    text
}

/// Writes `contents` to `path` atomically (write a temp file, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}
