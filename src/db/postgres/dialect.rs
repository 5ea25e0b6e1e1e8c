//! PostgreSQL's SQL, as [`Dialect`] asks it: ANSI quotes, `format_type`
//! names, ISO timestamps, `bytea`'s `\x` hex form and SQLSTATE classes.

use crate::config::PortableType;
use crate::ident::Quoting;
use crate::sink::ddl::Inferred;
use crate::sink::dialect::Dialect;
use crate::sink::types::Target;
use crate::sink::RetryClass;
use sqlx::error::DatabaseError;

/// PostgreSQL.
#[derive(Debug)]
pub struct Postgres;

/// The one value the rest of the code asks.
pub static DIALECT: Postgres = Postgres;

/// PostgreSQL's type names and value forms.
pub const TARGET: Target = Target {
    arrays: true,
    int_affinity: false,
    tinyint1_is_bool: false,
    real_is_single: true,
    float_by_precision: false,
    longtext_holds_json: false,
    bare_decimal_precision: None,
    default_fraction_digits: 6,
    // bytea's hex input form, read by the JSON path and by COPY's encoder.
    bytes_hex_prefix: "\\x",
    iso_timestamps: true,
};

impl Dialect for Postgres {
    fn quoting(&self) -> Quoting {
        Quoting::Ansi
    }

    fn target(&self) -> Target {
        TARGET
    }

    fn declared_type(&self, ty: PortableType) -> String {
        match ty {
            PortableType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            PortableType::Varchar(n) => format!("varchar({n})"),
            PortableType::SmallInt => "smallint".into(),
            PortableType::Int => "integer".into(),
            PortableType::BigInt => "bigint".into(),
            PortableType::Numeric(None) => "numeric".into(),
            PortableType::Real => "real".into(),
            PortableType::Double => "double precision".into(),
            PortableType::Bool => "boolean".into(),
            PortableType::Text => "text".into(),
            PortableType::TimestampTz => "timestamptz".into(),
            PortableType::Timestamp => "timestamp".into(),
            PortableType::Date => "date".into(),
            PortableType::Uuid => "uuid".into(),
            PortableType::Json => "jsonb".into(),
            PortableType::Bytes => "bytea".into(),
        }
    }

    fn inferred_type(&self, kind: Inferred) -> &'static str {
        match kind {
            Inferred::BigInt => "BIGINT",
            Inferred::Double => "double precision",
            Inferred::Bool => "BOOLEAN",
            Inferred::Text => "TEXT",
            Inferred::Json => "jsonb",
        }
    }

    fn add_column_if_not_exists(&self) -> bool {
        true
    }

    fn classify(&self, err: &dyn DatabaseError) -> RetryClass {
        let code = err.code().unwrap_or_default();
        // 55000 at connection start: the database is closed to new
        // connections for now (ALTER DATABASE … ALLOW_CONNECTIONS false,
        // maintenance): it will open again.
        if code == "55000"
            && err
                .message()
                .contains("not currently accepting connections")
        {
            return RetryClass::Transient;
        }
        classify_sqlstate(&code)
    }

    fn is_conflict(&self, err: &dyn DatabaseError) -> bool {
        matches!(err.code().as_deref(), Some("40001" | "40P01"))
    }

    fn is_connection_loss(&self, err: &dyn DatabaseError) -> bool {
        // Administrator or crash shutdown, starting up; class 08: connection exceptions.
        err.code().is_some_and(|c| {
            matches!(c.as_ref(), "57P01" | "57P02" | "57P03") || c.starts_with("08")
        })
    }

    fn is_duplicate_column(&self, err: &dyn DatabaseError) -> bool {
        err.code().as_deref() == Some("42701")
    }
}

/// SQLSTATE classes: serialization, deadlock, lock, shutdown and connection
/// (08, 53, 58) retry; data exceptions (22) and integrity violations (23)
/// are the rows'; anything else is fatal.
pub fn classify_sqlstate(code: &str) -> RetryClass {
    match code {
        "40001" | "40P01" | "25006" | "55P03" | "57P01" | "57P02" | "57P03" | "57014" => {
            RetryClass::Transient
        }
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            RetryClass::Transient
        }
        c if c.starts_with("22") || c.starts_with("23") => RetryClass::Data,
        _ => RetryClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for transient in ["40001", "40P01", "08006", "57P01", "53300", "25006"] {
            assert_eq!(
                classify_sqlstate(transient),
                RetryClass::Transient,
                "{transient}"
            );
        }
        for data in ["23505", "22001", "22P02", "23502"] {
            assert_eq!(classify_sqlstate(data), RetryClass::Data, "{data}");
        }
        for fatal in ["28P01", "42P01", "42501"] {
            assert_eq!(classify_sqlstate(fatal), RetryClass::Fatal, "{fatal}");
        }
    }

    #[test]
    fn declared_types_are_postgres_names() {
        assert_eq!(DIALECT.declared_type(PortableType::Json), "jsonb");
        assert_eq!(
            DIALECT.declared_type(PortableType::Numeric(Some((12, 2)))),
            "numeric(12,2)"
        );
    }
}
