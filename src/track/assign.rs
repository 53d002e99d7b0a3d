//! Assignment of detections to tracks: Hungarian (Kuhn-Munkres) on IoU, as SORT does.
//!
//! Greedy best-IoU-first would do for well separated faces, but two people crossing or standing
//! one behind the other give overlapping boxes, and there greedy can take one good pair that
//! forces two bad ones. A few faces per frame make the O(n^3) optimum free.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use crate::vision::BBox;

/// IoU is scaled to integers because `kuhn_munkres` needs `Ord` weights.
const SCALE: f32 = 1_000_000.0;

/// The maximum-total-IoU matching of `tracks` to `detections` in which every pair has an IoU of
/// at least `min_iou` (pairs below it weigh nothing, so they never displace a valid pair).
/// Returns `(track index, detection index)` pairs.
pub(super) fn match_iou(tracks: &[BBox], detections: &[BBox], min_iou: f32) -> Vec<(usize, usize)> {
    if tracks.is_empty() || detections.is_empty() {
        return Vec::new();
    }
    let weight = |t: usize, d: usize| {
        let iou = tracks[t].iou(&detections[d]);
        if iou >= min_iou { (iou * SCALE).round() as i64 } else { 0 }
    };
    // kuhn_munkres wants no more rows than columns: put the shorter side in the rows.
    let pairs: Vec<(usize, usize)> = if tracks.len() <= detections.len() {
        let m = Matrix::from_fn(tracks.len(), detections.len(), |(t, d)| weight(t, d));
        kuhn_munkres(&m).1.into_iter().enumerate().collect()
    } else {
        let m = Matrix::from_fn(detections.len(), tracks.len(), |(d, t)| weight(t, d));
        kuhn_munkres(&m).1.into_iter().enumerate().map(|(d, t)| (t, d)).collect()
    };
    // Every row gets a column; the zero-weight ones are not matches.
    pairs.into_iter().filter(|&(t, d)| weight(t, d) > 0).collect()
}

/// Second stage for tracks seen only once, whose velocity is still unknown: at 2 fps a face
/// crossing the frame moves more than its own width between samples, so its second sighting has
/// no overlap with the first and IoU alone would never confirm it. Pairs by centre distance in
/// face sizes, within `max_jump[track]` sizes and of similar size, nearest first.
pub(super) fn match_nearby(tracks: &[BBox], max_jump: &[f32], detections: &[BBox]) -> Vec<(usize, usize)> {
    let centre = |b: &BBox| (b.x + b.w / 2.0, b.y + b.h / 2.0);
    let size = |b: &BBox| (b.w.max(1.0) * b.h.max(1.0)).sqrt();
    let mut candidates = Vec::new();
    for (t, tb) in tracks.iter().enumerate() {
        for (d, db) in detections.iter().enumerate() {
            let (ratio, (tx, ty), (dx, dy)) = (size(db) / size(tb), centre(tb), centre(db));
            let jump = (tx - dx).hypot(ty - dy) / size(tb);
            if (0.67..=1.5).contains(&ratio) && jump <= max_jump[t] {
                candidates.push((jump, t, d));
            }
        }
    }
    // Greedy is enough here: these are tentative tracks with nothing sent yet.
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut used_t, mut used_d) = (vec![false; tracks.len()], vec![false; detections.len()]);
    let mut pairs = Vec::new();
    for (_, t, d) in candidates {
        if !used_t[t] && !used_d[d] {
            used_t[t] = true;
            used_d[d] = true;
            pairs.push((t, d));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f32, y: f32) -> BBox {
        BBox { x, y, w: 100.0, h: 100.0 }
    }

    #[test]
    fn hungarian_beats_greedy_on_overlapping_boxes() {
        // Greedy would pair track 0 with detection 1 (IoU 0.82) and leave track 1 with nothing.
        let tracks = [bx(0.0, 0.0), bx(30.0, 0.0)];
        let detections = [bx(-25.0, 0.0), bx(10.0, 0.0)];
        let mut m = match_iou(&tracks, &detections, 0.3);
        m.sort_unstable();
        assert_eq!(m, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn more_tracks_than_detections_and_thresholds() {
        let tracks = [bx(0.0, 0.0), bx(500.0, 0.0), bx(1000.0, 0.0)];
        let detections = [bx(1010.0, 0.0), bx(80.0, 0.0)];
        // Detection 1 overlaps track 0 by IoU 0.11 only.
        assert_eq!(match_iou(&tracks, &detections, 0.3), vec![(2, 0)]);
        assert!(match_iou(&[], &detections, 0.3).is_empty());
        assert!(match_iou(&tracks, &[], 0.3).is_empty());
    }

    #[test]
    fn nearby_pairs_by_distance_and_size() {
        let tracks = [bx(0.0, 0.0), bx(1000.0, 0.0)];
        let far = bx(550.0, 0.0);
        let big = BBox { x: 1200.0, y: 0.0, w: 300.0, h: 300.0 };
        let near = bx(250.0, 0.0);
        assert_eq!(match_nearby(&tracks, &[4.0, 4.0], &[far, big, near]), vec![(0, 2)]);
        // A shorter gap allows a shorter jump.
        assert!(match_nearby(&tracks, &[2.0, 2.0], &[near]).is_empty());
    }
}
