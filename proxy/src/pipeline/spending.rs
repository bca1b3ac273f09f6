//! What a forwarded request takes before it is sent (its rolling budgets, its room
//! among open orders, its client order ids) and how that is settled once the
//! exchange has answered: only what the answer proves did not happen is given back.

use std::sync::Arc;
use std::time::SystemTime;

use keyward_policy::{Denied, EndpointClass, Mode, Notional, Permit};
use keyward_venues::ParsedCall;

use super::Context;
use super::trail::Trail;
use crate::app::App;
use crate::audit;
use crate::error::Rejection;

/// What a forwarded request took from the budgets and held in the order record, to
/// be settled once the exchange has answered.
#[derive(Debug, Default)]
pub(super) struct Spending {
    /// Spent from the rolling budgets.
    pub(super) spent: bool,
    /// Open-order room and client ids held in the order record.
    pub(super) held: bool,
    /// Open-order room reserved.
    pub(super) reserved: u32,
    /// In shadow mode, the budget refusal enforce mode would have returned.
    pub(super) would_deny: Option<Denied>,
    /// Client order ids held in the replicas' shared state.
    pub(super) shared_client_ids: Vec<String>,
    /// The bot's and the account's `max_open_orders`, which the shared state
    /// checks (this replica's record holds the room without them).
    pub(super) open_limits: (Option<u32>, Option<u32>),
    /// Open-order room held in the shared state.
    pub(super) shared_open: bool,
}

impl Spending {
    /// Gives everything back: the request was never sent.
    pub(super) fn release(&self, app: &App, trail: &Trail, permit: &Permit) {
        if self.spent {
            app.budgets.refund(permit.account(), &trail.id);
        }
        if let (true, Some(bot)) = (self.held, trail.bot.as_deref()) {
            app.orders
                .release(permit.account(), bot, &trail.id, self.reserved);
        }
        if let Some(shared) = &app.shared {
            shared.release_client_ids(permit.account(), &trail.id, self.shared_client_ids.clone());
            if self.shared_open {
                shared.release_open(permit.account(), &trail.id);
            }
        }
    }

    /// Settles with what the exchange did: gives back to the budgets the orders the
    /// answer proves were not placed (every order of a request refused whole, a
    /// refused element of a batch, the failed half of a cancel-replace; nothing
    /// when in doubt), applies the answer to the order record, and returns what the
    /// outcome record says of it, with what the other replicas are told of it (a
    /// bot's request that placed, amended or cancelled orders).
    pub(super) fn settle(
        &self,
        app: &App,
        trail: &Trail,
        permit: &Permit,
        call: &ParsedCall,
        outcome: &keyward_venues::Outcome,
        succeeded: bool,
    ) -> (audit::OrderOutcome, Option<crate::orders::SharedSettlement>) {
        let mut refunded_notional = keyward_policy::Amount::ZERO;
        let mut refunded_orders = 0u32;
        for (index, result) in outcome.legs.iter().enumerate() {
            if *result == keyward_venues::LegResult::Rejected {
                refunded_notional = refunded_notional.saturating_add(permit.order_notional(index));
                refunded_orders += 1;
            }
        }
        if self.spent && refunded_orders > 0 {
            app.budgets.refund_part(
                permit.account(),
                &trail.id,
                refunded_notional,
                refunded_orders,
            );
        }
        if let Some(shared) = &app.shared {
            // A client order id whose order the exchange refused is free again, as
            // in the local record.
            let refused: Vec<String> = outcome
                .legs
                .iter()
                .enumerate()
                .filter(|(_, result)| **result == keyward_venues::LegResult::Rejected)
                .filter_map(|(index, _)| call.refs.client_id_of(index))
                .filter(|id| self.shared_client_ids.iter().any(|held| held == id))
                .map(str::to_owned)
                .collect();
            shared.release_client_ids(permit.account(), &trail.id, refused);
        }
        let settlement = settlement_of(call, outcome, succeeded);
        match trail.bot.as_deref() {
            Some(bot) => app.orders.settle(
                permit.account(),
                bot,
                &trail.id,
                if self.held { self.reserved } else { 0 },
                &settlement,
                SystemTime::now(),
            ),
            None => app.orders.observe(permit.account(), &settlement),
        }
        let recorded = audit::OrderOutcome {
            results: outcome
                .legs
                .iter()
                .map(crate::orders::result_record)
                .collect(),
            cancelled: outcome.cancelled.clone(),
            closed: outcome
                .closed
                .iter()
                .map(|(symbol, id)| crate::orders::ClosedRecord {
                    symbol: symbol.as_ref().map(ToString::to_string),
                    id: id.clone(),
                })
                .collect(),
            closed_all: outcome.closed_all.iter().map(ToString::to_string).collect(),
            refunded_notional: self.spent.then(|| refunded_notional.to_string()),
            refunded_orders: self.spent.then_some(refunded_orders),
        };
        let shared = match (&app.shared, trail.bot.as_deref()) {
            (Some(_), Some(bot)) if touches_orders(call) => Some(crate::orders::SharedSettlement {
                bot: bot.to_owned(),
                request_id: trail.id.clone(),
                at_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                legs: super::trail::legs_of(call),
                cancels: call
                    .refs
                    .cancels
                    .iter()
                    .map(crate::orders::ref_record)
                    .collect(),
                results: recorded.results.clone(),
                cancelled: recorded.cancelled.clone(),
                closed: recorded.closed.clone(),
                closed_all: recorded.closed_all.clone(),
                succeeded,
            }),
            _ => None,
        };
        (recorded, shared)
    }
}

