//! What a forwarded request takes before it is sent (its rolling budgets, its room
//! among open orders, its client order ids) and how that is settled once the
//! exchange has answered: only what the answer proves did not happen is given back.

use std::sync::Arc;
use std::time::SystemTime;

use keyward_policy::{Denied, Mode, Notional, Permit};
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
}

impl Spending {
    /// Gives everything back: the request was never sent.
    pub(super) fn release(&self, app: &App, trail: &Trail, permit: &Permit) {
        if self.spent {
            app.budgets.refund(&trail.id);
        }
        if let (true, Some(bot)) = (self.held, trail.bot.as_deref()) {
            app.orders
                .release(permit.account(), bot, &trail.id, self.reserved);
        }
    }

    /// Settles with what the exchange did: gives back to the budgets the orders the
    /// answer proves were not placed (every order of a request refused whole, a
    /// refused element of a batch, the failed half of a cancel-replace; nothing
    /// when in doubt), applies the answer to the order record, and returns what the
    /// outcome record says of it.
    pub(super) fn settle(
        &self,
        app: &App,
        trail: &Trail,
        permit: &Permit,
        call: &ParsedCall,
        outcome: &keyward_venues::Outcome,
        succeeded: bool,
    ) -> audit::OrderOutcome {
        let mut refunded_notional = keyward_policy::Amount::ZERO;
        let mut refunded_orders = 0u32;
        for (index, result) in outcome.legs.iter().enumerate() {
            if *result == keyward_venues::LegResult::Rejected {
                refunded_notional = refunded_notional.saturating_add(permit.order_notional(index));
                refunded_orders += 1;
            }
        }
        if self.spent && refunded_orders > 0 {
            app.budgets
                .refund_part(&trail.id, refunded_notional, refunded_orders);
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
        audit::OrderOutcome {
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
        }
    }
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
/// forwarded request's new orders.
pub(super) fn spend(
    cx: Context<'_>,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
) -> Result<Spending, Rejection> {
    let (app, snapshot) = (cx.app, cx.snapshot);
    let mut spending = Spending::default();
    let Some(bot) = trail.bot.as_deref() else {
        return Ok(spending);
    };
    if permit.mode() == Mode::DryRun {
        return Ok(spending);
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
        let held = app.orders.reserve(
            permit.account(),
            bot,
            &trail.id,
            &client_ids,
            new_orders,
            limits,
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
        return Ok(spending);
    };
    if permit.orders() == 0 {
        return Ok(spending);
    }
    let scopes = crate::budgets::scopes_of(bot, permit.account());
    let spend = keyward_policy::Spend {
        id: Arc::from(trail.id.as_str()),
        at: SystemTime::now(),
        notional,
        orders: permit.orders(),
    };
    match app.budgets.spend(&scopes, &spend, enforce) {
        Ok(would) => {
            spending.spent = true;
            spending.would_deny = would.or(spending.would_deny.take());
        }
        Err(denied) => {
            spending.release(app, trail, permit);
            return Err(denied.into());
        }
    }
    Ok(spending)
}
