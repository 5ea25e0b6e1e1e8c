//! Keeping the order of upserts and deletes per key within one batch.
//!
//! Guarantee: after [`collapse`], running every returned delete (each key's
//! last, as it arrived: with the ordering guard its position is the newest)
//! and then every kept row leaves each key as the batch's last operation on it left
//! it — gone when its last operation is a delete, the last row's values when
//! it is an upsert (a delete before that upsert still runs, so the row starts
//! afresh with its defaults). Keys compare by their text (`42` and `"42"` are
//! one key), as the database compares them after converting to the column type.

use crate::model::{Delete, Row};
use serde_json::Value;
use std::collections::HashMap;

/// The keys to delete (once each), and for each row whether it is written.
#[derive(Debug, Default, PartialEq)]
pub struct Collapsed {
    pub deletes: Vec<Row>,
    pub keep: Vec<bool>,
}

pub fn collapse(key_columns: &[String], rows: &[Row], deletes: &[Delete]) -> Collapsed {
    // Per key: where its last delete is, and which of `keys` holds it.
    let mut last_delete: HashMap<Vec<String>, (usize, usize)> =
        HashMap::with_capacity(deletes.len());
    let mut keys = Vec::with_capacity(deletes.len());
    for d in deletes {
        let Some(key) = text_key(key_columns, &d.key) else {
            continue;
        };
        match last_delete.get_mut(&key) {
            // The last delete's key row: with the ordering guard it carries
            // the position the delete and its marker compare.
            Some((after, at)) => {
                *after = (*after).max(d.after);
                keys[*at] = d.key.clone();
            }
            None => {
                last_delete.insert(key, (d.after, keys.len()));
                keys.push(d.key.clone());
            }
        }
    }
    let keep = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            text_key(key_columns, row)
                .and_then(|k| last_delete.get(&k))
                .is_none_or(|&(after, _)| after <= i)
        })
        .collect();
    Collapsed {
        deletes: keys,
        keep,
    }
}

/// The key's values as text; `None` when a key column is missing or null.
pub(super) fn text_key(key_columns: &[String], row: &Row) -> Option<Vec<String>> {
    key_columns
        .iter()
        .map(|k| match row.get(k)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().expect("object").clone()
    }

    fn delete(id: &str, after: usize) -> Delete {
        Delete {
            key: row(json!({ "id": id })),
            after,
        }
    }

    #[test]
    fn the_last_operation_per_key_wins() {
        let keys = ["id".to_string()];
        let rows = vec![
            row(json!({"id": 1, "v": "a"})), // then deleted
            row(json!({"id": 2, "v": "b"})), // deleted before it: kept
            row(json!({"id": 3, "v": "c"})), // never deleted
        ];
        let deletes = vec![delete("1", 1), delete("2", 1), delete("1", 1)];
        let c = collapse(&keys, &rows, &deletes);
        assert_eq!(c.keep, vec![false, true, true]);
        assert_eq!(
            c.deletes,
            vec![row(json!({"id": "1"})), row(json!({"id": "2"}))]
        );
    }

    #[test]
    fn a_key_deleted_twice_is_deleted_once_as_its_last_delete_says() {
        let keys = ["id".to_string()];
        let at = |pos: &str, after| Delete {
            key: row(json!({"id": 1, "pos": pos})),
            after,
        };
        let rows = vec![row(json!({"id": 1, "pos": "10"}))];
        let c = collapse(&keys, &rows, &[at("05", 0), at("20", 1)]);
        assert_eq!(c.deletes, vec![row(json!({"id": 1, "pos": "20"}))]);
        assert_eq!(c.keep, vec![false]);
    }

    #[test]
    fn a_row_after_the_last_delete_of_its_key_survives() {
        let keys = ["id".to_string()];
        let rows = vec![row(json!({"id": 7})), row(json!({"id": 7, "v": 1}))];
        let c = collapse(&keys, &rows, &[delete("7", 1)]);
        assert_eq!(c.keep, vec![false, true]);
        let c = collapse(&keys, &rows, &[delete("7", 0), delete("7", 2)]);
        assert_eq!(c.keep, vec![false, false]);
    }
}
