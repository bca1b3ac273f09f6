//! `keyward explain`: what keyward would do with a request from a bot, and why, in
//! the words an operator needs: the decision and its reason code, the rule with its
//! `file:line:col`, every order, the request that would be signed, and the limits the
//! decision relied on: the price band and reference price, and the budgets used and
//! left. Offline, from the configuration alone; live (through the control socket of
//! a running keyward), with its reference prices and budgets. Explaining consumes no
//! quota and sends nothing signed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use keyward_policy::{
    BotPolicy, BudgetLimits, Mode, NoQuotes, Notional, Order, Permit, Quote, Quotes, Rule, Scope,
    Side, Size, Symbol, Usage,
};
use keyward_venues::ParsedCall;
use serde::{Deserialize, Serialize};

use crate::config::{Account, Config};
use crate::decide::{self, Admitted, ConfigOnly, Knowledge};
use crate::error::Rejection;
use crate::front;
use crate::prices::Fresh;

/// What to explain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asked {
    /// The bot sending it.
    pub bot: String,
    /// `METHOD /path?query`.
    pub request: String,
    /// The body, if any.
    pub body: Option<String>,
    /// Extra `Name: value` headers.
    pub headers: Vec<String>,
}

/// What a running keyward knows that the configuration does not.
pub trait LiveView: Sync {
    /// A fresh reference price and its age.
    fn quote(&self, account: &str, symbol: &Symbol) -> Option<(Quote, Duration)>;
    /// A scope's budgets, used in the last day and used in its `max_orders` window.
    fn budget(&self, scope: &Scope) -> Option<(BudgetLimits, Usage, Usage)>;
    /// Open orders of the bot and of its account.
    fn open_orders(&self, account: &str, bot: &str) -> (u64, u64);
    /// Why the account is frozen, if it is.
    fn frozen(&self, account: &str) -> Option<String>;
    /// keyward's record of an order the bot placed.
    fn order(
        &self,
        account: &str,
        bot: &str,
        reference: &keyward_venues::OrderRef,
    ) -> Result<crate::orders::Record, crate::orders::OrderError>;
}

/// What `explain` knows when it judges: a running keyward's order record and prices,
/// or, offline, none. Offline a request refused for want of a reference price is
/// judged again as if the market sat at each order's own price (and the answer says
/// that it depends on that), rather than every banded order being refused.
struct Explaining<'a> {
    live: Option<&'a dyn LiveView>,
    /// Set when the offline stand-in prices were used.
    at_own_prices: AtomicBool,
}

impl Knowledge for Explaining<'_> {
    fn knows_orders(&self) -> bool {
        self.live.is_some()
    }

    fn order(
        &self,
        account: &str,
        bot: &str,
        reference: &keyward_venues::OrderRef,
    ) -> Result<crate::orders::Record, crate::orders::OrderError> {
        match self.live {
            Some(live) => live.order(account, bot, reference),
            None => ConfigOnly.order(account, bot, reference),
        }
    }

    async fn learn_orders(&self, _: &Admitted<'_>, _: &BotPolicy, _: &ParsedCall) -> bool {
        false
    }

    fn prices(&self, account: &Account, symbols: &[Symbol]) -> Fresh {
        let Some(live) = self.live else {
            return Fresh::default();
        };
        Fresh::from_quotes(
            symbols
                .iter()
                .filter_map(|s| live.quote(&account.name, s).map(|q| (s.clone(), q))),
        )
    }

    async fn fetch_prices(
        &self,
        _: &Admitted<'_>,
        call: &ParsedCall,
        symbols: &[Symbol],
        first: &Result<Permit, Rejection>,
    ) -> Option<Fresh> {
        let missing = matches!(
            first,
            Err(Rejection::Denied(
                keyward_policy::Denied::ReferenceUnavailable { .. }
            ))
        );
        if self.live.is_some() || !missing {
            return None;
        }
        self.at_own_prices.store(true, Ordering::Relaxed);
        let own_price = |symbol: &Symbol| {
            let price = call
                .intent
                .orders
                .iter()
                .find(|o| &o.symbol == symbol)?
                .price?;
            let quote = Quote {
                bid: price,
                ask: price,
                slow: None,
            };
            Some((symbol.clone(), (quote, Duration::ZERO)))
        };
        Some(Fresh::from_quotes(symbols.iter().filter_map(own_price)))
    }
}

struct LiveQuotes<'a> {
    live: &'a dyn LiveView,
    account: &'a str,
}

impl Quotes for LiveQuotes<'_> {
    fn quote(&self, symbol: &Symbol) -> Option<Quote> {
        self.live.quote(self.account, symbol).map(|(q, _)| q)
    }
}