/// Whether the exchange may place, amend or cancel orders for the call: what the
/// other replicas are told of once it has answered.
fn touches_orders(call: &ParsedCall) -> bool {
    !call.intent.orders.is_empty() || !call.refs.cancels.is_empty()
}

/// What a call and the exchange's answer did to the order record.
fn settlement_of(
    call: &ParsedCall,
    outcome: &keyward_venues::Outcome,
    succeeded: bool,
) -> crate::orders::Settlement {
    let legs = call
        .intent
        .orders
        .iter()
        .enumerate()
        .map(|(index, order)| crate::orders::Leg {
            order: order.clone(),
            client_id: call.refs.client_id_of(index).map(str::to_owned),
            amends: call.refs.amend_of(index).map(|a| (a.order.clone(), a.kind)),
            result: outcome
                .legs
                .get(index)
                .cloned()
                .unwrap_or(keyward_venues::LegResult::Unknown),
        })
        .collect();
    let cancels = call
        .refs
        .cancels
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            let done = outcome
                .cancelled
                .as_ref()
                .map(|done| done.get(index).copied().unwrap_or(false));
            (reference.clone(), done)
        })
        .collect();
    crate::orders::Settlement {
        legs,
        cancels,
        succeeded,
        closed: outcome.closed.clone(),
        closed_all: outcome.closed_all.clone(),
        listed: outcome.listed.clone(),
    }
}

/// Spends the rolling budgets, and holds open-order room and the client ids of a
/// forwarded request's new orders. With a shared state backend, the request's rate
/// limits are taken here too, with its budgets, in one round trip, and so are the
/// exchange's counters it adds to if it is `sent` to the exchange.
pub(super) async fn spend(
    cx: Context<'_>,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
    admitted: &crate::decide::Admitted<'_>,
    sent: bool,
) -> Result<Spending, Rejection> {
    let mut spending = Spending::default();
    let budget = hold_orders(cx, trail, call, permit, &mut spending)?;
    let Some(shared) = &cx.app.shared else {
        if let Some((spend, enforce)) = budget {
            let bot = trail.bot.as_deref().unwrap_or_default();
            let scopes = crate::budgets::scopes_of(bot, permit.account());
            match cx.app.budgets.spend(&scopes, &spend, enforce) {
                Ok(would) => {
                    spending.spent = true;
                    spending.would_deny = would.or(spending.would_deny.take());
                }
                Err(denied) => {
                    spending.release(cx.app, trail, permit);
                    return Err(denied.into());
                }
            }
        }
        return Ok(spending);
    };
    let config = &cx.snapshot.config;
    let bot = trail.bot.as_deref();
    let bot_limits = bot
        .and_then(|b| config.policy.bot(b))
        .map(|b| b.budget())
        .unwrap_or_default();
    let (account_limits, client_id_window) = (
        admitted.account.budget,
        admitted.account.client_order_id_window,
    );
    let client_ids: Vec<String> = if spending.held && !client_id_window.is_zero() {
        call.refs
            .client_ids
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    } else {
        Vec::new()
    };
    let charge = crate::shared::Charge {
        account: permit.account(),
        request_id: &trail.id,
        bot,
        // A bot JWT is refused a second time by every replica, not only this one.
        once: admitted.jwt,
        client_ids,
        client_id_window,
        rates: cx
            .snapshot
            .limits
            .charges(permit)
            .into_iter()
            .map(|(scope, rate, cells)| crate::shared::RateCharge { scope, rate, cells })
            .collect(),
        budget: budget
            .as_ref()
            .map(|(spend, enforce)| crate::shared::BudgetCharge {
                request_id: &trail.id,
                limits: [
                    (keyward_policy::BudgetScope::Bot, bot_limits),
                    (keyward_policy::BudgetScope::Account, account_limits),
                ],
                notional: spend.notional,
                orders: spend.orders,
                enforce: *enforce,
            }),
        // Every bot's request that the exchange may act on orders for is marked in
        // flight, and its new orders held under the limits.
        open: match (bot, spending.open_limits) {
            (Some(bot), limits) if sent && touches_orders(call) => {
                Some(crate::shared::OpenCharge {
                    request_id: &trail.id,
                    bot,
                    new: spending.reserved,
                    limits,
                    orders: &cx.app.orders,
                    hold: longest_wait(config, trail.stream_method.is_some())
                        + crate::shared::HOLD_MARGIN,
                })
            }
            _ => None,
        },
        exchange: if sent {
            cx.app.exchange.shared_counts(
                admitted.account,
                admitted.venue,
                super::exchange_charge(cx, admitted, call, permit),
                SystemTime::now(),
            )
        } else {
            Vec::new()
        },
    };
    match shared.admit(&charge).await {
        Ok(would) => {
            spending.spent = charge.budget.is_some();
            spending.shared_open = charge.open.is_some();
            spending.shared_client_ids = charge.client_ids;
            spending.would_deny = would.or(spending.would_deny.take());
            Ok(spending)
        }
        Err(crate::shared::Refusal::Denied(denied)) => {
            spending.release(cx.app, trail, permit);
            Err(denied.into())
        }
        Err(crate::shared::Refusal::Duplicate(client_id)) => {
            spending.release(cx.app, trail, permit);
            Err(crate::orders::OrderError::DuplicateClientId(client_id).into())
        }
        Err(crate::shared::Refusal::Exchange(rejection)) => {
            spending.release(cx.app, trail, permit);
            Err(rejection)
        }
        Err(crate::shared::Refusal::Paused {
            retry_after,
            banned,
        }) => {
            spending.release(cx.app, trail, permit);
            Err(Rejection::ExchangeBackoff {
                retry_after,
                banned,
            })
        }
        Err(crate::shared::Refusal::Unavailable) => {
            // Reads and cancels spend no budget: where the operator allows it they go
            // on under this replica's own rate limits while Redis is away. Not one
            // that carries a bot JWT: the JWT is good for one request, and only Redis
            // keeps another replica from taking it again.
            let spends_nothing = matches!(
                admitted.endpoint.class,
                EndpointClass::Read | EndpointClass::Cancel | EndpointClass::Market
            ) && charge.budget.is_none()
                && charge.once.is_none();
            let lenient = shared.reads_when_unavailable() == crate::config::WhenUnavailable::Allow;
            if spends_nothing && lenient {
                if let Err(denied) = cx.snapshot.limits.check(permit) {
                    spending.release(cx.app, trail, permit);
                    return Err(denied.into());
                }
                return Ok(spending);
            }
            spending.release(cx.app, trail, permit);
            Err(Rejection::StateUnavailable)
        }
    }
}

