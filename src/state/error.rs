//! The state engine's own errors. Each says whether it is worth retrying:
//! the state table being away or busy is transient (the writer retries the
//! batch, which rolls its state back and loads it again); a state the
//! operator cannot read, or a step that cannot be built, is not.

/// An error of the keyed-state engine or its table.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A stateful step that cannot be built from its config (at start-up).
    #[error("transforms[{index}]: {message}")]
    Config { index: usize, message: String },
    /// The state table refused or failed a statement.
    #[error("keyed state table: {source}")]
    Store { source: sqlx::Error },
    /// A stored state this operator cannot read, or a state it cannot write.
    #[error("state of operator {operator} cannot be read: {message} (if its state format changed, give the operator a new name to start afresh)")]
    Format { operator: String, message: String },
}

impl StateError {
    /// The database error behind it, if any (its class decides a retry).
    pub fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            StateError::Store { source } => Some(source),
            _ => None,
        }
    }
}
