//! The stages a record passes on its way from Kafka into the database, as
//! `tidemill_stage_seconds{stage}` names them.
//!
//! Contract: each stage is observed once per record (a batch's stages weigh
//! as many records as it carries), so `kafka` through `commit` add up to the
//! record's end-to-end latency (`tidemill_end_to_end_latency_seconds`);
//! `offsets` comes after it.

/// The legs of a record's way from Kafka into the database, for
/// `tidemill_stage_seconds{stage}`. Each is observed once per record (a
/// batch's legs weigh as many records as it carries), so `kafka` through
/// `commit` add up to the end-to-end latency; `offsets` comes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The record's Kafka timestamp → fetched by the consumer.
    Kafka,
    /// Fetched → its batch closed (waiting for the batch to fill or linger).
    Batching,
    /// Batch closed → the writer starts it (waiting for a free writer).
    Queue,
    /// Keyed state loaded and applied (stateful pipelines only).
    State,
    /// The batch's statements: rows, deletes, state and checkpoint, with
    /// any retries, column additions and isolation of refused rows.
    Write,
    /// The database's commit.
    Commit,
    /// Committed in the database → its offsets sent to Kafka.
    Offsets,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Kafka,
        Stage::Batching,
        Stage::Queue,
        Stage::State,
        Stage::Write,
        Stage::Commit,
        Stage::Offsets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Kafka => "kafka",
            Stage::Batching => "batching",
            Stage::Queue => "queue",
            Stage::State => "state",
            Stage::Write => "write",
            Stage::Commit => "commit",
            Stage::Offsets => "offsets",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the per-stage buckets, in seconds (sub-millisecond
/// commits to minutes behind in Kafka).
pub const STAGE_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_indexed_in_their_order() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(stage.index(), i, "{}", stage.as_str());
        }
    }
}
