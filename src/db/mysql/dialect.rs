//! MySQL's and MariaDB's SQL, as [`Dialect`] asks it: backticks,
//! `COLUMN_TYPE` names, `YYYY-MM-DD hh:mm:ss` timestamps, bytes bound
//! through `UNHEX(?)`, and server error numbers.

use crate::config::PortableType;
use crate::ident::Quoting;
use crate::sink::ddl::Inferred;
use crate::sink::dialect::Dialect;
use crate::sink::types::Target;
use crate::sink::RetryClass;
use sqlx::error::DatabaseError;

/// MySQL, or MariaDB (which adds `ADD COLUMN IF NOT EXISTS`).
#[derive(Debug)]
pub struct MySql {
    pub mariadb: bool,
}

/// MySQL, and a server not yet asked its version.
pub static MYSQL: MySql = MySql { mariadb: false };
/// MariaDB.
pub static MARIADB: MySql = MySql { mariadb: true };

/// MySQL's and MariaDB's type names and value forms.
pub const TARGET: Target = Target {
    arrays: false,
    int_affinity: false,
    tinyint1_is_bool: true,
    real_is_single: false,
    float_by_precision: true,
    longtext_holds_json: true,
    // DECIMAL is DECIMAL(10, 0).
    bare_decimal_precision: Some(10),
    // DATETIME and TIMESTAMP keep whole seconds unless declared with (fsp).
    default_fraction_digits: 0,
    bytes_hex_prefix: "",
    iso_timestamps: false,
};

impl Dialect for MySql {
    fn quoting(&self) -> Quoting {
        Quoting::Backtick
    }

    fn target(&self) -> Target {
        TARGET
    }

    fn declared_type(&self, ty: PortableType) -> String {
        match ty {
            PortableType::Numeric(Some((p, s))) => format!("DECIMAL({p},{s})"),
            PortableType::Varchar(n) => format!("VARCHAR({n})"),
            PortableType::SmallInt => "SMALLINT".into(),
            PortableType::Int => "INT".into(),
            PortableType::BigInt => "BIGINT".into(),
            // No unconstrained decimal: the widest exact type.
            PortableType::Numeric(None) => "DECIMAL(65,30)".into(),
            PortableType::Real => "FLOAT".into(),
            PortableType::Double => "DOUBLE".into(),
            PortableType::Bool => "BOOLEAN".into(),
            PortableType::Text => "LONGTEXT".into(),
            // Connections run with time_zone '+00:00': DATETIME holds UTC.
            PortableType::TimestampTz | PortableType::Timestamp => "DATETIME(6)".into(),
            PortableType::Date => "DATE".into(),
            PortableType::Uuid => "CHAR(36)".into(),
            PortableType::Json => "JSON".into(),
            PortableType::Bytes => "LONGBLOB".into(),
        }
    }

    fn inferred_type(&self, kind: Inferred) -> &'static str {
        match kind {
            Inferred::BigInt => "BIGINT",
            Inferred::Double => "DOUBLE",
            Inferred::Bool => "BOOLEAN",
            Inferred::Text => "LONGTEXT",
            Inferred::Json => "JSON",
        }
    }

    fn add_column_if_not_exists(&self) -> bool {
        self.mariadb
    }

    fn classify(&self, err: &dyn DatabaseError) -> RetryClass {
        number(err).map_or(RetryClass::Fatal, classify_number)
    }

    fn is_conflict(&self, err: &dyn DatabaseError) -> bool {
        // Deadlock, lock wait timeout.
        matches!(number(err), Some(1213 | 1205))
    }

    fn is_duplicate_column(&self, err: &dyn DatabaseError) -> bool {
        number(err) == Some(1060)
    }

    fn is_connection_loss(&self, err: &dyn DatabaseError) -> bool {
        // Server shutdown in progress, connection killed.
        matches!(number(err), Some(1053 | 1927))
    }
}

fn number(err: &dyn DatabaseError) -> Option<u16> {
    err.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

/// MySQL/MariaDB server error numbers (shared by both unless noted).
pub fn classify_number(number: u16) -> RetryClass {
    match number {
        // Lock wait timeout, deadlock, too many connections (also the account's
        // max_user_connections, 1226), server shutting down,
        // query interrupted, read-only (failover), gone away / lost (client codes),
        // connection killed (MariaDB 1927), WSREP not ready.
        1205 | 1213 | 1040 | 1226 | 1053 | 1317 | 1290 | 1836 | 2006 | 2013 | 1927 | 1047
        | 1158 | 1159 | 1160 | 1161 | 4031 => RetryClass::Transient,
        // Duplicate key, column cannot be null, out of range, data too long,
        // incorrect value, truncated/incorrect value (1292), CHECK (MySQL 3819,
        // MariaDB 4025), foreign key (1451, 1452), field without default (1364),
        // invalid JSON (3140), incorrect string value, division by zero, packet too large.
        1062 | 1048 | 1264 | 1406 | 1366 | 1292 | 3819 | 4025 | 1451 | 1452 | 1364 | 3140
        | 1265 | 1367 | 1411 | 1365 | 1263 | 1153 | 1586 | 1557 => RetryClass::Data,
        _ => RetryClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_are_classified() {
        for transient in [1213, 1205, 2006, 2013, 1927, 1040] {
            assert_eq!(
                classify_number(transient),
                RetryClass::Transient,
                "{transient}"
            );
        }
        for data in [1062, 1048, 1264, 1406, 1366, 3819, 1292, 4025] {
            assert_eq!(classify_number(data), RetryClass::Data, "{data}");
        }
        // Access denied, unknown table, unknown database, table access denied.
        for fatal in [1045, 1146, 1049, 1142] {
            assert_eq!(classify_number(fatal), RetryClass::Fatal, "{fatal}");
        }
    }

    #[test]
    fn only_mariadb_adds_a_column_if_not_exists() {
        assert!(MARIADB.add_column_if_not_exists());
        assert!(!MYSQL.add_column_if_not_exists());
    }
}
