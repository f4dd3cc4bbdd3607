//! Running behind a load balancer: the quiet health-check path.

use std::time::Duration;

use crate::common::*;

/// `health_path` is answered 200 before the document root is looked at (a
/// file of that name is not served) and writes no access-log line; any
/// other path is served and logged as before.
#[test]
fn health_path_answers_200_without_the_root_or_a_log_line() {
    let s = TestServer::builder().config("health_path = \"/healthz\"").start();
    s.write_file("healthz", b"the file, not the health check");
    let mut c = s.connect();
    c.send_request("GET", "/healthz", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.body_str().contains("the file"), "served the file: {}", r.body_str());
    c.send_request("HEAD", "/healthz?from=lb", &[]);
    assert_eq!(c.read_head_response().status, 200);
    c.send_request("GET", "/after", &["Connection: close"]);
    assert_eq!(c.read_response().status, 404);
    c.expect_closed();
    let lines = s.wait_for_lines(1, Duration::from_secs(5), |l| parse_clf(l).is_some());
    // The 404 is logged after both health checks on the same connection:
    // once it is there, a health-check line would be too.
    let logged: Vec<String> =
        s.lines().iter().filter_map(|l| parse_clf(l)).map(|c| c.request.to_string()).collect();
    assert_eq!(logged, ["GET /after HTTP/1.1"], "access log: {lines:?}");
}

/// Off by default: the path is an ordinary file path.
#[test]
fn health_path_is_off_by_default() {
    let s = TestServer::start();
    s.write_file("healthz", b"plain file");
    assert_eq!(s.get("/healthz").body_str(), "plain file");
}
