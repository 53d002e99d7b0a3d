//! The in-memory index of recent visitors a worker matches against: every embedding of every
//! visitor in one contiguous `f32` matrix, so matching a track is one pass of dot products and
//! no round trip (measured by `redeye bench visitors`).
//!
//! Rows are unit length. A visitor's rows may sit anywhere in the matrix: removing one moves the
//! last row into its place (`swap_remove`), so updates cost O(rows of that visitor), not a
//! rebuild.
//!
//! At 100k visitors the f32 matrix is 256 MB and a scan is bound by memory bandwidth, so the scan
//! reads a 16-bit fixed-point copy of it (each unit-length component times 2047: half the bytes,
//! and SSE2's multiply-add of 16-bit pairs) and re-scores the [`RERANK`] best rows in f32, so the
//! answer is the exact cosine of the best row. The fixed-point score is off by about 0.001, far
//! less than the gap between the best row and the ninth best that would have to be crossed to
//! change the answer. Measured with `redeye bench visitors` (100k visitors x 5): 16 ms against
//! 25 ms for the f32 scan; an 8-bit copy was no faster than f32 on the x86-64 baseline (it has
//! no cheap widening of 8-bit products).

use std::collections::HashMap;

use crate::recognize::matcher::dot;
pub use crate::recognize::matcher::normalize;

/// Rows re-scored exactly after the fixed-point scan.
pub const RERANK: usize = 8;

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    /// Last sighting, Unix ms; a visitor older than the TTL is not matched (and is swept).
    last_seen: u64,
    /// Row numbers in the matrix.
    rows: Vec<usize>,
}

/// Recent visitors' embeddings, ready to match.
#[derive(Debug, Clone)]
pub struct VisitorIndex {
    dim: usize,
    data: Vec<f32>,
    /// `data` in 16-bit fixed point (x 2047), scanned first.
    codes: Vec<i16>,
    /// Row `r` belongs to `entries[owner[r]]`.
    owner: Vec<usize>,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
}

impl VisitorIndex {
    pub fn new(dim: usize) -> VisitorIndex {
        VisitorIndex {
            dim,
            data: Vec::new(),
            codes: Vec::new(),
            owner: Vec::new(),
            entries: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    /// Visitors held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Embeddings held.
    pub fn rows(&self) -> usize {
        self.owner.len()
    }

    /// Sets visitor `id`'s embeddings (replacing what was held); embeddings of another length
    /// are skipped. Each is normalised on the way in.
    pub fn upsert(&mut self, id: &str, last_seen: u64, embeddings: &[Vec<f32>]) {
        self.remove(id);
        let slot = self.entries.len();
        let mut rows = Vec::with_capacity(embeddings.len());
        for e in embeddings.iter().filter(|e| e.len() == self.dim) {
            let start = self.data.len();
            self.data.extend_from_slice(e);
            normalize(&mut self.data[start..]);
            self.codes.extend(self.data[start..].iter().map(|&x| quantize(x)));
            rows.push(self.owner.len());
            self.owner.push(slot);
        }
        self.entries.push(Entry { id: id.to_owned(), last_seen, rows });
        self.by_id.insert(id.to_owned(), slot);
    }

    /// Forgets visitor `id`; returns whether it was held.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else {
            return false;
        };
        let mut rows = std::mem::take(&mut self.entries[slot].rows);
        // Highest first, so a row moved into a freed place is never one still to be removed.
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for row in rows {
            self.remove_row(row);
        }
        self.entries.swap_remove(slot);
        if slot < self.entries.len() {
            // The last entry moved into `slot`: re-point its id and its rows.
            let moved = &self.entries[slot];
            self.by_id.insert(moved.id.clone(), slot);
            for &r in &moved.rows {
                self.owner[r] = slot;
            }
        }
        true
    }

    fn remove_row(&mut self, row: usize) {
        let last = self.owner.len() - 1;
        let dim = self.dim;
        if row != last {
            self.data.copy_within(last * dim..(last + 1) * dim, row * dim);
            self.codes.copy_within(last * dim..(last + 1) * dim, row * dim);
            let moved_owner = self.owner[last];
            self.owner[row] = moved_owner;
            let rows = &mut self.entries[moved_owner].rows;
            if let Some(r) = rows.iter_mut().find(|r| **r == last) {
                *r = row;
            }
        }
        self.owner.pop();
        self.data.truncate(last * dim);
        self.codes.truncate(last * dim);
    }

    /// Drops every visitor last seen before `cutoff` (Unix ms); returns how many.
    pub fn sweep(&mut self, cutoff: u64) -> usize {
        let old: Vec<String> =
            self.entries.iter().filter(|e| e.last_seen < cutoff).map(|e| e.id.clone()).collect();
        for id in &old {
            self.remove(id);
        }
        old.len()
    }

