//! One database, one folder. Each backend implements [`Sink`] (rows, through
//! the shared transaction sequence in [`crate::sink::transact`]), its
//! checkpoint table ([`crate::sink::checkpoint::OffsetTable`]) and its state
//! table ([`crate::state::StateTable`]) in its own folder, and supplies only
//! its statements; everything above — the writer, retries, isolation of bad
//! rows, exactly-once — is written once and drives a `Box<dyn Sink>`.
//!
//! Contract: [`open`] is the only place that knows which backends exist. It
//! connects, reads (or creates) the target table and checks it against the
//! config, so a pipeline starts only against a table it can write. Adding a
//! database is adding a folder and one line there.

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use crate::config::{Backend, SinkConfig};
use crate::sink::{types, Sink, SinkError};

/// Connects to the database the sink's URL names and reads the target
/// table's schema. Problems with the table (missing, key columns absent,
/// type overrides that do not fit) are `Schema`/`MissingTable` errors.
pub async fn open(cfg: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    let Some(backend) = cfg.backend() else {
        return Err(SinkError::Schema {
            table: cfg.table.clone(),
            message: "unsupported database URL scheme".into(),
        });
    };
    let sink: Box<dyn Sink> = match backend {
        Backend::Postgres => Box::new(postgres::PostgresSink::open(cfg).await?),
        Backend::Sqlite => Box::new(sqlite::SqliteSink::open(cfg).await?),
        Backend::MySql => Box::new(mysql::MySqlSink::open(cfg).await?),
    };
    let mut problems = sink.schema().check(cfg.mode, &cfg.key_columns);
    problems.extend(types::check_overrides(sink.schema(), cfg, backend.into()));
    if !problems.is_empty() {
        return Err(SinkError::Schema {
            table: cfg.table.clone(),
            message: problems.join("; "),
        });
    }
    Ok(sink)
}
