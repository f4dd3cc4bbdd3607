//! A reply as data: a status, an open list of header fields and a plan for
//! the body, and the bytes of its head. `decide` builds replies; the
//! connection loop sends them without looking inside.
//!
//! Runs in: child, and in the parent for its own `503` (pure: writing a head
//! fills a buffer, sending it is the caller's business).
//!
//! Field values are borrowed (constants, the site's configuration, the
//! request) or typed (a number, a date) and formatted straight into the head
//! buffer, so a reply costs no allocation up to `INLINE_FIELDS` fields.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::time::SystemTime;

use httpdate::HttpDate;

use crate::http::decimal::push_number;
use crate::http::fileinfo::{self, FileInfo};
use crate::http::range::{self, Boundary, ContentRange, Multipart};
use crate::http::status::Status;

/// Fields a reply holds without allocating; more spill onto the heap.
pub const INLINE_FIELDS: usize = 16;

/// One header field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Text sent as it is.
    Str(&'a str),
    /// A decimal number (`Content-Length`, `Retry-After`).
    Number(u64),
    /// An HTTP date, IMF-fixdate (`Date`, `Last-Modified`), from 1970 to
    /// 9999 (formatting any other aborts; `FileInfo` keeps file times inside).
    Date(SystemTime),
    /// The strong entity tag of a file (`ETag`), see `fileinfo::etag`.
    ETag(&'a FileInfo),
    /// `bytes FIRST-LAST/COMPLETE` (`Content-Range` of a `206`).
    ContentRange(ContentRange),
    /// `bytes */COMPLETE` (`Content-Range` of a `416`).
    UnsatisfiedRange(u64),
    /// `multipart/byteranges; boundary=...` (`Content-Type` of a multipart `206`).
    Multipart(Boundary),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As in the head; every value is ASCII or a `&str`.
        let mut bytes = Vec::new();
        push_value(&mut bytes, *self);
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

/// One header field: its name as sent, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name, in the case it is sent in.
    pub name: &'a str,
    /// The value.
    pub value: Value<'a>,
}

/// The header fields of a reply, in the order they are sent. Open: any rule
/// may add a field; nothing but the order of `push` decides the head.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    inline: [Field<'a>; INLINE_FIELDS],
    len: usize,
    spill: Vec<Field<'a>>,
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields {
            inline: [Field { name: "", value: Value::Str("") }; INLINE_FIELDS],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<'a> Fields<'a> {
    /// Appends a field.
    pub fn push(&mut self, name: &'a str, value: Value<'a>) {
        let field = Field { name, value };
        if self.len < INLINE_FIELDS {
            self.inline[self.len] = field;
            self.len += 1;
        } else {
            self.spill.push(field);
        }
    }

    /// The fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Field<'a>> {
        self.inline[..self.len].iter().chain(&self.spill)
    }

    /// Removes and returns the last field if it is `Connection`, so that
    /// fields can be added after a reply is decided and `Connection` put
    /// back last.
    pub fn pop_connection(&mut self) -> Option<Field<'a>> {
        let last = self.iter().last()?;
        if !last.name.eq_ignore_ascii_case("connection") {
            return None;
        }
        match self.spill.pop() {
            Some(f) => Some(f),
            None => {
                self.len -= 1;
                Some(self.inline[self.len])
            }
        }
    }

    /// Replaces the value of the first field named `name` (any case);
    /// returns whether there was one.
    pub fn set(&mut self, name: &str, value: Value<'a>) -> bool {
        let len = self.len;
        match self.inline[..len].iter_mut().chain(&mut self.spill).find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(f) => {
                f.value = value;
                true
            }
            None => false,
        }
    }

    /// The value of the first field named `name` (any case), if any.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value)
    }

    /// How many fields there are.
    pub fn count(&self) -> usize {
        self.len + self.spill.len()
    }

    /// Removes the fields named `name` (any case) from the `from`th on,
    /// keeping the others in order: a configured field that replaces one
    /// added before it (see `HeaderRules::apply`).
    pub fn remove_from(&mut self, from: usize, name: &str) {
        // `spill` is used only once `inline` is full, so the `i`th field
        // is `inline[i]` or `spill[i - INLINE_FIELDS]`.
        let mut kept = from;
        for i in from..self.count() {
            let field = if i < INLINE_FIELDS { self.inline[i] } else { self.spill[i - INLINE_FIELDS] };
            if !field.name.eq_ignore_ascii_case(name) {
                if kept < INLINE_FIELDS {
                    self.inline[kept] = field;
                } else {
                    self.spill[kept - INLINE_FIELDS] = field;
                }
                kept += 1;
            }
        }
        self.len = kept.min(INLINE_FIELDS);
        self.spill.truncate(kept.saturating_sub(INLINE_FIELDS));
    }
}

