//! The ordering guard within one batch (`sink.order_column`): of a key's
//! changes, only those newer than every change before them in the batch go
//! on to the database, which applies the same rule against what each row
//! already reflects (its `order_column`) and against the markers deletes
//! leave ([`crate::db`]'s guarded statements).
//!
//! Guarantee: after [`newest_only`], each key's remaining changes have
//! non-decreasing source positions in batch order (changes of one position
//! keep their arrival order), so applying them in that order (as
//! [`super::collapse`] and [`super::prepare()`] do) ends with the newest.
//! A change of unknown position (`null`: a snapshot read, see
//! [`crate::ingest::decode::debezium`]) is kept, and applies over whatever
//! came before it, as the database's guarded statements do.

use super::collapse::text_key;
use super::prepare::{part, PreparedWrite};
use crate::ident::{Quoting, TableName};
use crate::model::{Delete, Move, Row};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The column each row keeps its source position in, and the table of the
/// markers deletes leave (`tidemill_deleted__<table>`, beside the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub column: String,
    pub markers: TableName,
    /// How long a marker is kept (`sink.marker_retention`).
    retention: Duration,
    /// When the markers were last pruned (by this member).
    pruned_at: Option<Instant>,
}

/// The guard's statements besides the guarded delete and upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardStep {
    /// Upsert the markers of the batch's deletes.
    Mark,
    /// Delete again the written rows a marker says are older than it.
    Unrevive,
}

/// What one batch's write needs of the guard (owned for as long as the
/// prepared write borrows it): the columns of its deletes (the key's and
/// the position) and the markers they leave.
#[derive(Debug, Default)]
pub struct BatchGuard {
    /// The key columns, then the position column (when guarded).
    delete_columns: Vec<String>,
    key_columns: Vec<String>,
    marker_columns: Vec<String>,
    /// Each delete of known position: its key, position and `marked_at`.
    markers: Vec<Row>,
}

impl BatchGuard {
    pub fn new(key_columns: &[String], order: Option<&str>, deletes: &[Row], now_ms: i64) -> Self {
        let Some(column) = order else {
            return Self {
                delete_columns: key_columns.to_vec(),
                ..Self::default()
            };
        };
        let mut delete_columns = key_columns.to_vec();
        delete_columns.push(column.to_string());
        let mut marker_columns = delete_columns.clone();
        marker_columns.push(MARKED_AT.to_string());
        let markers = deletes
            .iter()
            .filter(|key| matches!(key.get(column), Some(Value::String(_))))
            .map(|key| {
                let mut marker = key.clone();
                marker.insert(MARKED_AT.to_string(), Value::from(now_ms));
                marker
            })
            .collect();
        Self {
            delete_columns,
            key_columns: key_columns.to_vec(),
            marker_columns,
            markers,
        }
    }

    /// The columns a delete binds: the key's, then (guarded) the position.
    pub fn delete_columns(&self) -> &[String] {
        &self.delete_columns
    }

    /// Adds the markers and the keys of the rows written and moved (to
    /// check against the markers) to a guarded write.
    pub fn attach<'r>(
        &'r self,
        mut write: PreparedWrite<'r>,
        rows: &'r [Row],
        moves: &'r [Move],
    ) -> PreparedWrite<'r> {
        // Unguarded: no markers' columns.
        if self.marker_columns.is_empty() {
            return write;
        }
        if !self.markers.is_empty() {
            let refs: Vec<&Row> = self.markers.iter().collect();
            write.markers = Some(part(self.marker_columns.clone(), &refs));
        }
        let refs: Vec<&Row> = rows.iter().chain(moves.iter().map(|m| &m.to)).collect();
        if !refs.is_empty() {
            write.revive = Some(part(self.key_columns.clone(), &refs));
        }
        write
    }
}

/// Names of the markers' own columns besides the key's.
pub const MARKED_AT: &str = "marked_at";

impl Guard {
    pub fn new(column: &str, table: &TableName, retention: Duration) -> Self {
        Self {
            column: column.to_string(),
            markers: TableName {
                schema: table.schema.clone(),
                name: format!("tidemill_deleted__{}", table.name),
            },
            retention,
            pruned_at: None,
        }
    }

    /// Whether to prune the markers now, and of before when (ms since the
    /// epoch): at start and then every tenth of the retention (at least a
    /// second apart, at most ten minutes), so the table holds about one
    /// retention's worth of deletes.
    pub fn prune_due(&mut self, now: Instant, now_ms: i64) -> Option<i64> {
        let every = (self.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
        if self
            .pruned_at
            .is_some_and(|at| now.duration_since(at) < every)
        {
            return None;
        }
        self.pruned_at = Some(now);
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        Some(now_ms.saturating_sub(retention))
    }

    /// `CREATE TABLE IF NOT EXISTS` of the markers: each key column with
    /// its type in the target, the position as `text_type`, the time.
    pub fn markers_ddl(&self, q: Quoting, keys: &[(String, String)], text_type: &str) -> String {
        let mut columns: Vec<String> = keys
            .iter()
            .map(|(name, ty)| format!("{} {ty} NOT NULL", q.quote(name)))
            .collect();
        columns.push(format!("{} {text_type} NOT NULL", q.quote(&self.column)));
        columns.push(format!("{} BIGINT NOT NULL", q.quote(MARKED_AT)));
        let names: Vec<String> = keys.iter().map(|(n, _)| q.quote(n)).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.markers.quoted_in(q),
            columns.join(", "),
            names.join(", ")
        )
    }

