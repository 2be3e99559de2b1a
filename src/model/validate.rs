//! PLACEHOLDER: replaced by validation (SPEC Part B §6).
use super::{Limits, Problem, Resource};
pub fn validate(_resources: &[Resource], _limits: &Limits) -> Vec<Problem> {
    Vec::new()
}
