//! What one database's SQL looks like, as the code written once asks it.
//!
//! Contract: nothing in `sink` names a database. Quoting, the DDL's type
//! names, the type mapping's facts ([`Target`]) and the classification of
//! the database's own errors are answered by a [`Dialect`], which each
//! backend's folder supplies (`db/*/dialect.rs`); adding a database adds one
//! implementation, not a `match` arm here.

use super::types::Target;
use crate::config::PortableType;
use crate::ident::Quoting;
use sqlx::error::DatabaseError;

/// What the writer does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Connection lost, timeout, serialization failure, deadlock, failover:
    /// retry the same batch with backoff; nothing is committed meanwhile.
    Transient,
    /// The rows themselves are at fault (constraint, invalid value).
    Data,
    /// Authentication, missing table, permission: retrying cannot help.
    Fatal,
}

/// The kind of a new column, inferred from a field's JSON values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inferred {
    BigInt,
    Double,
    Bool,
    Text,
    Json,
}

/// One database's SQL: its names, its value forms and its errors.
pub trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// How identifiers are quoted.
    fn quoting(&self) -> Quoting;

    /// Whether `a.b` names table `b` in schema (or database) `a`. Without
    /// schemas (SQLite) the dot is part of the table's name.
    fn schemas(&self) -> bool {
        true
    }

    /// How column type names read and what form values take.
    fn target(&self) -> Target;

    /// The SQL type of a declared column (`auto_create`).
    fn declared_type(&self, ty: PortableType) -> String;

    /// The SQL type of a column added for a field of `kind` (`auto_evolve`).
    fn inferred_type(&self, kind: Inferred) -> &'static str;

    /// Whether `ALTER TABLE … ADD COLUMN IF NOT EXISTS` is understood.
    fn add_column_if_not_exists(&self) -> bool;

    /// Whether to retry what the database reported.
    fn classify(&self, err: &dyn DatabaseError) -> RetryClass;

    /// Whether the error is a conflict between transactions (serialization
    /// failure, deadlock, lock wait, busy): the retries metric's `conflict`.
    fn is_conflict(&self, err: &dyn DatabaseError) -> bool;

    /// Whether the database said it is ending or refusing the connection
    /// (shutting down, the session killed): the retries metric's
    /// `connection`, as a broken socket is.
    fn is_connection_loss(&self, _err: &dyn DatabaseError) -> bool {
        false
    }

    /// Whether the database said the column exists already (another member
    /// added it first).
    fn is_duplicate_column(&self, err: &dyn DatabaseError) -> bool;
}