    /// Forgets the markers older than a time (a bound parameter, ms).
    pub fn prune_sql(&self, q: Quoting, param: &str) -> String {
        format!(
            "DELETE FROM {} WHERE {} < {param}",
            self.markers.quoted_in(q),
            q.quote(MARKED_AT)
        )
    }

    /// Standard SQL's (PostgreSQL's, SQLite's) condition of an
    /// `ON CONFLICT … DO UPDATE`: a change updates `table`'s row unless it
    /// is older than the row (an unknown position on either side applies).
    pub fn only_if_newer(&self, q: Quoting, table: &TableName) -> String {
        let (t, c) = (q.quote(&table.name), q.quote(&self.column));
        format!(" WHERE {t}.{c} IS NULL OR EXCLUDED.{c} IS NULL OR {t}.{c} <= EXCLUDED.{c}")
    }
}

/// Which rows and which deletes of a batch are newer than every earlier
/// change of their key in it.
#[derive(Debug, Default, PartialEq)]
pub struct Newest {
    pub rows: Vec<bool>,
    pub deletes: Vec<bool>,
}

impl Newest {
    /// Whether anything is dropped.
    pub fn drops(&self) -> bool {
        self.rows.iter().chain(&self.deletes).any(|keep| !keep)
    }
}

/// Walks the batch in arrival order (a delete comes after the `after` rows
/// before it) keeping, per key, the highest position seen.
pub fn newest_only(
    key_columns: &[String],
    order: &str,
    rows: &[Row],
    deletes: &[Delete],
) -> Newest {
    let mut newest: HashMap<Vec<String>, String> = HashMap::new();
    let mut keep_newer = |row: &Row| -> bool {
        let Some(key) = text_key(key_columns, row) else {
            return true;
        };
        let Some(Value::String(at)) = row.get(order) else {
            // A change of unknown position applies whatever came before.
            newest.remove(&key);
            return true;
        };
        match newest.get_mut(&key) {
            Some(seen) if at.as_str() < seen.as_str() => false,
            Some(seen) => {
                seen.clone_from(at);
                true
            }
            None => {
                newest.insert(key, at.clone());
                true
            }
        }
    };
    let mut kept = Newest {
        rows: Vec::with_capacity(rows.len()),
        deletes: Vec::with_capacity(deletes.len()),
    };
    // Deletes arrive sorted by `after` (the batch appends them in order).
    let mut next_delete = deletes.iter().peekable();
    for (i, row) in rows.iter().enumerate() {
        while let Some(d) = next_delete.next_if(|d| d.after <= i) {
            kept.deletes.push(keep_newer(&d.key));
        }
        kept.rows.push(keep_newer(row));
    }
    for d in next_delete {
        kept.deletes.push(keep_newer(&d.key));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: i64, at: &str) -> Row {
        json!({ "id": id, "pos": at })
            .as_object()
            .expect("an object")
            .clone()
    }

    fn delete(id: i64, at: &str, after: usize) -> Delete {
        Delete {
            key: row(id, at),
            after,
        }
    }

    fn keys() -> Vec<String> {
        vec!["id".to_string()]
    }

    #[test]
    fn a_change_older_than_an_earlier_one_of_its_key_is_dropped() {
        let rows = [row(1, "05"), row(1, "03"), row(2, "01"), row(1, "07")];
        let kept = newest_only(&keys(), "pos", &rows, &[]);
        assert_eq!(kept.rows, [true, false, true, true]);
        assert!(kept.drops());
    }

    #[test]
    fn changes_of_one_position_apply_in_arrival_order() {
        let rows = [row(1, "05"), row(1, "05")];
        assert_eq!(newest_only(&keys(), "pos", &rows, &[]).rows, [true, true]);
    }

    #[test]
    fn an_upsert_older_than_the_delete_before_it_is_dropped_and_a_newer_one_kept() {
        // delete(1)@09 arrives after row 0; row 1 (older) must not revive the
        // key, row 2 (newer) does.
        let rows = [row(1, "05"), row(1, "08"), row(1, "10")];
        let deletes = [delete(1, "09", 1)];
        let kept = newest_only(&keys(), "pos", &rows, &deletes);
        assert_eq!(kept.rows, [true, false, true]);
        assert_eq!(kept.deletes, [true]);
    }

    #[test]
    fn a_delete_older_than_the_row_before_it_is_dropped() {
        let rows = [row(1, "09")];
        let deletes = [delete(1, "04", 1), delete(2, "04", 1)];
        let kept = newest_only(&keys(), "pos", &rows, &deletes);
        assert_eq!(kept.deletes, [false, true]);
        assert_eq!(kept.rows, [true]);
    }

    #[test]
    fn a_change_without_a_position_is_kept_and_anything_after_it_applies() {
        let unknown = json!({ "id": 1, "pos": null })
            .as_object()
            .expect("obj")
            .clone();
        let rows = [row(1, "05"), unknown, row(1, "03")];
        let kept = newest_only(&keys(), "pos", &rows, &[]);
        assert_eq!(kept.rows, [true, true, true]);
        assert!(!kept.drops());
    }
}
