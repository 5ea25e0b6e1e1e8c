//! Sink errors, each with where it happened and whether to retry.

use sqlx::error::ErrorKind;

/// What the writer does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Connection lost, timeout, serialization failure, deadlock, failover:
    /// retry the same batch with backoff; nothing is committed meanwhile.
    Transient,
    /// The rows themselves are at fault (constraint, invalid value).
    Data,
    /// Authentication, missing table, permission: retrying cannot help.
    Fatal,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("connecting to {url} (sink.url): {source}")]
    Connect { url: String, source: sqlx::Error },
    /// A certificate or key the URL names, or the handshake, cannot work.
    /// (The driver's error is part of the message, not a `source`, so an
    /// error chain does not repeat it.)
    #[error("connecting to {url} (sink.url): {problem} ({driver})")]
    Tls {
        url: String,
        problem: &'static str,
        driver: Box<sqlx::Error>,
    },
    #[error("connecting to {url} (sink.url): {file}")]
    TlsFile {
        url: String,
        file: Box<super::tls::FileError>,
    },
    #[error("reading the schema of table {table}: {source}")]
    Describe { table: String, source: sqlx::Error },
    #[error("table {table} does not exist")]
    MissingTable { table: String },
    #[error("table {table}: {message}")]
    Schema { table: String, message: String },
    #[error("writing batch to {table}: {source}")]
    Write { table: String, source: sqlx::Error },
    #[error("row for {table} rejected: {message}")]
    Row { table: String, message: String },
    #[error("exactly-once checkpoint table: {source}")]
    Checkpoint { source: sqlx::Error },
    /// The keyed state, loaded, applied or written with the batch.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Another member claimed these partitions since this batch was built.
    #[error("batch fenced: partitions {partitions} were claimed by a newer generation")]
    Fenced { partitions: String },
    /// The batch's checkpoint is already past it under its own generation:
    /// an earlier attempt committed and only its answer was lost. The writer
    /// takes the batch as written; this attempt is rolled back.
    #[error("batch already committed: the checkpoints of {partitions} are past it")]
    AlreadyCommitted { partitions: String },
}

impl SinkError {
    pub fn class(&self) -> RetryClass {
        match self {
            SinkError::Connect { source, .. }
            | SinkError::Describe { source, .. }
            | SinkError::Write { source, .. }
            | SinkError::Checkpoint { source } => classify(source),
            SinkError::State(e) => e.sql().map_or(RetryClass::Fatal, classify),
            SinkError::Fenced { .. } => RetryClass::Fatal,
            // Never retried: the writer takes it as the batch written.
            SinkError::AlreadyCommitted { .. } => RetryClass::Fatal,
            SinkError::Tls { .. } | SinkError::TlsFile { .. } => RetryClass::Fatal,
            SinkError::MissingTable { .. } | SinkError::Schema { .. } => RetryClass::Fatal,
            SinkError::Row { .. } => RetryClass::Data,
        }
    }
}

/// The error for a failed connection: a TLS failure retrying cannot fix is
/// said in words ([`super::tls::explain`]); anything else keeps its class.
pub fn connect_error(url: String, source: sqlx::Error) -> SinkError {
    let explained =
        super::tls::explain(&source).or_else(|| super::tls::explain_reset(&url, &source));
    match explained {
        Some(problem) => SinkError::Tls {
            url,
            problem,
            driver: Box::new(source),
        },
        None => SinkError::Connect { url, source },
    }
}

/// Classifies a driver error by SQLSTATE (PostgreSQL), error number (MySQL,
/// MariaDB), result code (SQLite) or kind.
pub fn classify(err: &sqlx::Error) -> RetryClass {
    if super::tls::explain(err).is_some() {
        // A certificate nobody trusts stays untrusted: fail loudly instead.
        return RetryClass::Fatal;
    }
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => RetryClass::Transient,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // 55000 at connection start: the database is closed to new
                // connections for now (ALTER DATABASE … ALLOW_CONNECTIONS
                // false, maintenance): it will open again.
                if code == "55000" && db.message().contains("not currently accepting connections") {
                    return RetryClass::Transient;
                }
                classify_sqlstate(&code)
            } else if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                classify_mysql(my.number())
            } else {
                classify_sqlite(&code, db.kind())
            }
        }
        _ => RetryClass::Fatal,
    }
}

/// Whether `err` says the column exists already (another member added it
/// first): PostgreSQL 42701, MySQL/MariaDB 1060, SQLite "duplicate column name".
pub fn is_duplicate_column(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return my.number() == 1060;
            }
            db.code().as_deref() == Some("42701") || db.message().contains("duplicate column name")
        }
        _ => false,
    }
}

/// SQLite result codes; the primary code is the low byte of an extended code.
fn classify_sqlite(code: &str, kind: ErrorKind) -> RetryClass {
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

/// MySQL/MariaDB server error numbers (shared by both unless noted).
fn classify_mysql(number: u16) -> RetryClass {
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

fn classify_sqlstate(code: &str) -> RetryClass {
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
    fn postgres_sqlstates_are_classified() {
        for transient in ["40001", "40P01", "08006", "57P01", "53300", "25006"] {
            assert_eq!(
                classify_sqlstate(transient),
                RetryClass::Transient,
                "{transient}"
            );
        }
        for data in ["23505", "22P02", "22003"] {
            assert_eq!(classify_sqlstate(data), RetryClass::Data, "{data}");
        }
        for fatal in ["28P01", "42P01", "42501"] {
            assert_eq!(classify_sqlstate(fatal), RetryClass::Fatal, "{fatal}");
        }
    }

    #[test]
    fn sqlite_codes_are_classified() {
        assert_eq!(
            classify_sqlite("5", ErrorKind::Other),
            RetryClass::Transient
        );
        assert_eq!(
            classify_sqlite("517", ErrorKind::Other),
            RetryClass::Transient
        );
        assert_eq!(
            classify_sqlite("2067", ErrorKind::UniqueViolation),
            RetryClass::Data
        );
        assert_eq!(classify_sqlite("1", ErrorKind::Other), RetryClass::Fatal);
    }

    #[test]
    fn mysql_numbers_are_classified() {
        for transient in [1213, 1205, 2006, 2013, 1927, 1040] {
            assert_eq!(
                classify_mysql(transient),
                RetryClass::Transient,
                "{transient}"
            );
        }
        for data in [1062, 1048, 1264, 1406, 1366, 3819, 1292, 4025] {
            assert_eq!(classify_mysql(data), RetryClass::Data, "{data}");
        }
        // Access denied, unknown table, unknown database, table access denied.
        for fatal in [1045, 1146, 1049, 1142] {
            assert_eq!(classify_mysql(fatal), RetryClass::Fatal, "{fatal}");
        }
    }

    #[test]
    fn a_state_table_error_retries_as_its_database_error_does_and_a_bad_state_never() {
        use crate::state::StateError;
        let away = StateError::Store {
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(SinkError::from(away).class(), RetryClass::Transient);
        let unreadable = StateError::Format {
            operator: "totals".into(),
            message: "expected a map".into(),
        };
        let e = SinkError::from(unreadable);
        assert_eq!(e.class(), RetryClass::Fatal);
        assert!(e.to_string().contains("operator totals"), "{e}");
    }

    #[test]
    fn io_errors_are_transient() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&err), RetryClass::Transient);
    }
}
