//! PLACEHOLDER: replaced by the selector language.
