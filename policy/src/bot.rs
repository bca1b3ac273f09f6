//! One bot's policy: identity, grants, instrument and size limits, rates and mode.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::band::Band;
use crate::budget::BudgetLimits;
use crate::decimal::Amount;
use crate::error::{PolicyError, Rule};
use crate::intent::{EndpointRef, Symbol};
use crate::rate::Rate;
use crate::token::{BotKey, TokenDigest, is_valid_bot_name};

/// What keyward does with a bot's permitted requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward permitted requests, refuse the rest.
    #[default]
    Enforce,
    /// Forward requests that only the operator's own limits object to, and record the
    /// objection; identity, the money floor and rate limits are still enforced.
    Shadow,
    /// Never forward anything; answer with the request keyward would have sent.
    DryRun,
}

impl Mode {
    /// Parses `enforce`, `shadow` or `dry-run`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "enforce" => Some(Self::Enforce),
            "shadow" => Some(Self::Shadow),
            "dry-run" => Some(Self::DryRun),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Shadow => "shadow",
            Self::DryRun => "dry-run",
        }
    }
}

/// Permission to call one endpoint, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The endpoint.
    pub endpoint: EndpointRef,
    /// [`Rule::Allow`] (a class) or [`Rule::Endpoints`] (named explicitly).
    pub via: Rule,
    /// True if the endpoint can place or change orders.
    pub bears_orders: bool,
}

/// A bot as the configuration describes it, before validation.
#[derive(Debug, Clone)]
pub struct BotSpec {
    /// Bot name (also the token prefix).
    pub name: String,
    /// The account whose key signs for this bot.
    pub account: String,
    /// Digests of tokens that authenticate the bot.
    pub tokens: Vec<TokenDigest>,
    /// Digests of revoked tokens, kept so refusals can say `auth_revoked`.
    pub revoked_tokens: Vec<TokenDigest>,
    /// Public keys the bot signs its own JWTs with (Coinbase bots), and revoked ones.
    pub keys: BotKeys,
    /// When every token of the bot stops working.
    pub expires: SystemTime,
    /// Endpoints the bot may call.
    pub grants: Vec<Grant>,
    /// Symbols the bot may name.
    pub symbols: Vec<Symbol>,
    /// Order types the bot may use.
    pub order_types: Vec<String>,
    /// Whether spot orders on borrowed funds are allowed.
    pub allow_margin: bool,
    /// Whether orders whose size the exchange decides (whole-position closes) are
    /// allowed, as reduce-only orders on the bot's symbols.
    pub allow_position_close: bool,
    /// The percentage (1 to 100) of each of the exchange's limits the bot may use
    /// (`None`: keyward's default).
    pub exchange_share: Option<u8>,
    /// Whether an order keyward has no record of may be looked up at the exchange
    /// (by keyward, signed) and, if it is open on one of the bot's symbols, taken
    /// as the bot's (orders placed before keyward).
    pub adopt_orders: bool,
    /// Per-order notional cap in quote currency.
    pub max_order_notional: Option<Amount>,
    /// Per-order base-quantity caps by symbol.
    pub max_order_qty: Vec<(Symbol, Amount)>,
    /// Request rate.
    pub rate: Option<Rate>,
    /// Order rate (each order in a batch counts).
    pub order_rate: Option<Rate>,
    /// Enforcement mode.
    pub mode: Mode,
    /// How far from keyward's reference price orders may be priced.
    pub price_band: Option<Band>,
    /// Rolling budgets and the open-order limit.
    pub budget: BudgetLimits,
}

/// A bot's public keys: the ones that authenticate it and the revoked ones, kept so
/// refusals can say `auth_revoked`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotKeys {
    /// Keys whose signatures authenticate the bot.
    pub active: Vec<BotKey>,
    /// Revoked keys.
    pub revoked: Vec<BotKey>,
}

/// A validated bot policy; nothing in it is re-checked after construction.
pub struct BotPolicy {
    pub(crate) name: Arc<str>,
    pub(crate) account: Arc<str>,
    pub(crate) tokens: Vec<TokenDigest>,
    pub(crate) revoked_tokens: Vec<TokenDigest>,
    pub(crate) keys: BotKeys,
    pub(crate) expires: SystemTime,
    pub(crate) grants: HashMap<Arc<str>, Grant>,
    pub(crate) symbols: HashSet<Symbol>,
    pub(crate) order_types: HashSet<Arc<str>>,
    pub(crate) allow_margin: bool,
    pub(crate) allow_position_close: bool,
    pub(crate) adopt_orders: bool,
    pub(crate) exchange_share: Option<u8>,
    pub(crate) max_order_notional: Option<Amount>,
    pub(crate) max_order_qty: HashMap<Symbol, Amount>,
    pub(crate) rate: Option<Rate>,
    pub(crate) order_rate: Option<Rate>,
    pub(crate) mode: Mode,
    pub(crate) price_band: Option<Band>,
    pub(crate) budget: BudgetLimits,
}

