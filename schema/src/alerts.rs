//! Live log alerts: a proc's `alerts` rules, evaluated on each line as it is stored (the masked
//! text, so a secret never leaves in an alert), firing through the notification outbox while
//! the run is still going.
//!
//! Invariants:
//! - patterns are compiled by the `regex` crate (no backreferences or look-around: matching is
//!   linear in the line's length) with bounded compiled size, and are at most
//!   [`MAX_PATTERN_CHARS`] characters; a proc has at most [`MAX_RULES`] rules;
//! - a `once` rule fires at most once per run, also across a change of supervising replica: its
//!   outbox row has a unique idempotency key (`…-alert<rule>-<channel>-once-…`); a repeating
//!   one fires at most [`MAX_ALERTS_PER_RULE`] times per supervisor (keyed by the line's `seq`,
//!   so a line never alerts twice);
//! - the rules are the proc's as the run was submitted (read again only on a re-attach);
//! - alerts are sent only for stored lines, after they are stored.

use std::collections::HashMap;

use chrono::Utc;
use proctor_entity::json::{AlertMatch, AlertRules, NotificationPolicy};
use proctor_entity::{execution, proc};
use regex::{Regex, RegexBuilder};
use sea_orm::{EntityTrait, QuerySelect};

use crate::error::ApiError;
use crate::ports::event_bus::LogRecord;
use crate::ports::notifier::{EMAIL, SLACK, WEBHOOK};
use crate::state::AppState;

/// Whether a rule fires only once per run when it does not say.
pub const ONCE_BY_DEFAULT: bool = true;
/// Most rules one proc may have.
pub const MAX_RULES: usize = 20;
/// Longest pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 512;
/// Most firings of a repeating (`once: false`) rule per run.
pub const MAX_ALERTS_PER_RULE: u32 = 20;
/// Largest compiled program of a pattern (bytes): `a{1000}{1000}` and its kind are refused.
const MAX_COMPILED_BYTES: usize = 1 << 20;
/// Longest matched line carried in an alert (characters); the rest is cut.
const MAX_LINE_CHARS: usize = 1000;

/// Compiles a pattern, or says why it is refused.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!("must be at most {MAX_PATTERN_CHARS} characters"));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(_) => {
                "is too big once compiled (repetitions multiply); simplify it".to_owned()
            }
            other => format!("is not a valid regular expression: {other}"),
        })
}

/// Checks an alert's `notify` list: e-mail addresses (normalised), `slack` or `webhook`; 1 to
/// 10 entries.
pub fn check_notify(field: &str, notify: &[String]) -> Result<Vec<String>, ApiError> {
    if notify.is_empty() || notify.len() > 10 {
        return Err(ApiError::bad_input(
            field,
            "give 1 to 10 targets: e-mail addresses, `slack` or `webhook`",
        ));
    }
    let mut checked = Vec::with_capacity(notify.len());
    for (index, target) in notify.iter().enumerate() {
        let target = target.trim();
        let entry = if target == SLACK || target == WEBHOOK {
            target.to_owned()
        } else if target.contains('@') {
            crate::notifications::check_emails(&format!("{field}[{index}]"), &[target.to_owned()])?
                .remove(0)
        } else {
            return Err(ApiError::bad_input(
                format!("{field}[{index}]"),
                format!("{target:?} is neither an e-mail address nor `slack` or `webhook`"),
            ));
        };
        if !checked.contains(&entry) {
            checked.push(entry);
        }
    }
    Ok(checked)
}

/// One compiled rule and how often it fired in this run.
struct Watched {
    regex: Regex,
    notify: Vec<String>,
    once: bool,
    fired: u32,
}

/// The alert rules of one run, as its log pipeline evaluates them.
pub struct AlertWatch {
    proc_id: i64,
    /// Part of every idempotency key: two installations reuse execution ids, not ids with
    /// their creation time.
    salt: i64,
    rules: Vec<Watched>,
}

