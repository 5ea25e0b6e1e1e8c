//! Keyed stateful transforms against real Kafka and real databases: running
//! totals, tumbling windows and dedup equal an independent computation over
//! the same input, across restarts (state is read back from the database)
//! and with a cache far smaller than the key space.

mod common;

use common::db::{Kind, TestDb};
use common::events::{self, Event};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::time::Duration;
use tidemill::model::{Row, TopicPartition};
use tidemill::observe::stats::Stats;
use tidemill::state::{Context, KeyedOperator, OperatorError, Registry};

per_backend!(
    running_totals_equal_an_independent_computation_across_a_restart,
    tumbling_windows_emit_each_final_row_once_and_dead_letter_late_records,
    dedup_drops_every_repeat_within_the_ttl,
    a_custom_operator_keeps_its_own_state_across_a_restart,
    jq_steps_around_an_aggregate_see_the_rows_of_their_place_in_the_chain,
);

const TOTALS: &str = r#"
[[pipelines.p.transforms]]
type = "key"
fields = ["user_id"]

[[pipelines.p.transforms]]
type = "aggregate"
name = "totals"
columns = { n = "count()", total = "sum(amount)" }
"#;

fn produce(topic: &str, events: &[Event]) {
    let producer = TestProducer::new(topic);
    for e in events {
        producer.send(Some(&e.key()), Some(&e.json()));
    }
    producer.flush();
}

async fn running_totals_equal_an_independent_computation_across_a_restart(kind: Kind) {
    const N: i64 = 3_000;
    let (topic, group) = (unique("totals"), unique("g"));
    kafka::create_topic(&topic, 3).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE totals (user_id BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)").await;
    let sink = r#"mode = "upsert"
key_columns = ["user_id"]"#;
    // A cache of 5 keys for 40 users: most lookups miss and load from the database.
    let toml = format!(
        "{}\n[pipelines.p.state]\ncache_entries = 5\n{TOTALS}",
        pipeline_toml(&topic, &group, db.url(), "totals", sink)
    );
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 40)).collect();
    let (first, second) = all.split_at(N as usize / 2);

    let running = Running::start(&toml).await;
    produce(&topic, first);
    wait_for("first half committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 3)
    })
    .await;
    let loads = Stats::get(&running.stats.state_loads);
    running.stop().await;
    assert!(
        loads > 40,
        "a small cache loads misses from the database ({loads} loads)"
    );

    // A new process: every state comes back from the database.
    let running = Running::start(&toml).await;
    produce(&topic, second);
    wait_for("second half committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 3)
    })
    .await;
    running.stop().await;
    let got = db
        .pairs("SELECT user_id * 1000000 + n, total FROM totals ORDER BY user_id")
        .await;
    assert_eq!(got, events::totals(&all));
}

/// jq steps between and after keyed steps run in the writer's tail: one sees
/// the batch's own rows (borrowed), the next the aggregate's rows (owned).
async fn jq_steps_around_an_aggregate_see_the_rows_of_their_place_in_the_chain(kind: Kind) {
    const N: i64 = 2_000;
    let (topic, group) = (unique("tailjq"), unique("g"));
    kafka::create_topic(&topic, 3).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE totals (user_id BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)").await;
    let sink = "mode = \"upsert\"\nkey_columns = [\"user_id\"]";
    let steps = r#"
[[pipelines.p.transforms]]
type = "key"
fields = ["user_id"]

[[pipelines.p.transforms]]
type = "jq"
expr = 'select(.amount >= 0) | {user_id, amount: (.amount * 2)}'

[[pipelines.p.transforms]]
type = "aggregate"
name = "totals"
columns = { n = "count()", total = "sum(amount)" }

[[pipelines.p.transforms]]
type = "jq"
expr = '{user_id, n, total: (.total * 10)}'
"#;
    let toml = format!(
        "{}\n{steps}",
        pipeline_toml(&topic, &group, db.url(), "totals", sink)
    );
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 30)).collect();
    let running = Running::start(&toml).await;
    produce(&topic, &all);
    wait_for("all committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 3)
    })
    .await;
    running.stop().await;

    let kept: Vec<Event> = all.into_iter().filter(|e| e.amount >= 0).collect();
    let want: Vec<(i64, i64)> = events::totals(&kept)
        .into_iter()
        .map(|(user_n, total)| (user_n, total * 2 * 10))
        .collect();
    let got = db
        .pairs("SELECT user_id * 1000000 + n, total FROM totals ORDER BY user_id")
        .await;
    assert_eq!(got, want);
}

