//! The two stages of a running pipeline, watched together: when one ends with
//! an error (or panics), the other is told to stop — the source by the run's
//! shutdown token, the writer by `abort` — and both results are returned, so
//! a failing stage never leaves the other running unsupervised.

use super::PipelineError;
use crate::sink::writer::WriterError;
use crate::source::SourceError;
use tokio_util::sync::CancellationToken;

type Joined<T, E> = Result<Result<T, E>, tokio::task::JoinError>;

/// Waits for both stages; when one fails, the other is told to stop.
pub(super) async fn supervise(
    mut source: tokio::task::JoinHandle<Result<(), SourceError>>,
    mut writer: tokio::task::JoinHandle<Result<(), WriterError>>,
    shutdown: &CancellationToken,
    abort: &CancellationToken,
) -> (Result<(), SourceError>, Result<(), WriterError>) {
    let flatten_source =
        |r: Joined<(), SourceError>| r.unwrap_or_else(|e| Err(panicked_source(&e)));
    let flatten_writer =
        |r: Joined<(), WriterError>| r.unwrap_or_else(|e| Err(panicked_writer(&e)));
    tokio::select! {
        s = &mut source => {
            let s = flatten_source(s);
            if s.is_err() {
                abort.cancel();
            }
            let w = flatten_writer(writer.await);
            (s, w)
        }
        w = &mut writer => {
            let w = flatten_writer(w);
            // The source notices the writer is gone on its next tick; stop it anyway.
            shutdown.cancel();
            let s = flatten_source(source.await);
            (s, w)
        }
    }
}

/// The error a pipeline stops with: the source's when it failed and the
/// writer was only aborted because of it (the writer stops at once when its
/// abort fires, so its `Aborted` would hide the cause: a fenced static
/// member, a fatal Kafka error); otherwise the writer's, then the source's.
pub(super) fn cause(
    pipeline: String,
    source: Result<(), SourceError>,
    writer: Result<(), WriterError>,
) -> Result<(), PipelineError> {
    match (source, writer) {
        (Err(source), Ok(()) | Err(WriterError::Aborted)) => {
            Err(PipelineError::Source { pipeline, source })
        }
        (_, Err(source)) => Err(PipelineError::Writer { pipeline, source }),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn panicked_source(e: &tokio::task::JoinError) -> SourceError {
    tracing::error!(error = %e, "source thread panicked");
    SourceError::Panicked
}

fn panicked_writer(e: &tokio::task::JoinError) -> WriterError {
    tracing::error!(error = %e, "writer task panicked");
    WriterError::Aborted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_aborted_because_the_source_failed_reports_the_source() {
        let stopped = cause(
            "p".into(),
            Err(SourceError::Panicked),
            Err(WriterError::Aborted),
        );
        assert!(
            matches!(stopped, Err(PipelineError::Source { .. })),
            "{stopped:?}"
        );
    }

    #[test]
    fn a_writer_that_failed_on_its_own_is_reported_before_the_source() {
        let poison = WriterError::Poison {
            reason: "data",
            message: "bad".into(),
        };
        let stopped = cause("p".into(), Err(SourceError::Panicked), Err(poison));
        assert!(
            matches!(stopped, Err(PipelineError::Writer { .. })),
            "{stopped:?}"
        );
        assert!(cause("p".into(), Ok(()), Ok(())).is_ok());
    }
}
