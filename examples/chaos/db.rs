//! The run's database, PostgreSQL, MariaDB or SQLite, through the few queries the
//! soak asks: every value read as BIGINT.

use sqlx::{Connection as _, MySqlConnection, PgConnection, Row as _, SqliteConnection};

pub enum Db {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Db {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("mysql:") {
            Db::My(MySqlConnection::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Db::Lite(SqliteConnection::connect(url).await?)
        } else {
            Db::Pg(PgConnection::connect(url).await?)
        })
    }

    /// `expr` cast to a 64-bit integer in this database's SQL.
    pub fn bigint(&self, expr: &str) -> String {
        match self {
            Db::Pg(_) => format!("CAST({expr} AS BIGINT)"),
            Db::My(_) => format!("CAST({expr} AS SIGNED)"),
            Db::Lite(_) => format!("CAST({expr} AS INTEGER)"),
        }
    }

    pub async fn exec(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Db::Pg(c) => sqlx::query(sql).execute(c).await.map(|_| ())?,
            Db::My(c) => sqlx::query(sql).execute(c).await.map(|_| ())?,
            Db::Lite(c) => sqlx::query(sql).execute(c).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Every row of `sql`, each column read as i64 (cast them in the SQL).
    pub async fn rows(&mut self, sql: &str) -> anyhow::Result<Vec<Vec<i64>>> {
        Ok(match self {
            Db::Pg(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get::<i64, _>(i)).collect())
                .collect::<Result<_, _>>()?,
            Db::My(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get::<i64, _>(i)).collect())
                .collect::<Result<_, _>>()?,
            Db::Lite(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get::<i64, _>(i)).collect())
                .collect::<Result<_, _>>()?,
        })
    }
}
