//! Trajectory exports (CSV and JSON attachments, from the same query as
//! `/api/trajectory`) and the routes of the floor plan the UI draws
//! trajectories on ([`super::floor_plan`]).
//!
//! The CSV follows RFC 4180 (fields with a comma, quote or line break are
//! quoted, quotes doubled) and defuses spreadsheet formulas: a text field
//! starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`.

use std::sync::Arc;
use vidar_protocol::UnixMs;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::records;
use super::state::ApiContext;

/// One CSV field, escaped.
pub fn csv_field(s: &str) -> String {
    let defused;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        defused = format!("'{s}");
        defused.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn iso8601(t: UnixMs) -> String {
    let ms = t.ms();
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

fn attachment(name: &str) -> String {
    format!("attachment; filename=\"{name}\"")
}

/// `GET /api/trajectory.csv?identity=…[&from&to&limit]`.
pub async fn trajectory_csv(
    State(ctx): State<Arc<ApiContext>>,
    q: Params,
) -> Result<Response, ApiError> {
    let (rows, truncated, _) = records::trajectory_of(&ctx, q).await?;
    let mut out = String::from(
        "identity,camera,node,seq,first_ms,last_ms,duration_ms,first_utc,last_utc,synced\r\n",
    );
    for r in &rows {
        let s = &r.sighting;
        let fields = [
            s.identity.0.to_string(),
            csv_field(s.camera.as_str()),
            csv_field(r.node.as_str()),
            r.seq.to_string(),
            s.first_ms.to_string(),
            s.last_ms.to_string(),
            (s.last_ms - s.first_ms).max(0).to_string(),
            iso8601(s.first_ms),
            iso8601(s.last_ms),
            r.synced.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    let name = rows.first().map_or("trajectory.csv".to_string(), |r| {
        format!("trajectory-p{}.csv", r.sighting.identity.0)
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, attachment(&name)),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-vidar-truncated"),
                truncated.to_string(),
            ),
        ],
        out,
    )
        .into_response())
}

/// `GET /api/trajectory.json?identity=…`: `/api/trajectory`'s answer as a download.
pub async fn trajectory_json(
    State(ctx): State<Arc<ApiContext>>,
    q: Params,
) -> Result<Response, ApiError> {
    let (rows, truncated, edges) = records::trajectory_of(&ctx, q).await?;
    let name = rows.first().map_or("trajectory.json".to_string(), |r| {
        format!("trajectory-p{}.json", r.sighting.identity.0)
    });
    let body = records::sightings_reply(rows, truncated, edges);
    Ok((
        [
            (header::CONTENT_DISPOSITION, attachment(&name)),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/floorplan`: `{configured, image, cameras[{camera, x, y}]}`.
pub async fn floorplan(State(ctx): State<Arc<ApiContext>>) -> impl IntoResponse {
    match &ctx.ui.floor_plan {
        Some(fp) => Json(json!({
            "configured": true,
            "image": "/api/floorplan.png",
            "cameras": fp.cameras(),
        })),
        None => Json(json!({ "configured": false, "cameras": [] })),
    }
}

/// `GET /api/floorplan.png`: the plan's image (PNG or JPEG, as configured).
pub async fn floorplan_image(State(ctx): State<Arc<ApiContext>>) -> Response {
    match &ctx.ui.floor_plan {
        Some(fp) => (
            [(header::CONTENT_TYPE, fp.content_type())],
            fp.image(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no [floor_plan] in the master's configuration", "parameter": null })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("lobby"), "lobby");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(UnixMs(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(UnixMs(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(iso8601(UnixMs(951_782_400_000)), "2000-02-29T00:00:00.000Z");
    }
}