/// Holds open-order room and the client ids of a forwarded request's new orders in
/// the order record, and says what its orders spend from the rolling budgets (and
/// whether a refusal is enforced), if anything.
fn hold_orders(
    cx: Context<'_>,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
    spending: &mut Spending,
) -> Result<Option<(keyward_policy::Spend, bool)>, Rejection> {
    let (app, snapshot) = (cx.app, cx.snapshot);
    let Some(bot) = trail.bot.as_deref() else {
        return Ok(None);
    };
    if permit.mode() == Mode::DryRun {
        return Ok(None);
    }
    let enforce = permit.mode() == Mode::Enforce;
    let account = snapshot.config.accounts.get(permit.account());
    let new_orders = call.intent.orders.iter().filter(|o| !o.amend).count();
    let new_orders = u32::try_from(new_orders).unwrap_or(u32::MAX);
    let client_ids: Vec<&str> = call
        .refs
        .client_ids
        .iter()
        .map(|(_, id)| id.as_str())
        .collect();
    if new_orders > 0 || !client_ids.is_empty() {
        let limits = (
            snapshot
                .config
                .policy
                .bot(bot)
                .and_then(|b| b.budget().max_open_orders),
            account.and_then(|a| a.budget.max_open_orders),
        );
        let window = account.map_or(std::time::Duration::ZERO, |a| a.client_order_id_window);
        // With a shared state backend, the limits count every replica's orders
        // there; this replica's record holds the room without them.
        let local_limits = if app.shared.is_some() {
            spending.open_limits = limits;
            (None, None)
        } else {
            limits
        };
        let held = app.orders.reserve(
            permit.account(),
            bot,
            &trail.id,
            &client_ids,
            new_orders,
            local_limits,
            (SystemTime::now(), window),
            enforce,
        );
        match held {
            Ok(would) => {
                spending.held = true;
                spending.reserved = new_orders;
                spending.would_deny = would;
            }
            Err(crate::orders::ReserveError::Order(error)) => return Err(error.into()),
            Err(crate::orders::ReserveError::Denied(denied)) => return Err(denied.into()),
        }
    }
    let Notional::Bounded(notional) = permit.notional() else {
        return Ok(None);
    };
    if permit.orders() == 0 {
        return Ok(None);
    }
    let spend = keyward_policy::Spend {
        id: Arc::from(trail.id.as_str()),
        at: SystemTime::now(),
        notional,
        orders: permit.orders(),
    };
    Ok(Some((spend, enforce)))
}

/// The longest keyward waits for the exchange's answer to a request it sends: a
/// hold in the shared state must outlast it. Over REST, a connection and the
/// answer. Over a bot's WebSocket, the link may first be opened (a TCP connection,
/// a TLS handshake, the upgrade's answer and the login's, and for Kraken the REST
/// request for the account's WebSocket token, another connection and answer), then
/// the message's answer.
fn longest_wait(config: &crate::config::Config, on_a_stream: bool) -> std::time::Duration {
    let limits = &config.server.limits;
    if on_a_stream {
        limits.connect_timeout * 3 + limits.upstream_timeout * 4
    } else {
        limits.connect_timeout + limits.upstream_timeout
    }
}
