//! PLACEHOLDER: replaced by resolution and the reference evaluator.
