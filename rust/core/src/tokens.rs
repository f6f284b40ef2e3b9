//! TODO(tokens): filled in by its owner.
