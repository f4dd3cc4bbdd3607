//! HTTP without I/O: the request -> reply code, pure functions from bytes
//! and metadata to decisions. Nothing here touches a socket, the filesystem
//! or a clock (the time is passed in), so every rule is a unit test and the
//! whole path can be property-tested and fuzzed.
//!
//! Runs in: child (and the parent, for the `503` it writes itself).
//!
//! - `request`: request head bytes -> a borrowed `Request`, or a status.
//! - `resolve`: request target -> a safe relative path (steps 1-4 of the
//!   layered defence; the filesystem steps are in `file`).
//! - `mime`: file name -> content type.
//! - `status`: every status we send, its page, and errno -> status.
//! - `fileinfo`: what a reply needs of a file's `fstat`, and its entity tag.
//! - `conditional`: the preconditions of RFC 9110 13.2.2.
//! - `range`: what a `Range` field selects, and multipart/byteranges framing.
//! - `encoding`: `Accept-Encoding` -> the precompressed siblings to try.
//! - `listing`: a directory's entries -> a bounded, sorted HTML listing.
//! - `decide`: request + site + what the file step found -> `Reply`.
//! - `site`: what one site serves and how it answers (`Site`).
//! - `https`: the ACME challenge path, and the redirect of HTTPS-only sites.
//! - `host`: which site a request's `Host` names.
//! - `rules`: a site's response-header rules, by path pattern.
//! - `reply`: the `Reply` (status, header fields, body plan) and its head bytes.
//! - `civil`: a day count since 1970 -> a calendar date (listings, logs).
//! - `decimal`: numbers into head bytes without allocating.

pub mod civil;
pub mod conditional;
pub mod decide;
pub mod decimal;
pub mod encoding;
pub mod fileinfo;
pub mod host;
pub mod https;
pub mod listing;
pub mod mime;
pub mod range;
pub mod reply;
pub mod request;
pub mod resolve;
pub mod rules;
pub mod site;
pub mod status;
