//! Selector fields: length cap, syntax (SPEC §1) and where `global()` may appear (§1.4).

use super::Check;
use crate::selector::Selector;

/// Where a selector field sits, which decides whether `global()` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Any selector field other than a rule's `namespaceSelector`: `global()` is refused.
    Plain,
    /// A rule's `namespaceSelector`: `global()` is allowed as the whole selector.
    RuleNamespaceSelector,
}

/// Longest selector quoted back in a message; longer ones are named by the field only.
const MAX_QUOTED: usize = 80;

/// Checks one selector field. The text is parsed once, and not at all when over the length
/// cap, so a hostile selector costs no more than the cap.
pub(super) fn check(check: &mut Check, field: impl FnOnce() -> String, text: &str, place: Place) {
    let max = check.limits.max_selector_len;
    // The limit is in characters, as Kubernetes counts a CRD string's maxLength, not bytes:
    // a selector comparing against UTF-8 values may hold more bytes than characters.
    let length = text.chars().count();
    if length > max {
        check.report(
            &field(),
            format!("selector is {length} characters long; at most {max} are allowed"),
        );
        return;
    }
    if let Err(error) = Selector::parse(text) {
        check.report(
            &field(),
            format!("invalid selector{}: {error}", quoted(text)),
        );
        return;
    }
    // Calico's rule is textual: any `global(` outside the one allowed form is refused, even
    // inside a string literal.
    if text.contains("global(") && !(place == Place::RuleNamespaceSelector && is_bare_global(text))
    {
        let message = match place {
            Place::Plain => {
                "global() may only be used as the whole of a rule's namespaceSelector, not in \
                 this selector"
            }
            Place::RuleNamespaceSelector => {
                "global() may not be combined with anything else: write namespaceSelector: \
                 global() on its own"
            }
        };
        check.report(&field(), message);
    }
}

/// `global()` alone, with optional spaces or tabs around and inside the parentheses.
fn is_bare_global(text: &str) -> bool {
    let blank = [' ', '\t'];
    text.trim_matches(blank)
        .strip_prefix("global(")
        .is_some_and(|rest| rest.trim_start_matches(blank) == ")")
}

fn quoted(text: &str) -> String {
    if text.len() <= MAX_QUOTED {
        format!(" {text:?}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_global_forms() {
        let cases: &[(&str, bool)] = &[
            ("global()", true),
            ("global( )", true),
            (" global(\t) ", true),
            ("global()&&all()", false),
            ("(global())", false),
            ("!global()", false),
            ("global() || has(a)", false),
            ("has(global)", false),
        ];
        for (text, want) in cases {
            assert_eq!(is_bare_global(text), *want, "{text:?}");
        }
    }

    #[test]
    fn long_selectors_are_not_quoted() {
        assert_eq!(quoted("a == 'b'"), " \"a == 'b'\"");
        assert_eq!(quoted(&"x".repeat(MAX_QUOTED + 1)), "");
    }
}