/// Explains `asked` under `config`, with `live` state when a running keyward asks.
/// Errors are mistakes in the question, said in a sentence.
pub fn explain(
    config: &Config,
    asked: &Asked,
    live: Option<&dyn LiveView>,
) -> Result<String, String> {
    let bot = config
        .policy
        .bot(&asked.bot)
        .ok_or_else(|| format!("no bot named `{}` in {{config}}", asked.bot))?;
    let (method, target) = asked.request.trim().split_once(' ').ok_or_else(|| {
        "the request must be 'METHOD /path?query', e.g. 'GET /api/v3/account'".to_owned()
    })?;
    let method: Method = method
        .parse()
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let mut headers = HeaderMap::new();
    for line in &asked.headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header `{line}` must be 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        headers.append(name, value);
    }
    let content_type = match (headers.get(http::header::CONTENT_TYPE), &asked.body) {
        (Some(value), _) => value.to_str().ok().map(str::to_owned),
        (None, Some(_)) => Some("application/x-www-form-urlencoded".to_owned()),
        (None, None) => None,
    };
    let account = config.account_of(bot);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("request:  {method} {}", target.trim()));
    line(format!(
        "bot:      {} (account {}, {}, mode {})",
        bot.name(),
        bot.account(),
        account.map_or("?", |a| a.venue.name()),
        bot.mode().name()
    ));
    let source = config.bot_sources.get(bot.name());
    let locate = |key: &str| source.map_or_else(String::new, |s| format!(" at {}", s.locate(key)));
    let live_quotes = live.map(|live| LiveQuotes {
        live,
        account: bot.account(),
    });
    let quotes: &dyn Quotes = match &live_quotes {
        Some(q) => q,
        None => &NoQuotes,
    };
    let body = asked.body.as_deref().unwrap_or_default().as_bytes();
    // Parsed first and judged second, so the orders are known even when they are
    // refused.
    let mut names_orders = false;
    let parsed = front::check_target(&method, target.trim())
        .map_err(Rejection::from)
        .and_then(|target| {
            let admitted = decide::admit_bot(config, bot, &method, &target)?;
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                headers.insert(http::header::CONTENT_TYPE, value);
            }
            let call = decide::parse(&admitted, &target, &headers, body)?;
            names_orders = !call.refs.amends.is_empty() || !call.refs.cancels.is_empty();
            Ok((admitted, call))
        });
    let mut orders: Vec<Order> = Vec::new();
    let knowledge = Explaining {
        live,
        at_own_prices: AtomicBool::new(false),
    };
    let decided = parsed.and_then(|(admitted, call)| {
        let judged = decide::judge_at_once(config, &admitted, call, &knowledge)
            .ok_or(Rejection::Internal)?;
        // A request refused over the orders it names shows no orders.
        if !matches!(judged.verdict, Err(Rejection::Order(_))) {
            orders.clone_from(&judged.call.intent.orders);
        }
        Ok((admitted, judged.verdict?, judged.call))
    });
    let conditional = knowledge.at_own_prices.load(Ordering::Relaxed);
    if names_orders && live.is_none() {
        line(
            "orders:   the orders this request names are judged against keyward's record of \
             them (their symbol, side and type), which only a running keyward holds"
                .to_owned(),
        );
    }
    match decided {
        Err(rejection) => {
            line("decision: deny".to_owned());
            line(format!(
                "reason:   {} ({} {})",
                rejection.reason(),
                rejection.status().as_u16(),
                rejection
            ));
            let rule = match &rejection {
                Rejection::Denied(denied) if denied.rule() == Rule::Floor => {
                    "the built-in money-movement and key-management floor (not configurable)"
                        .to_owned()
                }
                Rejection::Denied(denied) => {
                    let key = denied.rule().key();
                    format!("{key}{}", locate(key))
                }
                Rejection::BindingMismatch(_) => "require_client_cert or peer_uid".to_owned(),
                Rejection::Front(_)
                | Rejection::AuthAmbiguous
                | Rejection::AuthThrottled { .. }
                | Rejection::MethodNotAllowed { .. } => {
                    "request form (keyward's HTTP rules, not configurable)".to_owned()
                }
                Rejection::Parse(_) => {
                    "the venue's parameter grammar (not configurable)".to_owned()
                }
                Rejection::Order(_) => {
                    "keyward's record of the orders it placed (client_order_id_window_ms for reused client ids)".to_owned()
                }
                Rejection::BodyTooLarge(_)
                | Rejection::BodyTimeout
                | Rejection::AuditUnavailable
                | Rejection::StateUnavailable
                | Rejection::Upstream(_)
                | Rejection::ExchangeBackoff { .. }
                | Rejection::ExchangeLimitNear { .. }
                | Rejection::ExchangeShareUsed { .. }
                | Rejection::Frozen { .. }
                | Rejection::Internal => "the running server (explain does not serve)".to_owned(),
            };
            line(format!("rule:     {rule}"));
        }
        Ok((admitted, permit, call)) => {
            match permit.shadow_denial() {
                Some(denied) => {
                    line("decision: allow (shadow mode: enforce would deny)".to_owned());
                    line(format!("would deny: {} ({denied})", denied.reason()));
                }
                None if conditional => line(
                    "decision: allow, if keyward's reference price is within the band (see price; explain offline has none)"
                        .to_owned(),
                ),
                None if permit.mode() == Mode::DryRun => {
                    line("decision: allow (dry-run: answered locally, never sent)".to_owned());
                }
                None => line("decision: allow".to_owned()),
            }
            let key = permit.via().key();
            line(format!(
                "rule:     {key} (endpoint {}, class {}){}",
                admitted.endpoint.key,
                admitted.endpoint.class,
                locate(key)
            ));
            intent_lines(&mut line, &call.intent.orders, quotes);
            forward_lines(&mut line, &admitted, &call);
            if !call.stripped.is_empty() {
                line(format!(
                    "stripped: {} (the bot's own; keyward sets its own)",
                    call.stripped.join(", ")
                ));
            }
        }
    }
    price_lines(&mut line, bot, &orders, live);
    budget_lines(&mut line, config, bot, live);
    let rates: Vec<String> = [("rate", bot.rate()), ("order_rate", bot.order_rate())]
        .into_iter()
        .filter_map(|(name, rate)| rate.map(|r| format!("{name} {r}")))
        .collect();
    if !rates.is_empty() {
        line(format!(
            "limits:   {} (checked when served; explain consumes nothing)",
            rates.join(", ")
        ));
    }
    if let Some(reason) = live.and_then(|l| l.frozen(bot.account())) {
        line(format!("frozen:   {reason}; only cancels are signed"));
    }
    match config.bindings.get(bot.name()) {
        Some(binding) if binding.client_cert => line(format!(
            "binding:  only with the client certificate naming {}{}",
            bot.name(),
            locate("require_client_cert")
        )),
        Some(binding) => {
            if let Some(uid) = binding.peer_uid {
                line(format!(
                    "binding:  only from uid {uid} over the Unix socket{}",
                    locate("peer_uid")
                ));
            }
        }
        None => {}
    }
    Ok(out)
}

