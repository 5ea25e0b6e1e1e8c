//! One batch's transaction, the same shape on every backend: begin, a
//! change stream's truncate, its key changes' copies, the batch's deletes (and with the ordering
//! guard their markers), its row parts in order (then the guard's check of
//! their keys against the markers, and now and then its pruning of old
//! markers), the keyed state's writes, then the checkpoint; committed, or rolled back when the caller only asks whether it
//! would pass (`commit = false`, the isolation of refused rows).
//!
//! Contract: nothing is visible until the commit, and the checkpoint is the
//! last statement, so offsets move only together with the rows and the state
//! they cover. The first error returns at once; the open transaction is then
//! dropped, which rolls it back. Each backend supplies only the statements
//! ([`Steps`]); the spans (`db.system`, the write and the commit) are made here.

use super::checkpoint::Checkpoint;
use super::{PreparedBatch, PreparedWrite, SinkError, Written};
use crate::config::SinkMode;
use crate::ident::TableName;
use crate::model::Move;
use crate::observe::trace;
use crate::state::store::StateWrites;
use sqlx::Transaction;
use std::future::Future;
use tracing::Instrument;

/// A backend's statements for [`run`].
pub(crate) trait Steps: Send {
    type Db: sqlx::Database;
    /// `db.system` of the spans.
    const SYSTEM: &'static str;

    fn pool(&self) -> &sqlx::Pool<Self::Db>;
    fn table(&self) -> &TableName;
    fn mode(&self) -> SinkMode;

    /// Empties the table (a change stream's truncate, as `DELETE`: it is
    /// transactional everywhere); answers how many rows it removed.
    fn truncate(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Copies each moved row to its new key (a primary-key change), unless
    /// a row has that key already (with the ordering guard: unless the row
    /// is newer than the change).
    fn moves(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
        moves: &[Move],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Runs the batch's deletes; answers how many rows they removed.
    fn delete(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
        keys: &PreparedBatch<'_>,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// The ordering guard: writes the markers of the batch's deletes.
    fn mark(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
        markers: &PreparedBatch<'_>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The ordering guard: deletes again the rows of these keys that a
    /// marker says were deleted after the change that wrote them.
    fn unrevive(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
        keys: &PreparedBatch<'_>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The ordering guard: forgets the markers older than its retention,
    /// when that is due ([`super::order::Guard::prune_due`]).
    fn prune(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes one part of the batch's rows.
    fn part(
        &mut self,
        tx: &mut Transaction<'static, Self::Db>,
        part: &PreparedBatch<'_>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes the keyed state's changes.
    fn state(
        &self,
        tx: &mut Transaction<'static, Self::Db>,
        state: &StateWrites,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Advances the checkpoint (fencing a stale generation).
    fn checkpoint(
        &self,
        tx: &mut Transaction<'static, Self::Db>,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// The transaction of one batch (see the module's contract); answers the
/// number of rows the deletes removed and how long the commit took.
pub(crate) async fn run<S: Steps>(
    steps: &mut S,
    batch: &PreparedWrite<'_>,
    checkpoint: Option<&Checkpoint>,
    state: Option<&StateWrites>,
    commit: bool,
) -> Result<Written, SinkError> {
    if batch.is_empty() && checkpoint.is_none() && state.is_none_or(StateWrites::is_empty) {
        return Ok(Written::default());
    }
    let table = steps.table().to_string();
    let write_err = |source| SinkError::Write {
        table: table.clone(),
        source,
    };
    let span = trace::db_write_span(S::SYSTEM, steps.mode(), &table, batch.rows());
    let pool = steps.pool().clone();
    let mut tx = pool
        .begin()
        .instrument(span.clone())
        .await
        .map_err(write_err)?;
    let deleted = statements(steps, &mut tx, batch, checkpoint, state)
        .instrument(span)
        .await?;
    let started = std::time::Instant::now();
    if commit {
        let span = trace::db_commit_span(S::SYSTEM, &table);
        tx.commit().instrument(span).await.map_err(write_err)?;
    } else {
        tx.rollback().await.map_err(write_err)?;
        return Ok(Written {
            deleted,
            commit: std::time::Duration::ZERO,
        });
    }
    Ok(Written {
        deleted,
        commit: started.elapsed(),
    })
}

/// The statements of one batch inside its open transaction, in the
/// contract's order; answers the rows the truncate and deletes removed.
async fn statements<S: Steps>(
    steps: &mut S,
    tx: &mut Transaction<'static, S::Db>,
    batch: &PreparedWrite<'_>,
    checkpoint: Option<&Checkpoint>,
    state: Option<&StateWrites>,
) -> Result<u64, SinkError> {
    let mut deleted = 0;
    if batch.truncate {
        deleted += steps.truncate(tx).await?;
    }
    if !batch.moves.is_empty() {
        steps.moves(tx, batch.moves).await?;
    }
    if let Some(keys) = &batch.deletes {
        deleted += steps.delete(tx, keys).await?;
    }
    if let Some(markers) = &batch.markers {
        steps.mark(tx, markers).await?;
    }
    for part in &batch.parts {
        steps.part(tx, part).await?;
    }
    if let Some(keys) = &batch.revive {
        steps.unrevive(tx, keys).await?;
    }
    if batch.markers.is_some() || batch.revive.is_some() {
        steps.prune(tx).await?;
    }
    if let Some(state) = state {
        steps.state(tx, state).await?;
    }
    if let Some(checkpoint) = checkpoint {
        steps.checkpoint(tx, checkpoint).await?;
    }
    Ok(deleted)
}