async fn tumbling_windows_emit_each_final_row_once_and_dead_letter_late_records(kind: Kind) {
    const N: i64 = 3_000;
    let (topic, group, dlq) = (unique("windows"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, 3).await;
    let db = TestDb::new(kind).await;
    db.exec(
        "CREATE TABLE per_second (user_id BIGINT NOT NULL, window_start BIGINT NOT NULL, \
         window_end BIGINT NOT NULL, n BIGINT NOT NULL, total BIGINT NOT NULL, PRIMARY KEY (user_id, window_start))",
    )
    .await;
    let toml = format!(
        r#"{}
[pipelines.p.dead_letter]
topic = "{dlq}"

[[pipelines.p.transforms]]
type = "key"
fields = ["user_id"]

[[pipelines.p.transforms]]
type = "aggregate"
name = "per_second"
columns = {{ n = "count()", total = "sum(amount)" }}
window = {{ kind = "tumbling", size = "1s", time_field = "ts", idle_timeout = "1s" }}
"#,
        pipeline_toml(&topic, &group, db.url(), "per_second", "")
    );
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 20)).collect();
    let expected = events::tumbling(&all, 1000);

    let running = Running::start(&toml).await;
    produce(&topic, &all);
    // The last windows close when the partitions go idle (idle_timeout), not by a newer record.
    wait_for(
        "every window closed and written",
        Duration::from_secs(60),
        || async {
            db.try_scalar("SELECT count(*) FROM per_second").await == Some(expected.len() as i64)
        },
    )
    .await;
    let late = Event {
        ts: events::BASE_MS,
        ..all[5]
    };
    produce(&topic, &[late]);
    // This chain decodes only user_id, amount and ts; bad payloads still fail
    // as a full decode would, and an unread extra field changes nothing.
    let poison = [
        (r#"{"user_id": 1, "ts": "#, "decode"),
        (
            r#"{"user_id": 1, "amount": 1, "ts": 0, "unread": [1, }"#,
            "decode",
        ),
        ("[1, 2]", "transform"),
        // No state key: refused by the `key` step (which the window stage
        // runs itself) with the same reason.
        (r#"{"amount": 1, "ts": 0}"#, "transform"),
        (r#"{"user_id": null, "amount": 1, "ts": 0}"#, "transform"),
    ];
    let producer = TestProducer::new(&topic);
    for (payload, _) in poison {
        producer.send(Some("poison"), Some(payload));
    }
    producer.flush();
    wait_for(
        "the late and the poison records dead-lettered",
        Duration::from_secs(30),
        || async { Stats::get(&running.stats.dead_lettered) == 1 + poison.len() as u64 },
    )
    .await;
    wait_for("everything committed", Duration::from_secs(30), || {
        all_committed(&group, &topic, 3)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.records_late), 1);
    running.stop().await;

    let got = db
        .quads(
            "SELECT user_id, window_start, n, total FROM per_second ORDER BY user_id, window_start",
        )
        .await;
    assert_eq!(got, expected, "one final row per window, exact");
    assert_eq!(
        db.scalar("SELECT count(*) FROM per_second WHERE window_end - window_start <> 1000")
            .await,
        0
    );
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 1 + poison.len()))
        .await
        .expect("read");
    let class_of = |payload: &str| {
        let letter = letters
            .iter()
            .find(|l| l.value.as_deref() == Some(payload.as_bytes()));
        letter.and_then(|l| l.header("tidemill.error.class"))
    };
    assert_eq!(class_of(&late.json()), Some("late"));
    for (payload, class) in poison {
        assert_eq!(class_of(payload), Some(class), "{payload}");
    }
    for payload in [poison[3].0, poison[4].0] {
        let message = letters
            .iter()
            .find(|l| l.value.as_deref() == Some(payload.as_bytes()))
            .and_then(|l| l.header("tidemill.error.message"));
        assert_eq!(
            message,
            Some("key field `user_id` is missing or null"),
            "{payload}"
        );
    }
}

async fn dedup_drops_every_repeat_within_the_ttl(kind: Kind) {
    const N: i64 = 1_000;
    let (topic, group) = (unique("dedup"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE seen (event_id BIGINT NOT NULL, user_id BIGINT NOT NULL)")
        .await;
    let toml = format!(
        r#"{}
[pipelines.p.state]
cache_entries = 100

[[pipelines.p.transforms]]
type = "dedup"
field = "event_id"
ttl = "1h"
"#,
        pipeline_toml(&topic, &group, db.url(), "seen", "")
    );
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 10)).collect();
    let running = Running::start(&toml).await;
    // Every event twice in a row, then the whole stream again (repeats across batches).
    let doubled: Vec<Event> = all.iter().flat_map(|e| [*e, *e]).collect();
    produce(&topic, &doubled);
    produce(&topic, &all);
    wait_for("everything committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 2)
    })
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM seen").await, N);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT event_id) FROM seen").await,
        N
    );
}

