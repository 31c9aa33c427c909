//! Log sources.

pub mod file;