fn intent_lines(line: &mut impl FnMut(String), orders: &[Order], quotes: &dyn Quotes) {
    if orders.is_empty() {
        return;
    }
    line(format!("orders:   {}", orders.len()));
    for (i, order) in orders.iter().enumerate() {
        let size = match order.size {
            Size::Base(q) => format!("quantity {q}"),
            Size::Quote(q) => format!("quote amount {q}"),
            Size::WholePosition => "whole position".to_owned(),
        };
        let price = order
            .price
            .map_or_else(String::new, |p| format!(" price {p}"));
        let trigger = order
            .trigger
            .map_or_else(String::new, |p| format!(" trigger {p}"));
        let notional = match order.notional(quotes) {
            Notional::Bounded(n) => format!("notional <= {n}"),
            Notional::Unbounded => "notional unbounded without a reference price".to_owned(),
        };
        line(format!(
            "  {}. {} {} {} {size}{price}{trigger} ({notional}){}",
            i + 1,
            order.side,
            order.order_type,
            order.symbol,
            if order.amend { " [amend]" } else { "" }
        ));
    }
}

fn forward_lines(line: &mut impl FnMut(String), admitted: &Admitted<'_>, call: &ParsedCall) {
    let preview = admitted
        .venue
        .preview(call, admitted.account.recv_window_ms);
    let base = admitted.account.upstream.to_string();
    line(format!(
        "forward:  {} {}{}",
        preview.method,
        base.trim_end_matches('/'),
        preview.path_and_query
    ));
    for header in &preview.headers {
        line(format!("          {header}"));
    }
    if !preview.body.is_empty() {
        line(format!("          body: {}", preview.body));
    }
}