/// What follows the head.
#[derive(Clone, Debug)]
pub enum Body<'a> {
    /// Nothing: `HEAD`, `204`, or an empty file.
    None,
    /// A page generated in memory (the built-in status pages).
    Page(&'a str),
    /// Bytes generated by the child for this request (a directory listing).
    Generated(&'a [u8]),
    /// `len` bytes of an open file from `offset`, sent with `sendfile`.
    File {
        /// The file, open and checked by the file step.
        file: &'a File,
        /// Where the bytes start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// Several ranges of an open file as `multipart/byteranges`: each part
    /// head, then that range with `sendfile`.
    Multipart(Multipart<'a>),
}

/// A decided reply, ready to send.
#[derive(Clone, Debug)]
pub struct Reply<'a> {
    /// The status line's status.
    pub status: Status,
    /// The header fields, in order (`Connection` included).
    pub fields: Fields<'a>,
    /// The body plan.
    pub body: Body<'a>,
    /// Whether the connection stays open after this reply.
    pub keep_alive: bool,
}

impl Reply<'_> {
    /// Replaces `out` with the head: status line, fields, blank line.
    pub fn write_head(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_number(out, self.status.code().into());
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
        // Byte copies, not `write!`, for all but dates: this runs for every
        // request on the keep-alive hot path.
        for f in self.fields.iter() {
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(b": ");
            push_value(out, f.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The number of body bytes the reply sends (what the access log records).
    pub fn body_len(&self) -> u64 {
        match self.body {
            Body::None => 0,
            Body::Page(page) => page.len() as u64,
            Body::Generated(bytes) => bytes.len() as u64,
            Body::File { len, .. } => len,
            Body::Multipart(ref m) => range::multipart_len(&m.parts, m.complete, m.content_type),
        }
    }
}

/// Appends a field value.
fn push_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
        Value::Number(n) => push_number(out, n),
        // Writing into a Vec cannot fail.
        Value::Date(t) => {
            let _ = write!(out, "{}", HttpDate::from(t));
        }
        Value::ETag(info) => out.extend_from_slice(fileinfo::etag(info).as_bytes()),
        Value::ContentRange(cr) => range::push_content_range(out, cr),
        Value::UnsatisfiedRange(complete) => {
            out.extend_from_slice(b"bytes */");
            push_number(out, complete);
        }
        Value::Multipart(boundary) => {
            out.extend_from_slice(b"multipart/byteranges; boundary=");
            out.extend_from_slice(boundary.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_past_the_inline_ones() {
        let mut fields = Fields::default();
        let names: Vec<String> = (0..INLINE_FIELDS + 3).map(|i| format!("X-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            fields.push(name, Value::Number(i as u64));
        }
        let got: Vec<u64> = fields
            .iter()
            .map(|f| match f.value {
                Value::Number(n) => n,
                _ => panic!(),
            })
            .collect();
        assert_eq!(got, (0..INLINE_FIELDS as u64 + 3).collect::<Vec<_>>());
        assert_eq!(fields.get("x-17"), Some(Value::Number(17)));
        assert_eq!(fields.get("X-99"), None);
    }

    #[test]
    fn removing_fields_keeps_the_others_in_order_across_the_spill() {
        let names: Vec<String> = (0..INLINE_FIELDS + 4).map(|i| format!("X-{}", i % 3)).collect();
        for from in [0, 2, INLINE_FIELDS - 1, INLINE_FIELDS, INLINE_FIELDS + 2, INLINE_FIELDS + 4] {
            let mut fields = Fields::default();
            for (i, name) in names.iter().enumerate() {
                fields.push(name, Value::Number(i as u64));
            }
            fields.remove_from(from, "x-1");
            let want: Vec<u64> =
                (0..names.len() as u64).filter(|&i| (i as usize) < from || i % 3 != 1).collect();
            let got: Vec<u64> = fields
                .iter()
                .map(|f| match f.value {
                    Value::Number(n) => n,
                    _ => panic!(),
                })
                .collect();
            assert_eq!(got, want, "from {from}");
            assert_eq!(fields.count(), want.len());
            // Still appendable where it left off.
            fields.push("Last", Value::Str("l"));
            assert_eq!(fields.iter().last().map(|f| f.name), Some("Last"));
            assert_eq!(fields.count(), want.len() + 1);
        }
    }

    #[test]
    fn numbers_in_decimal() {
        for n in [0, 7, 10, 4096, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            push_number(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn head_bytes() {
        let mut fields = Fields::default();
        fields.push("Date", Value::Date(SystemTime::UNIX_EPOCH));
        fields.push("Content-Length", Value::Number(42));
        fields.push("Connection", Value::Str("close"));
        let reply = Reply { status: Status::NotFound, fields, body: Body::None, keep_alive: false };
        let mut out = b"stale".to_vec();
        reply.write_head(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 42\r\n\
              Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn typed_values_in_the_head_and_in_display() {
        use crate::http::range::ByteRange;
        let info = FileInfo { len: 26, modified: None, mtime_sec: 16, mtime_nsec: 0, coding: None };
        let boundary = Boundary::new(&info, "text/plain");
        let b = String::from_utf8(boundary.as_bytes().to_vec()).unwrap();
        let table = [
            (Value::ETag(&info), "\"1a-10.0\"".to_string()),
            (
                Value::ContentRange(ContentRange { range: ByteRange { first: 0, last: 9 }, complete: 26 }),
                "bytes 0-9/26".to_string(),
            ),
            (Value::UnsatisfiedRange(26), "bytes */26".to_string()),
            (Value::Multipart(boundary), format!("multipart/byteranges; boundary={b}")),
        ];
        for (value, want) in table {
            let mut fields = Fields::default();
            fields.push("X", value);
            let reply = Reply { status: Status::Ok, fields, body: Body::None, keep_alive: true };
            let mut out = Vec::new();
            reply.write_head(&mut out);
            assert_eq!(out, format!("HTTP/1.1 200 OK\r\nX: {want}\r\n\r\n").as_bytes());
            assert_eq!(value.to_string(), want);
        }
    }
}
