//! The order a bounded index forgets in: ids oldest first, beside the map that holds them.
//! Connections and lookups are both held this way (`connections.rs`, `dns_index.rs`).
use std::collections::{HashMap, VecDeque};

/// Ids in the order they were inserted, oldest first. An id whose item is gone from the map
/// already is skipped when it comes up.
#[derive(Default)]
pub(super) struct Arrivals(VecDeque<u64>);

/// What [`Arrivals::evict`] took out: each id with its item, oldest first, and how many of them
/// went for the count bound (a cap that bit) rather than for their age.
pub(super) struct Evicted<T> {
    pub items: Vec<(u64, T)>,
    pub by_cap: u64,
}

impl Arrivals {
    pub fn push(&mut self, id: u64) {
        self.0.push_back(id);
    }

    /// The ids [`Self::evict`] would take out for the count bound `max`, oldest first.
    pub fn beyond<T>(&self, by_id: &HashMap<u64, T>, max: usize) -> Vec<u64> {
        let extra = self.0.len().saturating_sub(max);
        self.0.iter().take(extra).copied().filter(|id| by_id.contains_key(id)).collect()
    }

    /// Takes out of `by_id` the oldest beyond `max`, and those whose `since` is more than
    /// `max_idle` before `now` (oldest first: it stops at the first that is younger).
    pub fn evict<T>(&mut self, by_id: &mut HashMap<u64, T>, now: u64, max: usize, max_idle: u64, since: impl Fn(&T) -> u64) -> Evicted<T> {
        let mut out = Evicted { items: Vec::new(), by_cap: 0 };
        while self.0.len() > max || self.0.front().is_some_and(|id| by_id.get(id).is_none_or(|t| now.saturating_sub(since(t)) > max_idle)) {
            let over = self.0.len() > max;
            let Some(id) = self.0.pop_front() else { break };
            if let Some(t) = by_id.remove(&id) {
                out.by_cap += u64::from(over);
                out.items.push((id, t));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_for_the_cap_then_for_their_age() {
        let mut order = Arrivals::default();
        let mut by_id: HashMap<u64, u64> = HashMap::new();
        // id -> the time it was last active
        for (id, at) in [(1, 10), (2, 100), (3, 20), (4, 200)] {
            by_id.insert(id, at);
            order.push(id);
        }
        by_id.remove(&3); // gone already: skipped, never counted
        assert_eq!(order.beyond(&by_id, 3), vec![1]);
        // At 150 with max_idle 60: 1 goes for the cap (4 held > 3), 2 is younger than 60, so
        // it stops there, although nothing after 2 is checked for age.
        let e = order.evict(&mut by_id, 150, 3, 60, |at| *at);
        assert_eq!((e.items, e.by_cap), (vec![(1, 10)], 1));
        // Later, 2 is idle past the bound; 3's id is dropped on the way; 4 stays.
        let e = order.evict(&mut by_id, 250, 3, 60, |at| *at);
        assert_eq!((e.items, e.by_cap), (vec![(2, 100)], 0));
        assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), vec![4]);
    }
}
