//! Your own keyed operator in your own tidemill binary.
//!
//! `Streak` keeps, per key, the current run of consecutive positive amounts
//! and the best run so far, and upserts `{key columns, streak, best}` after
//! every batch that touched the key. Its state is an ordinary serde type;
//! tidemill stores it next to your table, in the same transaction as the rows
//! and the Kafka offsets, so restarts and rebalances neither lose nor repeat
//! a record.
//!
//! Run it like `tidemill run`, with a config whose pipeline names the operator:
//!
//! ```toml
//! [[pipelines.streaks.transforms]]
//! type = "key"
//! fields = ["user_id"]
//!
//! [[pipelines.streaks.transforms]]
//! type = "operator"
//! name = "streak"
//! ```
//!
//! `cargo run --example custom_operator -- config/streaks.toml`

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tidemill::model::Row;
use tidemill::state::{Context, KeyedOperator, OperatorError, Registry};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Streak {
    field: String,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Runs {
    current: u64,
    best: u64,
}

impl KeyedOperator for Streak {
    type State = Runs;

    fn process(
        &self,
        _cx: &mut Context<'_>,
        state: &mut Option<Runs>,
        record: &Row,
    ) -> Result<(), OperatorError> {
        let amount = record
            .get(&self.field)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| OperatorError::Record(format!("`{}` is not a number", self.field)))?;
        let runs = state.get_or_insert_with(Runs::default);
        runs.current = if amount > 0.0 { runs.current + 1 } else { 0 };
        runs.best = runs.best.max(runs.current);
        Ok(())
    }

    fn touched(&self, cx: &mut Context<'_>, state: &mut Option<Runs>) {
        if let Some(runs) = state {
            let mut row = Row::new();
            row.insert("streak".into(), runs.current.into());
            row.insert("best".into(), runs.best.into());
            cx.emit(row);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: custom_operator <config.toml>"))?;
    let settings = tidemill::check::load(path.as_ref(), None)?;
    let _telemetry = tidemill::observe::telemetry::init(&settings.telemetry)?;
    let mut registry = Registry::default();
    registry.register(
        "streak",
        Streak {
            field: "amount".into(),
        },
    );
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    tidemill::pipeline::run_all_with(&settings, shutdown, Arc::new(registry)).await?;
    Ok(())
}