impl AlertWatch {
    /// A watch of `rules` over `execution`'s output; none without rules (or a proc).
    pub fn of(execution: &execution::Model, rules: &AlertRules) -> Option<Self> {
        let proc_id = execution.proc_id?;
        let rules: Vec<Watched> = rules
            .0
            .iter()
            .filter_map(|rule| {
                // Stored rules were validated; one that no longer compiles is skipped.
                compile(&rule.pattern).ok().map(|regex| Watched {
                    regex,
                    notify: rule.notify.clone(),
                    once: rule.once,
                    fired: 0,
                })
            })
            .collect();
        (!rules.is_empty()).then(|| Self {
            proc_id,
            salt: execution.created_at.timestamp_micros(),
            rules,
        })
    }

    /// The rules of the proc `execution_id` runs, read when a supervisor re-attaches to a run
    /// (a new run gets them with its spec); none when the proc has no rules (or is gone).
    pub async fn load(state: &AppState, execution_id: i64) -> Result<Option<Self>, ApiError> {
        let Some(execution) = execution::Entity::find_by_id(execution_id)
            .one(state.db())
            .await?
        else {
            return Ok(None);
        };
        let Some(proc_id) = execution.proc_id else {
            return Ok(None);
        };
        let rules: Option<Option<AlertRules>> = proc::Entity::find_by_id(proc_id)
            .select_only()
            .column(proc::Column::Alerts)
            .into_tuple()
            .one(state.db())
            .await?;
        Ok(rules
            .flatten()
            .and_then(|rules| Self::of(&execution, &rules)))
    }

    /// The alerts `lines` (just stored) raise, counting them as fired.
    pub fn evaluate(&mut self, lines: &[LogRecord]) -> Vec<(AlertMatch, Vec<String>, bool)> {
        let mut raised = Vec::new();
        for line in lines {
            for (index, rule) in self.rules.iter_mut().enumerate() {
                let limit = if rule.once { 1 } else { MAX_ALERTS_PER_RULE };
                if rule.fired >= limit || !rule.regex.is_match(&line.line) {
                    continue;
                }
                rule.fired += 1;
                raised.push((
                    AlertMatch {
                        rule: index,
                        pattern: rule.regex.as_str().to_owned(),
                        line: line.line.chars().take(MAX_LINE_CHARS).collect(),
                        seq: line.seq,
                    },
                    rule.notify.clone(),
                    rule.once,
                ));
            }
        }
        raised
    }

    /// Writes the outbox rows of `raised` for execution `execution_id` and wakes the delivery.
    pub async fn send(
        &self,
        state: &AppState,
        execution_id: i64,
        raised: Vec<(AlertMatch, Vec<String>, bool)>,
    ) -> Result<(), ApiError> {
        if raised.is_empty() {
            return Ok(());
        }
        let policy: Option<NotificationPolicy> = proc::Entity::find_by_id(self.proc_id)
            .select_only()
            .column(proc::Column::Notifications)
            .into_tuple::<Option<NotificationPolicy>>()
            .one(state.db())
            .await?
            .flatten();
        let now = Utc::now();
        for (alert, notify, once) in raised {
            let occurrence = if once {
                "once".to_owned()
            } else {
                alert.seq.to_string()
            };
            for (channel, target) in targets(&notify, policy.as_ref()) {
                let key = format!(
                    "proctor-{execution_id}-alert{}-{channel}-{occurrence}-{:x}",
                    alert.rule, self.salt
                );
                crate::notifications::outbox::insert_pending(
                    state.db(),
                    execution_id,
                    channel,
                    target,
                    key,
                    Some(alert.clone()),
                    now,
                )
                .await?;
            }
        }
        state.outbox_wakeup().notify_one();
        Ok(())
    }
}

