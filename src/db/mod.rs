//! One database, one folder. Each backend implements [`Sink`] (rows, through
//! the shared transaction sequence in [`crate::sink::transact`]), its
//! checkpoint table ([`crate::sink::checkpoint::OffsetTable`]) and its state
//! table ([`crate::state::StateTable`]) in its own folder, and supplies only
//! its statements; everything above — the writer, retries, isolation of bad
//! rows, exactly-once — is written once and drives a `Box<dyn Sink>`.
//!
//! Contract: [`open`] is the only place that knows which backends exist. It
//! connects, reads (or creates) the target table and checks it against the
//! config, so a pipeline starts only against a table it can write.
//! [`BACKENDS`] is the only list of databases: adding one is adding a folder
//! (its sink, checkpoint and state tables, and its [`Dialect`]) and one entry there.

/// Implements [`Sink`] for a backend's sink type (fields `pool` and
/// `schema`; an inherent `async fn evolve(&mut self, fields)`): the shared
/// transaction sequence over its `Steps`, and its checkpoint and state tables
/// next to the target table, quoted in its `dialect` (a field). The backend's
/// own `checkpoint` and `state` modules supply them.
macro_rules! sink_impl {
    ($ty:ty) => {
        impl $crate::sink::Sink for $ty {
            fn transact<'a>(
                &'a mut self,
                batch: &'a $crate::sink::PreparedWrite<'_>,
                checkpoint: Option<&'a $crate::sink::checkpoint::Checkpoint>,
                state: Option<&'a $crate::state::StateWrites>,
                commit: bool,
            ) -> $crate::model::BoxFuture<'a, Result<$crate::sink::Written, $crate::sink::SinkError>> {
                Box::pin($crate::sink::transact::run(
                    self, batch, checkpoint, state, commit,
                ))
            }

            fn add_columns<'a>(
                &'a mut self,
                fields: &'a [(String, $crate::sink::ddl::Inferred)],
            ) -> $crate::model::BoxFuture<'a, Result<(), $crate::sink::SinkError>> {
                Box::pin(self.evolve(fields))
            }

            fn schema(&self) -> &$crate::sink::schema::TableSchema {
                &self.schema
            }

            fn dialect(&self) -> &'static dyn $crate::sink::dialect::Dialect {
                self.dialect
            }

            fn state_store(&self) -> $crate::state::StateStore {
                let table = self
                    .schema
                    .table
                    .sibling($crate::state::store::TABLE, self.dialect.quoting());
                state::store(self.pool.clone(), table)
            }

            fn offset_store(&self) -> $crate::sink::checkpoint::OffsetStore {
                std::sync::Arc::new(checkpoint::Offsets {
                    pool: self.pool.clone(),
                    table: self
                        .schema
                        .table
                        .sibling($crate::sink::checkpoint::TABLE, self.dialect.quoting()),
                })
            }
        }
    };
}

