//! What a chaos run owns: a private Kafka broker and a private PostgreSQL or
//! MariaDB server (so both can be restarted without disturbing anything
//! else) or an SQLite file, the run's database and tables, and a steady
//! producer of good records.

use crate::db::Db;
use anyhow::Context as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::private_kafka::PrivateKafka;
use crate::private_mariadb::PrivateMariaDb;
use crate::private_postgres::PrivatePostgres;

/// The database server a run owns.
pub enum Server {
    Postgres(PrivatePostgres),
    MariaDb(PrivateMariaDb),
    /// A database file in a directory of its own (removed on drop).
    Sqlite(tempfile::TempDir),
}

impl Server {
    pub fn name(&self) -> &'static str {
        match self {
            Server::Postgres(_) => "PostgreSQL",
            Server::MariaDb(_) => "MariaDB",
            Server::Sqlite(_) => "SQLite",
        }
    }

    /// Whether there is a server to restart (SQLite is a file).
    pub fn restartable(&self) -> bool {
        !matches!(self, Server::Sqlite(_))
    }

    /// Stops the server (fast shutdown), waits `down`, starts it again.
    pub fn restart(&mut self, down: Duration) {
        match self {
            Server::Postgres(pg) => {
                pg.stop();
                std::thread::sleep(down); // the outage being modelled
                pg.start_server();
            }
            Server::MariaDb(my) => {
                my.stop();
                std::thread::sleep(down); // the outage being modelled
                my.start_server();
            }
            Server::Sqlite(_) => {}
        }
    }
}

/// Keys of the aggregates: record `i` has `k = i % KEYS`, `v = i % 97`.
pub const KEYS: i64 = 200;
pub const DB: &str = "chaos";

pub struct World {
    pub kafka: PrivateKafka,
    pub server: Server,
    pub topic: String,
    pub partitions: i32,
}

impl World {
    pub async fn start(kind: &str, partitions: i32) -> anyhow::Result<Self> {
        let kind = kind.to_owned();
        let (kafka, server) = tokio::task::spawn_blocking(move || {
            let server = match kind.as_str() {
                "postgres" => Server::Postgres(PrivatePostgres::start()),
                "mariadb" => {
                    let my = PrivateMariaDb::start();
                    my.admin_sql(&format!("CREATE DATABASE {DB}"));
                    Server::MariaDb(my)
                }
                "sqlite" => Server::Sqlite(tempfile::tempdir()?),
                other => anyhow::bail!("--db {other}: postgres, mariadb or sqlite"),
            };
            Ok((PrivateKafka::start(), server))
        })
        .await
        .context("starting the private broker and database")??;
        let world = Self {
            kafka,
            server,
            topic: "chaos_events".into(),
            partitions,
        };
        world.create_topic().await?;
        if let Server::Postgres(pg) = &world.server {
            Db::connect(&pg.url())
                .await?
                .exec(&format!("CREATE DATABASE {DB}"))
                .await?;
        }
        let mut db = Db::connect(&world.db_url()).await?;
        for ddl in [
            "CREATE TABLE events_log (id BIGINT NOT NULL, k BIGINT NOT NULL, v BIGINT NOT NULL, ts BIGINT NOT NULL)",
            "CREATE TABLE totals (k BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)",
            "CREATE TABLE windows (k BIGINT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL, n BIGINT NOT NULL, total BIGINT NOT NULL)",
        ] {
            db.exec(ddl).await?;
        }
        Ok(world)
    }

    pub fn brokers(&self) -> String {
        self.kafka.brokers()
    }

    /// The run's database.
    pub fn db_url(&self) -> String {
        match &self.server {
            Server::Postgres(pg) => pg.url().replace("/postgres", &format!("/{DB}")),
            Server::MariaDb(my) => my.url(DB),
            Server::Sqlite(dir) => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join(format!("{DB}.db")).display()
            ),
        }
    }

    pub fn dead_letter_topic(pipeline: &str) -> String {
        format!("chaos_dlq_{pipeline}")
    }

    async fn create_topic(&self) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()?;
        let mut topics = vec![NewTopic::new(
            &self.topic,
            self.partitions,
            TopicReplication::Fixed(1),
        )];
        let dlqs: Vec<String> = ["log", "totals", "windows"]
            .iter()
            .map(|p| Self::dead_letter_topic(p))
            .collect();
        topics.extend(
            dlqs.iter()
                .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))),
        );
        for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
            r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }
}

/// Sends good records at a steady rate until stopped: record `i` is
/// `{"id": i, "k": i % KEYS, "v": i % 97, "ts": t0 + i * 1000 / rate}` (event
/// time follows the wall clock). Idempotent, so a broker restart neither loses
/// nor repeats a record in the topic.
pub struct Producer {
    pub produced: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Producer {
    pub fn start(brokers: &str, topic: &str, rate: u64) -> anyhow::Result<Self> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "600000")
            .create()?;
        let (produced, stop) = (
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (count, halt, topic) = (Arc::clone(&produced), Arc::clone(&stop), topic.to_string());
        let thread = std::thread::spawn(move || {
            let t0 = crate::now_ms();
            let started = Instant::now();
            let mut i: i64 = 0;
            while !halt.load(Ordering::Relaxed) {
                // Catch up to the rate, then wait for the next 10 ms slice.
                let due = (started.elapsed().as_millis() as i64) * rate as i64 / 1000;
                while i < due {
                    let (k, v, ts) = (i % KEYS, i % 97, t0 + i * 1000 / rate as i64);
                    let payload = format!(r#"{{"id":{i},"k":{k},"v":{v},"ts":{ts}}}"#);
                    let key = k.to_string();
                    let record = BaseRecord::to(&topic).key(&key).payload(&payload);
                    if let Err((e, _)) = producer.send(record) {
                        // The queue is full while the broker is away: wait for room.
                        anyhow::ensure!(
                            e.rdkafka_error_code()
                                == Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                            "producing: {e}"
                        );
                        producer.poll(Duration::from_millis(100));
                        continue;
                    }
                    i += 1;
                    count.store(i, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10)); // pacing the producer, not synchronisation
            }
            producer.flush(Duration::from_secs(120))?;
            Ok(())
        });
        Ok(Self {
            produced,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops producing and flushes; how many records were produced.
    pub fn stop(mut self) -> anyhow::Result<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
        }
        Ok(self.produced.load(Ordering::Relaxed))
    }
}
