//! The agent's persistent state in `[state] dir`: checkpoints that must survive a
//! crash at any instant. A state file is only ever replaced whole, with
//! [`write_atomic`] (see `monitoring_common::atomic_file`).

pub use monitoring_common::atomic_file::{AtomicWriteError as StateError, write_atomic};
