//! PLACEHOLDER API: replaced by the selector language (SPEC Part B §1).
#![allow(unused_variables, clippy::todo)]
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    _p: (),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        todo!()
    }
    pub fn all() -> Selector {
        todo!()
    }
    pub fn has(label: &str) -> Selector {
        todo!()
    }
    pub fn equals(label: &str, value: &str) -> Selector {
        todo!()
    }
    pub fn in_set(label: &str, values: &[String]) -> Selector {
        todo!()
    }
    pub fn not_in_set(label: &str, values: &[String]) -> Selector {
        todo!()
    }
    pub fn and(&self, other: &Selector) -> Selector {
        todo!()
    }
    pub fn negate(&self) -> Selector {
        todo!()
    }
    pub fn with_prefixed_labels(&self, prefix: &str) -> Selector {
        todo!()
    }
    pub fn replace_all(&self, with: &Selector) -> Selector {
        todo!()
    }
    pub fn replace_global(&self, with: &Selector) -> Selector {
        todo!()
    }
    pub fn uses_global(&self) -> bool {
        todo!()
    }
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        todo!()
    }
}
