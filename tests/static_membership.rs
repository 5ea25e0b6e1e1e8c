//! Static membership (`kafka.group_instance_id`, KIP-345) against the real
//! broker: a member killed and restarted within the session timeout gets its
//! partitions back without rebalancing the others, the database fence still
//! moves on its re-assignment, and two members with one id fail loudly.

mod common;

use common::db::TestDb;
use common::kafka::{self, TestProducer};
use common::process::Tidemill;
use common::{all_committed, health_port, http, pipeline_toml, unique, wait_for, wait_for_showing};
use std::path::PathBuf;
use std::time::Duration;

const PARTITIONS: i32 = 4;

struct Bed {
    topic: String,
    group: String,
    db: TestDb,
    dir: tempfile::TempDir,
}

impl Bed {
    async fn new(prefix: &str) -> Self {
        let (topic, group) = (unique(prefix), unique("g"));
        kafka::create_topic(&topic, PARTITIONS).await;
        let db = TestDb::postgres().await;
        db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
            .await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            topic,
            group,
            db,
            dir,
        }
    }

    /// The members' config file (session timeout 10 s); each member's id
    /// comes from `TIDEMILL__INSTANCE_ID`, as a StatefulSet sets it.
    fn config(&self) -> PathBuf {
        let toml = pipeline_toml(&self.topic, &self.group, self.db.url(), "t", "")
            .replace("session_timeout = \"6s\"", "session_timeout = \"10s\"");
        let path = self.dir.path().join("tidemill.toml");
        std::fs::write(&path, toml).expect("config");
        path
    }

    fn start(&self, id: &str, tag: &str) -> Tidemill {
        Tidemill::start_with_env(&self.config(), tag, &[("TIDEMILL__INSTANCE_ID", id)])
    }

    /// A member serving its metrics, and the port they are on.
    fn start_observed(&self, id: &str, tag: &str) -> (Tidemill, u16) {
        let (port, listen) = health_port();
        let env = [
            ("TIDEMILL__INSTANCE_ID", id),
            ("TIDEMILL__HEALTH__LISTEN", listen.as_str()),
        ];
        (Tidemill::start_with_env(&self.config(), tag, &env), port)
    }

    fn send(&self, from: i64, to: i64) {
        let producer = TestProducer::new(&self.topic);
        for i in from..to {
            producer.send(
                Some(&i.to_string()),
                Some(&format!(r#"{{"id":{i},"v":{i}}}"#)),
            );
        }
        producer.flush();
    }

    async fn rows(&self) -> i64 {
        self.db
            .try_scalar("SELECT count(*) FROM t")
            .await
            .unwrap_or(0)
    }

    async fn generations(&self) -> i64 {
        self.db
            .try_scalar("SELECT sum(generation) FROM tidemill_offsets")
            .await
            .unwrap_or(0)
    }

    async fn all_loaded_and_committed(&self, n: i64) {
        wait_for("every record loaded", Duration::from_secs(90), || async {
            self.rows().await == n
        })
        .await;
        wait_for(
            "offsets committed to the end",
            Duration::from_secs(60),
            || all_committed(&self.group, &self.topic, PARTITIONS),
        )
        .await;
        assert_eq!(self.db.scalar("SELECT count(DISTINCT id) FROM t").await, n);
        assert_eq!(
            self.db.scalar("SELECT sum(v) FROM t").await,
            n * (n - 1) / 2
        );
    }
}

/// The group's members' partition counts, sorted, once the group is Stable
/// (read from the broker's group description: the classic protocol's
/// ConsumerProtocolAssignment, version, [topic, [partition]], user data).
async fn partitions_per_member(group: &str) -> Vec<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let group = group.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka::brokers())
            .create()
            .expect("consumer");
        let list = consumer
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .expect("group description");
        let Some(g) = list.groups().first().filter(|g| g.state() == "Stable") else {
            return Vec::new();
        };
        let mut counts: Vec<usize> = g
            .members()
            .iter()
            .map(|m| assigned_partitions(m.assignment().unwrap_or_default()))
            .collect();
        counts.sort_unstable();
        counts
    })
    .await
    .expect("group check")
}

