//! The visitors as a long-running worker process sees them: one [`VisitorIndex`] shared by the
//! process's workers, kept current by following the visitor log, and the two calls a worker
//! makes: [`LiveVisitors::resolve`] (a track decided unknown) and [`LiveVisitors::add`] (a later
//! shot of a track with a visitor).

use std::time::Instant;

use tokio::sync::Mutex;

use super::store::{self, Candidate, LOG_MAXLEN};
use super::{Resolution, Sighting, VisitorIndex, VisitorSettings, new_id};
use crate::bus::{BusError, Keys, RedisConn};
use crate::instrument::{Stage, StageHooks, unix_millis};

/// Log entries read per round trip when catching up.
const CATCH_UP: usize = 1000;

struct State {
    index: VisitorIndex,
    /// The log entry the index is current to; `None` until the first load.
    position: Option<String>,
}

/// The shared, self-refreshing visitor index of one process.
pub struct LiveVisitors {
    settings: VisitorSettings,
    state: Mutex<State>,
}

impl LiveVisitors {
    pub fn new(settings: VisitorSettings) -> LiveVisitors {
        let index = VisitorIndex::new(settings.dim);
        LiveVisitors { settings, state: Mutex::new(State { index, position: None }) }
    }

    pub fn settings(&self) -> &VisitorSettings {
        &self.settings
    }

    /// The visitor for a track decided unknown (see [`store::resolve`]): the index is brought
    /// up to date, matched in memory, and the script re-checks what changed since and creates
    /// a visitor if nobody matched. The in-memory match is timed as `visitor_match`.
    pub async fn resolve(
        &self,
        conn: &mut RedisConn,
        keys: &Keys,
        sighting: &Sighting<'_>,
        hooks: &StageHooks,
    ) -> Result<Resolution, BusError> {
        let mut state = self.state.lock().await;
        self.catch_up(&mut state, conn, keys).await?;
        let started = Instant::now();
        let candidate = state
            .index
            .best(sighting.embedding)
            .filter(|(_, score)| *score >= self.settings.threshold)
            .map(|(id, score)| (id.to_owned(), score));
        hooks.observe(Stage::VisitorMatch, started.elapsed());
        let unit = unit(sighting.embedding);
        let sighting = Sighting { embedding: &unit, ..*sighting };
        let since = state.position.clone();
        let started = Instant::now();
        let new_id = new_id();
        let candidate = Candidate {
            since: since.as_deref(),
            best: candidate.as_ref().map(|(id, s)| (id.as_str(), *s)),
            new_id: &new_id,
        };
        let resolution =
            store::resolve(conn, keys, &self.settings, &sighting, candidate, unix_millis()).await?;
        hooks.observe(Stage::RedisVisitor, started.elapsed());
        Ok(resolution)
    }

    /// Adds a later shot of a track to its visitor `id`; `None` when the visitor is gone.
    pub async fn add(
        &self,
        conn: &mut RedisConn,
        keys: &Keys,
        id: &str,
        sighting: &Sighting<'_>,
    ) -> Result<Option<Resolution>, BusError> {
        let unit = unit(sighting.embedding);
        let sighting = Sighting { embedding: &unit, ..*sighting };
        store::add(conn, keys, &self.settings, id, &sighting, unix_millis()).await
    }

    /// Visitors in this process's index (for tests and logs).
    pub async fn indexed(&self) -> usize {
        self.state.lock().await.index.len()
    }

    /// Brings the index up to date: a full load the first time (or when the log was trimmed
    /// past our position), else the log's changes since our position.
    async fn catch_up(&self, state: &mut State, conn: &mut RedisConn, keys: &Keys) -> Result<(), BusError> {
        let cutoff = unix_millis().saturating_sub(self.settings.ttl_secs.saturating_mul(1000));
        state.index.sweep(cutoff);
        loop {
            let Some(position) = state.position.clone() else {
                return self.load(state, conn, keys).await;
            };
            let (changes, trimmed) = store::changes_since(conn, keys, &position, CATCH_UP).await?;
            if trimmed {
                tracing::info!(
                    log_maxlen = LOG_MAXLEN,
                    "The visitor log moved past this index; reloading it."
                );
                state.position = None;
                continue;
            }
            let Some(last) = changes.last() else { return Ok(()) };
            state.position = Some(last.log_id.clone());
            // Only the newest change of each visitor matters; removed ones are removed.
            let mut reload = Vec::new();
            for c in &changes {
                state.index.remove(&c.id);
                if c.changed && !reload.contains(&c.id) {
                    reload.push(c.id.clone());
                }
            }
            for r in store::load_many(conn, keys, &reload).await? {
                if r.model == self.settings.model && r.last_seen >= cutoff {
                    state.index.upsert(&r.id, r.last_seen, &r.embeddings);
                }
            }
            if changes.len() < CATCH_UP {
                return Ok(());
            }
        }
    }

    async fn load(&self, state: &mut State, conn: &mut RedisConn, keys: &Keys) -> Result<(), BusError> {
        // The log position first: a change landing during the load is replayed next time.
        let head = store::log_head(conn, keys).await?;
        let records = store::list(conn, keys).await?;
        let mut index = VisitorIndex::new(self.settings.dim);
        for r in records.iter().filter(|r| r.model == self.settings.model) {
            index.upsert(&r.id, r.last_seen, &r.embeddings);
        }
        tracing::info!(visitors = index.len(), embeddings = index.rows(), "Loaded the visitor index.");
        state.index = index;
        state.position = Some(head);
        Ok(())
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let mut u = v.to_vec();
    super::index::normalize(&mut u);
    u
}
