//! `vidar-edge query ...`: read a store database (an edge's own, or the
//! master's global one): an identity's trajectory, recent sightings of a
//! camera, identities seen in a time range, record counts. Sightings are
//! shown under the identity operators' corrections in force give them (a
//! global database holds them), as the master's API shows them.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use vidar_protocol::{CameraId, IdentityId, UnixMs};
use vidar_store::{Corrections, Reader, Sighting, Stored, TimeRange};

/// Arguments of `query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The edge node's database.
    #[arg(long, default_value = "vidar-edge.db")]
    pub db: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub what: QueryWhat,
}

/// What to query.
#[derive(Subcommand, Debug)]
pub enum QueryWhat {
    /// Sightings of an identity (and identities merged with it) across cameras, in time order.
    Trajectory {
        /// Identity number (as printed by `identities`).
        identity: u64,
        /// Most rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Recent sightings of a camera.
    Sightings {
        /// Camera id.
        camera: String,
        /// How far back, seconds.
        #[arg(long, default_value_t = 3600)]
        since_s: u64,
        /// Most rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Identities seen in the last `since_s` seconds.
    Identities {
        /// How far back, seconds.
        #[arg(long, default_value_t = 3600)]
        since_s: u64,
        /// Most rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Number of records of each kind.
    Counts,
}

fn fmt_time(t: UnixMs) -> String {
    let ms = t.ms();
    let secs = ms.div_euclid(1000);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}Z", ms.rem_euclid(1000))
}

/// `rows` with each sighting's identity as the corrections `c` say.
fn corrected(mut rows: Vec<Stored<Sighting>>, c: &Corrections) -> Vec<Stored<Sighting>> {
    for r in &mut rows {
        r.value.identity = c.identity_of(&r.key, r.value.identity);
    }
    rows
}

/// Runs the query and prints the result.
pub fn run(args: QueryArgs) -> Result<()> {
    if !args.db.is_file() {
        anyhow::bail!("no database at {} (see --db)", args.db.display());
    }
    let reader =
        Reader::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    let mut out = std::io::stdout().lock();
    match args.what {
        QueryWhat::Trajectory { identity, limit } => {
            let rows = reader.trajectory(IdentityId(identity), TimeRange::all(), limit)?;
            let rows = corrected(rows, &reader.corrections_in_force()?);
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(
                    out,
                    "{:<14} {:<14} {:<12} {:>8} {:>7}  node/seq",
                    "from", "to", "camera", "track", "points"
                )?;
                for r in &rows {
                    let s = &r.value;
                    writeln!(
                        out,
                        "{:<14} {:<14} {:<12} {:>8} {:>7}  {}/{}",
                        fmt_time(s.first_ms),
                        fmt_time(s.last_ms),
                        s.camera.as_str(),
                        s.track.0,
                        s.path.len(),
                        r.key.node,
                        r.key.seq
                    )?;
                }
                writeln!(out, "{} sightings of identity {identity}", rows.len())?;
            }
        }
        QueryWhat::Sightings {
            camera,
            since_s,
            limit,
        } => {
            let camera =
                CameraId::new(&camera).map_err(|e| anyhow::anyhow!("camera {camera:?}: {e}"))?;
            let range = TimeRange::new(
                UnixMs::now().minus(Duration::from_secs(since_s)),
                UnixMs::MAX,
            );
            let rows = reader.sightings_by_camera(&camera, range, limit)?;
            let rows = corrected(rows, &reader.corrections_in_force()?);
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(
                    out,
                    "{:<14} {:<14} {:>10} {:>8}",
                    "from", "to", "identity", "track"
                )?;
                for r in &rows {
                    let s = &r.value;
                    writeln!(
                        out,
                        "{:<14} {:<14} {:>10} {:>8}",
                        fmt_time(s.first_ms),
                        fmt_time(s.last_ms),
                        s.identity.0,
                        s.track.0
                    )?;
                }
                writeln!(out, "{} sightings on {camera}", rows.len())?;
            }
        }
        QueryWhat::Identities { since_s, limit } => {
            let range = TimeRange::new(
                UnixMs::now().minus(Duration::from_secs(since_s)),
                UnixMs::MAX,
            );
            let rows = reader.identities_in_range(range, limit)?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(
                    out,
                    "{:>10} {:<14} {:<14} {:>9} {:>7}",
                    "identity", "first", "last", "sightings", "cameras"
                )?;
                for r in &rows {
                    writeln!(
                        out,
                        "{:>10} {:<14} {:<14} {:>9} {:>7}",
                        r.identity.0,
                        fmt_time(r.first_ms),
                        fmt_time(r.last_ms),
                        r.sightings,
                        r.cameras
                    )?;
                }
                writeln!(out, "{} identities", rows.len())?;
            }
        }
        QueryWhat::Counts => {
            for (kind, n) in reader.counts()? {
                if args.json {
                    writeln!(out, "{{\"kind\":\"{kind}\",\"count\":{n}}}")?;
                } else {
                    writeln!(out, "{kind:<10} {n}")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::{NodeId, TrackId};
    use vidar_store::{Correction, CorrectionAction, Record, SplitScope, WriterConfig};

    #[test]
    fn sightings_are_printed_as_corrected() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("g.db");
        let node = NodeId::new("edge-1").expect("id");
        let w = vidar_store::Writer::open(&WriterConfig::new(&path, node)).expect("writer");
        let cam = CameraId::new("c").expect("id");
        let piece = |first: i64, last: i64| {
            Record::Sighting(Sighting {
                identity: IdentityId(1),
                camera: cam.clone(),
                track: TrackId(4),
                first_ms: UnixMs(first),
                last_ms: UnixMs(last),
                path: Vec::new(),
            })
        };
        let first = w.write(piece(0, 10_000)).expect("write");
        w.write(piece(10_000, 12_000)).expect("write");
        w.write(Record::Correction(Correction {
            action: CorrectionAction::Split {
                sighting: first,
                from: IdentityId(1),
                into: IdentityId(9),
                scope: SplitScope::Track,
            },
            actor: "ann".into(),
            reason: String::new(),
            decided_ms: UnixMs(20_000),
        }))
        .expect("write");
        w.shutdown().expect("closes");
        let r = Reader::open(&path).expect("reader");
        let rows = r
            .sightings_by_camera(&cam, TimeRange::all(), 10)
            .expect("read");
        assert!(rows.iter().all(|s| s.value.identity == IdentityId(1)));
        let shown = corrected(rows, &r.corrections_in_force().expect("read"));
        assert!(
            shown.len() == 2 && shown.iter().all(|s| s.value.identity == IdentityId(9)),
            "{shown:?}"
        );
    }
}
