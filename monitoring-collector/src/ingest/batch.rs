//! What one frame gets back: ok after commit (and every required sink's write),
//! retry-later when the collector cannot commit now, a required sink fails or the
//! agent is over its rate budget, rejected when the frame can never be accepted.
//! How a store or sink failure is logged, and the delay it asks for, is decided in
//! `store_failures`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use monitoring_common::event::now_ns;
use monitoring_common::protocol::codec::CodecError;
use monitoring_common::protocol::{Ack, FrameError, FrameHeader};

use super::IngestState;
use super::agents::{SharedLimiter, charge};
use super::store_failures::StoreFailures;
use crate::auth::AgentId;
use crate::processor::{Job, Outcome, SubmitError};
use crate::storage::CommitOutcome;
use crate::telemetry::{reject_reason, retry_reason};

/// How long an agent is asked to wait before resending after retry-later for a full
/// queue or a shutdown (a failing store asks more as the failure lasts).
pub(crate) const RETRY_AFTER_MS: u32 = 1000;
/// Bounds of the wait asked of a rate-limited agent: not so short that it spins,
/// not so long that a batch in debt is parked for minutes.
pub(crate) const RATE_RETRY_MIN_MS: u32 = 50;
/// See [`RATE_RETRY_MIN_MS`].
pub(crate) const RATE_RETRY_MAX_MS: u32 = 10_000;

/// The `retry_after_ms` for a rate-limited batch that fits the budget after `wait`:
/// rounded up, so that the agent does not come back a moment too early.
pub(crate) fn rate_retry_ms(wait: Duration) -> u32 {
    let ms = wait.as_micros().div_ceil(1000);
    u32::try_from(ms)
        .unwrap_or(u32::MAX)
        .clamp(RATE_RETRY_MIN_MS, RATE_RETRY_MAX_MS)
}

/// The `reason` label for a frame error.
pub(crate) fn reject_label(error: &FrameError) -> &'static str {
    match error {
        FrameError::UnknownCodec(_) | FrameError::Codec(CodecError::Unknown(_)) => {
            reject_reason::CODEC
        }
        FrameError::Version(_) => reject_reason::VERSION,
        FrameError::Codec(CodecError::TooLarge { .. }) => reject_reason::INFLATED,
        FrameError::FrameTooLarge { .. }
        | FrameError::UncompressedTooLarge { .. }
        | FrameError::TooManyEvents { .. } => reject_reason::LIMIT,
        FrameError::Short(_)
        | FrameError::BadMagic
        | FrameError::Flags(_)
        | FrameError::Codec(_)
        | FrameError::Payload(_) => reject_reason::MALFORMED,
    }
}

/// Rejects a frame for good, naming its batch if its header is readable.
pub(crate) fn reject(
    state: &IngestState,
    agent: &AgentId,
    frame: &[u8],
    error: &FrameError,
) -> Ack {
    let (stream_id, sequence) = FrameHeader::peek_id(frame).unwrap_or((0, 0));
    let label = reject_label(error);
    state
        .metrics
        .batches_rejected
        .get_or_create(&[("reason", label)])
        .inc();
    tracing::warn!(
        message = "Rejected batch.",
        %error,
        reason = label,
        agent_id = %agent,
        stream_id,
        sequence
    );
    Ack::rejected(stream_id, sequence, error.to_string())
}

/// Rejects a text message: the protocol is binary only.
pub(crate) fn reject_text(state: &IngestState, agent: &AgentId) -> Ack {
    state
        .metrics
        .batches_rejected
        .get_or_create(&[("reason", reject_reason::TEXT)])
        .inc();
    tracing::warn!(message = "Rejected text message; frames must be binary messages.", agent_id = %agent);
    Ack::rejected(
        0,
        0,
        "text messages are not frames; send each frame as one binary message",
    )
}

fn retry(
    state: &IngestState,
    stream_id: u64,
    sequence: u64,
    label: &'static str,
    reason: String,
) -> Ack {
    retry_after(state, stream_id, sequence, label, RETRY_AFTER_MS, reason)
}

/// Retry-later for a batch the store or a required sink could not take. Every
/// batch fails while they do: `log` runs for the first failure and then once per
/// interval with the count of those not logged (all are counted in the metrics),
/// and the retry delay grows with the outage.
fn retry_failed(
    state: &IngestState,
    failures: &StoreFailures,
    (stream_id, sequence): (u64, u64),
    label: &'static str,
    reason: String,
    log: impl FnOnce(u64, u32),
) -> Ack {
    let failure = failures.failure(Instant::now());
    let retry_after_ms = u32::try_from(failure.retry_after.as_millis()).unwrap_or(u32::MAX);
    if let Some(suppressed) = failure.log {
        log(suppressed, retry_after_ms);
    }
    retry_after(state, stream_id, sequence, label, retry_after_ms, reason)
}

fn retry_after(
    state: &IngestState,
    stream_id: u64,
    sequence: u64,
    label: &'static str,
    retry_after_ms: u32,
    reason: String,
) -> Ack {
    state
        .metrics
        .batches_retried
        .get_or_create(&[("reason", label)])
        .inc();
    Ack::retry_later(stream_id, sequence, retry_after_ms, reason)
}

