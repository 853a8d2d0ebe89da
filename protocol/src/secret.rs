//! Keeping credentials out of what is shown: logs, errors, the API.

/// `url` with any `user:password@` hidden (`scheme://***@host/...`).
///
/// The credentials end at the last `@` before the path; a password may itself
/// contain `@`, `:` or even `/`, so when an `@` follows a `:` anywhere after
/// the scheme, everything up to that `@` is hidden (it may hide a little too
/// much of an odd URL, never too little).
pub fn redact_url(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..s], &url[s + 3..]);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..auth_end].rfind('@') {
        Some(at) => Some(at),
        // No '@' before the first '/': a '/' inside a password ends the
        // authority early; credentials still look like `...:...@`.
        None => rest.rfind('@').filter(|&at| rest[..at].contains(':')),
    };
    match at {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_part_of_a_password_is_shown() {
        assert_eq!(redact_url("rtsp://u:p@host:1/a"), "rtsp://***@host:1/a");
        // Passwords with '@' (issue 16: redaction stopped at the first '@').
        assert_eq!(redact_url("rtsp://u:p@ss@host/a"), "rtsp://***@host/a");
        assert_eq!(
            redact_url("rtsp://admin:a@b@c@10.0.0.5:554/s1"),
            "rtsp://***@10.0.0.5:554/s1"
        );
        // ... with '/' too.
        assert_eq!(redact_url("rtsp://u:p/x@host/a"), "rtsp://***@host/a");
        // Nothing to hide.
        assert_eq!(redact_url("rtsp://host/a@b"), "rtsp://host/a@b");
        assert_eq!(
            redact_url("rtsp://host:554/stream"),
            "rtsp://host:554/stream"
        );
        assert_eq!(redact_url("/tmp/a.mp4"), "/tmp/a.mp4");
        for url in [
            "rtsp://u:s3cr@t@h/x",
            "rtsp://u:s3cr/t@h/x",
            "http://u:pw@h",
        ] {
            let r = redact_url(url);
            assert!(!r.contains("s3cr") && !r.contains("pw"), "{url} -> {r}");
        }
    }
}
