//! The keyed-state statements on MySQL/MariaDB reach each key through the
//! primary key (`eq_ref`), never by scanning an operator's keys: a scan read
//! and, in a delete, locked every partition's rows, so two members writing
//! state deadlocked on each other. Shown with `EXPLAIN` on a table holding
//! 12,000 states over six partitions.

mod common;

use common::db::TestDb;
use sqlx::Row as _;
use tidemill::db::mysql::state::{load_sql, statements};

/// `EXPLAIN sql` bound with (pipeline, operator, keys): each row's table,
/// access type and key.
async fn plan(pool: &sqlx::MySqlPool, sql: &str) -> Vec<(String, String, String)> {
    let keys = r#"[{"t":"orders","p":1,"k":"k7"},{"t":"orders","p":4,"k":"k10"}]"#;
    let rows = sqlx::query(&format!("EXPLAIN {sql}"))
        .bind("p")
        .bind("totals")
        .bind(keys)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    let text = |r: &sqlx::mysql::MySqlRow, column: &str| {
        r.try_get::<Option<String>, _>(column)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    rows.iter()
        .map(|r| (text(r, "table"), text(r, "type"), text(r, "key")))
        .collect()
}

/// The state table is reached only by its primary key, one row per key.
fn assert_probes(what: &str, plan: &[(String, String, String)]) {
    let state: Vec<_> = plan.iter().filter(|(t, _, _)| t == "s").collect();
    assert!(
        !state.is_empty()
            && state
                .iter()
                .all(|(_, ty, key)| ty == "eq_ref" && key == "PRIMARY"),
        "{what} must probe the state table by its primary key: {plan:?}"
    );
}

#[tokio::test]
async fn loading_and_deleting_state_probe_the_primary_key_per_key() {
    let db = TestDb::mariadb().await;
    let pool = sqlx::MySqlPool::connect(db.url()).await.expect("connect");
    let table = "`tidemill_state`";
    let store = tidemill::db::mysql::state::store(pool.clone(), table.into());
    store.ensure_table().await.expect("state table");
    db.exec(&format!(
        "INSERT INTO {table} SELECT 'p', 'totals', 'orders', seq % 6, CONCAT('k', seq), '{{}}', NULL \
         FROM seq_1_to_12000"
    ))
    .await;
    db.exec(&format!("ANALYZE TABLE {table}")).await;

    assert_probes("loading", &plan(&pool, &load_sql(table)).await);
    let (upsert, delete) = statements(table);
    assert_probes("deleting", &plan(&pool, &delete).await);
    // The upsert inserts from the keys: no read of the table at all.
    let inserted = plan(&pool, &upsert).await;
    assert!(
        inserted
            .iter()
            .all(|(t, _, _)| t != "s" && t != "tidemill_state"),
        "{inserted:?}"
    );
}
