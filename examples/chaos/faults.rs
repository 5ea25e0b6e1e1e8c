//! The faults a chaos run injects, one at a time in a seeded random order,
//! each followed by a wait for the fleet to recover: every pipeline's
//! database checkpoint back at the topic's end as it was when the fault ended.

use crate::db::Db;
use crate::fleet::Fleet;
use crate::world::{Server, World};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::time::{Duration, Instant};

pub const SESSION_TIMEOUT_S: u64 = 6;
pub const PIPELINES: [&str; 3] = ["log", "totals", "windows"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL an instance; it comes back a second later (a pod restart).
    Kill(usize),
    /// SIGSTOP an instance past its session timeout, then SIGCONT (a zombie).
    Pause(usize),
    /// Stop the database server (fast shutdown), start it two seconds later.
    DbRestart,
    /// The database refuses connections (and drops the open ones) for 4 s.
    DbRefuses,
    /// SQLite's stand-in for both: another writer holds the database's lock
    /// for 8 s, past tidemill's 5 s busy timeout (SQLITE_BUSY).
    DbLocked,
    /// Stop the broker (controlled shutdown), start it again.
    BrokerRestart,
    /// A burst of poison records (see `poison.rs`).
    Poison,
}

impl Fault {
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill(i) => format!("SIGKILL tm-{i}, restarted after 1 s"),
            Fault::Pause(i) => format!(
                "SIGSTOP tm-{i} for {} s, then SIGCONT",
                SESSION_TIMEOUT_S + 3
            ),
            Fault::DbRestart => "database restart (stopped 2 s)".into(),
            Fault::DbRefuses => "database refuses connections for 4 s".into(),
            Fault::DbLocked => "database locked by another writer for 8 s".into(),
            Fault::BrokerRestart => "broker restart".into(),
            Fault::Poison => "burst of poison records".into(),
        }
    }
}

/// The run's faults, shuffled with `seed`. Quick: one of each kind plus a
/// second kill; full: ≥ 50 kills, 5 database restarts, 3 broker restarts.
/// A database without a server (SQLite) gets its lock held instead of each
/// restart and refusal.
pub fn plan(quick: bool, instances: usize, server: bool, seed: u64) -> Vec<Fault> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (kills, pauses, db_restarts, refusals, broker_restarts, poison) = if quick {
        (2, 1, 1, 1, 1, 1)
    } else {
        (50, 5, 5, 5, 3, 5)
    };
    let mut faults = Vec::new();
    faults.extend((0..kills).map(|n| Fault::Kill(n % instances)));
    faults.extend((0..pauses).map(|n| Fault::Pause(n % instances)));
    if server {
        faults.extend(std::iter::repeat_n(Fault::DbRestart, db_restarts));
        faults.extend(std::iter::repeat_n(Fault::DbRefuses, refusals));
    } else {
        faults.extend(std::iter::repeat_n(Fault::DbLocked, db_restarts + refusals));
    }
    faults.extend(std::iter::repeat_n(Fault::BrokerRestart, broker_restarts));
    faults.extend(std::iter::repeat_n(Fault::Poison, poison));
    rng.shuffle(&mut faults);
    faults
}

