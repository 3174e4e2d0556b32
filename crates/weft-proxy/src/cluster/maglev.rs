//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: each endpoint
//! fills slots of a prime-sized lookup table along its own permutation, heavier
//! endpoints taking turns more often; a request's hash indexes the table.

use xxhash_rust::xxh64::xxh64;

/// Envoy's default table size (a prime).
pub const DEFAULT_TABLE_SIZE: u64 = 65537;

/// A built lookup table of endpoint indices.
#[derive(Debug, Clone, Default)]
pub struct Maglev {
    table: Vec<u32>,
}

/// Whether `n` is prime (table sizes must be).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Maglev {
    /// Builds the table for endpoints named by `keys` with `weights`.
    pub fn build(keys: &[String], weights: &[u32], size: u64) -> Maglev {
        if keys.is_empty() {
            return Maglev::default();
        }
        let max_weight = f64::from(*weights.iter().max().unwrap_or(&1));
        struct Entry {
            offset: u64,
            skip: u64,
            next: u64,
            weight: f64,
            target: f64,
        }
        let mut entries: Vec<Entry> = keys
            .iter()
            .zip(weights)
            .map(|(k, w)| Entry {
                offset: xxh64(k.as_bytes(), 0) % size,
                skip: xxh64(k.as_bytes(), 1) % (size - 1) + 1,
                next: 0,
                weight: f64::from(*w) / max_weight,
                target: 0.0,
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < size {
            for (i, e) in entries.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                // An endpoint of full weight takes a slot every round; one of a third of
                // it, every third round.
                if (round as f64) * e.weight < e.target {
                    continue;
                }
                e.target += 1.0;
                loop {
                    let slot = ((e.offset + e.skip * e.next) % size) as usize;
                    e.next += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = i as u32;
                        filled += 1;
                        break;
                    }
                }
            }
            round += 1;
        }
        Maglev { table }
    }

    /// The endpoint index for a request hash.
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.1.{i}:80")).collect()
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(251));
        assert!(!is_prime(65536));
    }

    #[test]
    fn balanced_by_weight_and_stable() {
        let m = Maglev::build(&keys(4), &[1, 1, 1, 3], 251);
        let mut counts = [0u32; 4];
        for slot in &m.table {
            counts[*slot as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u32>(), 251);
        assert!(counts[3] > counts[0] * 2, "{counts:?}");
        assert_eq!(m.pick(12345), m.pick(12345));
    }

    #[test]
    fn removal_disrupts_little() {
        let all = keys(10);
        let before = Maglev::build(&all, &[1; 10], DEFAULT_TABLE_SIZE);
        let after = Maglev::build(&all[..9], &[1; 9], DEFAULT_TABLE_SIZE);
        let mut moved = 0;
        let n = 20_000u64;
        for i in 0..n {
            let h = xxh64(&i.to_le_bytes(), 3);
            let b = before.pick(h).expect("b");
            if b != 9 && after.pick(h) != Some(b) {
                moved += 1;
            }
        }
        // Maglev trades a little disruption for balance; it must stay small.
        assert!(moved < n / 20, "moved {moved}");
    }
}