/// The band, and the reference prices it was applied to.
fn price_lines(
    line: &mut impl FnMut(String),
    bot: &BotPolicy,
    orders: &[Order],
    live: Option<&dyn LiveView>,
) {
    let Some(band) = bot.price_band() else {
        return;
    };
    let mut symbols: Vec<&Symbol> = orders.iter().map(|o| &o.symbol).collect();
    symbols.sort();
    symbols.dedup();
    if symbols.is_empty() {
        line(format!("band:     {band} around keyward's reference price"));
        return;
    }
    for symbol in symbols {
        let text = match live.and_then(|l| l.quote(bot.account(), symbol)) {
            Some((quote, age)) => {
                let sides: Vec<String> = orders
                    .iter()
                    .filter(|o| &o.symbol == symbol)
                    .map(|o| match o.side {
                        Side::Buy => {
                            format!("buys up to {}", band.buy_ceiling(quote.buy_reference()))
                        }
                        Side::Sell => {
                            format!("sells down to {}", band.sell_floor(quote.sell_reference()))
                        }
                    })
                    .collect();
                let slow = quote
                    .slow
                    .map_or_else(String::new, |slow| format!(", average or index {slow}"));
                format!(
                    "{symbol} bid {} ask {}{slow} ({} ms old); {band} band: {}",
                    quote.bid,
                    quote.ask,
                    age.as_millis(),
                    sides.join(", ")
                )
            }
            None if live.is_some() => {
                format!("{symbol}: no fresh reference price; orders that need one are refused")
            }
            None => {
                let conditions: Vec<String> = orders
                    .iter()
                    .filter(|o| &o.symbol == symbol)
                    .filter_map(|o| {
                        let price = o.price?;
                        Some(match o.side {
                            Side::Buy => format!(
                                "a buy at {price} passes while the ask is at least {price} / {}",
                                band.up_factor()
                            ),
                            Side::Sell => format!(
                                "a sell at {price} passes while the bid is at most {price} / {}",
                                band.down_factor()
                            ),
                        })
                    })
                    .collect();
                format!(
                    "{symbol}: {band} band around keyward's reference price, which only a running keyward knows; {}",
                    if conditions.is_empty() {
                        "market-priced orders are bounded by it".to_owned()
                    } else {
                        conditions.join("; ")
                    }
                )
            }
        };
        line(format!("price:    {text}"));
    }
}

/// Each budget of the bot and its account, with what is used where known.
fn budget_lines(
    line: &mut impl FnMut(String),
    config: &Config,
    bot: &BotPolicy,
    live: Option<&dyn LiveView>,
) {
    let account = config.accounts.get(bot.account());
    let scopes = [
        ("bot", Scope::Bot(bot.name().into()), bot.budget()),
        (
            "account",
            Scope::Account(bot.account().into()),
            account.map(|a| a.budget).unwrap_or_default(),
        ),
    ];
    for (whose, scope, limits) in scopes {
        let known = live.and_then(|l| l.budget(&scope));
        let (day, window) =
            known.map_or((None, None), |(_, day, window)| (Some(day), Some(window)));
        let mut parts = Vec::new();
        if let Some(limit) = limits.daily_notional {
            parts.push(match day {
                Some(used) => format!(
                    "daily_notional {} of {limit} used in 24 h ({} left)",
                    used.notional,
                    limit.saturating_sub(used.notional)
                ),
                None => format!("daily_notional {limit}"),
            });
        }
        if let Some(rate) = limits.max_orders {
            parts.push(match window {
                Some(used) => format!("max_orders {} of {rate} used", used.orders),
                None => format!("max_orders {rate}"),
            });
        }
        if let Some(limit) = limits.max_open_orders {
            let open = live.map(|l| l.open_orders(bot.account(), bot.name()));
            parts.push(match open {
                Some((by_bot, by_account)) => {
                    let n = if whose == "bot" { by_bot } else { by_account };
                    format!("max_open_orders {n} of {limit} open")
                }
                None => format!("max_open_orders {limit}"),
            });
        }
        if parts.is_empty() {
            continue;
        }
        let mut text = parts.join(", ");
        if live.is_none() {
            let _ = write!(text, " (what is used is known only to the running keyward)");
        }
        line(format!("budget:   {whose}: {text}"));
    }
}

/// The view of a running keyward, for the control socket's `/explain`.
pub struct Running<'a> {
    /// The running keyward.
    pub app: &'a crate::app::App,
    /// Fresh prices for the bot's symbols.
    pub prices: Fresh,
    /// The time of the question.
    pub now: SystemTime,
}

impl std::fmt::Debug for Running<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl LiveView for Running<'_> {
    fn quote(&self, _account: &str, symbol: &Symbol) -> Option<(Quote, Duration)> {
        self.prices.get(symbol)
    }

    fn budget(&self, scope: &Scope) -> Option<(BudgetLimits, Usage, Usage)> {
        self.app.budgets.report(scope, self.now)
    }

    fn open_orders(&self, account: &str, bot: &str) -> (u64, u64) {
        self.app.orders.open_orders(account, bot)
    }

    fn frozen(&self, account: &str) -> Option<String> {
        self.app
            .freeze
            .frozen(account)
            .map(|f| format!("since {} by {}", f.since, f.by))
    }

    fn order(
        &self,
        account: &str,
        bot: &str,
        reference: &keyward_venues::OrderRef,
    ) -> Result<crate::orders::Record, crate::orders::OrderError> {
        self.app.orders.lookup(account, bot, reference)
    }
}
