//! Connection pool settings shared by the networked backends.
//!
//! sqlx pings a connection on every acquire by default: one extra round trip
//! per batch transaction and per state load. A connection that was in use
//! within the last [`PING_AFTER_IDLE`] is handed out without the ping; an
//! older idle one is pinged first and replaced if the server hung up. A
//! connection that breaks in between fails its statement with an I/O error,
//! which is transient: the batch rolls back and is retried, and a connection
//! whose transaction could not be rolled back is closed, not reused.

use crate::config::SinkConfig;
use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Idle time after which a connection is pinged before use.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How long an acquire waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool with `options`. The pool retries a failed connection until
/// its acquire timeout and then says only "pool timed out": on that, one
/// direct attempt finds the reason (refused, unknown host, bad password).
pub async fn connect<DB: sqlx::Database>(
    pool: PoolOptions<DB>,
    options: <DB::Connection as Connection>::Options,
) -> Result<sqlx::Pool<DB>, sqlx::Error> {
    match pool.connect_with(options.clone()).await {
        Err(sqlx::Error::PoolTimedOut) => match options.connect().await {
            Ok(conn) => {
                // It works now: the pool will too, on the pipeline's retry.
                let _ = conn.close().await;
                Err(sqlx::Error::PoolTimedOut)
            }
            Err(reason) => Err(reason),
        },
        other => other,
    }
}

/// Pool options for a sink's connections.
pub fn options<DB: sqlx::Database>(cfg: &SinkConfig) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(ping_if_idle::<DB::Connection>)
}

type Check<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

fn ping_if_idle<C: Connection>(conn: &mut C, meta: PoolConnectionMetadata) -> Check<'_> {
    Box::pin(async move {
        if meta.idle_for >= PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(true)
    })
}