/// Injects `fault` (blocking).
pub async fn inject(
    fault: Fault,
    fleet: &mut Fleet,
    world: &mut World,
    poison_id: &mut i64,
) -> anyhow::Result<()> {
    match fault {
        Fault::Kill(i) => {
            let name = format!("tm-{i}");
            fleet.kill(&name)?;
            std::thread::sleep(Duration::from_secs(1)); // the pod's restart delay being modelled
            fleet.start(&name)?;
            fleet.wait_ready(&name, Duration::from_secs(120))?;
        }
        Fault::Pause(i) => {
            let name = format!("tm-{i}");
            fleet.signal(&name, "-STOP")?;
            std::thread::sleep(Duration::from_secs(SESSION_TIMEOUT_S + 3)); // the zombie's pause being modelled
            fleet.signal(&name, "-CONT")?;
        }
        Fault::DbRestart => world.server.restart(Duration::from_secs(2)),
        Fault::DbRefuses => refuse_connections(world, Duration::from_secs(4)).await?,
        Fault::DbLocked => {
            let mut holder = Db::connect(&world.db_url()).await?;
            holder.exec("BEGIN EXCLUSIVE").await?;
            tokio::time::sleep(Duration::from_secs(8)).await; // the lock being modelled
            holder.exec("COMMIT").await?;
        }
        Fault::BrokerRestart => {
            world.kafka.stop_broker();
            std::thread::sleep(Duration::from_secs(1)); // the outage being modelled
            world.kafka.start_broker();
        }
        Fault::Poison => {
            let producer: BaseProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", world.brokers())
                .set("message.max.bytes", "4000000")
                .create()?;
            for (kind, payload) in crate::poison::burst(*poison_id) {
                *poison_id += 1;
                let headers = OwnedHeaders::new().insert(Header {
                    key: "chaos.poison",
                    value: Some(kind),
                });
                let mut record: BaseRecord<'_, str, [u8]> =
                    BaseRecord::to(&world.topic).key("poison").headers(headers);
                if let Some(bytes) = &payload {
                    record = record.payload(bytes.as_slice());
                }
                producer.send(record).map_err(|(e, _)| e)?;
            }
            producer.flush(Duration::from_secs(60))?;
        }
    }
    Ok(())
}

/// The database refuses new connections and drops the open ones for `hold`.
/// PostgreSQL: the database stops accepting connections (SQLSTATE 55000).
/// MariaDB: tidemill's account may hold one connection while a holder keeps
/// it (error 1226, max_user_connections exceeded), and its others are killed.
async fn refuse_connections(world: &mut World, hold: Duration) -> anyhow::Result<()> {
    match &world.server {
        Server::Postgres(pg) => {
            let mut admin = Db::connect(&pg.url()).await?;
            let db = crate::world::DB;
            admin
                .exec(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
                .await?;
            admin
                .rows(&format!(
                    "SELECT CAST(count(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity WHERE datname = '{db}'"
                ))
                .await?;
            tokio::time::sleep(hold).await; // the outage being modelled
            admin
                .exec(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
                .await?;
        }
        Server::MariaDb(my) => {
            let mut holder = Db::connect(&my.url(crate::world::DB)).await?;
            let held = holder
                .rows("SELECT CAST(CONNECTION_ID() AS SIGNED)")
                .await?[0][0];
            // tidemill's account may hold one connection, which the holder has.
            my.admin_sql("ALTER USER 'tidemill'@'%' WITH MAX_USER_CONNECTIONS 1");
            let ids = my.admin_lines(
                "SELECT id FROM information_schema.processlist WHERE user = 'tidemill'",
            );
            for id in ids.iter().filter(|id| **id != held.to_string()) {
                // A connection may be gone by now: its KILL failing is fine.
                let _ = my.admin_lines(&format!("KILL CONNECTION {id}"));
            }
            tokio::time::sleep(hold).await; // the outage being modelled
            my.admin_sql("ALTER USER 'tidemill'@'%' WITH MAX_USER_CONNECTIONS 0");
        }
        Server::Sqlite(_) => anyhow::bail!("SQLite has no connections to refuse"),
    }
    Ok(())
}

/// Waits until every pipeline's checkpoint reached the topic's end as it is
/// now; how long that took, or `None` after `timeout`. An instance that
/// exited meanwhile fails the run at once (with its log's path).
pub async fn recovery(
    world: &World,
    fleet: &mut Fleet,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let high = crate::verify::high_watermarks(&world.brokers(), &world.topic, world.partitions)?;
    loop {
        fleet.check_alive()?;
        if crate::verify::caught_up(world, &high).await {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // polling interval
    }
}
