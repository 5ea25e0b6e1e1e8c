//! Sink errors, each with where it happened and whether to retry.

use super::dialect::Dialect;
pub use super::dialect::RetryClass;

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
    /// Whether to retry, as `dialect` — the database the error came from —
    /// classifies what the database itself reported.
    pub fn class(&self, dialect: &dyn Dialect) -> RetryClass {
        match self {
            SinkError::Row { .. } => RetryClass::Data,
            // A driver's error is classified; everything else — a fence, a
            // batch already committed (the writer takes it as written), TLS,
            // a missing or unusable table, a state that cannot be read —
            // cannot be helped by retrying.
            _ => self
                .sql()
                .map_or(RetryClass::Fatal, |source| classify(source, dialect)),
        }
    }

    /// The driver's error behind this one, if any.
    pub fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            SinkError::Connect { source, .. }
            | SinkError::Describe { source, .. }
            | SinkError::Write { source, .. }
            | SinkError::Checkpoint { source } => Some(source),
            SinkError::State(e) => e.sql(),
            _ => None,
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

/// Classifies a driver error: the connection's failures here, what the
/// database itself reported by `dialect` (SQLSTATE, error number, result code).
pub fn classify(err: &sqlx::Error, dialect: &dyn Dialect) -> RetryClass {
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
        sqlx::Error::Database(db) => dialect.classify(db.as_ref()),
        _ => RetryClass::Fatal,
    }
}

/// Whether `err` says the column exists already (another member added it first).
pub fn is_duplicate_column(err: &sqlx::Error, dialect: &dyn Dialect) -> bool {
    match err {
        sqlx::Error::Database(db) => dialect.is_duplicate_column(db.as_ref()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::postgres::dialect::DIALECT;

    #[test]
    fn a_state_table_error_retries_as_its_database_error_does_and_a_bad_state_never() {
        use crate::state::StateError;
        let away = StateError::Store {
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(SinkError::from(away).class(&DIALECT), RetryClass::Transient);
        let unreadable = StateError::Format {
            operator: "totals".into(),
            message: "expected a map".into(),
        };
        let e = SinkError::from(unreadable);
        assert_eq!(e.class(&DIALECT), RetryClass::Fatal);
        assert!(e.to_string().contains("operator totals"), "{e}");
    }

    #[test]
    fn io_errors_are_transient() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&err, &DIALECT), RetryClass::Transient);
    }
}
