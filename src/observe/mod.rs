//! What an operator sees, in one place. Nothing here changes what the
//! pipeline does: [`stats`] counts (lock-free, written by the stages),
//! [`stage`] names where a record's time goes,
//! [`metrics`] renders those counts for Prometheus and OTLP, [`export`]
//! says where OTLP goes and over which protocol, [`telemetry`]
//! sets up logs and trace export, [`trace`] carries producers' trace context
//! to the writer's spans, and [`health`] serves liveness, readiness,
//! `/metrics` and the status page ([`status`], fed by [`history`] and
//! [`recent`]) over HTTP. A failure to observe never stops a pipeline.

pub mod export;
pub mod health;
pub mod history;
pub mod metrics;
pub mod recent;
pub mod stage;
pub mod stats;
pub mod status;
pub mod telemetry;
pub mod trace;
