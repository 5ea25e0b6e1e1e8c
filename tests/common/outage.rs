//! A database a test can take away and give back, on every backend: a
//! private PostgreSQL or MariaDB server (stopped and started, or refusing
//! tidemill's new connections), or a SQLite file another writer holds locked
//! past tidemill's busy timeout (SQLite has no server; a held lock is its
//! outage, and readers still read under WAL).

use super::db::{Kind, TableLock, TestDb};
use super::private_mariadb::PrivateMariaDb;
use super::private_postgres::PrivatePostgres;
use super::unique;

pub struct OutageDb {
    db: TestDb,
    server: Server,
}

enum Server {
    Postgres(PrivatePostgres),
    MariaDb(PrivateMariaDb),
    Sqlite(Option<TableLock>),
}

impl OutageDb {
    /// A fresh database of `kind` on a server of this test's own.
    pub async fn start(kind: Kind) -> Self {
        match kind {
            Kind::Postgres => {
                let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
                    .await
                    .expect("private postgres");
                let admin = TestDb::postgres_at(pg.url()).await;
                let name = unique("tm");
                admin.exec(&format!("CREATE DATABASE {name}")).await;
                let db =
                    TestDb::postgres_at(pg.url().replace("/postgres", &format!("/{name}"))).await;
                Self {
                    db,
                    server: Server::Postgres(pg),
                }
            }
            Kind::MariaDb => {
                let name = unique("tm");
                let my = tokio::task::spawn_blocking({
                    let name = name.clone();
                    move || {
                        let my = PrivateMariaDb::start();
                        my.admin_sql(&format!("CREATE DATABASE {name}"));
                        my
                    }
                })
                .await
                .expect("private mariadb");
                let db = TestDb::mysql_at(my.url(&name)).await;
                Self {
                    db,
                    server: Server::MariaDb(my),
                }
            }
            Kind::Sqlite => Self {
                db: TestDb::sqlite().await,
                server: Server::Sqlite(None),
            },
        }
    }

    pub fn db(&self) -> &TestDb {
        &self.db
    }

    pub fn url(&self) -> &str {
        self.db.url()
    }

    /// The database goes away: the server stops (its connections close, new
    /// ones are refused), or the SQLite file is locked by another writer.
    pub async fn stop(&mut self) {
        match &mut self.server {
            Server::Postgres(pg) => tokio::task::block_in_place(|| pg.stop()),
            Server::MariaDb(my) => tokio::task::block_in_place(|| my.stop()),
            Server::Sqlite(lock) => *lock = Some(TableLock::sqlite_file(self.db.url()).await),
        }
    }

    /// The database comes back.
    pub async fn start_again(&mut self) {
        match &mut self.server {
            Server::Postgres(pg) => tokio::task::block_in_place(|| pg.start_server()),
            Server::MariaDb(my) => tokio::task::block_in_place(|| my.start_server()),
            Server::Sqlite(lock) => {
                if let Some(lock) = lock.take() {
                    lock.release().await;
                }
            }
        }
    }

    /// The server refuses new connections (open ones stay): PostgreSQL's
    /// database stops accepting them (SQLSTATE 55000), MariaDB caps the
    /// account at one connection (error 1226; the test's and tidemill's open
    /// ones are already more). `None` on SQLite, which has no connections.
    pub async fn refuse(&self) -> Option<()> {
        match &self.server {
            Server::Postgres(pg) => {
                let admin = TestDb::postgres_at(pg.url()).await;
                let name = self.database_name();
                admin
                    .exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .await;
            }
            Server::MariaDb(my) => tokio::task::block_in_place(|| {
                my.admin_sql("ALTER USER 'tidemill'@'%' WITH MAX_USER_CONNECTIONS 1")
            }),
            Server::Sqlite(_) => return None,
        }
        Some(())
    }

    /// New connections are welcome again.
    pub async fn allow(&self) {
        match &self.server {
            Server::Postgres(pg) => {
                let admin = TestDb::postgres_at(pg.url()).await;
                let name = self.database_name();
                admin
                    .exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .await;
            }
            Server::MariaDb(my) => tokio::task::block_in_place(|| {
                my.admin_sql("ALTER USER 'tidemill'@'%' WITH MAX_USER_CONNECTIONS 0")
            }),
            Server::Sqlite(_) => {}
        }
    }

    fn database_name(&self) -> String {
        let url = self.db.url();
        url.rsplit_once('/')
            .map_or(url, |(_, name)| name)
            .to_string()
    }
}
