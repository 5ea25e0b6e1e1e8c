//! SQLite's SQL, as [`Dialect`] asks it: ANSI quotes, declared type names
//! read by affinity, no schemas, bytes bound through `unhex(…)`, and result
//! codes.

use crate::config::PortableType;
use crate::ident::Quoting;
use crate::sink::ddl::Inferred;
use crate::sink::dialect::Dialect;
use crate::sink::types::Target;
use crate::sink::RetryClass;
use sqlx::error::{DatabaseError, ErrorKind};

/// SQLite.
#[derive(Debug)]
pub struct Sqlite;

/// The one value the rest of the code asks.
pub static DIALECT: Sqlite = Sqlite;

/// SQLite's declared type names and value forms.
pub const TARGET: Target = Target {
    arrays: false,
    int_affinity: true,
    tinyint1_is_bool: false,
    real_is_single: false,
    float_by_precision: false,
    longtext_holds_json: false,
    bare_decimal_precision: None,
    default_fraction_digits: 6,
    bytes_hex_prefix: "",
    iso_timestamps: false,
};

impl Dialect for Sqlite {
    fn quoting(&self) -> Quoting {
        Quoting::Ansi
    }

    fn schemas(&self) -> bool {
        false
    }

    fn target(&self) -> Target {
        TARGET
    }

    fn declared_type(&self, ty: PortableType) -> String {
        match ty {
            // TEXT affinity; the declared length is what the type mapping checks.
            PortableType::Varchar(n) => format!("VARCHAR({n})"),
            PortableType::SmallInt | PortableType::Int | PortableType::BigInt => "INTEGER".into(),
            // NUMERIC affinity; declared BOOLEAN, the type mapping takes true/false.
            PortableType::Bool => "BOOLEAN".into(),
            PortableType::Numeric(_) => "NUMERIC".into(),
            PortableType::Real | PortableType::Double => "REAL".into(),
            PortableType::Bytes => "BLOB".into(),
            PortableType::Text
            | PortableType::TimestampTz
            | PortableType::Timestamp
            | PortableType::Date
            | PortableType::Uuid => "TEXT".into(),
            PortableType::Json => "JSON".into(),
        }
    }

    fn inferred_type(&self, kind: Inferred) -> &'static str {
        match kind {
            Inferred::BigInt => "INTEGER",
            Inferred::Double => "REAL",
            Inferred::Bool => "BOOLEAN",
            Inferred::Text => "TEXT",
            // Declared JSON (NUMERIC affinity; the text of an object or array
            // stays text), so the type mapping takes objects and arrays.
            Inferred::Json => "JSON",
        }
    }

    fn add_column_if_not_exists(&self) -> bool {
        false
    }

    fn classify(&self, err: &dyn DatabaseError) -> RetryClass {
        classify_code(&err.code().unwrap_or_default(), err.kind())
    }

    fn is_conflict(&self, err: &dyn DatabaseError) -> bool {
        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
        let code = err.code().unwrap_or_default();
        matches!(code.parse::<i64>().map(|c| c & 0xff), Ok(5 | 6))
    }

    fn is_duplicate_column(&self, err: &dyn DatabaseError) -> bool {
        err.message().contains("duplicate column name")
    }
}

/// SQLite result codes; the primary code is the low byte of an extended code.
pub fn classify_code(code: &str, kind: ErrorKind) -> RetryClass {
    let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
    match (primary, kind) {
        // SQLITE_BUSY, SQLITE_LOCKED.
        (5 | 6, _) => RetryClass::Transient,
        (
            _,
            ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation,
        ) => RetryClass::Data,
        // SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH.
        (18..=20, _) => RetryClass::Data,
        _ => RetryClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_are_classified() {
        assert_eq!(classify_code("5", ErrorKind::Other), RetryClass::Transient);
        assert_eq!(
            classify_code("517", ErrorKind::Other),
            RetryClass::Transient
        );
        assert_eq!(
            classify_code("2067", ErrorKind::UniqueViolation),
            RetryClass::Data
        );
        assert_eq!(classify_code("1", ErrorKind::Other), RetryClass::Fatal);
    }

    #[test]
    fn declared_types_follow_affinity() {
        assert_eq!(DIALECT.declared_type(PortableType::Uuid), "TEXT");
        assert_eq!(DIALECT.declared_type(PortableType::Int), "INTEGER");
    }
}
