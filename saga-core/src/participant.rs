//! participant (pending)