/// Takes one binary message through header checks, the agent's rate budget
/// (`limiter`; `None` is unlimited), the processor and the store.
pub(crate) async fn handle(
    state: &IngestState,
    agent: &AgentId,
    limiter: Option<&SharedLimiter>,
    frame: Bytes,
) -> Ack {
    let received_ns = now_ns();
    // The header is checked here, cheaply, so that an oversize or unknown-codec frame
    // is answered without queueing; the payload is decoded by a worker.
    let header = match FrameHeader::parse(&frame, &state.limits) {
        Ok(header) => header,
        Err(error) => return reject(state, agent, &frame, &error),
    };
    let (stream_id, sequence) = (header.stream_id, header.sequence);
    // Charged on the declared sizes, before any decoding work; a frame whose
    // declaration lies is rejected by the worker, its budget spent all the same.
    if let Some(limiter) = limiter {
        let (events, bytes) = (header.event_count, header.uncompressed_len);
        if let Err(wait) = charge(limiter, u64::from(events), u64::from(bytes)) {
            let retry_after_ms = rate_retry_ms(wait);
            tracing::debug!(
                message = "Batch over the agent's rate limit; asked to retry later.",
                agent_id = %agent,
                stream_id,
                sequence,
                events,
                bytes,
                retry_after_ms
            );
            return retry_after(
                state,
                stream_id,
                sequence,
                retry_reason::RATE_LIMITED,
                retry_after_ms,
                format!(
                    "rate limit of agent {agent} exceeded ([server.rate_limit]); retry in {retry_after_ms} ms"
                ),
            );
        }
    }
    let job = Job {
        agent_id: agent.clone(),
        received_ns,
        frame: frame.clone(),
    };
    let reply = match state.processor.submit(job) {
        Ok(reply) => reply,
        Err(error @ SubmitError::Full) => {
            return retry(
                state,
                stream_id,
                sequence,
                retry_reason::QUEUE_FULL,
                error.to_string(),
            );
        }
        Err(error @ SubmitError::Closed) => {
            return retry(
                state,
                stream_id,
                sequence,
                retry_reason::UNAVAILABLE,
                error.to_string(),
            );
        }
    };
    let outcome = reply.await;
    if let Ok(Outcome::Stored(_)) = &outcome
        && let Some(r) = state.sink_failures.success(Instant::now())
    {
        tracing::info!(
            message = "Required sinks take batches again.",
            failed_batches = r.failures,
            after_secs = r.after.as_secs(),
        );
    }
    match outcome {
        Ok(Outcome::Stored(CommitOutcome::Committed)) => {
            state.metrics.batches_committed.inc();
            if let Some(r) = state.store_failures.success(Instant::now()) {
                tracing::info!(
                    message = "Store commits succeed again.",
                    failed_batches = r.failures,
                    after_secs = r.after.as_secs(),
                );
            }
            Ack::ok(stream_id, sequence)
        }
        Ok(Outcome::Stored(CommitOutcome::Duplicate)) => {
            state.metrics.batches_duplicate.inc();
            tracing::debug!(message = "Duplicate batch acknowledged again.", agent_id = %agent, stream_id, sequence);
            Ack::ok(stream_id, sequence)
        }
        Ok(Outcome::Rejected(error)) => reject(state, agent, &frame, &error),
        Ok(Outcome::StoreFailed(error)) => retry_failed(
            state,
            &state.store_failures,
            (stream_id, sequence),
            retry_reason::STORE,
            format!("storage failed: {error}"),
            |suppressed, retry_after_ms| {
                tracing::warn!(
                    message = "Failed to commit batch; the agent will retry.",
                    %error,
                    agent_id = %agent,
                    stream_id,
                    sequence,
                    retry_after_ms,
                    suppressed,
                );
            },
        ),
        Ok(Outcome::SinkFailed(stored, failure)) => {
            // The store has the batch; the resend will be a duplicate there and
            // written again to the required sinks.
            if stored == CommitOutcome::Committed {
                state.metrics.batches_committed.inc();
            }
            retry_failed(
                state,
                &state.sink_failures,
                (stream_id, sequence),
                retry_reason::SINK,
                format!("required {failure}"),
                |suppressed, retry_after_ms| {
                    tracing::warn!(
                        message = "Failed to write batch to a required sink; the agent will retry.",
                        error = %failure.error,
                        sink = %failure.sink,
                        agent_id = %agent,
                        stream_id,
                        sequence,
                        retry_after_ms,
                        suppressed,
                    );
                },
            )
        }
        Err(_) => retry(
            state,
            stream_id,
            sequence,
            retry_reason::UNAVAILABLE,
            "processing was interrupted".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::protocol::payload::PayloadError;

    #[test]
    fn rate_retry_delays_are_rounded_up_and_clamped() {
        assert_eq!(rate_retry_ms(Duration::ZERO), 50);
        assert_eq!(rate_retry_ms(Duration::from_micros(250_001)), 251);
        assert_eq!(rate_retry_ms(Duration::from_millis(250)), 250);
        assert_eq!(rate_retry_ms(Duration::from_secs(3600)), 10_000);
    }

    #[test]
    fn every_frame_error_has_a_bounded_label() {
        let cases = [
            (FrameError::Short(3), "malformed"),
            (FrameError::BadMagic, "malformed"),
            (FrameError::Version(9), "version"),
            (FrameError::UnknownCodec(42), "codec"),
            (FrameError::Flags(1), "malformed"),
            (FrameError::FrameTooLarge { size: 2, limit: 1 }, "limit"),
            (
                FrameError::UncompressedTooLarge {
                    declared: 2,
                    limit: 1,
                },
                "limit",
            ),
            (FrameError::TooManyEvents { count: 2, limit: 1 }, "limit"),
            (
                FrameError::Codec(CodecError::TooLarge { declared: 1 }),
                "inflated",
            ),
            (
                FrameError::Payload(PayloadError {
                    event: 0,
                    offset: 0,
                    reason: "x",
                }),
                "malformed",
            ),
        ];
        for (error, label) in cases {
            assert_eq!(reject_label(&error), label, "{error}");
        }
    }
}
