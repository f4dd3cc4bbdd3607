//! The manual pages in `man/`: they render without warnings, and they cover
//! what the binary and the shipped files really have, so that a key or an
//! option added to the server without its page fails here, naming it.
//!
//! The keys the code accepts are asked of the built binary itself: a config
//! with an unknown key makes it list every key it knows (`unknown field ...,
//! expected one of ...`, from `deny_unknown_fields`), at the top level and
//! inside each table. The page's conventions are in its header comment.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, TempDir, missing_tool, run_tool};

const SERVER_PAGE: &str = "man/forkhttpd.8";
const CONFIG_PAGE: &str = "man/forkhttpd.toml.5";
const SHIPPED_CONFIG: &str = "config/forkhttpd.toml";
/// A key no version of the server will accept.
const PROBE_KEY: &str = "zz_no_such_key_manpage_probe";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Plain text of a line of roff: the escapes these pages use, undone.
fn unroff(s: &str) -> String {
    s.replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\(dq", "\"")
        .replace("\\-", "-")
        .replace("\\&", "")
        .replace("\\e", "\\")
}

/// The lines of section `name` (from `.SH name` to the next `.SH`).
fn section<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    let heading = format!(".SH {name}");
    page.lines().skip_while(|l| l.trim() != heading).skip(1).take_while(|l| !l.starts_with(".SH ")).collect()
}

/// The tags of a section's `.TP` entries: the line after each `.TP`,
/// without its font macro, as plain text.
fn entry_tags(lines: &[&str]) -> Vec<String> {
    lines
        .windows(2)
        .filter(|w| w[0].trim() == ".TP")
        .map(|w| {
            let tag = w[1].split_once(' ').map_or("", |(_, rest)| rest);
            unroff(tag).replace('"', "")
        })
        .collect()
}

/// `man --warnings` on `page`, rendered as plain text `width` columns wide:
/// everything it wrote on stderr (groff's and man's warnings), or the failure.
fn man_warnings(page: &str, width: u32) -> Result<String, String> {
    let out = run_tool(
        Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(repo().join(page))
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", width.to_string())
            .env("MAN_KEEP_FORMATTING", "0")
            .env_remove("MANPAGER")
            .env_remove("PAGER"),
        Duration::from_secs(30),
    );
    if !out.success() || out.stdout.trim().is_empty() {
        return Err(out.describe());
    }
    Ok(out.stderr.trim().to_string())
}

/// Guards both pages' syntax: `man --warnings -l` must render each with no
/// warning at all (an unknown macro, a bad escape, an unterminated font
/// change all show up on stderr), on a wide terminal and on narrow ones (a
/// tag or path too long to fit cannot be adjusted); and their title lines
/// name this version.
#[test]
fn pages_render_without_warnings() {
    // The title line names the version, as `forkhttpd --version` does.
    let version = format!("\"forkhttpd {}\"", env!("CARGO_PKG_VERSION"));
    for page in [SERVER_PAGE, CONFIG_PAGE] {
        let text = read(page);
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert!(th.contains(&version), "{page}: the .TH line {th:?} does not name {version}");
    }
    if missing_tool("man") || missing_tool("groff") {
        return;
    }
    for page in [SERVER_PAGE, CONFIG_PAGE] {
        for width in [80, 60, 50] {
            match man_warnings(page, width) {
                Ok(w) => assert!(w.is_empty(), "MANWIDTH={width} man --warnings -l {page} warns:\n{w}"),
                Err(e) => panic!("MANWIDTH={width} man --warnings -l {page} failed: {e}"),
            }
        }
    }
}

/// The keys the built binary accepts in `table` (the top level for `None`,
/// else `[table]`, or `[[table]]` when `array`), from its error for an
/// unknown key. `None` when the table takes any key (a map).
fn code_keys(dir: &Path, table: Option<&str>, array: bool) -> Option<Vec<String>> {
    let text = match table {
        None => format!("{PROBE_KEY} = 1\n"),
        Some(t) if array => format!("[[{t}]]\n{PROBE_KEY} = 1\n"),
        Some(t) => format!("[{t}]\n{PROBE_KEY} = 1\n"),
    };
    let file = dir.join("probe.toml");
    fs::write(&file, text).unwrap();
    let out = run_tool(
        Command::new(BIN).args(["--check-config", "--no-bind", "--config"]).arg(&file),
        Duration::from_secs(20),
    );
    let said = format!("{}{}", out.stdout, out.stderr);
    // An unknown table is itself the unknown field; then it has no keys.
    if !said.contains(&format!("unknown field `{PROBE_KEY}`")) {
        return None;
    }
    // serde lists them as "`a`", "`a` or `b`", or "one of `a`, `b`, `c`".
    let list = said.split_once(&format!("unknown field `{PROBE_KEY}`, expected "))?.1.lines().next()?;
    let list = list.strip_prefix("one of ").unwrap_or(list);
    Some(
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect(),
    )
}

