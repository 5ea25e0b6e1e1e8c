//! SQL identifiers: validated once, then always quoted per dialect.
//!
//! Guarantee: no table or column name reaches SQL text unquoted, and a quoted
//! name cannot end its quoting (embedded quote characters are doubled), so a
//! crafted field or table name cannot inject SQL. Values are always bound
//! parameters and never pass through here.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier `{0}` is longer than 63 bytes")]
    TooLong(String),
    #[error("identifier `{0}` contains a control character")]
    Control(String),
    #[error("table name `{0}` has more than one '.'; write `schema.table`")]
    TooManyParts(String),
}

/// Checks that `name` can be a quoted identifier on every supported database.
pub fn validate(name: &str) -> Result<(), IdentError> {
    if name.is_empty() {
        return Err(IdentError::Empty);
    }
    if name.len() > 63 {
        return Err(IdentError::TooLong(name.to_string()));
    }
    if name.chars().any(char::is_control) {
        return Err(IdentError::Control(name.to_string()));
    }
    Ok(())
}

/// How a database quotes identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// PostgreSQL, SQLite: `"a""b"`.
    Ansi,
    /// MySQL, MariaDB: `` `a``b` `` (independent of `ANSI_QUOTES`).
    Backtick,
}

impl Quoting {
    /// Quotes `name`; the quote character inside it is doubled.
    pub fn quote(self, name: &str) -> String {
        match self {
            Quoting::Ansi => format!("\"{}\"", name.replace('"', "\"\"")),
            Quoting::Backtick => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// `q(a), q(b)` for a column list.
    pub fn column_list(self, columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| self.quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Quotes an identifier ANSI-style (PostgreSQL, SQLite): `"a""b"`.
pub fn quote(name: &str) -> String {
    Quoting::Ansi.quote(name)
}

/// `"a", "b"` for a column list.
pub fn column_list(columns: &[String]) -> String {
    Quoting::Ansi.column_list(columns)
}

/// The upsert clause shared by PostgreSQL and SQLite: update every non-key
/// column from the proposed row, or do nothing when only keys are written.
pub fn on_conflict(keys: &[String], columns: &[String]) -> String {
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("{q} = EXCLUDED.{q}", q = quote(c)))
        .collect();
    if updates.is_empty() {
        format!(" ON CONFLICT ({}) DO NOTHING", column_list(keys))
    } else {
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            column_list(keys),
            updates.join(", ")
        )
    }
}

/// A possibly schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`. SQLite has no schemas worth
    /// addressing here, so a dot is part of its table name.
    pub fn parse(text: &str, single_part: bool) -> Result<Self, IdentError> {
        let parts: Vec<&str> = if single_part {
            vec![text]
        } else {
            text.split('.').collect()
        };
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => return Err(IdentError::TooManyParts(text.to_string())),
        };
        if let Some(schema) = schema {
            validate(schema)?;
        }
        validate(name)?;
        Ok(Self {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        })
    }

    /// The quoted, possibly qualified name for SQL text (ANSI quotes).
    pub fn quoted(&self) -> String {
        self.quoted_in(Quoting::Ansi)
    }

    /// The table `name` next to this one (same schema or database), quoted
    /// in `dialect`: where tidemill keeps its checkpoint and state tables.
    pub fn sibling(&self, name: &str, dialect: Quoting) -> String {
        TableName {
            schema: self.schema.clone(),
            name: name.into(),
        }
        .quoted_in(dialect)
    }

    /// The quoted, possibly qualified name in `dialect` (on MySQL the
    /// "schema" is the database).
    pub fn quoted_in(&self, dialect: Quoting) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", dialect.quote(schema), dialect.quote(&self.name)),
            None => dialect.quote(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_doubles_embedded_quotes() {
        assert_eq!(
            quote(r#"a"; drop table x; --"#),
            r#""a""; drop table x; --""#
        );
    }

    #[test]
    fn mysql_quote_doubles_backticks() {
        assert_eq!(
            Quoting::Backtick.quote("a`; drop table x; --"),
            "`a``; drop table x; --`"
        );
        let t = TableName::parse("db.t`x", false).expect("valid");
        assert_eq!(t.quoted_in(Quoting::Backtick), "`db`.`t``x`");
    }

    #[test]
    fn parse_splits_schema_for_postgres_only() {
        let t = TableName::parse("s.t", false).expect("valid");
        assert_eq!(t.quoted(), r#""s"."t""#);
        let t = TableName::parse("s.t", true).expect("valid");
        assert_eq!(t.quoted(), r#""s.t""#);
        assert!(TableName::parse("a.b.c", false).is_err());
    }

    #[test]
    fn validate_rejects_empty_long_and_control() {
        assert_eq!(validate(""), Err(IdentError::Empty));
        assert!(validate(&"x".repeat(64)).is_err());
        assert!(validate("a\0b").is_err());
        assert!(validate("Mixed Case ok").is_ok());
    }
}
