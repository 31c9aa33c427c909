//! Acknowledgements: one binary WebSocket message from collector to agent per frame.
//!
//! ```text
//! offset size field
//!  0     2    magic "MA" (0x4D 0x41)
//!  2     1    version (1)
//!  3     1    status (0 ok, 1 retry-later, 2 rejected)
//!  4     4    retry after, milliseconds, u32 LE (retry-later only; else 0)
//!  8     8    stream id, u64 LE
//! 16     8    sequence number, u64 LE
//! 24     2    reason length, u16 LE
//! 26     ..   reason, UTF-8 (empty for ok)
//! ```

use super::PROTOCOL_VERSION;

/// Acknowledgement magic: "MA", monitoring ack.
pub const ACK_MAGIC: [u8; 2] = *b"MA";

/// What the collector did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AckStatus {
    /// Committed by every required sink (or committed before: a duplicate).
    Ok = 0,
    /// Not committed now; send it again after the delay.
    RetryLater = 1,
    /// Never acceptable (malformed, over a limit): do not resend.
    Rejected = 2,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The outcome.
    pub status: AckStatus,
    /// For retry-later, how long to wait before resending.
    pub retry_after_ms: u32,
    /// Stream of the batch (0 when the frame was too broken to name it).
    pub stream_id: u64,
    /// Sequence of the batch (0 when the frame was too broken to name it).
    pub sequence: u64,
    /// Why, for retry-later and rejected.
    pub reason: String,
}

/// A malformed acknowledgement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed acknowledgement: {0}")]
pub struct AckError(&'static str);

impl Ack {
    /// A positive acknowledgement.
    pub fn ok(stream_id: u64, sequence: u64) -> Ack {
        Ack {
            status: AckStatus::Ok,
            retry_after_ms: 0,
            stream_id,
            sequence,
            reason: String::new(),
        }
    }

    /// Ask the agent to resend later.
    pub fn retry_later(
        stream_id: u64,
        sequence: u64,
        retry_after_ms: u32,
        reason: impl Into<String>,
    ) -> Ack {
        Ack {
            status: AckStatus::RetryLater,
            retry_after_ms,
            stream_id,
            sequence,
            reason: reason.into(),
        }
    }

    /// Refuse the batch for good.
    pub fn rejected(stream_id: u64, sequence: u64, reason: impl Into<String>) -> Ack {
        Ack {
            status: AckStatus::Rejected,
            retry_after_ms: 0,
            stream_id,
            sequence,
            reason: reason.into(),
        }
    }

    /// Encodes the acknowledgement. A reason longer than 65,535 bytes is cut at a
    /// character boundary.
    pub fn encode(&self) -> Vec<u8> {
        let mut reason = self.reason.as_str();
        if reason.len() > usize::from(u16::MAX) {
            let mut end = usize::from(u16::MAX);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut out = Vec::with_capacity(26 + reason.len());
        out.extend_from_slice(&ACK_MAGIC);
        out.push(PROTOCOL_VERSION);
        out.push(self.status as u8);
        out.extend_from_slice(&self.retry_after_ms.to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Decodes an acknowledgement.
    pub fn decode(b: &[u8]) -> Result<Ack, AckError> {
        if b.len() < 26 {
            return Err(AckError("shorter than 26 bytes"));
        }
        if b[0..2] != ACK_MAGIC {
            return Err(AckError("bad magic"));
        }
        if b[2] != PROTOCOL_VERSION {
            return Err(AckError("unsupported version"));
        }
        let status = match b[3] {
            0 => AckStatus::Ok,
            1 => AckStatus::RetryLater,
            2 => AckStatus::Rejected,
            _ => return Err(AckError("unknown status")),
        };
        let mut u32b = [0u8; 4];
        u32b.copy_from_slice(&b[4..8]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[8..16]);
        let mut q = [0u8; 8];
        q.copy_from_slice(&b[16..24]);
        let len = usize::from(u16::from_le_bytes([b[24], b[25]]));
        if b.len() != 26 + len {
            return Err(AckError("reason length does not match the message"));
        }
        let reason = std::str::from_utf8(&b[26..])
            .map_err(|_| AckError("reason is not UTF-8"))?
            .to_string();
        Ok(Ack {
            status,
            retry_after_ms: u32::from_le_bytes(u32b),
            stream_id: u64::from_le_bytes(s),
            sequence: u64::from_le_bytes(q),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn acks_round_trip(status in 0u8..3, retry in any::<u32>(), s in any::<u64>(), q in any::<u64>(), reason in ".{0,100}") {
            let status = [AckStatus::Ok, AckStatus::RetryLater, AckStatus::Rejected][usize::from(status)];
            let ack = Ack { status, retry_after_ms: retry, stream_id: s, sequence: q, reason };
            prop_assert_eq!(Ack::decode(&ack.encode()), Ok(ack));
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let _outcome = Ack::decode(&data);
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let ack = Ack::rejected(1, 2, "é".repeat(40_000));
        let back = Ack::decode(&ack.encode()).expect("decodes");
        assert!(back.reason.len() <= 65_535);
        assert!(back.reason.chars().all(|c| c == 'é'));
    }
}
