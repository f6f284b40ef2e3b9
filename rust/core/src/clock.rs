//! TODO(clock): filled in by its owner.
