//! PostgreSQL bulk path: binary `COPY … FROM STDIN` inside the batch's
//! transaction.
//!
//! Contract:
//! - insert mode copies straight into the target table; upsert mode copies
//!   into a temporary staging table (`LIKE` the target, with its defaults;
//!   one per connection, emptied at commit, gone with a rollback of the
//!   transaction that created it) and then runs one
//!   `INSERT … SELECT … ON CONFLICT`. A stage that lacks a column the
//!   target gained (`auto_evolve`) is made again.
//! - [`payload`] encodes a batch only when every column's type and every value
//!   has an exact binary encoding ([`pg_binary`](super::binary)); otherwise
//!   it says why, and the caller uses the statement path for that batch.
//! - A value the server refuses during `COPY` is a data error
//!   ([`SinkError::Row`]) whose message carries PostgreSQL's `COPY` context,
//!   which names the line and the column.

use super::binary::{encode, PgType};
use crate::config::SinkMode;
use crate::ident::{column_list, on_conflict, TableName};
use crate::sink::error::classify;
use crate::sink::schema::TableSchema;
use crate::sink::{PreparedBatch, RetryClass, SinkError};
use sqlx::PgConnection;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const STAGE: &str = "pg_temp.tidemill_stage";

/// The column types of `columns` for the bulk path; `None` if one has no
/// binary encoder.
pub fn column_types(schema: &TableSchema, columns: &[String]) -> Option<Vec<PgType>> {
    columns
        .iter()
        .map(|c| PgType::from_format_type(&schema.column(c)?.data_type))
        .collect()
}

/// The batch as binary `COPY` data, or the first value that has no exact
/// binary encoding (column and reason).
pub fn payload(types: &[PgType], batch: &PreparedBatch) -> Result<Vec<u8>, String> {
    let data = &batch.data;
    // About 16 bytes per value: a 4-byte length and a short value.
    let mut out = Vec::with_capacity(data.values.len() * 16 + HEADER.len() + 2);
    out.extend_from_slice(HEADER);
    let fields = i16::try_from(types.len()).unwrap_or(i16::MAX);
    for (n, row) in data.rows().enumerate() {
        out.extend_from_slice(&fields.to_be_bytes());
        for ((column, ty), value) in batch.columns.iter().zip(types).zip(row) {
            if let Err(reason) = encode(*ty, Some(value), &mut out) {
                return Err(format!("column `{column}`, row {n}: {reason}"));
            }
        }
    }
    out.extend_from_slice(&(-1_i16).to_be_bytes());
    Ok(out)
}

/// Loads `data` (from [`payload`]) into the table inside the open
/// transaction; `newer` is the ordering guard's condition on the merge.
pub async fn load(
    conn: &mut PgConnection,
    table: &TableName,
    mode: SinkMode,
    keys: &[String],
    columns: &[String],
    newer: &str,
    data: Vec<u8>,
) -> Result<(), SinkError> {
    let cols = column_list(columns);
    let write_err = |source| SinkError::Write {
        table: table.to_string(),
        source,
    };
    let target = match mode {
        SinkMode::Insert => table.quoted(),
        SinkMode::Upsert => {
            ensure_stage(conn, table, columns)
                .await
                .map_err(write_err)?;
            STAGE.to_string()
        }
    };
    let copy = format!("COPY {target} ({cols}) FROM STDIN (FORMAT binary)");
    let mut copy_in = conn.copy_in_raw(&copy).await.map_err(write_err)?;
    if let Err(e) = copy_in.send(data).await {
        // The connection is in an unknown state; the transaction rolls back.
        let _ = copy_in.abort("tidemill: sending COPY data failed").await;
        return Err(write_err(e));
    }
    copy_in.finish().await.map_err(|e| copy_error(table, e))?;
    if mode == SinkMode::Upsert {
        let merge = format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {STAGE}{}{newer}",
            table.quoted(),
            on_conflict(keys, columns)
        );
        sqlx::query(&merge)
            .execute(&mut *conn)
            .await
            .map_err(write_err)?;
    }
    Ok(())
}

/// Creates this connection's staging table unless it exists with every one
/// of `columns` (after `auto_evolve` added a column to the target, an older
/// stage is dropped and made again). It is kept per connection and emptied at
/// commit (creating and dropping it in every batch churns the catalog and
/// measured slower); a rollback of the transaction that created it removes
/// it. Checked first rather than `IF NOT EXISTS`, whose notice would be
/// logged for every batch.
async fn ensure_stage(
    conn: &mut PgConnection,
    table: &TableName,
    columns: &[String],
) -> Result<(), sqlx::Error> {
    let present: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) \
         AND attnum > 0 AND NOT attisdropped AND attname::text = ANY($2)",
    )
    .bind(STAGE)
    .bind(columns)
    .fetch_one(&mut *conn)
    .await?;
    if usize::try_from(present).ok() == Some(columns.len()) {
        return Ok(());
    }
    if present > 0 {
        sqlx::query(&format!("DROP TABLE {STAGE}"))
            .execute(&mut *conn)
            .await?;
    }
    let create = format!(
        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        STAGE.trim_start_matches("pg_temp."),
        table.quoted()
    );
    sqlx::query(&create).execute(&mut *conn).await?;
    Ok(())
}

/// A data error during `COPY` keeps PostgreSQL's context (line and column).
fn copy_error(table: &TableName, source: sqlx::Error) -> SinkError {
    if classify(&source, &super::dialect::DIALECT) != RetryClass::Data {
        return SinkError::Write {
            table: table.to_string(),
            source,
        };
    }
    let context = match &source {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.r#where())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    SinkError::Row {
        table: table.to_string(),
        message: format!("{source}{context}"),
    }
}
