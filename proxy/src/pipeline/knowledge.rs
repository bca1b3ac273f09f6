//! What the running proxy knows when it judges a request: its record of the orders
//! keyward placed (and, for bots with `adopt_orders`, the orders it may look up and
//! take as theirs) and its reference prices (fetched when a decision needs one).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use keyward_policy::{BotPolicy, Mode, Permit, Symbol};
use keyward_venues::{OrderRef, ParsedCall};

use super::Context;
use crate::config::Account;
use crate::decide::{Admitted, Knowledge};
use crate::error::Rejection;
use crate::orders::{OrderError, Record};
use crate::prices::Fresh;

/// The running proxy's knowledge, for one request.
pub(super) struct Running<'a> {
    pub(super) cx: Context<'a>,
    /// The request's id, recorded with the orders it adopts.
    pub(super) request_id: &'a str,
}

impl Knowledge for Running<'_> {
    fn knows_orders(&self) -> bool {
        true
    }

    fn order(&self, account: &str, bot: &str, reference: &OrderRef) -> Result<Record, OrderError> {
        self.cx.app.orders.lookup(account, bot, reference)
    }

    /// Not in dry-run mode, nor while the account is frozen: the look-up is signed,
    /// and a frozen account signs nothing but cancels.
    async fn learn_orders(
        &self,
        admitted: &Admitted<'_>,
        bot: &BotPolicy,
        call: &ParsedCall,
    ) -> bool {
        let adopts = bot.adopt_orders()
            && bot.mode() != Mode::DryRun
            && self.cx.app.freeze.frozen(&admitted.account.name).is_none();
        if adopts {
            adopt_orders(self.cx, admitted, bot, call, self.request_id).await;
        }
        adopts
    }

    fn prices(&self, account: &Account, symbols: &[Symbol]) -> Fresh {
        self.cx
            .app
            .prices
            .cached(&account.name, account.reference_max_age, symbols)
    }

    /// Only a request that will be sent fetches: a dry run decides with what is
    /// cached.
    async fn fetch_prices(
        &self,
        admitted: &Admitted<'_>,
        _call: &ParsedCall,
        symbols: &[Symbol],
        _first: &Result<Permit, Rejection>,
    ) -> Option<Fresh> {
        let sends = admitted.bot.is_some_and(|b| b.mode() != Mode::DryRun);
        if !sends {
            return None;
        }
        let (app, snapshot) = (self.cx.app, self.cx.snapshot);
        Some(
            crate::housekeeping::fresh_prices(app, snapshot, &admitted.account.name, symbols).await,
        )
    }
}

/// For a bot with `adopt_orders`: looks up at the exchange, with a signed read of
/// keyward's own, each order the request names that keyward has no record of, and
/// takes as the bot's those that are open on one of its symbols (orders placed before
/// keyward). At most [`crate::app::ADOPTIONS_PER_MINUTE`] look-ups per bot: each spends exchange
/// weight every bot of the account shares, and a leaked token must not spend it.
async fn adopt_orders(
    cx: Context<'_>,
    admitted: &Admitted<'_>,
    bot: &BotPolicy,
    call: &ParsedCall,
    request_id: &str,
) {
    let (app, snapshot) = (cx.app, cx.snapshot);
    let account = &admitted.account.name;
    for reference in call.refs.named() {
        let unknown = matches!(
            app.orders.lookup(account, bot.name(), reference),
            Err(OrderError::Unknown(_))
        );
        if !unknown {
            continue;
        }
        let Some(lookup) = admitted.venue.order_lookup(reference) else {
            continue;
        };
        if !app.adoptions.allow(bot.name(), Instant::now()) {
            tracing::warn!(
                bot = bot.name(),
                "order look-ups for adoption are throttled"
            );
            return;
        }
        let answer = match crate::housekeeping::look_up(app, snapshot, account, &lookup).await {
            Ok((_, answer)) if answer.status.is_success() => answer,
            _ => continue,
        };
        let Some(found) = admitted.venue.looked_up_order(&answer.body) else {
            continue;
        };
        let matches = reference.symbol.as_ref().is_none_or(|s| *s == found.symbol)
            && reference.id.as_ref().is_none_or(|id| *id == found.id)
            && reference
                .client_id
                .as_ref()
                .is_none_or(|c| found.client_id.as_ref() == Some(c));
        if !(matches && found.open && bot.allows_symbol(&found.symbol)) {
            continue;
        }
        tracing::info!(
            bot = bot.name(),
            %account,
            symbol = %found.symbol,
            order = %found.id,
            "order adopted: looked up at the exchange and taken as the bot's"
        );
        app.orders.adopt(
            account,
            Record {
                bot: Arc::from(bot.name()),
                symbol: found.symbol,
                side: found.side,
                order_type: found.order_type,
                execution: found.execution,
                size: found.size,
                price: found.price,
                trigger: found.trigger,
                reduce_only: false,
                id: Some(found.id),
                client_id: found.client_id,
                list_id: None,
                list_client_id: None,
                state: crate::orders::State::Open,
                placed: SystemTime::now(),
                request_id: Arc::from(request_id),
            },
        );
    }
}