/// The lines of the `.TP` entry tagged `key` in section `name`, up to the
/// next entry.
fn entry<'a>(page: &'a str, name: &str, key: &str) -> Vec<&'a str> {
    let lines = section(page, name);
    let tag = |l: &str| l.split_once(' ').is_some_and(|(_, rest)| unroff(rest).replace('"', "") == key);
    let start = lines.windows(2).position(|w| w[0].trim() == ".TP" && tag(w[1]));
    start
        .map_or_else(Vec::new, |i| lines[i + 1..].iter().copied().take_while(|l| l.trim() != ".TP").collect())
}

/// The keys set in the shipped config, in file order, `table.key` inside a
/// table; with whether each table is an array of tables.
fn shipped_keys(text: &str) -> (Vec<String>, Vec<(String, bool)>) {
    let mut keys = Vec::new();
    let mut tables = Vec::new();
    let mut prefix = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            prefix = format!("{}.", name.trim());
            tables.push((name.trim().to_string(), true));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            prefix = format!("{}.", name.trim());
            tables.push((name.trim().to_string(), false));
        } else if let Some((key, _)) = line.split_once('=') {
            let key = format!("{prefix}{}", key.trim());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    (keys, tables)
}

/// The commented-out example tables at the end of the shipped config
/// (`#[[site]]` and the `#KEY = VALUE` lines after it), uncommented: they
/// document the keys of an array of tables without adding one to the
/// server's defaults. Empty when there is none.
fn commented_example(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.starts_with("#[["))
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("# "))
        .map(|l| format!("{}\n", &l[1..]))
        .collect()
}

/// The value of `key` (`table.key` inside a table, the first one of an
/// array of tables) in a parsed config.
fn value_of<'a>(config: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        None => config.get(key),
        Some((table, rest)) => match config.get(table)? {
            toml::Value::Table(t) => value_of(t, rest),
            toml::Value::Array(a) => value_of(a.first()?.as_table()?, rest),
            _ => None,
        },
    }
}

/// The `Default: \fBVALUE\fR` of each key entry of the config page's KEYS
/// section, in page order (`None`: the entry has no such line).
fn page_keys(page: &str) -> Vec<(String, Option<String>)> {
    let lines = section(page, "KEYS");
    let mut keys: Vec<(String, Option<String>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == ".TP"
            && let Some(key) = lines.get(i + 1).and_then(|l| l.strip_prefix(".B "))
        {
            keys.push((unroff(key.trim()), None));
        } else if let Some(v) = line.strip_prefix("Default: \\fB").and_then(|l| l.rsplit_once("\\fR"))
            && let Some(last) = keys.last_mut()
            && last.1.is_none()
        {
            last.1 = Some(unroff(v.0));
        }
    }
    keys
}