/// `(channel, target)` rows for an alert's `notify` list: the e-mail addresses in one row;
/// `slack`/`webhook` the proc's own URL, or the server-wide channel (no target) when it has none.
fn targets(
    notify: &[String],
    policy: Option<&NotificationPolicy>,
) -> Vec<(&'static str, Option<String>)> {
    let emails: Vec<&String> = notify
        .iter()
        .filter(|entry| *entry != SLACK && *entry != WEBHOOK)
        .collect();
    let mut rows = Vec::new();
    if !emails.is_empty() {
        rows.push((EMAIL, Some(serde_json::json!(emails).to_string())));
    }
    let own: HashMap<&str, Option<String>> = HashMap::from([
        (SLACK, policy.and_then(|p| p.slack_webhook_url.clone())),
        (WEBHOOK, policy.and_then(|p| p.webhook_url.clone())),
    ]);
    for channel in [SLACK, WEBHOOK] {
        if notify.iter().any(|entry| entry == channel) {
            rows.push((channel, own.get(channel).cloned().flatten()));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use proctor_entity::values::LogStream;

    use super::*;

    fn line(seq: i64, text: &str) -> LogRecord {
        LogRecord {
            seq,
            stream: LogStream::Stdout,
            line: text.to_owned(),
            logged_at: Utc::now(),
            replaced: false,
        }
    }

    #[test]
    fn patterns_are_bounded_and_errors_say_why() {
        assert!(compile("ERROR|FATAL").is_ok());
        assert!(compile("").unwrap_err().contains("empty"));
        assert!(compile("(a").unwrap_err().contains("not a valid"));
        assert!(compile(&"a".repeat(600)).unwrap_err().contains("512"));
        assert!(
            compile("(?:a{1000}){1000}")
                .unwrap_err()
                .contains("too big")
        );
        assert!(
            compile(r"(a)\1").is_err(),
            "backreferences (super-linear) are refused"
        );
    }

    #[test]
    fn notify_takes_addresses_slack_and_webhook_only() {
        assert_eq!(
            check_notify("n", &["Ops@Example.com".into(), "slack".into()]).unwrap(),
            ["ops@example.com", "slack"]
        );
        let error = check_notify("alerts[0].notify", &["pager".into()]).unwrap_err();
        assert!(error.to_string().contains("alerts[0].notify[0]"), "{error}");
        assert!(check_notify("n", &[]).is_err());
    }

    #[test]
    fn a_once_rule_fires_once_and_a_repeating_one_is_capped() {
        let mut watch = AlertWatch {
            proc_id: 1,
            salt: 0,
            rules: vec![
                Watched {
                    regex: compile("ERROR").unwrap(),
                    notify: vec!["slack".into()],
                    once: true,
                    fired: 0,
                },
                Watched {
                    regex: compile("WARN").unwrap(),
                    notify: vec!["webhook".into()],
                    once: false,
                    fired: 0,
                },
            ],
        };
        let lines: Vec<LogRecord> = (1..=50)
            .map(|seq| line(seq, if seq % 2 == 0 { "ERROR x" } else { "WARN y" }))
            .collect();
        let raised = watch.evaluate(&lines);
        let errors = raised.iter().filter(|(m, _, _)| m.rule == 0).count();
        let warnings = raised.iter().filter(|(m, _, _)| m.rule == 1).count();
        assert_eq!((errors, warnings), (1, MAX_ALERTS_PER_RULE as usize));
        assert_eq!(raised[0].0.seq, 1, "the first WARN line");
        assert!(watch.evaluate(&[line(51, "ERROR again")]).is_empty());
    }

    #[test]
    fn targets_use_the_procs_urls_or_the_server_channel() {
        let policy = NotificationPolicy {
            webhook_url: Some("https://hooks.example/p".into()),
            ..NotificationPolicy::default()
        };
        let rows = targets(
            &["a@example.com".into(), "slack".into(), "webhook".into()],
            Some(&policy),
        );
        assert_eq!(
            rows,
            [
                (EMAIL, Some("[\"a@example.com\"]".to_owned())),
                (SLACK, None),
                (WEBHOOK, Some("https://hooks.example/p".to_owned())),
            ]
        );
    }
}