fn assigned_partitions(bytes: &[u8]) -> usize {
    let int = |at: usize, n: usize| -> Option<i64> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().fold(0_i64, |acc, x| (acc << 8) | i64::from(*x)))
    };
    let mut at = 2; // version
    let Some(topics) = int(at, 4) else { return 0 };
    at += 4;
    let mut total = 0;
    for _ in 0..topics {
        let Some(name) = int(at, 2) else { return total };
        at += 2 + name as usize;
        let Some(parts) = int(at, 4) else {
            return total;
        };
        at += 4 + 4 * parts as usize;
        total += parts as usize;
    }
    total
}

/// How many assignment changes (assignments and revocations) the member
/// on `port` has served (`tidemill_rebalances_total`).
async fn assignment_changes(port: u16) -> i64 {
    http::member_metric(port, "tidemill_rebalances_total", "p").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_within_the_session_timeout_rebalances_nobody_else() {
    const N: i64 = 4_000;
    let bed = Bed::new("static").await;
    // `a` joins first and so leads the group: a restarted *leader* may make
    // the group rebalance (see docs/kubernetes.md); a follower must not.
    let (mut a, a_port) = bed.start_observed("tm-0", "a");
    wait_for(
        "a owning every partition",
        Duration::from_secs(60),
        || async { partitions_per_member(&bed.group).await == [PARTITIONS as usize] },
    )
    .await;
    let mut b = bed.start("tm-1", "b0");
    bed.send(0, N / 2);
    wait_for("both members loading", Duration::from_secs(90), || async {
        bed.rows().await == N / 2 && bed.generations().await >= i64::from(PARTITIONS)
    })
    .await;
    wait_for(
        "a stable group of two members owning two partitions each",
        Duration::from_secs(60),
        || async { partitions_per_member(&bed.group).await == [2, 2] },
    )
    .await;
    let a_changes = assignment_changes(a_port).await;
    assert!(a_changes >= 1, "a served its assignment");
    let fence_before = bed.generations().await;

    b.kill();
    b = bed.start("tm-1", "b1");
    bed.send(N / 2, N);
    bed.all_loaded_and_committed(N).await;

    assert_eq!(
        assignment_changes(a_port).await,
        a_changes,
        "the other member kept its partitions untouched:\n{}",
        a.log_text()
    );
    assert!(
        bed.generations().await > fence_before,
        "the restarted member claimed its partitions anew (the fence moved)"
    );
    assert!(a.terminate(), "{}", a.log_text());
    assert!(b.terminate(), "{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_with_one_instance_id_fail_loudly_and_lose_nothing() {
    const N: i64 = 2_000;
    let bed = Bed::new("static_dup").await;
    let mut first = bed.start("tm-dup", "first");
    bed.send(0, N / 2);
    wait_for(
        "the first member loading",
        Duration::from_secs(90),
        || async { bed.rows().await == N / 2 },
    )
    .await;
    let mut second = bed.start("tm-dup", "second");
    // The broker fences the older member; it must stop, not idle in the group.
    wait_for_showing(
        "one member to stop",
        Duration::from_secs(60),
        &|| {
            format!(
                "--- first ---\n{}\n--- second ---\n{}",
                first.log_text(),
                second.log_text()
            )
        },
        || async { !(first.is_running() && second.is_running()) },
    )
    .await;
    let (fenced, survivor) = if first.is_running() {
        (&mut second, &mut first)
    } else {
        (&mut first, &mut second)
    };
    let said = fenced.log_text();
    assert!(
        said.contains("kafka.group_instance_id"),
        "the fenced member names the setting:\n{said}"
    );
    let status = fenced.exit_status().expect("the fenced member has exited");
    assert!(
        !status.success(),
        "the fenced member exits non-zero: {status}"
    );
    bed.send(N / 2, N);
    bed.all_loaded_and_committed(N).await;
    assert!(survivor.terminate(), "{}", survivor.log_text());
}