/// A user's operator through the public API: the largest amount per key.
#[derive(Clone)]
struct MaxAmount;

impl KeyedOperator for MaxAmount {
    type State = i64;

    fn process(
        &self,
        _cx: &mut Context<'_>,
        state: &mut Option<i64>,
        record: &Row,
    ) -> Result<(), OperatorError> {
        let amount = record["amount"]
            .as_i64()
            .ok_or_else(|| OperatorError::Record("amount".into()))?;
        *state = Some(state.map_or(amount, |m| m.max(amount)));
        Ok(())
    }

    fn touched(&self, cx: &mut Context<'_>, state: &mut Option<i64>) {
        let mut row = Row::new();
        row.insert("best".into(), (*state).into());
        cx.emit(row);
    }
}

async fn a_custom_operator_keeps_its_own_state_across_a_restart(kind: Kind) {
    const N: i64 = 1_000;
    let (topic, group) = (unique("custom"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE best (user_id BIGINT PRIMARY KEY, best BIGINT NOT NULL)")
        .await;
    let sink = "mode = \"upsert\"\nkey_columns = [\"user_id\"]";
    let toml = format!(
        "{}\n[[pipelines.p.transforms]]\ntype = \"key\"\nfields = [\"user_id\"]\n\n[[pipelines.p.transforms]]\ntype = \"operator\"\nname = \"max_amount\"\n",
        pipeline_toml(&topic, &group, db.url(), "best", sink)
    );
    let registry = || {
        let mut r = Registry::default();
        r.register("max_amount", MaxAmount);
        r
    };
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 10)).collect();
    for half in all.chunks(N as usize / 2) {
        let running = Running::start_with(&toml, registry()).await;
        produce(&topic, half);
        wait_for("committed", Duration::from_secs(60), || {
            all_committed(&group, &topic, 2)
        })
        .await;
        running.stop().await;
    }
    let mut expected = std::collections::BTreeMap::new();
    for e in &all {
        let best = expected.entry(e.user).or_insert(i64::MIN);
        *best = (*best).max(e.amount);
    }
    let expected: Vec<(i64, i64)> = expected.into_iter().collect();
    assert_eq!(
        db.pairs("SELECT user_id, best FROM best ORDER BY user_id")
            .await,
        expected
    );
}

/// Windows give every state a due time. With a full `due_at` index sharing
/// the primary key's first four columns, PostgreSQL looked keys up through
/// it and filtered thousands of rows per key (seconds per batch). The state
/// table's due index is partial now, so key lookups take the primary key; a
/// table made by an earlier version loses its full index at start-up.
#[tokio::test]
async fn state_lookups_by_key_go_through_the_primary_key() {
    let db = TestDb::postgres().await;
    let table = "\"tidemill_state\"";
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    let store = tidemill::db::postgres::state::store(pool.clone(), table.into());
    store.ensure_table().await.expect("state table");
    // As an earlier version left it.
    db.exec("CREATE INDEX tidemill_state_due ON tidemill_state (pipeline, operator, topic, partition_id, due_at)")
        .await;
    db.exec(
        "INSERT INTO tidemill_state SELECT 'p', 'w', 'topic', i % 8, format('[\"k%s\"]', i), '{}', \
         1795516046000 + (i % 30) * 1000 FROM generate_series(1, 50000) i",
    )
    .await;
    store.ensure_table().await.expect("start-up again");
    // No ANALYZE: on a table autovacuum has not analysed yet, the earlier
    // statement hashed the partition's whole state instead of probing keys.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'tidemill_state' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    assert_eq!(indexes, ["tidemill_state_due_at", "tidemill_state_pkey"]);

    let sql = tidemill::db::postgres::state::load_sql(table);
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::raw_sql(&format!("PREPARE load(text, text, json) AS {sql}"))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let plan: Vec<String> = sqlx::query_scalar(
        r#"EXPLAIN EXECUTE load('p', 'w', '[{"t":"topic","p":0,"k":"[\"k8\"]"},{"t":"topic","p":1,"k":"[\"k9\"]"}]')"#,
    )
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("tidemill_state_pkey"), "{plan}");
    assert!(!plan.contains("tidemill_state_due"), "{plan}");
    let found = store
        .load(
            "p",
            "w",
            &[(TopicPartition::new("topic", 0), "[\"k8\"]".into())],
        )
        .await
        .expect("load");
    assert_eq!(found.len(), 1);
}
