//! The loaded policy: authentication of tokens, authorization of intents, and the
//! [`Permit`] that only this module can construct.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::band::Band;
use crate::bot::{BotPolicy, Mode};
use crate::decimal::Amount;
use crate::error::{Denied, PolicyError, Rule};
use crate::intent::{EndpointClass, EndpointRef, Execution, Intent, Notional, Quotes, Side, Size};
use crate::rate::Rate;
use crate::token::{BotKey, TokenDigest, bot_name_of, split_key_name};

/// The bot name a [`Permit`] for an anonymous public request carries.
pub const ANONYMOUS: &str = "-";

/// The name keyward's own requests carry (not a valid bot name, so never a bot's).
pub const KEYWARD_ITSELF: &str = "(keyward)";

/// Account-wide limits shared by every bot signing with that account's key.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    /// Account name.
    pub name: String,
    /// Request rate across all the account's bots (anonymous public requests included).
    pub rate: Option<Rate>,
    /// Serve public market data to clients that present no token (ccxt sends none for
    /// public endpoints). Unsigned, never an order, counted against `rate`.
    pub public_market_data: bool,
}

#[derive(Debug, Clone, Copy)]
struct AccountLimits {
    rate: Option<Rate>,
    public_market_data: bool,
}

/// A bot key a key name selected: whose, which, and whether it may be used (to be
/// consulted only once the JWT's signature verified with `key`).
#[derive(Debug, Clone)]
pub struct KeyMatch<'p> {
    /// The key's bot.
    pub bot: &'p BotPolicy,
    /// The public key.
    pub key: BotKey,
    /// `Ok` for an active key of an unexpired bot; else `auth_revoked` or
    /// `auth_expired`.
    pub standing: Result<(), Denied>,
}

/// Every bot and account, validated. Immutable: a reload builds a new one.
pub struct Policy {
    bots: HashMap<Arc<str>, BotPolicy>,
    accounts: HashMap<Arc<str>, AccountLimits>,
    /// Every token digest: whose, and whether it is revoked.
    tokens: HashMap<TokenDigest, (Arc<str>, bool)>,
}

/// Proof that a request passed policy. It has private fields, so only
/// [`Policy::authorize`] can make one, and signing requires one.
///
/// Deliberately not `Clone`: one permit stands for one request.
pub struct Permit {
    bot: Arc<str>,
    account: Arc<str>,
    endpoint: Arc<str>,
    mode: Mode,
    via: Rule,
    orders: u32,
    notional: Notional,
    order_notionals: Vec<Amount>,
    shadow_denial: Option<Denied>,
}

impl Policy {
    /// Builds the policy, refusing tokens listed twice and bots defined twice.
    pub fn new(bots: Vec<BotPolicy>, accounts: Vec<AccountSpec>) -> Result<Self, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut tokens: HashMap<TokenDigest, (Arc<str>, bool)> = HashMap::new();
        let mut by_name = HashMap::new();
        for bot in bots {
            let listed = bot.tokens.iter().map(|d| (d, false));
            for (digest, revoked) in listed.chain(bot.revoked_tokens.iter().map(|d| (d, true))) {
                if let Some((other, _)) = tokens.insert(*digest, (bot.name.clone(), revoked)) {
                    errors.push(PolicyError::DuplicateToken {
                        digest: *digest,
                        other_bot: other,
                    });
                }
            }
            if by_name.contains_key(&bot.name) {
                errors.push(PolicyError::DuplicateBot {
                    bot: bot.name.clone(),
                });
            }
            by_name.insert(bot.name.clone(), bot);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let accounts = accounts
            .into_iter()
            .map(|a| {
                let limits = AccountLimits {
                    rate: a.rate,
                    public_market_data: a.public_market_data,
                };
                (Arc::from(a.name.as_str()), limits)
            })
            .collect();
        Ok(Self {
            bots: by_name,
            accounts,
            tokens,
        })
    }

    /// The bot with this name.
    pub fn bot(&self, name: &str) -> Option<&BotPolicy> {
        self.bots.get(name)
    }

    /// Every bot, sorted by name.
    pub fn bots(&self) -> Vec<&BotPolicy> {
        let mut bots: Vec<&BotPolicy> = self.bots.values().collect();
        bots.sort_by(|a, b| a.name.cmp(&b.name));
        bots
    }

    /// Every account name with its rate, sorted by name.
    pub fn accounts(&self) -> Vec<(&str, Option<Rate>)> {
        let mut accounts: Vec<(&str, Option<Rate>)> =
            self.accounts.iter().map(|(k, v)| (&**k, v.rate)).collect();
        accounts.sort_by(|a, b| a.0.cmp(b.0));
        accounts
    }