/// Guards forkhttpd.toml(5) against the code and the shipped file: every key
/// the binary accepts (at the top level and in each table) and every key of
/// `config/forkhttpd.toml` has an entry, in the shipped file's order, whose
/// default is the shipped value; the page has no key the binary refuses;
/// every key of a `header_rules` entry is named in that key's type; and its
/// example sets every key, each with the shipped value's type.
#[test]
fn config_page_documents_every_key_in_order_with_its_default() {
    let page = read(CONFIG_PAGE);
    let shipped_text = read(SHIPPED_CONFIG);
    let shipped: toml::Table = toml::from_str(&shipped_text).expect("the shipped config is TOML");
    // The commented example tables count as written (in the file's order),
    // and must be TOML once uncommented.
    let example_tables = commented_example(&shipped_text);
    if let Err(e) = toml::from_str::<toml::Table>(&example_tables) {
        panic!(
            "the commented example tables of {SHIPPED_CONFIG} are not TOML once uncommented: {e}\n{example_tables}"
        );
    }
    let (shipped_order, tables) = shipped_keys(&format!("{shipped_text}\n{example_tables}"));
    let documented = page_keys(&page);
    let documented_names: Vec<&str> = documented.iter().map(|(k, _)| k.as_str()).collect();
    let mut problems = Vec::new();

    // What the code accepts: the top level, then each table the shipped file
    // or the page names.
    let tmp = TempDir::new("manpage-keys");
    let mut code = code_keys(tmp.path(), None, false).expect("the binary lists its keys for an unknown one");
    let mut table_names: Vec<(String, bool)> = tables.clone();
    for k in &documented_names {
        if let Some((t, _)) = k.split_once('.')
            && !table_names.iter().any(|(n, _)| n == t)
        {
            let array = matches!(shipped.get(t), Some(toml::Value::Array(_)));
            table_names.push((t.to_string(), array));
        }
    }
    for (t, array) in &table_names {
        let inner = code_keys(tmp.path(), Some(t), *array).or_else(|| code_keys(tmp.path(), Some(t), !array));
        for k in inner.unwrap_or_default() {
            code.push(format!("{t}.{k}"));
        }
    }
    // A table is a key of its own at the top level; its entries are the keys.
    let is_table = |k: &str| table_names.iter().any(|(t, _)| t == k);

    // The keys of a `header_rules` entry have no entries of their own: the
    // `header_rules` entry's type, before its default, names each (`.I key`).
    let rule_keys = code_keys(tmp.path(), Some("header_rules"), true)
        .expect("the binary lists the keys of a header_rules entry for an unknown one");
    let rules_type: Vec<&str> =
        entry(&page, "KEYS", "header_rules").into_iter().take_while(|l| !l.starts_with("Default:")).collect();
    for k in &rule_keys {
        let named = rules_type.iter().any(|l| {
            let mut words = l.split_whitespace();
            matches!(words.next(), Some(".I" | ".IR")) && words.next() == Some(k.as_str())
        });
        if !named {
            problems.push(format!(
                "key `{k}` of a header_rules entry: accepted by the server (src/config/raw.rs RawRule) but the type of the header_rules entry of {CONFIG_PAGE} does not name it (\".I {k}\" before \"Default:\")"
            ));
        }
    }

    for k in code.iter().filter(|k| !is_table(k)) {
        if !documented_names.contains(&k.as_str()) {
            problems.push(format!(
                "key `{k}`: accepted by the server (src/config/raw.rs) but has no entry in {CONFIG_PAGE} (add \".TP\" \".B {k}\" under .SH KEYS)"
            ));
        }
    }
    for k in &shipped_order {
        if !documented_names.contains(&k.as_str()) && !code.contains(k) {
            problems.push(format!("key `{k}`: set in {SHIPPED_CONFIG} but has no entry in {CONFIG_PAGE}"));
        }
    }
    for k in &documented_names {
        if !code.iter().any(|c| c == k) {
            problems.push(format!(
                "key `{k}`: has an entry in {CONFIG_PAGE} but the server does not accept it (not in src/config/raw.rs)"
            ));
        }
        if !shipped_order.iter().any(|s| s == k) {
            problems
                .push(format!("key `{k}`: has an entry in {CONFIG_PAGE} but is not set in {SHIPPED_CONFIG}"));
        }
    }

    let in_page_order: Vec<&str> =
        documented_names.iter().copied().filter(|k| shipped_order.iter().any(|s| s == k)).collect();
    let in_file_order: Vec<&str> =
        shipped_order.iter().map(String::as_str).filter(|k| documented_names.contains(k)).collect();
    if in_page_order != in_file_order {
        problems.push(format!(
            "the entries of {CONFIG_PAGE} are not in the order of {SHIPPED_CONFIG}:\n  page: {in_page_order:?}\n  file: {in_file_order:?}"
        ));
    }

    for (k, default) in &documented {
        let Some(want) = value_of(&shipped, k) else { continue };
        match default {
            None => problems
                .push(format!("key `{k}`: its entry in {CONFIG_PAGE} has no \"Default: \\fB...\\fR\" line")),
            Some(d) => match toml::from_str::<toml::Table>(&format!("v = {d}")) {
                Ok(t) if t.get("v") == Some(want) => {}
                Ok(_) => problems.push(format!(
                    "key `{k}`: {CONFIG_PAGE} says the default is {d}, {SHIPPED_CONFIG} sets {want}"
                )),
                Err(e) => {
                    problems.push(format!("key `{k}`: the default {d:?} in {CONFIG_PAGE} is not TOML: {e}"))
                }
            },
        }
    }

    // The complete example.
    let example: String = section(&page, "EXAMPLE")
        .into_iter()
        .skip_while(|l| l.trim() != ".EX")
        .skip(1)
        .take_while(|l| l.trim() != ".EE")
        .map(|l| unroff(l) + "\n")
        .collect();
    match toml::from_str::<toml::Table>(&example) {
        Err(e) => problems.push(format!("the EXAMPLE of {CONFIG_PAGE} is not TOML: {e}\n{example}")),
        Ok(ex) => {
            let (ex_keys, _) = shipped_keys(&example);
            for k in code.iter().filter(|k| !is_table(k)) {
                if !ex_keys.contains(k) {
                    problems.push(format!(
                        "key `{k}`: not set in the EXAMPLE of {CONFIG_PAGE} (it sets every key)"
                    ));
                }
            }
            for k in &ex_keys {
                if !code.contains(k) {
                    problems.push(format!(
                        "key `{k}`: set in the EXAMPLE of {CONFIG_PAGE} but not accepted by the server"
                    ));
                } else if let (Some(a), Some(b)) = (value_of(&ex, k), value_of(&shipped, k))
                    && a.type_str() != b.type_str()
                {
                    problems.push(format!(
                        "key `{k}`: the EXAMPLE of {CONFIG_PAGE} gives it a {}, {SHIPPED_CONFIG} a {}",
                        a.type_str(),
                        b.type_str()
                    ));
                }
            }
        }
    }

    assert!(problems.is_empty(), "{CONFIG_PAGE} is out of step:\n- {}", problems.join("\n- "));
}