impl BotPolicy {
    /// Whether `other` (the same bot after a reload) reaches what this one does:
    /// the same account, symbols and granted endpoints. What a stream subscribed to
    /// was decided under these; anything else is decided again on each message.
    pub fn same_reach(&self, other: &Self) -> bool {
        self.account == other.account
            && self.symbols == other.symbols
            && self.grants.len() == other.grants.len()
            && self.grants.keys().all(|key| other.grants.contains_key(key))
    }

    /// Validates a spec, reporting every problem rather than the first.
    pub fn new(spec: BotSpec) -> Result<Self, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let name: Arc<str> = Arc::from(spec.name.as_str());
        if !is_valid_bot_name(&spec.name) {
            errors.push(PolicyError::InvalidBotName { bot: name.clone() });
        }
        let mut grants = HashMap::new();
        for grant in spec.grants {
            if grant.endpoint.class.is_floor() {
                errors.push(PolicyError::FloorEndpoint {
                    endpoint: grant.endpoint.key.clone(),
                    class: grant.endpoint.class.name(),
                });
                continue;
            }
            // A class grant and an explicit entry may name the same endpoint; the
            // explicit one is kept because it is the more specific rule to point at.
            let key = grant.endpoint.key.clone();
            match grants.get(&key) {
                Some(Grant {
                    via: Rule::Endpoints,
                    ..
                }) => {}
                _ => {
                    grants.insert(key, grant);
                }
            }
        }
        let bears_orders = grants.values().any(|g| g.bears_orders);
        if bears_orders && spec.max_order_notional.is_none() {
            errors.push(PolicyError::MissingNotionalCap);
        }
        if bears_orders && spec.order_types.is_empty() {
            errors.push(PolicyError::MissingOrderTypes);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name,
            account: Arc::from(spec.account.as_str()),
            tokens: spec.tokens,
            revoked_tokens: spec.revoked_tokens,
            keys: spec.keys,
            expires: spec.expires,
            grants,
            symbols: spec.symbols.into_iter().collect(),
            order_types: spec
                .order_types
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            allow_margin: spec.allow_margin,
            allow_position_close: spec.allow_position_close,
            adopt_orders: spec.adopt_orders,
            exchange_share: spec.exchange_share,
            max_order_notional: spec.max_order_notional,
            max_order_qty: spec.max_order_qty.into_iter().collect(),
            rate: spec.rate,
            order_rate: spec.order_rate,
            mode: spec.mode,
            price_band: spec.price_band,
            budget: spec.budget,
        })
    }

    /// Bot name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account whose key signs for this bot.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Enforcement mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// When the bot's tokens stop working.
    pub fn expires(&self) -> SystemTime {
        self.expires
    }

    /// Digests of the bot's active tokens.
    pub fn tokens(&self) -> &[TokenDigest] {
        &self.tokens
    }

    /// Digests of the bot's revoked tokens.
    pub fn revoked_tokens(&self) -> &[TokenDigest] {
        &self.revoked_tokens
    }

    /// The bot's public keys (active and revoked).
    pub fn keys(&self) -> &BotKeys {
        &self.keys
    }

    /// The grant for an endpoint key, if any.
    pub fn grant(&self, endpoint_key: &str) -> Option<&Grant> {
        self.grants.get(endpoint_key)
    }

    /// Every granted endpoint, sorted by key.
    pub fn grants(&self) -> Vec<&Grant> {
        let mut grants: Vec<&Grant> = self.grants.values().collect();
        grants.sort_by(|a, b| a.endpoint.key.cmp(&b.endpoint.key));
        grants
    }

    /// Allowed symbols, sorted.
    pub fn symbols(&self) -> Vec<&Symbol> {
        let mut symbols: Vec<&Symbol> = self.symbols.iter().collect();
        symbols.sort();
        symbols
    }

    /// True if `symbol` is on the bot's list.
    pub fn allows_symbol(&self, symbol: &Symbol) -> bool {
        self.symbols.contains(symbol)
    }

    /// The bot's share of the exchange's limits, in percent, if the operator set it.
    pub fn exchange_share(&self) -> Option<u8> {
        self.exchange_share
    }

    /// True if orders unknown to keyward may be looked up and adopted.
    pub fn adopt_orders(&self) -> bool {
        self.adopt_orders
    }

    /// Request rate, if limited.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Order rate, if limited.
    pub fn order_rate(&self) -> Option<Rate> {
        self.order_rate
    }

    /// The price band, if set.
    pub fn price_band(&self) -> Option<Band> {
        self.price_band
    }

    /// Rolling budgets and the open-order limit.
    pub fn budget(&self) -> BudgetLimits {
        self.budget
    }

    /// Per-order notional cap.
    pub fn max_order_notional(&self) -> Option<Amount> {
        self.max_order_notional
    }

    /// True if any granted endpoint can place or change orders.
    pub fn places_orders(&self) -> bool {
        self.grants.values().any(|g| g.bears_orders)
    }
}

impl fmt::Debug for BotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotPolicy")
            .field("name", &self.name)
            .field("account", &self.account)
            .field("tokens", &self.tokens.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
