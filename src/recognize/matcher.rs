//! Matching a probe embedding against the enrolled people.
//!
//! Each person may have several embeddings (photos from different angles or cameras); a person's
//! score is the best cosine over their embeddings. A match needs two conditions, because one
//! global threshold is not enough on real data: SFace's same-person and different-person cosines
//! overlap (models/README.md: same-person pairs as low as 0.33, different-person pairs up to
//! 0.40). The best person must score at least `threshold` AND lead the best *other* person by
//! `margin`; otherwise the face is unknown.
//!
//! Why the margin is 0.2, measured with SFace on the test photos (tests/vision.rs prints these):
//! over 130 probes (every choice of reference photo), the right person led the best other one by
//! at least 0.34. Strangers were simulated by holding each person out of the gallery: their best
//! score reached 0.376 (franck's frames against obama's photo), above OpenCV's 0.363, but led
//! the second-best person by only 0.08-0.17. A margin of 0.2 sits between the two: on this data it
//! accepts every right match and no stranger, where 0.05 let four strangers through. The price:
//! in a gallery of hundreds, the second-best score of a true match rises, so hard true matches
//! become unknown more often; lower the margin there (unknown is the safe failure). With a single
//! enrolled person there is no second score and only the threshold applies.
//!
//! The embeddings live in one contiguous `f32` matrix, so a query is a single pass of dot
//! products: thousands of 128-d embeddings take well under a millisecond.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// When a best match is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchPolicy {
    /// Minimum cosine similarity. Default 0.363, OpenCV's published SFace threshold.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Minimum lead of the best person over the second-best other person. Default 0.2; see
    /// the module docs for the measurements behind it. Does not apply when only one person is
    /// enrolled.
    #[serde(default = "default_margin")]
    pub margin: f32,
}

fn default_threshold() -> f32 {
    0.363
}
fn default_margin() -> f32 {
    0.2
}

impl Default for MatchPolicy {
    fn default() -> Self {
        MatchPolicy { threshold: default_threshold(), margin: default_margin() }
    }
}

/// The answer for one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// `(id, name)` of the accepted person, or `None` for unknown.
    pub person: Option<(String, String)>,
    /// Best person's score (also when unknown: how close the nearest person was).
    pub score: f32,
    /// Second-best other person's score, if anyone else is enrolled.
    pub second: Option<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MatchError {
    #[error("embedding has {got} values, the gallery holds {expected}-d embeddings")]
    Dimension { expected: usize, got: usize },
}

#[derive(Debug, Clone)]
struct Person {
    id: String,
    name: String,
}

/// The enrolled embeddings of one model, ready to match against.
#[derive(Debug, Clone)]
pub struct Matcher {
    dim: usize,
    policy: MatchPolicy,
    people: Vec<Person>,
    by_id: HashMap<String, usize>,
    /// Row `r` of `data` belongs to `people[owner[r]]`.
    owner: Vec<usize>,
    data: Vec<f32>,
}

