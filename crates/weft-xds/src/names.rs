//! Resource names as the server keeps a stream's subscription: interned and sorted.
//! A thousand clients subscribed to the same thousand endpoint names share one copy of
//! each name, and each stream holds a sorted slice of pointers (16 bytes a name)
//! rather than a tree of strings of its own (about 100 bytes a name: a tenth of a MiB
//! per client at 1,000 services).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// Subscribed resource names: sorted, unique, interned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(Box<[Arc<str>]>);

impl Names {
    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| (**n).cmp(name)).is_ok()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|n| &**n)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `names` (in any order, repeats allowed) are exactly these; allocates
    /// nothing when they come sorted, as a state-of-the-world client re-sends them with
    /// every ACK.
    pub fn same_as(&self, names: &[String]) -> bool {
        if names.len() == self.0.len() && names.iter().zip(self.iter()).all(|(a, b)| a == b) {
            return true;
        }
        let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == self.0.len() && sorted.iter().zip(self.iter()).all(|(a, b)| *a == b)
    }

    /// These names with `add` added and `remove` removed.
    pub fn with(&self, add: Vec<String>, remove: &[String]) -> Names {
        let removed: HashSet<&str> = remove.iter().map(String::as_str).collect();
        let mut all: Vec<Arc<str>> = self
            .0
            .iter()
            .filter(|n| !removed.contains(&***n))
            .cloned()
            .collect();
        let fresh: Vec<String> = add.into_iter().filter(|n| !self.contains(n)).collect();
        all.extend(intern(fresh));
        Names::sorted(all)
    }

    fn sorted(mut all: Vec<Arc<str>>) -> Names {
        all.sort_unstable();
        all.dedup();
        Names(all.into_boxed_slice())
    }
}

impl FromIterator<String> for Names {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Names {
        Names::sorted(intern(iter))
    }
}

/// A set of resource names to select resources by: a subscription's [`Names`], or a
/// `BTreeSet<String>` (tests, tools).
pub trait NameSet {
    /// Whether `name` is in the set.
    fn has(&self, name: &str) -> bool;
    /// The names, in order.
    fn each(&self) -> Box<dyn Iterator<Item = &str> + '_>;
}

impl NameSet for Names {
    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
    fn each(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.iter())
    }
}

impl NameSet for BTreeSet<String> {
    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
    fn each(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.iter().map(String::as_str))
    }
}

/// Every name some stream holds, once.
struct Interner {
    set: HashSet<Arc<str>>,
    /// Its size after the last sweep of names no stream holds any more.
    swept: usize,
}

static INTERNER: Mutex<Option<Interner>> = Mutex::new(None);

/// The shared copy of each of `names`, made on first sight; the table drops names no
/// stream holds any more whenever it has doubled since it last did.
fn intern(names: impl IntoIterator<Item = String>) -> Vec<Arc<str>> {
    let mut guard = INTERNER.lock().unwrap_or_else(|e| e.into_inner());
    let interner = guard.get_or_insert_with(|| Interner {
        set: HashSet::new(),
        swept: 0,
    });
    let out = names
        .into_iter()
        .map(|n| match interner.set.get(n.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = n.into();
                interner.set.insert(shared.clone());
                shared
            }
        })
        .collect();
    if interner.set.len() > 2 * interner.swept.max(4096) {
        interner.set.retain(|n| Arc::strong_count(n) > 1);
        interner.set.shrink_to_fit();
        interner.swept = interner.set.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sorted_unique_and_searchable() {
        let n = names(&["b", "a", "c", "a"]);
        assert_eq!(n.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(n.contains("b") && !n.contains("d"));
        assert!(n.same_as(&strings(&["a", "b", "c"])));
        assert!(n.same_as(&strings(&["c", "a", "b", "b"])));
        assert!(!n.same_as(&strings(&["a", "b"])));
        assert!(!n.same_as(&strings(&["a", "b", "d"])));
        let m = n.with(strings(&["d", "a"]), &strings(&["b"]));
        assert_eq!(m.iter().collect::<Vec<_>>(), ["a", "c", "d"]);
        assert_eq!(names(&[]), Names::default());
    }

    #[test]
    fn streams_share_one_copy_of_each_name() {
        let a = names(&["outbound|8080||shared.example"]);
        let b = names(&["outbound|8080||shared.example"]);
        assert!(Arc::ptr_eq(&a.0[0], &b.0[0]));
    }
}
