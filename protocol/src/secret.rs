//! Keeping credentials out of what is shown: logs, errors, the API.

/// Where the credentials of `url` are: the end of `scheme://` and the `@`
/// that ends them, when there are any.
///
/// The credentials end at the last `@` before the path; a password may itself
/// contain `@`, `:` or even `/`, so when an `@` follows a `:` anywhere after
/// the scheme, everything up to that `@` counts as credentials (a little too
/// much of an odd URL, never too little).
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let s = url.find("://")? + 3;
    let rest = &url[s..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..auth_end].rfind('@') {
        Some(at) => at,
        // No '@' before the first '/': a '/' inside a password ends the
        // authority early; credentials still look like `...:...@`.
        None => rest.rfind('@').filter(|&at| rest[..at].contains(':'))?,
    };
    Some((s, s + at))
}

/// `url` with any `user:password@` hidden (`scheme://***@host/...`), for
/// logs, errors and the API.
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some((s, at)) => format!("{}***@{}", &url[..s], &url[at + 1..]),
        None => url.to_string(),
    }
}

/// `url` without its `user:password@`: what a plan may carry. The node that
/// ingests the camera adds them back from its own configuration
/// ([`with_credentials`]).
pub fn strip_credentials(url: &str) -> String {
    match userinfo(url) {
        Some((s, at)) => format!("{}{}", &url[..s], &url[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether `url` carries credentials.
pub fn has_credentials(url: &str) -> bool {
    userinfo(url).is_some()
}

/// `url` (without credentials) with `user` and `password` put in, each
/// percent-encoded so any character is safe.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let bare = strip_credentials(url);
    let Some(s) = bare.find("://").map(|i| i + 3) else {
        return bare;
    };
    format!(
        "{}{}:{}@{}",
        &bare[..s],
        percent_encode(user),
        percent_encode(password),
        &bare[s..]
    )
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    #[test]
    fn plans_carry_no_credentials_and_nodes_put_their_own_back() {
        let url = "rtsp://admin:pa@ss@10.0.0.5:554/s1";
        assert!(has_credentials(url));
        let bare = strip_credentials(url);
        assert_eq!(bare, "rtsp://10.0.0.5:554/s1");
        assert!(!has_credentials(&bare));
        assert_eq!(strip_credentials("rtsp://host/a@b"), "rtsp://host/a@b");
        // Any character survives, percent-encoded.
        let back = with_credentials(&bare, "cam op", "p@ss:w/rd%");
        assert_eq!(back, "rtsp://cam%20op:p%40ss%3Aw%2Frd%25@10.0.0.5:554/s1");
        assert_eq!(strip_credentials(&back), bare);
        assert_eq!(redact_url(&back), "rtsp://***@10.0.0.5:554/s1");
        // Credentials already there are replaced, not doubled.
        assert_eq!(
            with_credentials(url, "u", "p"),
            "rtsp://u:p@10.0.0.5:554/s1"
        );
    }
}
