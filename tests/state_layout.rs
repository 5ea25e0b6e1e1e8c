//! The state table's primary key on PostgreSQL (`tidemill::db::postgres::layout`):
//! new tables have the state key first, and a table made by an earlier
//! version is migrated at start-up with its states intact — also when several
//! members start at once, and in a schema of its own.

mod common;

use common::db::TestDb;
use tidemill::db::postgres::layout;
use tidemill::model::TopicPartition;
use tidemill::state::StateStore;

/// The layout earlier versions created.
fn old_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (pipeline TEXT NOT NULL, operator TEXT NOT NULL, topic TEXT NOT NULL, \
         partition_id INTEGER NOT NULL, state_key TEXT NOT NULL, state TEXT NOT NULL, due_at BIGINT, \
         PRIMARY KEY (pipeline, operator, topic, partition_id, state_key))"
    )
}

async fn store(db: &TestDb, table: &str) -> (sqlx::PgPool, StateStore) {
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    let store = tidemill::db::postgres::state::store(pool.clone(), table.into());
    (pool, store)
}

#[tokio::test]
async fn a_new_state_table_has_the_state_key_first_in_its_primary_key() {
    let db = TestDb::postgres().await;
    let (pool, store) = store(&db, "\"tidemill_state\"").await;
    store.ensure_table().await.expect("state table");
    let columns = layout::key_columns(&pool, "\"tidemill_state\"")
        .await
        .expect("key columns");
    assert_eq!(columns, layout::COLUMNS);
    // Nothing left to migrate.
    assert!(!layout::ensure(&pool, "\"tidemill_state\"")
        .await
        .expect("ensure"));
}

#[tokio::test]
async fn a_new_state_tables_key_columns_compare_bytewise_whatever_the_databases_collation() {
    let db = TestDb::postgres().await;
    let (_pool, store) = store(&db, "\"tidemill_state\"").await;
    store.ensure_table().await.expect("state table");
    let collated = |names: &str| {
        format!(
            "SELECT count(*) FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation \
             WHERE a.attrelid = 'tidemill_state'::regclass AND c.collname = 'C' AND a.attname IN ({names})"
        )
    };
    let keys = "'pipeline', 'operator', 'topic', 'state_key'";
    assert_eq!(db.scalar(&collated(keys)).await, 4);
    // The state itself is never compared: it keeps the database's collation.
    assert_eq!(db.scalar(&collated("'state'")).await, 0);
}

#[tokio::test]
async fn an_earlier_state_table_is_migrated_once_with_its_states_intact_when_members_start_together(
) {
    let db = TestDb::postgres().await;
    db.exec("CREATE SCHEMA \"odd schema\"").await;
    let table = "\"odd schema\".\"tidemill_state\"";
    db.exec(&old_table(table)).await;
    db.exec(&format!(
        "INSERT INTO {table} SELECT 'p', 'w', 'topic', i % 4, format('[\"k%s\"]', i), format('{{\"n\":%s}}', i), \
         NULL FROM generate_series(1, 2000) i"
    ))
    .await;
    let (pool, a) = store(&db, table).await;
    let (_, b) = store(&db, table).await;

    let (ra, rb) = tokio::join!(a.ensure_table(), b.ensure_table());
    ra.expect("first member");
    rb.expect("second member");

    assert_eq!(
        layout::key_columns(&pool, table)
            .await
            .expect("key columns"),
        layout::COLUMNS
    );
    assert_eq!(
        db.scalar(&format!("SELECT count(*) FROM {table}")).await,
        2000
    );
    let found = a
        .load(
            "p",
            "w",
            &[
                (TopicPartition::new("topic", 1), "[\"k1\"]".into()),
                (TopicPartition::new("topic", 2), "[\"k1998\"]".into()),
                (TopicPartition::new("topic", 3), "[\"k1\"]".into()),
            ],
        )
        .await
        .expect("load");
    let mut states: Vec<String> = found.into_iter().map(|(_, _, s)| s).collect();
    states.sort();
    assert_eq!(states, ["{\"n\":1998}", "{\"n\":1}"]);
    // Still one key per state: a duplicate is refused by the new key.
    let dup = sqlx::query(&format!(
        "INSERT INTO {table} VALUES ('p', 'w', 'topic', 1, '[\"k1\"]', '{{}}', NULL)"
    ))
    .execute(&pool)
    .await;
    assert!(dup.is_err(), "the migrated key lets a duplicate in");
    assert!(!layout::ensure(&pool, table).await.expect("ensure again"));
}

/// The earlier key is as correct, only slower: a role that is not the
/// table's owner (and so may not alter it) starts with it, as before.
#[tokio::test]
async fn a_role_that_may_not_alter_the_state_table_starts_with_its_earlier_key() {
    let db = TestDb::postgres().await;
    let table = "\"tidemill_state\"";
    db.exec(&old_table(table)).await;
    let role = common::unique("tm_writer");
    db.exec(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        .await;
    db.exec(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}"
    ))
    .await;
    let (_, host) = db.url().split_once('@').expect("user@host in the url");
    let pool = sqlx::PgPool::connect(&format!("postgres://{role}:pw@{host}"))
        .await
        .expect("connect as the role");
    let store = tidemill::db::postgres::state::store(pool.clone(), table.into());
    let started = store.ensure_table().await;
    let columns = layout::key_columns(&pool, table)
        .await
        .expect("key columns");
    pool.close().await;
    db.exec(&format!("REVOKE ALL ON {table} FROM {role}")).await;
    db.exec(&format!("DROP ROLE {role}")).await;
    started.expect("starts with the earlier key");
    assert_eq!(
        columns,
        ["pipeline", "operator", "topic", "partition_id", "state_key"]
    );
}

/// A member starting while another member's state transaction stays open (a
/// frozen member, a long batch) does not wait for it: with the table and its
/// indexes in place, start-up takes no lock on the state table. (It did:
/// `CREATE INDEX IF NOT EXISTS` waited for the open transaction, and a zombie
/// scenario's successor waited for the frozen zombie it was to replace.)
#[tokio::test]
async fn a_member_starts_while_another_holds_a_state_transaction_open() {
    let db = TestDb::postgres().await;
    let table = "\"tidemill_state\"";
    let (pool, store) = store(&db, table).await;
    store.ensure_table().await.expect("state table");
    let mut open = pool.begin().await.expect("begin");
    sqlx::query(&format!(
        "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state) \
         VALUES ('p', 'o', 't', 0, 'k', '{{}}')"
    ))
    .execute(&mut *open)
    .await
    .expect("a state row written, not committed");
    // A lock wait would last as long as the open transaction: bounded here.
    let again =
        tokio::time::timeout(std::time::Duration::from_secs(30), store.ensure_table()).await;
    open.rollback().await.expect("rollback");
    again
        .expect("start-up waited for another member's open transaction")
        .expect("state table");
}
