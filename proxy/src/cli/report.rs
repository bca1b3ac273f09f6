//! What the scripting commands print: the text an operator reads by default, and the
//! JSON a script reads with `--json` (freeze and unfreeze reports, explanations,
//! configuration problems).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::config::{Diagnostic, Severity};

/// A freeze or unfreeze report from the control socket: a JSON object with `frozen`.
pub(super) fn freeze_report(answer: &str) -> Option<Value> {
    serde_json::from_str::<Value>(answer)
        .ok()
        .filter(|report| report.get("frozen").is_some())
}

/// The report as sentences: what is frozen since when and by whom, then each cancel.
pub(super) fn freeze_text(report: &Value) -> String {
    let mut text = String::new();
    let frozen = &report["frozen"];
    let describe = |entry: &Value| {
        format!(
            "since {}, by {}",
            entry["since"].as_str().unwrap_or("?"),
            entry["by"].as_str().unwrap_or("?")
        )
    };
    let mut any = false;
    if frozen["all"].is_object() {
        any = true;
        let _ = writeln!(text, "frozen: every account, {}", describe(&frozen["all"]));
    }
    if let Some(accounts) = frozen["accounts"].as_object() {
        for (name, entry) in accounts {
            any = true;
            let _ = writeln!(text, "frozen: account {name}, {}", describe(entry));
        }
    }
    if !any {
        text.push_str("nothing is frozen\n");
    }
    for cancel in report["cancelled"].as_array().into_iter().flatten() {
        let status = cancel["status"].as_str().unwrap_or("?");
        let orders: Vec<&str> = cancel["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let outcome = if status.parse::<u16>().is_ok_and(|s| (200..300).contains(&s)) {
            if orders.is_empty() {
                format!("cancelled (exchange answered {status})")
            } else {
                format!("cancelled {}", orders.join(", "))
            }
        } else {
            format!("FAILED: {status}")
        };
        let _ = writeln!(
            text,
            "cancel open orders: account {} {}: {outcome}",
            cancel["account"].as_str().unwrap_or("?"),
            cancel["symbol"].as_str().unwrap_or("?"),
        );
    }
    text
}

/// An explanation as JSON: the decision, the reason code and status of a deny, and
/// every line as a field, in order (a field may repeat, e.g. one `order` per order).
pub(super) fn explanation_json(text: &str) -> Value {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        match line.split_once(':') {
            Some((label, value))
                if !line.starts_with(char::is_whitespace)
                    && !label.is_empty()
                    && !label.contains(char::is_whitespace) =>
            {
                fields.push((label.to_owned(), value.trim().to_owned()));
            }
            // A continuation of the field above, kept with it.
            _ => match fields.last_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                None => fields.push((String::new(), line.trim().to_owned())),
            },
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    };
    let decision = field("decision").map_or("unknown", first_word);
    // "reason:   symbol_not_allowed (403 the sentence)".
    let reason = field("reason").filter(|_| decision == "deny");
    let code = reason.and_then(|r| r.split_whitespace().next());
    let status = reason
        .and_then(|r| r.split_once('(').map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse::<u16>().ok());
    json!({
        "decision": decision,
        "reason": code,
        "status": status,
        "fields": fields
            .iter()
            .map(|(label, value)| json!({ "field": label, "text": value }))
            .collect::<Vec<_>>(),
    })
}

/// The decision an explanation states (`allow`, `deny`): the first word of its
/// `decision:` line, whatever qualifies it ("allow (dry-run: ...)", "allow, if ...").
pub(super) fn decision_of(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("decision:"))
        .map(|rest| first_word(rest.trim_start()))
}

fn first_word(text: &str) -> &str {
    text.split([' ', ',']).next().unwrap_or_default()
}

/// One configuration problem as JSON.
pub(super) fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    json!({
        "severity": match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        "file": diagnostic.file.display().to_string(),
        "line": diagnostic.line,
        "column": diagnostic.column,
        "message": diagnostic.message,
    })
}

#[cfg(test)]
mod tests {
    use super::{explanation_json, freeze_report, freeze_text};

    #[test]
    fn a_deny_explained_as_json_keeps_its_code_status_and_every_line() {
        let text = "request:  POST /api/v3/order?symbol=DOGEUSDT\nbot:      grid (account main, binance-spot, mode enforce)\ndecision: deny\nreason:   symbol_not_allowed (403 DOGEUSDT is not in this bot's symbols)\nrule:     symbols at keyward.toml:12:1\n";
        let value = explanation_json(text);
        assert_eq!(value["decision"], "deny");
        assert_eq!(value["reason"], "symbol_not_allowed");
        assert_eq!(value["status"], 403);
        assert_eq!(value["fields"].as_array().map(Vec::len), Some(5));
        assert_eq!(value["fields"][4]["text"], "symbols at keyward.toml:12:1");
        let allowed = explanation_json("decision: allow (dry-run: answered locally, never sent)\n");
        assert_eq!(allowed["decision"], "allow");
        assert!(allowed["reason"].is_null() && allowed["status"].is_null());
    }

    #[test]
    fn a_freeze_report_reads_as_sentences_and_a_failed_cancel_says_so() {
        let report = freeze_report(
            r#"{"frozen":{"all":null,"accounts":{"main":{"since":"2026-12-06T11:00:00Z","by":"operator"}}},
                "cancelled":[{"account":"main","symbol":"BTCUSDT","status":"200","orders":["7","8"]},
                             {"account":"main","symbol":"ETHUSDT","status":"connection refused","orders":[]}]}"#,
        )
        .expect("a report");
        let text = freeze_text(&report);
        assert_eq!(
            text,
            "frozen: account main, since 2026-12-06T11:00:00Z, by operator\n\
             cancel open orders: account main BTCUSDT: cancelled 7, 8\n\
             cancel open orders: account main ETHUSDT: FAILED: connection refused\n"
        );
        let lifted = freeze_report(r#"{"frozen":{"all":null,"accounts":{}}}"#).expect("a report");
        assert_eq!(freeze_text(&lifted), "nothing is frozen\n");
        assert!(freeze_report("no account named `nope`\n").is_none());
    }
}
