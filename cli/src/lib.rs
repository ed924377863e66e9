//! The operator's CLI (`alpes`).
//!
//! Not built yet: the CLI arrives with the operations issue. This crate exports nothing.
