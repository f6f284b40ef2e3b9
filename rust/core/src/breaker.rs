//! TODO(breaker): filled in by its owner.
