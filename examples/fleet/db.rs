//! The target database of a fleet run: a fresh database on the test bed's
//! PostgreSQL or MariaDB, its two tables, and the few queries the run asks.

use anyhow::Context as _;
use sqlx::{MySqlPool, PgPool};

pub enum Db {
    Postgres { url: String, pool: PgPool },
    MariaDb { url: String, pool: MySqlPool },
}

const PG_ADMIN: &str = "postgres://tidemill:tidemill@127.0.0.1:5432/postgres";
const MY_ADMIN: &str = "mysql://tidemill:tidemill@127.0.0.1:3306/mysql";

impl Db {
    /// A new database `name` with the append table `events_log` (every record,
    /// stamped with the database's clock on insert) and the upsert table `totals`.
    pub async fn create(kind: &str, name: &str) -> anyhow::Result<Self> {
        let db = match kind {
            "postgres" => {
                let admin = PgPool::connect(PG_ADMIN)
                    .await
                    .context("PostgreSQL (make services-up)")?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await?;
                let url = PG_ADMIN.replace("/postgres", &format!("/{name}"));
                let pool = PgPool::connect(&url).await?;
                Db::Postgres { url, pool }
            }
            "mariadb" => {
                let admin = MySqlPool::connect(MY_ADMIN)
                    .await
                    .context("MariaDB (make services-up)")?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await?;
                let url = MY_ADMIN.replace("/mysql", &format!("/{name}"));
                let pool = MySqlPool::connect(&url).await?;
                Db::MariaDb { url, pool }
            }
            other => anyhow::bail!("--db {other}: use postgres or mariadb"),
        };
        let loaded_ms = match db {
            Db::Postgres { .. } => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            Db::MariaDb { .. } => "(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000))",
        };
        db.exec(&format!(
            "CREATE TABLE events_log (id BIGINT NOT NULL, k BIGINT NOT NULL, v BIGINT NOT NULL, \
             ts BIGINT NOT NULL, loaded_ms BIGINT NOT NULL DEFAULT {loaded_ms})"
        ))
        .await?;
        db.exec(
            "CREATE TABLE totals (k BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)",
        )
        .await?;
        Ok(db)
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Postgres { url, .. } | Db::MariaDb { url, .. } => url,
        }
    }

    pub async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        match self {
            Db::Postgres { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Db::MariaDb { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .with_context(|| sql.to_string())
    }

    /// Rows of two BIGINT columns.
    pub async fn pairs(&self, sql: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        match self {
            Db::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            Db::MariaDb { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .with_context(|| sql.to_string())
    }

    pub async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let b = self.bigint();
        let rows = self
            .pairs(&format!("SELECT CAST(({sql}) AS {b}), CAST(0 AS {b})"))
            .await?;
        Ok(rows.first().map_or(0, |r| r.0))
    }

    fn bigint(&self) -> &'static str {
        match self {
            Db::Postgres { .. } => "BIGINT",
            Db::MariaDb { .. } => "SIGNED",
        }
    }

    /// The exactly-once checkpoint (next offset) per partition of `pipeline`.
    pub async fn checkpoints(&self, pipeline: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        self.pairs(&format!(
            "SELECT CAST(partition_id AS {b}), next_offset FROM tidemill_offsets \
             WHERE pipeline = '{pipeline}' ORDER BY partition_id",
            b = self.bigint()
        ))
        .await
    }

    /// (produced ms, end-to-end ms) of the records produced in `[from, to)`.
    pub async fn latencies(&self, from: i64, to: i64) -> anyhow::Result<Vec<(i64, i64)>> {
        self.pairs(&format!(
            "SELECT ts, loaded_ms - ts FROM events_log WHERE ts >= {from} AND ts < {to}"
        ))
        .await
    }
}
