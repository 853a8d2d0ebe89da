//! The API's query parameters, checked before anything runs: unknown names
//! are refused, and a malformed value is a 400 naming its parameter, with the
//! value shown (at most 64 characters, quoted).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use vidar_protocol::{CameraId, IdentityId, UnixMs};
use vidar_store::{TimeRange, MAX_QUERY_ROWS};

use super::error::ApiError;

/// Rows returned when the request sets no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;

/// A route's query string, or why axum could not parse it.
pub type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query's parameters, refusing any not in `allowed`.
pub(super) fn params(q: Params, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::malformed(format!("malformed query string: {e}")))?;
    if let Some(k) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError::malformed(format!(
            "unknown parameter {shown:?}; expected {}",
            allowed.join(", ")
        )));
    }
    Ok(p)
}

fn shown(v: &str) -> String {
    let s: String = v.chars().take(64).collect();
    format!("{s:?}")
}

/// A time in ms since the epoch, `0..=i64::MAX`.
pub(super) fn time(
    p: &HashMap<String, String>,
    name: &'static str,
    default: UnixMs,
) -> Result<UnixMs, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(t) if t >= 0 => Ok(UnixMs(t)),
            _ => Err(ApiError::bad(
                name,
                format!(
                    "{} is not a time in milliseconds since the epoch (0..={})",
                    shown(v),
                    i64::MAX
                ),
            )),
        },
    }
}

/// `[from, to)`; both optional (all time).
pub(super) fn range(p: &HashMap<String, String>) -> Result<TimeRange, ApiError> {
    let from = time(p, "from", UnixMs::EPOCH)?;
    let to = time(p, "to", UnixMs::MAX)?;
    if to < from {
        return Err(ApiError::bad("to", format!("{to} is before from ({from})")));
    }
    Ok(TimeRange::new(from, to))
}

/// `limit`: rows wanted, `1..=MAX_QUERY_ROWS`, default [`DEFAULT_LIMIT`].
pub(super) fn limit(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_QUERY_ROWS).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "limit",
                format!("{} is not a row count in 1..={MAX_QUERY_ROWS}", shown(v)),
            )),
        },
    }
}

/// An identity, `12` or `p12`.
pub(super) fn identity(name: &'static str, v: Option<&String>) -> Result<IdentityId, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::bad(name, "required".into()));
    };
    let digits = v.strip_prefix('p').unwrap_or(v);
    match digits.parse::<u64>() {
        Ok(n) if !digits.starts_with('+') => Ok(IdentityId(n)),
        _ => Err(ApiError::bad(
            name,
            format!("{} is not an identity like 12 or p12", shown(v)),
        )),
    }
}

/// A camera id, required.
pub(super) fn camera(v: Option<&String>) -> Result<CameraId, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::bad("camera", "required".into()));
    };
    CameraId::new(v).map_err(|e| ApiError::bad("camera", format!("{}: {e}", shown(v))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    fn p(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn status(e: ApiError) -> u16 {
        e.into_response().status().as_u16()
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let q: Params = Ok(Query(p(&[("identity", "1"), ("colour", "red")])));
        let e = params(q, &["identity"]).err().map(status);
        assert_eq!(e, Some(400));
        let q: Params = Ok(Query(p(&[("identity", "1")])));
        assert!(params(q, &["identity", "from"]).is_ok());
    }

    #[test]
    fn identities_times_ranges_and_limits() {
        let v = |s: &str| Some(s.to_string());
        assert_eq!(
            identity("identity", v("12").as_ref()).ok(),
            Some(IdentityId(12))
        );
        assert_eq!(
            identity("identity", v("p12").as_ref()).ok(),
            Some(IdentityId(12))
        );
        for bad in ["+12", "p+1", "x", "-1", ""] {
            assert!(identity("identity", v(bad).as_ref()).is_err(), "{bad}");
        }
        assert!(identity("identity", None).is_err());
        assert_eq!(time(&p(&[]), "t", UnixMs(5)).ok(), Some(UnixMs(5)));
        assert!(time(&p(&[("t", "-1")]), "t", UnixMs::EPOCH).is_err());
        let r = range(&p(&[("from", "10")])).ok();
        assert_eq!(r, Some(TimeRange::new(UnixMs(10), UnixMs::MAX)));
        assert!(range(&p(&[("from", "10"), ("to", "9")])).is_err());
        assert_eq!(limit(&p(&[])).ok(), Some(DEFAULT_LIMIT));
        assert!(limit(&p(&[("limit", "0")])).is_err());
        let over = (MAX_QUERY_ROWS + 1).to_string();
        assert!(limit(&p(&[("limit", over.as_str())])).is_err());
        assert!(camera(None).is_err());
        assert!(camera(v("lobby").as_ref()).is_ok());
        assert!(camera(v("a b").as_ref()).is_err());
    }
}