    /// The visitor whose best embedding is closest to `probe`, with that cosine, or `None` when
    /// the index is empty or `probe` has another length.
    pub fn best(&self, probe: &[f32]) -> Option<(&str, f32)> {
        if probe.len() != self.dim || self.owner.is_empty() {
            return None;
        }
        let mut q = probe.to_vec();
        normalize(&mut q);
        let fixed: Vec<i16> = q.iter().map(|&x| quantize(x)).collect();
        // The RERANK best rows by fixed-point score, worst first.
        let mut top: Vec<(i32, usize)> = Vec::with_capacity(RERANK + 1);
        for (r, row) in self.codes.chunks_exact(self.dim).enumerate() {
            let s = dot_fixed(row, &fixed);
            if top.len() < RERANK || s > top[0].0 {
                let at = top.partition_point(|&(t, _)| t < s);
                top.insert(at, (s, r));
                if top.len() > RERANK {
                    top.remove(0);
                }
            }
        }
        let dim = self.dim;
        let (best, row) = top
            .iter()
            .map(|&(_, r)| (dot(&self.data[r * dim..(r + 1) * dim], &q), r))
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        Some((self.entries[self.owner[row]].id.as_str(), best))
    }

    /// Whether visitor `id` is held.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
}

fn quantize(x: f32) -> i16 {
    (x * 2047.0).round().clamp(-2047.0, 2047.0) as i16
}

/// Fixed-point dot product with sixteen independent accumulators, so that the compiler
/// vectorises it (SSE2 `pmaddwd`).
fn dot_fixed(a: &[i16], b: &[i16]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 =
        ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(deg: f32) -> Vec<f32> {
        let r = deg.to_radians();
        vec![r.cos(), r.sin(), 0.0]
    }

    #[test]
    fn best_is_over_every_embedding_of_every_visitor() {
        let mut ix = VisitorIndex::new(3);
        ix.upsert("v-a", 10, &[at(0.0), at(30.0)]);
        ix.upsert("v-b", 10, &[at(90.0)]);
        let (id, s) = ix.best(&at(35.0)).unwrap();
        assert_eq!(id, "v-a");
        assert!((s - 5f32.to_radians().cos()).abs() < 1e-6);
        assert_eq!(ix.best(&at(80.0)).unwrap().0, "v-b");
        assert!(ix.best(&[1.0]).is_none());
    }

    #[test]
    fn removing_and_replacing_keeps_rows_and_owners_consistent() {
        let mut ix = VisitorIndex::new(3);
        for i in 0..20 {
            ix.upsert(&format!("v-{i}"), i, &[at(i as f32 * 4.0), at(i as f32 * 4.0 + 1.0)]);
        }
        assert!(ix.remove("v-3"));
        assert!(!ix.remove("v-3"));
        ix.upsert("v-7", 100, &[at(200.0)]);
        assert_eq!((ix.len(), ix.rows()), (19, 37));
        // Every remaining visitor is still found at its own angle.
        for i in (0..20).filter(|&i| i != 3 && i != 7) {
            assert_eq!(ix.best(&at(i as f32 * 4.0 + 0.5)).unwrap().0, format!("v-{i}"));
        }
        assert_eq!(ix.best(&at(200.0)).unwrap().0, "v-7");
        // v-0..v-9 are older than 10, less v-3 (removed) and v-7 (seen again at 100).
        assert_eq!(ix.sweep(10), 8);
        assert!(!ix.contains("v-9") && ix.contains("v-10") && ix.contains("v-7"));
        assert_eq!(ix.best(&at(41.0)).unwrap().0, "v-10");
    }

    /// The fixed-point scan with the exact re-rank finds what an exact scan finds, with its
    /// exact score.
    #[test]
    fn the_fixed_point_scan_agrees_with_an_exact_one() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut ix = VisitorIndex::new(128);
        let mut all = Vec::new();
        for i in 0..2000 {
            let e: Vec<f32> = (0..128).map(|_| next()).collect();
            ix.upsert(&format!("v-{i}"), 0, std::slice::from_ref(&e));
            all.push(e);
        }
        for _ in 0..50 {
            let probe: Vec<f32> = (0..128).map(|_| next()).collect();
            let mut unit = probe.clone();
            normalize(&mut unit);
            let exact = all
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut e = e.clone();
                    normalize(&mut e);
                    (i, dot(&e, &unit))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let (id, score) = ix.best(&probe).unwrap();
            assert_eq!(id, format!("v-{}", exact.0));
            assert!((score - exact.1).abs() < 1e-5, "{score} vs {}", exact.1);
        }
    }
}
