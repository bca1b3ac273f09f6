//! Freezing and unfreezing, as the admin listener, the control socket and the circuit
//! breaker ask for it: the state change (see [`crate::freeze`]), its audit record,
//! and with `cancel`, keyward cancelling the account's open orders itself on every
//! symbol its bots may trade, reporting what the exchange said it cancelled.

use std::collections::BTreeSet;
use std::time::SystemTime;

use http::StatusCode;
use keyward_policy::Symbol;
use keyward_venues::Housekeeping;
use serde::Serialize;

use crate::app::App;
use crate::audit;
use crate::housekeeping;

/// The audit record of a freeze or unfreeze.
#[derive(Debug, Serialize)]
struct FreezeRecord<'a> {
    ts: String,
    event: &'static str,
    account: Option<&'a str>,
    by: &'a str,
}

/// What a cancel on one symbol did.
#[derive(Debug, Serialize)]
pub struct Cancelled {
    /// The account.
    pub account: String,
    /// The symbol.
    pub symbol: String,
    /// The exchange's status, or the reason nothing was sent.
    pub status: String,
    /// Order ids the exchange reported cancelled (empty when it answered only that
    /// all were).
    pub orders: Vec<String>,
}

/// Freezes `account` (or every account) and, with `cancel`, cancels their open
/// orders. Returns the state now frozen and what was cancelled.
pub async fn freeze(
    app: &App,
    account: Option<&str>,
    cancel: bool,
    by: &str,
) -> Result<Frozen, (StatusCode, String)> {
    let snapshot = app.snapshot();
    if let Some(name) = account
        && !snapshot.config.accounts.contains_key(name)
    {
        return Err((StatusCode::NOT_FOUND, format!("no account named `{name}`")));
    }
    if let Some(shared) = &app.shared {
        shared.hold_freeze(
            account,
            crate::freeze::Frozen {
                since: audit::timestamp(SystemTime::now()),
                by: by.to_owned(),
            },
        );
    }
    app.freeze.freeze(account, by).await.map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "frozen in memory, but the state could not be written to {}: {e}",
                app.freeze.file().display()
            ),
        )
    })?;
    if let Some(shared) = &app.shared
        && !shared.share_freezes().await
    {
        tracing::error!(
            "the freeze holds here but the shared state (Redis) cannot be reached; it reaches the other replicas once Redis answers"
        );
    }
    audit_event(app, "freeze", account, by);
    tracing::error!(
        account = account.unwrap_or("*"),
        by,
        "ALERT: keyward is frozen; nothing but cancels is signed"
    );
    let mut cancelled = Vec::new();
    if cancel {
        let accounts: Vec<String> = match account {
            Some(name) => vec![name.to_owned()],
            None => snapshot.config.accounts.keys().cloned().collect(),
        };
        for name in accounts {
            let mut symbols: BTreeSet<Symbol> = snapshot
                .config
                .policy
                .bots()
                .into_iter()
                .filter(|b| b.account() == name)
                .flat_map(|b| b.symbols().into_iter().cloned().collect::<Vec<_>>())
                .collect();
            symbols.extend(app.orders.tracked_symbols(&name));
            for symbol in symbols {
                let outcome =
                    housekeeping::send(app, &snapshot, &name, Housekeeping::CancelAll, &symbol)
                        .await;
                let (status, orders) = match outcome {
                    Ok((call, answer)) => {
                        let venue = snapshot
                            .config
                            .accounts
                            .get(&name)
                            .map(|a| a.venue.adapter());
                        let outcome = match venue {
                            Some(venue) if answer.status.is_success() => {
                                venue.outcome(&call, answer.status, &answer.body)
                            }
                            _ => keyward_venues::Outcome::default(),
                        };
                        app.orders.observe(
                            &name,
                            &crate::orders::Settlement {
                                closed: outcome.closed.clone(),
                                closed_all: outcome.closed_all.clone(),
                                listed: outcome.listed.clone(),
                                ..crate::orders::Settlement::default()
                            },
                        );
                        let ids = outcome.closed.into_iter().map(|(_, id)| id).collect();
                        (answer.status.as_u16().to_string(), ids)
                    }
                    Err(error) => (error.to_string(), Vec::new()),
                };
                cancelled.push(Cancelled {
                    account: name.clone(),
                    symbol: symbol.to_string(),
                    status,
                    orders,
                });
            }
        }
    }
    // A cancel that did not succeed leaves orders working on a frozen account: the
    // operator must hear it, not read it in a list that says "ok" overall.
    let failed = cancelled
        .iter()
        .filter(|c| {
            !c.status
                .parse::<u16>()
                .is_ok_and(|s| (200..300).contains(&s))
        })
        .count();
    let mut report = serde_json::json!({
        "frozen": app.freeze.state(),
        "cancelled": cancelled,
    });
    if failed > 0 {
        report["error"] = format!(
            "frozen, but {failed} of {} cancels failed; orders may still be open on the exchange",
            cancelled.len()
        )
        .into();
    }
    Ok(Frozen { report, failed })
}

/// What a freeze did: its report, and how many of its cancels failed.
#[derive(Debug)]
pub struct Frozen {
    /// The freeze state and every cancel's outcome.
    pub report: serde_json::Value,
    /// Cancels that did not succeed.
    pub failed: usize,
}

/// Lifts the freeze of `account` (or every freeze).
pub async fn unfreeze(
    app: &App,
    account: Option<&str>,
) -> Result<serde_json::Value, (StatusCode, String)> {
    // An unknown name would be audited as an unfreeze of nothing and leave the
    // operator believing an account was released.
    if let Some(name) = account
        && !app.snapshot().config.accounts.contains_key(name)
    {
        return Err((StatusCode::NOT_FOUND, format!("no account named `{name}`")));
    }
    // Lifted for every replica first: an unfreeze only this replica saw would be
    // undone by the shared state on its next read.
    if let Some(shared) = &app.shared {
        shared.share_unfreeze(account).await.map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the shared state (Redis) cannot be reached, so the unfreeze cannot reach the other replicas; still frozen".to_owned(),
            )
        })?;
    }
    let state = app.freeze.unfreeze(account).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the state could not be written to {}: {e}; still frozen",
                app.freeze.file().display()
            ),
        )
    })?;
    audit_event(app, "unfreeze", account, "operator");
    tracing::warn!(account = account.unwrap_or("*"), "keyward unfrozen");
    Ok(serde_json::json!({ "frozen": state }))
}

fn audit_event(app: &App, event: &'static str, account: Option<&str>, by: &str) {
    let record = FreezeRecord {
        ts: audit::timestamp(SystemTime::now()),
        event,
        account,
        by,
    };
    if app.audit.write(&record).is_err() {
        app.metrics.audit_failure();
    }
}
