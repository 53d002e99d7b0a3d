//! `redeye subscribe`: events as JSON lines, or readable lines: visits (arrived, updated,
//! left; schema 2) by default, per-face recognitions (schema 1) with `--kind face`.
//!
//! Live, events come from the pub/sub channel. With `--from ID` they come from the events
//! stream instead: everything after ID, then each new entry as it is appended (`XREAD BLOCK`
//! after the last id seen). Reading one ordered log is what makes the seam between replay and
//! live exact: no gap and no duplicate, which a replay followed by a channel cannot promise.

use std::io::Write as _;
use std::process::ExitCode;

use futures::StreamExt as _;

use super::CommonArgs;
use crate::app;
use crate::bus::events;
use crate::terminal::printable;
use crate::visit::{AnyEvent, VisitEvent, VisitKind};
use crate::wire::Event;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events from this camera.
    #[arg(long)]
    pub camera: Option<String>,
    /// Only events naming this person (id or name); `unknown` for unrecognised faces.
    #[arg(long)]
    pub person: Option<String>,
    /// Replay the events stream after this entry id (`0` for everything kept), then follow.
    #[arg(long)]
    pub from: Option<String>,
    /// Stop after this many events (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// `json` (one event per line, as published) or `text` (one readable line per event).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Which events (repeat or separate with commas): `visits` (arrived, updated and left, the
    /// default), `arrived`, `updated`, `left`, `face` (per-face recognitions), `all`.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Visits])]
    pub kind: Vec<Kind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Visits,
    Arrived,
    Updated,
    Left,
    Face,
    All,
}

impl Kind {
    fn takes(self, event: &AnyEvent) -> bool {
        match (self, event) {
            (Kind::All, _) | (Kind::Visits, AnyEvent::Visit(_)) | (Kind::Face, AnyEvent::Face(_)) => true,
            (Kind::Arrived, AnyEvent::Visit(v)) => v.kind == VisitKind::Arrived,
            (Kind::Updated, AnyEvent::Visit(v)) => v.kind == VisitKind::Updated,
            (Kind::Left, AnyEvent::Visit(v)) => v.kind == VisitKind::Left,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// `HH:MM:SS.mmm` (UTC) of a Unix ms time.
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", secs / 3600 % 24, secs / 60 % 60, secs % 60, ms % 1000)
}

/// One readable line of any event.
fn text_line(event: &AnyEvent) -> String {
    match event {
        AnyEvent::Face(e) => face_line(e),
        AnyEvent::Visit(v) => visit_line(v),
    }
}

/// A visit: when, camera, what, who, and time-to-name (arrived) or dwell (left).
/// Fields read from Redis are escaped ([`printable`]): a forged event must not write escape
/// sequences to the terminal or a second line.
fn visit_line(v: &VisitEvent) -> String {
    // A stranger is shown by their visitor id when they have one.
    let who =
        printable(v.person.as_ref().map(|p| p.name.as_str()).or(v.visitor.as_deref()).unwrap_or("unknown"));
    let camera = printable(&v.camera);
    let time = clock(v.event_ts);
    match v.kind {
        VisitKind::Arrived => format!(
            "{time}  {camera:<18} arrived  {who:<20} score {:.2}  named in {} ms",
            v.score.unwrap_or(0.0),
            v.event_ts.saturating_sub(v.first_seen)
        ),
        VisitKind::Updated => {
            format!("{time}  {camera:<18} updated  {who:<20} score {:.2}", v.score.unwrap_or(0.0))
        }
        VisitKind::Left => {
            let who = if v.decided == Some(false) { "undecided".into() } else { who };
            format!(
                "{time}  {camera:<18} left     {who:<20} dwell {:.1} s, {} faces, {} shots",
                v.dwell_ms.unwrap_or(0) as f64 / 1000.0,
                v.faces_seen.unwrap_or(0),
                v.shots.unwrap_or(0)
            )
        }
    }
}

/// A per-face recognition: capture time (UTC), camera, who, score, and how long naming took.
fn face_line(e: &Event) -> String {
    let time = clock(e.capture_ts);
    let who = printable(e.person.as_ref().map_or("unknown", |p| p.name.as_str()));
    let source = if e.cached { "cache" } else { "worker" };
    format!(
        "{time}  {:<18} {:<20} score {:.2}  {source:<6} named in {} ms",
        printable(&e.camera),
        who,
        e.score,
        e.event_ts.saturating_sub(e.capture_ts)
    )
}

impl Args {
    fn wants(&self, event: &AnyEvent) -> bool {
        let (camera, person) = match event {
            AnyEvent::Face(e) => (&e.camera, &e.person),
            AnyEvent::Visit(v) => (&v.camera, &v.person),
        };
        let kind_ok = self.kind.iter().any(|k| k.takes(event));
        let camera_ok = self.camera.as_ref().is_none_or(|c| camera == c);
        let person_ok = match (&self.person, person) {
            (None, _) => true,
            (Some(p), None) => p == "unknown",
            (Some(p), Some(who)) => &who.id == p || &who.name == p,
        };
        kind_ok && camera_ok && person_ok
    }
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let bus = app::connect(&config).await?;
    let token = app::shutdown_token();
    let mut printed = 0u64;
    let mut emit = |payload: &[u8]| -> anyhow::Result<bool> {
        match AnyEvent::from_json(payload) {
            Ok(event) if args.wants(&event) => {
                let mut out = std::io::stdout().lock();
                match args.format {
                    Format::Json => out.write_all(payload)?,
                    Format::Text => out.write_all(text_line(&event).as_bytes())?,
                }
                out.write_all(b"\n")?;
                out.flush()?;
                printed += 1;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "Skipping a malformed event."),
        }
        Ok(args.count.is_some_and(|n| printed >= n))
    };
    let keys = bus.keys().clone();
    match &args.from {
        Some(from) => {
            let mut conn = bus.open_shared().await?;
            let mut last = if from == "0" { "0-0".to_owned() } else { from.clone() };
            loop {
                let entries = tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    r = events::follow(&mut conn, keys.events_stream(), &last, 100, 1000) => r?,
                };
                for entry in &entries {
                    last.clone_from(&entry.id);
                    if let Some(payload) = events::payload(entry)
                        && emit(payload)?
                    {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
        None => {
            let mut messages = bus.subscribe(&[keys.events_channel()]).await?;
            loop {
                let message = tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    m = messages.next() => m,
                };
                match message {
                    Some(Ok(m)) => {
                        if emit(&m.payload)? {
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    Some(Err(err)) => return Err(err.into()),
                    None => anyhow::bail!("the events subscription ended"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