/// Implements the transaction's [`crate::sink::transact::Steps`] for a
/// backend's sink type: its pool, table and mode, its own `delete_rows` and
/// `write_part` (inherent async fns), and the state and checkpoint writes
/// of its `state` and `checkpoint` modules on the tables next to the target.
macro_rules! steps_impl {
    ($ty:ty, $db:ty) => {
        impl $crate::sink::transact::Steps for $ty {
            type Db = $db;
            const SYSTEM: &'static str = SYSTEM;

            fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            fn table(&self) -> &$crate::ident::TableName {
                &self.schema.table
            }

            fn mode(&self) -> $crate::config::SinkMode {
                self.mode
            }

            async fn truncate(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> Result<u64, $crate::sink::SinkError> {
                let table = self.schema.table.quoted_in(self.dialect.quoting());
                let sql = format!("DELETE FROM {table}");
                sqlx::query(&sql)
                    .execute(&mut **tx)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|source| $crate::sink::SinkError::Write {
                        table: self.schema.table.to_string(),
                        source,
                    })
            }

            async fn delete(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
                keys: &$crate::sink::PreparedBatch<'_>,
            ) -> Result<u64, $crate::sink::SinkError> {
                self.delete_rows(tx, keys).await
            }

            async fn part(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
                part: &$crate::sink::PreparedBatch<'_>,
            ) -> Result<(), $crate::sink::SinkError> {
                self.write_part(tx, part).await
            }

            async fn moves(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
                moves: &[$crate::model::Move],
            ) -> Result<(), $crate::sink::SinkError> {
                for m in moves {
                    self.move_row(tx, m).await?;
                }
                Ok(())
            }

            async fn mark(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
                markers: &$crate::sink::PreparedBatch<'_>,
            ) -> Result<(), $crate::sink::SinkError> {
                self.guarded(tx, markers, $crate::sink::order::GuardStep::Mark)
                    .await
            }

            async fn unrevive(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
                keys: &$crate::sink::PreparedBatch<'_>,
            ) -> Result<(), $crate::sink::SinkError> {
                self.guarded(tx, keys, $crate::sink::order::GuardStep::Unrevive)
                    .await
            }

            async fn prune(
                &mut self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> Result<(), $crate::sink::SinkError> {
                let Some(guard) = &mut self.guard else {
                    return Ok(());
                };
                let now_ms = $crate::state::time::now_ms();
                let Some(before_ms) = guard.prune_due(std::time::Instant::now(), now_ms) else {
                    return Ok(());
                };
                let q = self.dialect.quoting();
                let sql = guard.prune_sql(q, PARAM);
                sqlx::query(&sql)
                    .bind(before_ms)
                    .execute(&mut **tx)
                    .await
                    .map(|_| ())
                    .map_err(|source| $crate::sink::SinkError::Write {
                        table: guard.markers.to_string(),
                        source,
                    })
            }

            async fn state(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                writes: &$crate::state::StateWrites,
            ) -> Result<(), $crate::sink::SinkError> {
                let table = self
                    .schema
                    .table
                    .sibling($crate::state::store::TABLE, self.dialect.quoting());
                Ok(state::write(tx, &table, writes).await?)
            }

            async fn checkpoint(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                checkpoint: &$crate::sink::checkpoint::Checkpoint,
            ) -> Result<(), $crate::sink::SinkError> {
                let table = self
                    .schema
                    .table
                    .sibling($crate::sink::checkpoint::TABLE, self.dialect.quoting());
                checkpoint::advance(tx, &table, checkpoint).await
            }
        }
    };
}

/// A folder's entry in [`BACKENDS`]: the URL schemes that name its
/// database, its [`Dialect`], and its sink type's inherent `open`.
macro_rules! backend {
    ($sink:ident, $dialect:expr, $($scheme:literal),+) => {
        /// This folder's entry in [`super::BACKENDS`].
        pub const BACKEND: super::Backend = super::Backend {
            schemes: &[$($scheme),+],
            dialect: $dialect,
            open: |cfg| {
                Box::pin(async move {
                    let sink: Box<dyn $crate::sink::Sink> = Box::new($sink::open(cfg).await?);
                    Ok(sink)
                })
            },
        };
    };
}

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use crate::config::SinkConfig;
use crate::model::BoxFuture;
use crate::sink::dialect::Dialect;
use crate::sink::{types, Sink, SinkError};

/// A database tidemill writes to: the URL schemes that name it, its SQL,
/// and how a sink on it is opened. Each folder supplies one.
pub struct Backend {
    /// URL prefixes, e.g. `postgres://`.
    pub schemes: &'static [&'static str],
    pub dialect: &'static dyn Dialect,
    pub open: Open,
}

/// Opens a sink on the table `cfg` names.
pub type Open = for<'a> fn(&'a SinkConfig) -> BoxFuture<'a, Result<Box<dyn Sink>, SinkError>>;

/// Every database tidemill writes to: the only list.
pub const BACKENDS: [&Backend; 3] = [&postgres::BACKEND, &mysql::BACKEND, &sqlite::BACKEND];

/// The backend `url` names by its scheme.
pub fn backend_for(url: &str) -> Option<&'static Backend> {
    BACKENDS
        .into_iter()
        .find(|b| b.schemes.iter().any(|s| url.starts_with(s)))
}

/// The schemes tidemill accepts, for messages: `postgres://, …`.
pub fn schemes() -> String {
    BACKENDS
        .iter()
        .flat_map(|b| b.schemes.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connects to the database the sink's URL names and reads the target
/// table's schema. Problems with the table (missing, key columns absent,
/// type overrides that do not fit) are `Schema`/`MissingTable` errors.
pub async fn open(cfg: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    let Some(backend) = backend_for(cfg.url.expose()) else {
        return Err(SinkError::Schema {
            table: cfg.table.clone(),
            message: format!("unsupported database URL scheme; use {}", schemes()),
        });
    };
    let sink = (backend.open)(cfg).await?;
    let mut problems = sink.schema().check(cfg.mode, &cfg.key_columns);
    problems.extend(types::check_overrides(
        sink.schema(),
        cfg,
        sink.dialect().target(),
    ));
    if !problems.is_empty() {
        return Err(SinkError::Schema {
            table: cfg.table.clone(),
            message: problems.join("; "),
        });
    }
    Ok(sink)
}
