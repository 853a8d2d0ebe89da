//! Plain HTTP/1.1 for tests and benchmarks that read a child's `/metrics`
//! or API (on 127.0.0.1 unless an address is given; no TLS, no
//! authentication).

use std::io::{Read, Write};
use std::time::Duration;

/// The body of `GET path` on 127.0.0.1:`port`, if it answered within 5 s.
pub fn get(port: u16, path: &str) -> Option<String> {
    get_status(port, path).map(|(_, body)| body)
}

/// The status and body of `GET path` on 127.0.0.1:`port`, if it answered
/// within 5 s.
pub fn get_status(port: u16, path: &str) -> Option<(u16, String)> {
    get_status_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// The status and body of `GET path` at `addr`, if it answered within 5 s.
pub fn get_status_at(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    request_at(addr, "GET", path, "")
}

/// The status and body of `method path` with `body` on 127.0.0.1:`port`,
/// if it answered within 5 s.
pub fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    request_at(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        method,
        path,
        body,
    )
}

/// The status and body of `method path` with `body` at `addr`, if it
/// answered within 5 s.
pub fn request_at(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        addr.ip(),
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// The largest value of the metric lines (Prometheus text) starting with
/// `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .reduce(f64::max)
}

/// The value of metric `name` of camera `camera` in `/metrics` text, its
/// labels in any order (`name{node="edge-1",camera="c0"} 3`).
pub fn camera_metric(text: &str, name: &str, camera: &str) -> Option<f64> {
    let head = format!("{name}{{");
    let label = format!("camera=\"{camera}\"");
    text.lines()
        .filter(|l| l.starts_with(&head) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cameras_metric_is_found_whatever_the_order_of_its_labels() {
        let text = "# TYPE vidar_stream_up gauge\n\
                    vidar_stream_up{node=\"edge-1\",camera=\"c0\",state=\"streaming\"} 1\n\
                    vidar_stream_up{node=\"edge-1\",camera=\"c10\",state=\"retrying\"} 0\n\
                    vidar_frames_detected_total{camera=\"c1\",node=\"edge-1\"} 42\n";
        assert_eq!(camera_metric(text, "vidar_stream_up", "c0"), Some(1.0));
        assert_eq!(camera_metric(text, "vidar_stream_up", "c10"), Some(0.0));
        assert_eq!(camera_metric(text, "vidar_stream_up", "c1"), None);
        assert_eq!(
            camera_metric(text, "vidar_frames_detected_total", "c1"),
            Some(42.0)
        );
        assert_eq!(
            camera_metric(text, "vidar_frames", "c1"),
            None,
            "a longer name"
        );
    }

    #[test]
    fn the_largest_value_of_the_lines_with_the_prefix() {
        let text = "# HELP x\nvidar_a{camera=\"c0\"} 3\nvidar_a{camera=\"c1\"} 7.5\nvidar_b 9\n";
        assert_eq!(metric(text, "vidar_a{"), Some(7.5));
        assert_eq!(metric(text, "vidar_a{camera=\"c0\"}"), Some(3.0));
        assert_eq!(metric(text, "vidar_c"), None);
    }

    #[test]
    fn nothing_from_a_port_where_nobody_listens() {
        assert_eq!(get(crate::ports::unused_port(), "/metrics"), None);
    }
}
