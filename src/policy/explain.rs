//! `explain`: the decision on one flow, for a person. It is the reference evaluator's own walk
//! with its narration recorded, so it cannot disagree with [`super::eval::evaluate`]: every
//! tier and policy considered in order, why each rule matched or which criterion failed first,
//! Pass and Log effects, tier ends, profiles, defaults, failsafe ports and the verdict.

use super::eval::{Decision, Narration, decide};
use super::flow::Flow;
use super::resolve::Resolved;

/// The explanation of one flow, as lines of text ending in `verdict: allow|deny`.
pub fn explain(resolved: &Resolved, flow: &Flow) -> String {
    explain_decision(resolved, flow).1
}

/// The decision on one flow together with its explanation.
pub fn explain_decision(resolved: &Resolved, flow: &Flow) -> (Decision, String) {
    let mut narration = Narration::recording();
    let decision = decide(resolved, flow, &mut narration);
    let mut text = format!("flow: {flow}\n");
    for (depth, line) in narration.into_lines() {
        text.push_str(&"  ".repeat(depth));
        text.push_str(&line);
        text.push('\n');
    }
    for entry in &decision.trace {
        for logged in &entry.logged {
            text.push_str(&format!(
                "logged by {}{} rule {}\n",
                logged.policy,
                logged
                    .tier
                    .as_deref()
                    .map(|t| format!(" (tier {t})"))
                    .unwrap_or_default(),
                logged.rule
            ));
        }
    }
    text.push_str(&format!("verdict: {}\n", decision.verdict.name()));
    (decision, text)
}
