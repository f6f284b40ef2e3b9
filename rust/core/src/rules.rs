//! TODO(rules): filled in by its owner.
