//! The latest incidents of one pipeline, as the status page shows them: dead
//! letters counted by reason with the newest few kept whole, and the last
//! transient database error.
//!
//! Contract: bounded — at most [`KEPT`] letters, each message cut to
//! [`MESSAGE_CHARS`] characters; the messages are the ones the logs already
//! carry (record positions and error texts, which never hold a secret: see
//! `tests/secrets.rs`). Writers take one uncontended lock per dead letter or
//! retried error, never per record.

use crate::model::Origin;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Dead letters kept with their message.
pub const KEPT: usize = 10;
/// The longest message kept, in characters.
pub const MESSAGE_CHARS: usize = 300;

/// One dead letter as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterNote {
    /// When it was sent, ms since the epoch.
    pub at_ms: u64,
    pub reason: &'static str,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub message: String,
}

/// The last transient database error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorNote {
    pub at_ms: u64,
    /// Its retry class (`connection`, `conflict`, `other`).
    pub class: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
struct Notes {
    by_reason: BTreeMap<&'static str, u64>,
    letters: VecDeque<LetterNote>,
    db_error: Option<ErrorNote>,
}

/// See the module's contract.
#[derive(Debug, Default)]
pub struct Recent {
    notes: Mutex<Notes>,
}

impl Recent {
    /// Notes a dead letter sent at `at_ms`.
    pub fn letter(&self, at_ms: u64, origin: &Origin, reason: &'static str, message: &str) {
        let mut notes = self.lock();
        *notes.by_reason.entry(reason).or_default() += 1;
        if notes.letters.len() == KEPT {
            notes.letters.pop_front();
        }
        notes.letters.push_back(LetterNote {
            at_ms,
            reason,
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            message: cut(message),
        });
    }

    /// Notes a transient database error at `at_ms` (it replaces the last).
    pub fn db_error(&self, at_ms: u64, class: &'static str, message: &str) {
        self.lock().db_error = Some(ErrorNote {
            at_ms,
            class,
            message: cut(message),
        });
    }

    /// Dead letters sent per reason, for the life of the process.
    pub fn by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.lock().by_reason.clone()
    }

    /// The newest dead letters, newest first.
    pub fn letters(&self) -> Vec<LetterNote> {
        self.lock().letters.iter().rev().cloned().collect()
    }

    pub fn last_db_error(&self) -> Option<ErrorNote> {
        self.lock().db_error.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Notes> {
        // Only notes live here: a panic elsewhere cannot leave them inconsistent.
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn cut(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(offset: i64) -> Origin {
        Origin {
            topic: "t".into(),
            partition: 2,
            offset,
            timestamp_ms: None,
        }
    }

    #[test]
    fn the_newest_letters_are_kept_newest_first_and_every_one_is_counted() {
        let recent = Recent::default();
        for offset in 0..25 {
            let reason = if offset % 5 == 0 { "data" } else { "decode" };
            recent.letter(1_000 + offset as u64, &origin(offset), reason, "bad");
        }
        let letters = recent.letters();
        assert_eq!(letters.len(), KEPT);
        assert_eq!(letters[0].offset, 24);
        assert_eq!(letters[KEPT - 1].offset, 15);
        let by_reason = recent.by_reason();
        assert_eq!((by_reason["data"], by_reason["decode"]), (5, 20));
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let recent = Recent::default();
        let long = "é".repeat(MESSAGE_CHARS + 50);
        recent.letter(1, &origin(0), "data", &long);
        recent.db_error(2, "connection", &long);
        let kept = &recent.letters()[0].message;
        assert_eq!(
            kept.chars().count(),
            MESSAGE_CHARS + 1,
            "the cut is marked with …"
        );
        assert!(kept.ends_with('…'));
        let error = recent.last_db_error().expect("noted");
        assert_eq!((error.at_ms, error.class), (2, "connection"));
        assert_eq!(error.message, *kept);
    }

    #[test]
    fn the_last_database_error_replaces_the_one_before() {
        let recent = Recent::default();
        assert_eq!(recent.last_db_error(), None);
        recent.db_error(1, "conflict", "deadlock detected");
        recent.db_error(5, "connection", "connection refused");
        let error = recent.last_db_error().expect("noted");
        assert_eq!(
            (error.at_ms, error.class, error.message.as_str()),
            (5, "connection", "connection refused")
        );
    }
}
