//! Ketama-style consistent hashing: every endpoint owns points on a ring of 64-bit
//! hashes in proportion to its weight; a request goes to the first point at or after
//! its own hash.

use xxhash_rust::xxh64::xxh64;

/// Envoy's default minimum ring size.
pub const DEFAULT_MIN_RING: u64 = 1024;
/// Envoy's default maximum ring size.
pub const DEFAULT_MAX_RING: u64 = 8 * 1024 * 1024;

/// A built ring: sorted (hash, endpoint index) points.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds the ring for endpoints named by `keys` with `weights`.
    pub fn build(keys: &[String], weights: &[u32], min_size: u64, max_size: u64) -> Ring {
        if keys.is_empty() {
            return Ring::default();
        }
        let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
        let normalized: Vec<f64> = weights.iter().map(|w| f64::from(*w) / total).collect();
        let min_norm = normalized.iter().copied().fold(f64::INFINITY, f64::min);
        // Scale so that the lightest endpoint gets at least one point, within bounds.
        let scale = ((min_norm * min_size as f64).ceil() / min_norm).min(max_size as f64);
        let mut points = Vec::with_capacity(scale as usize + keys.len());
        let (mut target, mut placed) = (0.0f64, 0u64);
        let mut buf = String::new();
        for (i, key) in keys.iter().enumerate() {
            target += scale * normalized[i];
            let count = target.floor() as u64 - placed;
            for n in 0..count {
                buf.clear();
                buf.push_str(key);
                buf.push('_');
                buf.push_str(&n.to_string());
                points.push((xxh64(buf.as_bytes(), 0), i as u32));
            }
            placed += count;
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The endpoint index for a request hash.
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(h, _)| *h < hash);
        let (_, idx) = self.points[if i == self.points.len() { 0 } else { i }];
        Some(idx as usize)
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn same_hash_same_endpoint_and_spread_follows_weight() {
        let ring = Ring::build(&keys(3), &[1, 1, 2], DEFAULT_MIN_RING, DEFAULT_MAX_RING);
        assert!(ring.len() >= 1024);
        assert_eq!(ring.pick(42), ring.pick(42));
        let mut counts = [0u32; 3];
        for i in 0..40_000u64 {
            counts[ring.pick(xxh64(&i.to_le_bytes(), 7)).expect("pick")] += 1;
        }
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((0.4..0.6).contains(&share), "{counts:?}");
    }

    #[test]
    fn removing_an_endpoint_moves_few_other_keys() {
        let all = keys(5);
        let before = Ring::build(&all, &[1; 5], DEFAULT_MIN_RING, DEFAULT_MAX_RING);
        let after = Ring::build(&all[..4], &[1; 4], DEFAULT_MIN_RING, DEFAULT_MAX_RING);
        let (mut kept, mut moved) = (0, 0);
        for i in 0..10_000u64 {
            let h = xxh64(&i.to_le_bytes(), 1);
            let b = before.pick(h).expect("b");
            if b == 4 {
                continue;
            }
            if after.pick(h) == Some(b) {
                kept += 1;
            } else {
                moved += 1;
            }
        }
        // Survivors gain points when one leaves (the ring is rescaled, as in Envoy), so
        // a few of their keys move between them; most stay.
        assert!(
            moved * 100 < (kept + moved) * 15,
            "moved {moved} of {}",
            kept + moved
        );
    }
}