/// The long options `forkhttpd --help` lists.
fn help_options() -> BTreeSet<String> {
    let out = run_tool(Command::new(BIN).arg("--help"), Duration::from_secs(20));
    assert!(out.success(), "forkhttpd --help failed: {}", out.describe());
    out.stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        // The option column ends where two spaces start the description.
        .flat_map(|l| l.split("  ").next().unwrap_or("").split(|c: char| c.is_whitespace() || c == ','))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Guards forkhttpd(8) against the binary: every long option of
/// `forkhttpd --help` has an entry under OPTIONS (and the page lists no
/// option the binary lacks), and every environment variable the source
/// reads is described under ENVIRONMENT.
#[test]
fn server_page_documents_every_option_and_variable() {
    let page = read(SERVER_PAGE);
    let mut problems = Vec::new();

    let documented: BTreeSet<String> = entry_tags(&section(&page, "OPTIONS"))
        .iter()
        .flat_map(|t| t.split([' ', ',']).map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.starts_with("--"))
        .collect();
    let offered = help_options();
    assert!(offered.contains("--config"), "no --config in forkhttpd --help: {offered:?}");
    for o in offered.difference(&documented) {
        problems
            .push(format!("option {o}: in forkhttpd --help but has no entry under OPTIONS in {SERVER_PAGE}"));
    }
    for o in documented.difference(&offered) {
        problems.push(format!(
            "option {o}: has an entry under OPTIONS in {SERVER_PAGE} but forkhttpd --help lacks it"
        ));
    }

    // Environment variables: every `env::var("X")`/`var_os("X")` in src/.
    let mut read_vars = BTreeSet::new();
    let mut sources = Vec::new();
    let mut dirs = vec![repo().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let text = fs::read_to_string(path).unwrap();
        // The server's own reads: a module's unit tests (its last item)
        // may read the test run's variables, such as `CI`.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, _) in text.match_indices("env::var") {
            let rest = &text[i..];
            if let Some(name) = rest.split_once("(\"").and_then(|(head, tail)| {
                (head.len() <= "env::var_os".len()).then(|| tail.split('"').next().unwrap_or(""))
            }) {
                read_vars.insert(name.to_string());
            }
        }
    }
    assert!(read_vars.contains("NOTIFY_SOCKET"), "found no env::var reads in src/: {read_vars:?}");
    let env_tags: Vec<String> = entry_tags(&section(&page, "ENVIRONMENT"));
    let described: BTreeSet<&str> = env_tags.iter().flat_map(|t| t.split([' ', ','])).collect();
    for v in &read_vars {
        if !described.contains(v.as_str()) {
            problems.push(format!(
                "variable {v}: read by src/ but has no entry under ENVIRONMENT in {SERVER_PAGE}"
            ));
        }
    }

    assert!(problems.is_empty(), "{SERVER_PAGE} is out of step:\n- {}", problems.join("\n- "));
}
