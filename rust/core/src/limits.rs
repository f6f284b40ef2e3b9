//! TODO(limits): filled in by its owner.
