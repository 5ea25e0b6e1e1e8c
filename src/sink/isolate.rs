//! Isolating the rows a database refuses, so the rest of a batch can load.
//!
//! When a batch fails with a *data* error (constraint violation, a value that
//! does not fit its column), the rows are tried again in transactions that are
//! always rolled back: the longest prefix that the database accepts is found
//! by binary search, the row just after it is bad, and the search goes on after
//! it with the accepted rows kept in every later trial — so a row that only
//! conflicts with another row of the same batch is found too. Each bad row
//! costs about log2(n) trials; nothing is committed here.

use super::{prepare, RetryClass, Sink, SinkError};
use crate::config::SinkConfig;
use crate::model::Row;

/// Rows the database accepts (indexes into the batch's rows), and the refused
/// ones with the database's reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Isolated {
    pub good: Vec<usize>,
    pub bad: Vec<(usize, String)>,
}

/// Splits `candidates` (indexes into `rows`) into accepted and refused rows.
/// A transient or fatal error during the trials is returned as it is.
pub async fn isolate<S: Sink + ?Sized>(
    sink: &mut S,
    cfg: &SinkConfig,
    rows: &[Row],
    candidates: &[usize],
) -> Result<Isolated, SinkError> {
    let mut accepted: Vec<usize> = Vec::with_capacity(candidates.len());
    let mut rest: &[usize] = candidates;
    let mut bad = Vec::new();
    loop {
        let Some(mut failure) = trial(sink, cfg, rows, &accepted, rest).await? else {
            accepted.extend_from_slice(rest);
            return Ok(Isolated {
                good: accepted,
                bad,
            });
        };
        // Invariant: accepted + rest[..lo] passes; accepted + rest[..hi] fails with `failure`.
        let (mut lo, mut hi) = (0, rest.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match trial(sink, cfg, rows, &accepted, &rest[..mid]).await? {
                None => lo = mid,
                Some(message) => {
                    hi = mid;
                    failure = message;
                }
            }
        }
        accepted.extend_from_slice(&rest[..lo]);
        bad.push((rest[lo], failure));
        rest = &rest[hi..];
    }
}

/// `None` when the database accepts `accepted + more`, else its data error.
async fn trial<S: Sink + ?Sized>(
    sink: &mut S,
    cfg: &SinkConfig,
    rows: &[Row],
    accepted: &[usize],
    more: &[usize],
) -> Result<Option<String>, SinkError> {
    if more.is_empty() {
        return Ok(None);
    }
    let subset: Vec<Row> = accepted
        .iter()
        .chain(more)
        .map(|&i| rows[i].clone())
        .collect();
    let result = match prepare(sink.schema(), cfg.mode, &cfg.key_columns, &subset) {
        Ok(prepared) => sink.trial(&prepared).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(None),
        Err(e) if e.class(sink.dialect()) == RetryClass::Data => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    }
}
