//! A deterministic stream of events for stateful scenarios, and the results
//! an independent computation gives for it.

use std::collections::BTreeMap;

/// Event time of the first event (ms); events are 10 ms apart.
pub const BASE_MS: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub id: i64,
    pub user: i64,
    pub amount: i64,
    pub ts: i64,
}

pub fn event(id: i64, users: i64) -> Event {
    Event {
        id,
        user: (id * 7 + id / 13) % users,
        amount: (id * 31) % 100 - 10,
        ts: BASE_MS + id * 10,
    }
}

impl Event {
    pub fn json(&self) -> String {
        format!(
            r#"{{"event_id":{},"user_id":{},"amount":{},"ts":{},"tag":"t{}"}}"#,
            self.id,
            self.user,
            self.amount,
            self.ts,
            self.id % 8
        )
    }

    /// Keyed by user, so one user's events stay in order on one partition.
    pub fn key(&self) -> String {
        self.user.to_string()
    }
}

/// Per user: (user, count, sum of amount).
pub fn totals(events: &[Event]) -> Vec<(i64, i64)> {
    let mut m: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in events {
        let t = m.entry(e.user).or_default();
        t.0 += 1;
        t.1 += e.amount;
    }
    m.into_iter()
        .map(|(user, (n, s))| (user * 1_000_000 + n, s))
        .collect()
}

/// Per (user, window start): (user, window start, count, sum) for tumbling windows of `size_ms`.
pub fn tumbling(events: &[Event], size_ms: i64) -> Vec<(i64, i64, i64, i64)> {
    let mut m: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for e in events {
        let start = e.ts.div_euclid(size_ms) * size_ms;
        let w = m.entry((e.user, start)).or_default();
        w.0 += 1;
        w.1 += e.amount;
    }
    m.into_iter().map(|((u, s), (n, t))| (u, s, n, t)).collect()
}
