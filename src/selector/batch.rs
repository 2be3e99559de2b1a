//! One line of `portcullis selector --batch` (SPEC A3).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Selector;

/// Evaluates one input line `{"selector": "...", "labels": {"k": "v", ...}}` and returns
/// the output line (without a newline): `{"match":true}`, `{"match":false}` or
/// `{"error":"..."}`. `selector` is required; `labels` missing or `null` means no labels (an
/// entity may have none); other fields are ignored. There is no policy context here, so
/// `global()` is accepted and true (SPEC B §1.4). Never panics.
pub fn batch_line(line: &str) -> String {
    let reply = match evaluate_line(line) {
        Ok(matched) => json!({ "match": matched }),
        Err(message) => json!({ "error": message }),
    };
    reply.to_string()
}

fn evaluate_line(line: &str) -> Result<bool, String> {
    let input: Value =
        serde_json::from_str(line).map_err(|error| format!("malformed JSON: {error}"))?;
    let Value::Object(fields) = input else {
        return Err("expected a JSON object with \"selector\" and \"labels\"".to_owned());
    };
    let text = match fields.get("selector") {
        Some(Value::String(text)) => text,
        Some(_) => return Err("\"selector\" must be a string".to_owned()),
        None => return Err("missing field \"selector\"".to_owned()),
    };
    let labels = match fields.get("labels") {
        Some(Value::Object(labels)) => string_map(labels)?,
        None | Some(Value::Null) => BTreeMap::new(),
        Some(_) => return Err("\"labels\" must be an object".to_owned()),
    };
    let selector = Selector::parse(text).map_err(|error| format!("invalid selector: {error}"))?;
    Ok(selector.matches(&labels))
}

fn string_map(labels: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    labels
        .iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key.clone(), value.clone())),
            _ => Err(format!("label {key:?} must have a string value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_every_kind_of_line() {
        let table: &[(&str, &str)] = &[
            (
                r#"{"selector": "app == 'web'", "labels": {"app": "web"}}"#,
                r#"{"match":true}"#,
            ),
            (
                r#"{"selector": "app == 'web'", "labels": {"app": "db"}}"#,
                r#"{"match":false}"#,
            ),
            (r#"{"selector": "", "labels": {}}"#, r#"{"match":true}"#),
            (
                r#"{"selector": "tier != 'x'", "labels": {}}"#,
                r#"{"match":true}"#,
            ),
            (
                r#"{"selector": "global()", "labels": {}}"#,
                r#"{"match":true}"#,
            ),
            (
                r#"{"selector": "!global( )", "labels": {}}"#,
                r#"{"match":false}"#,
            ),
            (
                r#"{"labels": {"a": "x"}, "selector": "a in {'x',}", "note": 1}"#,
                r#"{"match":true}"#,
            ),
            (
                r#"  {"selector": "has(a)", "labels": {"a": ""}}  "#,
                r#"{"match":true}"#,
            ),
            (r#"{"selector": "has(a)"}"#, r#"{"match":false}"#),
            (r#"{"selector": "a != 'x'"}"#, r#"{"match":true}"#),
            (
                r#"{"selector": "a not in {}", "labels": null}"#,
                r#"{"match":true}"#,
            ),
            (
                r#"{"selector": "a == 'caf\u00e9'", "labels": {"a": "café"}}"#,
                r#"{"match":true}"#,
            ),
        ];
        for (line, expected) in table {
            assert_eq!(batch_line(line), *expected, "{line}");
        }
    }

    #[test]
    fn bad_lines_give_an_error_line() {
        let table: &[(&str, &str)] = &[
            ("", "malformed JSON"),
            ("not json", "malformed JSON"),
            (r#"{"selector": "has(a)", "labels": {}"#, "malformed JSON"),
            (
                r#"{"selector": "has(a)", "labels": {}} x"#,
                "malformed JSON",
            ),
            (r#"["has(a)", {}]"#, "expected a JSON object"),
            ("null", "expected a JSON object"),
            (r#"{"labels": {}}"#, "missing field \\\"selector\\\""),
            (
                r#"{"selector": 3, "labels": {}}"#,
                "\\\"selector\\\" must be a string",
            ),
            (r#"{"selector": null, "labels": {}}"#, "must be a string"),
            (
                r#"{"selector": "has(a)", "labels": []}"#,
                "must be an object",
            ),
            (
                r#"{"selector": "has(a)", "labels": {"a": 1}}"#,
                "label \\\"a\\\" must have a string value",
            ),
            (
                r#"{"selector": "has(a)", "labels": {"a": null}}"#,
                "must have a string value",
            ),
            (
                r#"{"selector": "has(a)", "labels": {"a": {"b": "c"}}}"#,
                "must have a string value",
            ),
            (
                r#"{"selector": "a = 'x'", "labels": {}}"#,
                "invalid selector: a single '=' is not an operator (did you mean '=='?) at position 2",
            ),
            (r#"{"selector": "has(a)\n", "labels": {}}"#, "at position 6"),
        ];
        for (line, expected) in table {
            let reply = batch_line(line);
            let parsed: Value = serde_json::from_str(&reply).unwrap();
            assert!(parsed["error"].is_string(), "{line}: {reply}");
            assert!(reply.contains(expected), "{line}: {reply}");
            assert!(reply.starts_with("{\"error\":"), "{line}: {reply}");
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let line = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(batch_line(&line).contains("malformed JSON"));
    }
}