    /// Authenticates a presented token.
    ///
    /// The token's SHA-256 is looked up among every bot's digests: a wrong token
    /// costs one hash and one lookup of a digest unrelated to any valid one, however
    /// much of a valid token it repeats and whether or not its prefix names a bot
    /// (corpus AUTH-006; `soak --timing` measures it). A token found must also name
    /// its own bot in its prefix. Malformed, unknown, revoked and expired tokens all
    /// fail; the distinction is for the audit log, the bot sees the same 401 for each.
    pub fn authenticate(
        &self,
        presented: Option<&str>,
        now: SystemTime,
    ) -> Result<&BotPolicy, Denied> {
        let presented = match presented {
            None | Some("") => return Err(Denied::AuthMissing),
            Some(token) => token,
        };
        let (name, revoked) = self
            .tokens
            .get(&TokenDigest::of(presented))
            .ok_or(Denied::AuthInvalid)?;
        let bot = self
            .bots
            .get(name)
            .filter(|_| bot_name_of(presented) == Some(&**name))
            .ok_or(Denied::AuthInvalid)?;
        if *revoked {
            return Err(Denied::AuthRevoked);
        }
        if bot.expires <= now {
            return Err(Denied::AuthExpired);
        }
        Ok(bot)
    }

    /// Finds the bot and public key a presented key name (a JWT's `kid`) names, active
    /// or revoked. The caller must verify the JWT's signature with the key *before*
    /// acting on [`KeyMatch::standing`]: the key name is not secret, so whether a key is
    /// revoked or its bot expired is told only to the holder of the key.
    pub fn authenticate_key(
        &self,
        key_name: &str,
        now: SystemTime,
    ) -> Result<KeyMatch<'_>, Denied> {
        let (bot_name, id) = split_key_name(key_name).ok_or(Denied::AuthInvalid)?;
        let bot = self.bots.get(bot_name).ok_or(Denied::AuthInvalid)?;
        if let Some(key) = bot.keys.active.iter().find(|k| k.id() == id) {
            let standing = if bot.expires <= now {
                Err(Denied::AuthExpired)
            } else {
                Ok(())
            };
            return Ok(KeyMatch {
                bot,
                key: *key,
                standing,
            });
        }
        match bot.keys.revoked.iter().find(|k| k.id() == id) {
            Some(key) => Ok(KeyMatch {
                bot,
                key: *key,
                standing: Err(Denied::AuthRevoked),
            }),
            None => Err(Denied::AuthInvalid),
        }
    }

    /// Decides on the endpoint alone, before any body is read, so a refused request
    /// never has its body accepted (`Expect: 100-continue` is answered with the refusal).
    pub fn authorize_endpoint(
        &self,
        bot: &BotPolicy,
        endpoint: &EndpointRef,
    ) -> Result<(), Denied> {
        match Self::check_endpoint(bot, endpoint) {
            Ok(_) => Ok(()),
            Err(denied) if bot.mode == Mode::Shadow && denied.is_shadowable() => Ok(()),
            Err(denied) => Err(denied),
        }
    }

    /// Decides on a fully parsed request. Returns the [`Permit`] signing requires.
    pub fn authorize(
        &self,
        bot: &BotPolicy,
        intent: &Intent,
        quotes: &dyn Quotes,
    ) -> Result<Permit, Denied> {
        let notional = total_notional(intent, quotes);
        let order_notionals = order_notionals(intent, quotes);
        let verdict = Self::check_endpoint(bot, &intent.endpoint)
            .and_then(|via| Self::check_intent(bot, intent, quotes).map(|()| via));
        let (via, shadow_denial) = match verdict {
            Ok(via) => (via, None),
            Err(denied) if bot.mode == Mode::Shadow && denied.is_shadowable() => {
                (Rule::NotGranted, Some(denied))
            }
            Err(denied) => return Err(denied),
        };
        Ok(Permit {
            bot: bot.name.clone(),
            account: bot.account.clone(),
            endpoint: intent.endpoint.key.clone(),
            mode: bot.mode,
            via: bot
                .grant(&intent.endpoint.key)
                .map_or(via, |grant| grant.via),
            orders: u32::try_from(intent.orders.len()).unwrap_or(u32::MAX),
            notional,
            order_notionals,
            shadow_denial,
        })
    }

    /// Decides on a request that presented no token: only public market data of an
    /// account that serves it anonymously. Returns a [`Permit`] for no bot.
    pub fn authorize_public(&self, account: &str, intent: &Intent) -> Result<Permit, Denied> {
        let (name, limits) = self
            .accounts
            .get_key_value(account)
            .ok_or(Denied::AuthMissing)?;
        let public = limits.public_market_data
            && intent.endpoint.class == EndpointClass::Market
            && intent.orders.is_empty();
        if !public {
            return Err(Denied::AuthMissing);
        }
        Ok(Permit {
            bot: Arc::from(ANONYMOUS),
            account: name.clone(),
            endpoint: intent.endpoint.key.clone(),
            mode: Mode::Enforce,
            via: Rule::PublicMarketData,
            orders: 0,
            notional: Notional::Bounded(Amount::ZERO),
            order_notionals: Vec::new(),
            shadow_denial: None,
        })
    }

    /// Permits keyward's own requests on `account`: market data (reference prices),
    /// reading open orders and cancelling them (the kill switch). Nothing that places
    /// an order or moves money is ever permitted this way.
    pub fn authorize_housekeeping(&self, account: &str, intent: &Intent) -> Result<Permit, Denied> {
        let (name, _) = self
            .accounts
            .get_key_value(account)
            .ok_or(Denied::AuthMissing)?;
        let own_business = matches!(
            intent.endpoint.class,
            EndpointClass::Market | EndpointClass::Read | EndpointClass::Cancel
        ) && intent.orders.is_empty();
        if !own_business {
            return Err(Denied::PathNotAllowed {
                endpoint: intent.endpoint.key.clone(),
            });
        }
        Ok(Permit {
            bot: Arc::from(KEYWARD_ITSELF),
            account: name.clone(),
            endpoint: intent.endpoint.key.clone(),
            mode: Mode::Enforce,
            via: Rule::Housekeeping,
            orders: 0,
            notional: Notional::Bounded(Amount::ZERO),
            order_notionals: Vec::new(),
            shadow_denial: None,
        })
    }

    /// True if `account` serves public market data without a token.
    pub fn serves_public(&self, account: &str) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| a.public_market_data)
    }

    fn check_endpoint(bot: &BotPolicy, endpoint: &EndpointRef) -> Result<Rule, Denied> {
        match endpoint.class {
            EndpointClass::MoneyMovement => {
                return Err(Denied::MoneyMovement {
                    endpoint: endpoint.key.clone(),
                });
            }
            EndpointClass::KeyManagement => {
                return Err(Denied::KeyManagement {
                    endpoint: endpoint.key.clone(),
                });
            }
            EndpointClass::Market
            | EndpointClass::Read
            | EndpointClass::Trade
            | EndpointClass::Cancel
            | EndpointClass::Configure => {}
        }
        match bot.grants.get(&endpoint.key) {
            Some(grant) if grant.endpoint.class == endpoint.class => Ok(grant.via),
            _ => Err(Denied::PathNotAllowed {
                endpoint: endpoint.key.clone(),
            }),
        }
    }

    /// Symbols, then order types, then sizes: the order of the checks fixes which
    /// reason a request with several problems reports.
    fn check_intent(bot: &BotPolicy, intent: &Intent, quotes: &dyn Quotes) -> Result<(), Denied> {
        // Public market data names symbols too, but reading a public ticker is not
        // something the allowlist protects against.
        if intent.endpoint.class != EndpointClass::Market {
            for symbol in intent
                .symbols
                .iter()
                .chain(intent.orders.iter().map(|o| &o.symbol))
            {
                if !bot.symbols.contains(symbol) {
                    return Err(Denied::SymbolNotAllowed {
                        symbol: symbol.clone(),
                    });
                }
            }
        }
        for order in &intent.orders {
            if !bot.order_types.contains(&order.order_type) {
                return Err(Denied::OrderTypeNotAllowed {
                    order_type: order.order_type.clone(),
                });
            }
            if order.margin && !bot.allow_margin {
                return Err(Denied::MarginNotAllowed {
                    symbol: order.symbol.clone(),
                });
            }
        }
        if let Some(band) = bot.price_band {
            check_band(band, intent, quotes)?;
        }
        for order in &intent.orders {
            if order.exchange_sized() {
                // Nothing the request says bounds it, so no cap can apply: such an
                // order passes only as a reduce-only close the operator allowed.
                if bot.allow_position_close && order.reduce_only {
                    continue;
                }
                return Err(Denied::ExchangeSized {
                    symbol: order.symbol.clone(),
                    order_type: order.order_type.clone(),
                    closes_allowed: bot.allow_position_close,
                });
            }
            if let (Size::Base(quantity), Some(limit)) =
                (order.size, bot.max_order_qty.get(&order.symbol))
                && quantity.to_amount() > *limit
            {
                return Err(Denied::QtyExceedsLimit {
                    symbol: order.symbol.clone(),
                    quantity: quantity.to_amount(),
                    limit: *limit,
                });
            }
            let Some(limit) = bot.max_order_notional else {
                continue;
            };
            match order.notional(quotes) {
                Notional::Bounded(notional) if notional <= limit => {}
                Notional::Bounded(notional) => {
                    return Err(Denied::NotionalExceedsLimit { notional, limit });
                }
                Notional::Unbounded => {
                    return Err(Denied::NotionalUnbounded {
                        order_type: order.order_type.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Every order of the request against the band, one bad order refusing the whole
/// request. Every order needs a fresh reference price, so market orders are at least
/// bounded by it in the notional check that follows; the band itself applies to every
/// price the order states (a limit price, or the limit leg of a stop-limit). An order
/// that executes at a price the market chooses has only its notional to check.
fn check_band(band: Band, intent: &Intent, quotes: &dyn Quotes) -> Result<(), Denied> {
    for order in &intent.orders {
        // A market-priced order (whatever its size unit) fills at the book's prices,
        // however far a thin book has been moved: the band cannot hold it. A
        // reduce-only close the exchange sizes is the operator's explicit choice.
        if order.execution.is_market_like() && !(order.exchange_sized() && order.reduce_only) {
            return Err(Denied::MarketOrderInBand {
                symbol: order.symbol.clone(),
                order_type: order.order_type.clone(),
                band,
            });
        }
        let quote = quotes
            .quote(&order.symbol)
            .ok_or_else(|| Denied::ReferenceUnavailable {
                symbol: order.symbol.clone(),
            })?;
        if band.is_narrower_than_spread(quote) {
            return Err(Denied::SpreadTooWide {
                symbol: order.symbol.clone(),
                bid: quote.bid,
                ask: quote.ask,
                band,
            });
        }
        let priced = matches!(order.execution, Execution::Limit | Execution::StopLimit);
        if let (true, Some(price)) = (priced, order.price)
            && !band.allows(order.side, price, quote)
        {
            return Err(Denied::PriceOutOfBand {
                symbol: order.symbol.clone(),
                side: order.side,
                price,
                reference: match order.side {
                    Side::Buy => quote.buy_reference(),
                    Side::Sell => quote.sell_reference(),
                },
                band,
            });
        }
    }
    Ok(())
}

/// The sum of the orders' notional bounds. A reduce-only order whose size the
/// exchange decides can only shrink a position; it adds nothing to what budgets count
/// (it passes policy only where `allow_position_close` allows it).
fn total_notional(intent: &Intent, quotes: &dyn Quotes) -> Notional {
    intent
        .orders
        .iter()
        .try_fold(Amount::ZERO, |sum, order| {
            if order.exchange_sized() && order.reduce_only {
                return Some(sum);
            }
            match order.notional(quotes) {
                Notional::Bounded(n) => Some(sum.saturating_add(n)),
                Notional::Unbounded => None,
            }
        })
        .map_or(Notional::Unbounded, Notional::Bounded)
}

/// Each order's share of [`total_notional`] (zero for an unbounded one: the total is
/// then unbounded and nothing is spent).
fn order_notionals(intent: &Intent, quotes: &dyn Quotes) -> Vec<Amount> {
    intent
        .orders
        .iter()
        .map(|order| match order.notional(quotes) {
            Notional::Bounded(n) if !(order.exchange_sized() && order.reduce_only) => n,
            _ => Amount::ZERO,
        })
        .collect()
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("bots", &self.bots.len())
            .field("accounts", &self.accounts.len())
            .finish()
    }
}

impl Permit {
    /// The permitted bot.
    pub fn bot(&self) -> &str {
        &self.bot
    }

    /// The account whose key will sign.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The permitted endpoint key.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What to do with the request.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The rule that granted the endpoint.
    pub fn via(&self) -> Rule {
        self.via
    }

    /// Number of orders the request places or changes.
    pub fn orders(&self) -> u32 {
        self.orders
    }

    /// Sum of the orders' notional bounds.
    pub fn notional(&self) -> Notional {
        self.notional
    }

    /// The notional bound of the request's order at `index` (zero if unknown).
    pub fn order_notional(&self, index: usize) -> Amount {
        self.order_notionals
            .get(index)
            .copied()
            .unwrap_or(Amount::ZERO)
    }

    /// In shadow mode, the denial that enforce mode would have returned.
    pub fn shadow_denial(&self) -> Option<&Denied> {
        self.shadow_denial.as_ref()
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bot", &self.bot)
            .field("endpoint", &self.endpoint)
            .field("mode", &self.mode)
            .field("orders", &self.orders)
            .finish_non_exhaustive()
    }
}

/// Account rates as recorded in the policy (for building limiters).
pub(crate) fn account_rate(policy: &Policy, account: &str) -> Option<Rate> {
    policy.accounts.get(account).and_then(|a| a.rate)
}
