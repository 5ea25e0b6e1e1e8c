//! The target table as the database describes it, read once at start-up.

use crate::config::SinkMode;
use crate::ident::TableName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The database's own type name (`bigint`, `timestamp with time zone`, `TEXT`…).
    pub data_type: String,
    pub nullable: bool,
    pub has_default: bool,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub table: TableName,
    /// In table order.
    pub columns: Vec<Column>,
    /// Column sets of the primary key and unique indexes, each sorted.
    pub unique_keys: Vec<Vec<String>>,
}

impl TableSchema {
    /// The schema as read from the catalog: each unique key's columns are
    /// sorted, so keys compare as sets.
    pub fn read(
        table: &TableName,
        columns: Vec<Column>,
        mut unique_keys: Vec<Vec<String>>,
    ) -> Self {
        for key in &mut unique_keys {
            key.sort();
        }
        Self {
            table: table.clone(),
            columns,
            unique_keys,
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The columns not in `keys`, in table order.
    pub fn other_columns(&self, keys: &[String]) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| !keys.contains(c))
            .collect()
    }

    /// Problems that make the table unusable for the given mode and key; empty when usable.
    pub fn check(&self, mode: SinkMode, key_columns: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        if self.columns.is_empty() {
            problems.push(format!("table {} has no columns", self.table));
        }
        for key in key_columns {
            if self.column(key).is_none() {
                problems.push(format!(
                    "key column `{key}` is not a column of table {}",
                    self.table
                ));
            }
        }
        if mode == SinkMode::Upsert && !key_columns.is_empty() {
            let mut wanted: Vec<String> = key_columns.to_vec();
            wanted.sort();
            if !self.unique_keys.contains(&wanted) {
                problems.push(format!(
                    "upsert needs a primary key or unique index on ({}) of table {}",
                    key_columns.join(", "),
                    self.table
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        let col = |name: &str| Column {
            name: name.into(),
            data_type: "bigint".into(),
            nullable: true,
            has_default: false,
        };
        TableSchema {
            table: TableName::parse("t", false).expect("valid"),
            columns: vec![col("id"), col("v")],
            unique_keys: vec![vec!["id".into()]],
        }
    }

    #[test]
    fn upsert_needs_a_matching_unique_key() {
        let s = schema();
        assert!(s.check(SinkMode::Upsert, &["id".into()]).is_empty());
        let problems = s.check(SinkMode::Upsert, &["v".into()]);
        assert!(problems[0].contains("unique index on (v)"), "{problems:?}");
    }

    #[test]
    fn unknown_key_column_is_named() {
        let problems = schema().check(SinkMode::Insert, &["nope".into()]);
        assert!(problems[0].contains("`nope`"), "{problems:?}");
    }
}
