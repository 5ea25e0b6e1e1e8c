//! Real databases for tests: a fresh PostgreSQL or MariaDB database on the
//! shared server, a fresh SQLite file, or a private PostgreSQL server a test
//! may stop and start (`private_postgres.rs`).

use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{MySqlPool, PgPool, SqlitePool};

pub fn admin_url() -> String {
    std::env::var("TIDEMILL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://tidemill:tidemill@127.0.0.1:5432/postgres".into())
}

pub fn mysql_admin_url() -> String {
    std::env::var("TIDEMILL_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://tidemill:tidemill@127.0.0.1:3306/mysql".into())
}

/// Which database a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
    MariaDb,
}

pub enum TestDb {
    Postgres {
        url: String,
        pool: PgPool,
    },
    Sqlite {
        url: String,
        pool: SqlitePool,
        _dir: tempfile::TempDir,
    },
    MySql {
        url: String,
        pool: MySqlPool,
    },
}

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Postgres => Self::postgres().await,
            Kind::Sqlite => Self::sqlite().await,
            Kind::MariaDb => Self::mariadb().await,
        }
    }

    /// A new database on the shared MariaDB server.
    pub async fn mariadb() -> Self {
        let name = super::unique("tm");
        let admin = MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&mysql_admin_url())
            .await
            .expect("connect to the test MariaDB (make services-up)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let admin_url = mysql_admin_url();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Self::mysql_at(format!("{base}/{name}")).await
    }

    pub fn kind(&self) -> Kind {
        match self {
            TestDb::Postgres { .. } => Kind::Postgres,
            TestDb::Sqlite { .. } => Kind::Sqlite,
            TestDb::MySql { .. } => Kind::MariaDb,
        }
    }

    /// Rewrites the few spellings the tests use that MySQL/MariaDB spell
    /// differently: `CAST(… AS BIGINT)` is `CAST(… AS SIGNED)` there.
    pub fn dialect(&self, sql: &str) -> String {
        match self {
            TestDb::MySql { .. } => sql.replace(" AS BIGINT)", " AS SIGNED)"),
            _ => sql.to_string(),
        }
    }

    /// A new database on the shared test server.
    pub async fn postgres() -> Self {
        let name = super::unique("tm");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url())
            .await
            .expect("connect to the test PostgreSQL (make services-up)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let url = admin_url().replace("/postgres", &format!("/{name}"));
        Self::postgres_at(url).await
    }

    /// A pool of one connection to `url`, opened now (it stays open while
    /// the server refuses new ones).
    pub async fn one_connection(kind: Kind, url: &str) -> Self {
        let url = url.to_string();
        match kind {
            Kind::Postgres => TestDb::Postgres {
                pool: PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .expect("connect"),
                url,
            },
            Kind::MariaDb => TestDb::MySql {
                pool: MySqlPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .expect("connect"),
                url,
            },
            Kind::Sqlite => panic!("one_connection is for servers"),
        }
    }

    /// A MySQL/MariaDB database that exists already (e.g. on a private server).
    pub async fn mysql_at(url: String) -> Self {
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("connect to test database");
        TestDb::MySql { url, pool }
    }

    pub async fn postgres_at(url: String) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("connect to test database");
        TestDb::Postgres { url, pool }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let pool = tidemill::db::sqlite::connect(&url).await.expect("sqlite");
        TestDb::Sqlite {
            url,
            pool,
            _dir: dir,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Postgres { url, .. }
            | TestDb::Sqlite { url, .. }
            | TestDb::MySql { url, .. } => url,
        }
    }

    pub async fn exec(&self, sql: &str) {
        let sql = &self.dialect(sql);
        match self {
            TestDb::MySql { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            TestDb::Postgres { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            TestDb::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Rows of two integer columns, e.g. `SELECT id, v FROM t ORDER BY id`.
    pub async fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        let sql = &self.dialect(sql);
        match self {
            TestDb::MySql { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            TestDb::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            TestDb::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of four integer columns.
    pub async fn quads(&self, sql: &str) -> Vec<(i64, i64, i64, i64)> {
        let sql = &self.dialect(sql);
        match self {
            TestDb::MySql { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            TestDb::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            TestDb::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of one text column, for a failure's diagnosis; empty when the query fails.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        let sql = &self.dialect(sql);
        match self {
            TestDb::MySql { pool, .. } => sqlx::query_scalar(sql).fetch_all(pool).await,
            TestDb::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_all(pool).await,
            TestDb::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_default()
    }

    /// One integer, e.g. `SELECT count(*) FROM t`. `None` when the database is unreachable.
    pub async fn try_scalar(&self, sql: &str) -> Option<i64> {
        // PostgreSQL's sum(bigint) is numeric; a cast keeps one decoding path.
        let sql = &self.dialect(&format!("SELECT CAST(({sql}) AS BIGINT)"));
        match self {
            TestDb::MySql { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
            TestDb::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
            TestDb::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .ok()
    }

    /// The highest exactly-once checkpoint in `tidemill_offsets` (the next
    /// offset to read); 0 when there is none yet.
    pub async fn checkpoint_next(&self) -> i64 {
        self.try_scalar("SELECT max(next_offset) FROM tidemill_offsets")
            .await
            .filter(|o| *o >= 0)
            .unwrap_or(0)
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        self.try_scalar(sql)
            .await
            .unwrap_or_else(|| panic!("{sql} failed"))
    }
}

/// Blocks writes to `table` until released, on any backend: a transaction
/// holding PostgreSQL's table lock, MariaDB's row and gap locks on every row
/// (`SELECT … FOR UPDATE`; readers are not blocked), or SQLite's write lock
/// on the whole file (`BEGIN EXCLUSIVE`; under WAL readers still read).
pub struct TableLock {
    conn: Held,
}

enum Held {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl TableLock {
    pub async fn take(db: &TestDb, table: &str) -> Self {
        use sqlx::Connection;
        let url = db.url();
        let conn = match db.kind() {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
                for sql in [
                    "BEGIN".to_string(),
                    format!("LOCK TABLE {table} IN EXCLUSIVE MODE"),
                ] {
                    sqlx::query(&sql).execute(&mut c).await.expect(&sql);
                }
                Held::Postgres(c)
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(url).await.expect("connect");
                for sql in [
                    "BEGIN".to_string(),
                    format!("SELECT * FROM {table} FOR UPDATE"),
                ] {
                    sqlx::query(&sql).fetch_all(&mut c).await.expect(&sql);
                }
                Held::MySql(c)
            }
            Kind::Sqlite => return Self::sqlite_file(url).await,
        };
        Self { conn }
    }

    /// SQLite's write lock on the whole file (its only kind of lock).
    pub async fn sqlite_file(url: &str) -> Self {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut c)
            .await
            .expect("BEGIN EXCLUSIVE");
        Self {
            conn: Held::Sqlite(c),
        }
    }

    pub async fn release(self) {
        match self.conn {
            Held::Postgres(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(|_| ()),
            Held::MySql(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(|_| ()),
            Held::Sqlite(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(|_| ()),
        }
        .expect("commit");
    }
}

/// Statements of `table`'s writers now waiting for a lock, as the database
/// shows them; `None` on SQLite, which does not show its waiters.
pub async fn lock_waiters(db: &TestDb, table: &str) -> Option<i64> {
    let sql = match db.kind() {
        Kind::Postgres => format!(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'INSERT INTO \"{table}\"%'"
        ),
        Kind::MariaDb => format!(
            "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' \
             AND trx_query LIKE 'INSERT INTO `{table}`%'"
        ),
        Kind::Sqlite => return None,
    };
    Some(db.try_scalar(&sql).await.unwrap_or(0))
}

/// The test database's sessions and what each waits for (PostgreSQL), or its
/// open transactions (MariaDB): what a timed-out wait on a lock scenario shows.
pub async fn sessions(db: &TestDb) -> String {
    let sql = match db.kind() {
        Kind::Postgres => {
            "SELECT pid || ' ' || coalesce(state, '') || ' ' || coalesce(wait_event_type, '') \
             || ' ' || coalesce(wait_event, '') || ' ' || left(query, 160) \
             FROM pg_stat_activity WHERE datname = current_database()"
        }
        Kind::MariaDb => {
            "SELECT CONCAT(trx_id, ' ', trx_state, ' ', COALESCE(LEFT(trx_query, 160), '')) \
             FROM information_schema.innodb_trx"
        }
        Kind::Sqlite => return String::new(),
    };
    db.texts(sql).await.join("\n")
}