impl Matcher {
    pub fn new(dim: usize, policy: MatchPolicy) -> Matcher {
        Matcher {
            dim,
            policy,
            people: Vec::new(),
            by_id: HashMap::new(),
            owner: Vec::new(),
            data: Vec::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn policy(&self) -> &MatchPolicy {
        &self.policy
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// Number of distinct people.
    pub fn people(&self) -> usize {
        self.people.len()
    }

    /// Adds one embedding of person `id` (stored L2-normalised). A known id keeps its first
    /// name.
    pub fn add(&mut self, id: &str, name: &str, embedding: &[f32]) -> Result<(), MatchError> {
        if embedding.len() != self.dim {
            return Err(MatchError::Dimension { expected: self.dim, got: embedding.len() });
        }
        let p = match self.by_id.get(id) {
            Some(&p) => p,
            None => {
                self.people.push(Person { id: id.to_string(), name: name.to_string() });
                self.by_id.insert(id.to_string(), self.people.len() - 1);
                self.people.len() - 1
            }
        };
        let start = self.data.len();
        self.data.extend_from_slice(embedding);
        normalize(&mut self.data[start..]);
        self.owner.push(p);
        Ok(())
    }

    /// Forgets a person and all their embeddings; returns whether they were enrolled.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(gone) = self.by_id.remove(id) else {
            return false;
        };
        let dim = self.dim;
        let mut data = Vec::with_capacity(self.data.len());
        let mut owner = Vec::with_capacity(self.owner.len());
        for (row, &p) in self.data.chunks_exact(dim).zip(&self.owner) {
            if p != gone {
                data.extend_from_slice(row);
                owner.push(if p > gone { p - 1 } else { p });
            }
        }
        self.people.remove(gone);
        for v in self.by_id.values_mut() {
            if *v > gone {
                *v -= 1;
            }
        }
        (self.data, self.owner) = (data, owner);
        true
    }

    /// Each person's best cosine to `probe`, as `(id, score)`, best first.
    pub fn scores(&self, probe: &[f32]) -> Result<Vec<(&str, f32)>, MatchError> {
        let best = self.person_scores(probe)?;
        let mut v: Vec<(&str, f32)> = self.people.iter().zip(best).map(|(p, s)| (p.id.as_str(), s)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// The decision for `probe`: the best person if they pass the threshold and lead the
    /// second-best other person by the margin, else unknown.
    pub fn best(&self, probe: &[f32]) -> Result<Match, MatchError> {
        let best = self.person_scores(probe)?;
        let (mut top, mut second): (Option<(usize, f32)>, Option<f32>) = (None, None);
        for (p, &s) in best.iter().enumerate() {
            match top {
                Some((_, t)) if s <= t => second = Some(second.map_or(s, |x| x.max(s))),
                _ => {
                    second = top.map(|(_, t)| t).or(second);
                    top = Some((p, s));
                }
            }
        }
        let Some((p, score)) = top else {
            return Ok(Match { person: None, score: f32::NEG_INFINITY, second: None });
        };
        let clear = second.is_none_or(|s2| score - s2 >= self.policy.margin);
        let person = (score >= self.policy.threshold && clear)
            .then(|| (self.people[p].id.clone(), self.people[p].name.clone()));
        Ok(Match { person, score, second })
    }

    /// Best score per person, indexed like `self.people`.
    fn person_scores(&self, probe: &[f32]) -> Result<Vec<f32>, MatchError> {
        if probe.len() != self.dim {
            return Err(MatchError::Dimension { expected: self.dim, got: probe.len() });
        }
        let mut q = probe.to_vec();
        normalize(&mut q);
        let mut best = vec![f32::NEG_INFINITY; self.people.len()];
        for (row, &p) in self.data.chunks_exact(self.dim).zip(&self.owner) {
            let s = dot(row, &q);
            if s > best[p] {
                best[p] = s;
            }
        }
        Ok(best)
    }
}

/// Dot product with eight independent accumulators, so that the compiler can vectorise it
/// (a single running `f32` sum has to be kept in order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector at `deg` degrees in the first two dimensions of a 4-d space.
    fn at(deg: f32) -> Vec<f32> {
        let r = deg.to_radians();
        vec![r.cos(), r.sin(), 0.0, 0.0]
    }

    fn gallery() -> Matcher {
        let mut m = Matcher::new(4, MatchPolicy::default());
        m.add("a", "Ann", &at(0.0)).unwrap();
        m.add("a", "Ann", &at(40.0)).unwrap();
        m.add("b", "Bob", &at(90.0)).unwrap();
        m.add("c", "Cy", &[0.0, 0.0, 3.0, 0.0]).unwrap(); // normalised on the way in
        m
    }

    #[test]
    fn best_over_a_persons_embeddings() {
        let m = gallery();
        let r = m.best(&at(35.0)).unwrap();
        assert_eq!(r.person, Some(("a".into(), "Ann".into())));
        assert!((r.score - 5f32.to_radians().cos()).abs() < 1e-6);
        assert!((r.second.unwrap() - 55f32.to_radians().cos()).abs() < 1e-6);
        assert_eq!(m.people(), 3);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn below_threshold_is_unknown() {
        let m = gallery();
        let r = m.best(&[0.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(r.person, None);
        assert!(r.score.abs() < 1e-6);
    }

    #[test]
    fn ambiguous_between_two_people_is_unknown() {
        // Halfway between Ann's 40° and Bob's 90°: both score cos(25°).
        let r = gallery().best(&at(65.0)).unwrap();
        assert_eq!(r.person, None);
        assert!(r.score > 0.9 && (r.score - r.second.unwrap()).abs() < 1e-5);
    }

    #[test]
    fn a_single_person_needs_only_the_threshold() {
        let mut m = Matcher::new(4, MatchPolicy::default());
        m.add("a", "Ann", &at(0.0)).unwrap();
        let r = m.best(&at(60.0)).unwrap();
        assert_eq!((r.person.map(|p| p.0), r.second), (Some("a".into()), None));
        assert_eq!(Matcher::new(4, MatchPolicy::default()).best(&at(0.0)).unwrap().person, None);
    }

    #[test]
    fn wrong_dimension_is_an_error() {
        let mut m = gallery();
        assert_eq!(m.add("x", "X", &[1.0]), Err(MatchError::Dimension { expected: 4, got: 1 }));
        assert!(m.best(&[1.0, 0.0]).is_err());
    }

    #[test]
    fn remove_forgets_a_person() {
        let mut m = gallery();
        assert!(m.remove("a"));
        assert!(!m.remove("a"));
        assert_eq!((m.people(), m.len()), (2, 2));
        assert_eq!(m.best(&at(80.0)).unwrap().person.unwrap().0, "b");
        let ids: Vec<&str> = m.scores(&at(0.0)).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    #[test]
    fn thousands_of_embeddings_are_fast() {
        let mut m = Matcher::new(128, MatchPolicy::default());
        for i in 0..5000 {
            let v: Vec<f32> = (0..128).map(|k| ((i * 131 + k * 7) as f32).sin()).collect();
            m.add(&format!("p{}", i / 5), "n", &v).unwrap();
        }
        let probe: Vec<f32> = (0..128).map(|k| (k as f32).cos()).collect();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            m.best(&probe).unwrap();
        }
        let per = t.elapsed() / 20;
        assert!(per.as_millis() < 20, "{per:?} per query over 5000 embeddings");
    }
}
