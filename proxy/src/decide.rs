//! The decision half of the request lifecycle: front checks, authentication,
//! routing, endpoint authorization (all on the head alone, so a refused request's
//! body is never read), then parsing, and [`judge`]: the orders a request names
//! resolved against keyward's record of them, and full authorization against
//! reference prices.
//!
//! The server, `keyward explain` and the tests all decide through these functions;
//! what differs is only what each knows ([`Knowledge`]): the server its order record
//! and prices, and the power to adopt an order or fetch a price; `explain` what a
//! running keyward tells it, or nothing. So what an operator is told is what the
//! proxy does.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, Method, header};
use keyward_policy::{BotPolicy, Denied, EndpointClass, Permit, Quotes, Symbol, mentions_token};
use keyward_venues::{
    CallInput, EndpointSpec, OrderRef, ParseError, ParsedCall, Route, Security, Venue, VenueId,
    form, route,
};

use crate::botjwt;
use crate::config::{Account, Config, HostPolicy};
use crate::error::Rejection;
use crate::front::{self, Head, Target};
use crate::identity::{Transport, check_bot_binding};
use crate::orders::{OrderError, Record};
use crate::prices::Fresh;

/// A request admitted on its head: authenticated, routed, and granted its endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Admitted<'c> {
    /// The bot, or `None` for an anonymous request for public market data.
    pub bot: Option<&'c BotPolicy>,
    /// The bot's account.
    pub account: &'c Account,
    /// The account's venue.
    pub venue: &'static dyn Venue,
    /// The catalogued endpoint.
    pub endpoint: &'static EndpointSpec,
    /// The bot JWT the request was authenticated with (Coinbase), as verified.
    pub jwt: Option<botjwt::Seen>,
}

/// A request refused on its head, with what was learned of it by then: its audit
/// record and the envelope of its refusal say as much as is known.
#[derive(Debug)]
pub struct Refused<'c, 'h> {
    /// Why.
    pub rejection: Rejection,
    /// The target, once the front vetted it.
    pub target: Option<Target<'h>>,
    /// The bot, once its token was accepted.
    pub bot: Option<&'c BotPolicy>,
    /// True once the bot also passed its binding to a client certificate or a peer.
    pub bound: bool,
}

/// Everything decided on the head: front checks, authentication, the bot's binding
/// to the transport it came on, routing and endpoint authorization.
pub fn admit<'c, 'h>(
    config: &'c Config,
    hosts: &HostPolicy,
    head: &Head<'h>,
    transport: &Transport,
    now: SystemTime,
) -> Result<(Admitted<'c>, Target<'h>), Box<Refused<'c, 'h>>> {
    // Boxed: a refusal is rare and a rejection is large.
    let refused = |rejection, target, bot, bound| {
        Box::new(Refused {
            rejection,
            target,
            bot,
            bound,
        })
    };
    let (bot, target, jwt) = authenticate_seen(config, hosts, head, now)
        .map_err(|rejection| refused(rejection, None, None, false))?;
    if head.padded_credential {
        return Err(refused(
            Denied::AuthInvalid.into(),
            Some(target),
            None,
            false,
        ));
    }
    let admitted = match bot {
        Some(bot) => {
            check_bot_binding(config, bot.name(), transport)
                .map_err(|rejection| refused(rejection, Some(target), Some(bot), false))?;
            admit_bot(config, bot, head.method, &target)
        }
        None => admit_public(config, head.method, &target),
    };
    match admitted {
        Ok(admitted) => Ok((Admitted { jwt, ..admitted }, target)),
        Err(rejection) => Err(refused(rejection, Some(target), bot, true)),
    }
}

/// Front checks and authentication: which bot is asking, or `None` when the request
/// carries no token at all (which only public market data may do).
pub fn authenticate<'c, 'h>(
    config: &'c Config,
    hosts: &HostPolicy,
    head: &Head<'h>,
    now: SystemTime,
) -> Result<(Option<&'c BotPolicy>, Target<'h>), Rejection> {
    authenticate_seen(config, hosts, head, now).map(|(bot, target, _)| (bot, target))
}

/// [`authenticate`], with the bot JWT the request carried as it was verified.
fn authenticate_seen<'c, 'h>(
    config: &'c Config,
    hosts: &HostPolicy,
    head: &Head<'h>,
    now: SystemTime,
) -> Result<(Option<&'c BotPolicy>, Target<'h>, Option<botjwt::Seen>), Rejection> {
    let target = front::check(head, hosts)?;
    if let Some(key_name) = head.verified_key {
        // The session verified this key's JWT; its standing is checked again here,
        // so a revocation or an expiry since applies to every message.
        let found = config.policy.authenticate_key(key_name, now)?;
        found.standing?;
        if presented_token(head.headers)?.is_some() || target_carries_token(&target) {
            return Err(Rejection::AuthAmbiguous);
        }
        return Ok((Some(found.bot), target, None));
    }
    let (token, carrier) = match presented_token(head.headers)? {
        Some((token, carrier)) => (Some(token), Some(carrier)),
        None if target_carries_token(&target) => return Err(ParseError::TokenInParams.into()),
        None => return Ok((None, target, None)),
    };
    let (bot, seen) = match token {
        // A bearer JWT is a Coinbase bot's own signature over this request.
        Some(jwt) if carrier == Some(Carrier::Bearer) && botjwt::looks_like_jwt(jwt) => {
            let (bot, seen) = authenticate_jwt(config, head, &target, jwt, now)?;
            (bot, Some(seen))
        }
        _ => (config.policy.authenticate(token, now)?, None),
    };
    let account = config.account_of(bot).ok_or(Denied::AuthInvalid)?;
    // A token presented in another venue's key header is a confused client; refuse it
    // like an unknown token rather than guess what it meant.
    if let Some(Carrier::VenueHeader(name)) = carrier
        && name != account.venue.adapter().key_header()
    {
        return Err(Denied::AuthInvalid.into());
    }
    if target_carries_token(&target) {
        return Err(ParseError::TokenInParams.into());
    }
    Ok((Some(bot), target, seen))
}

/// A JWT a bot signed with the key keyward issued to it: the key name (`kid`) selects
/// bot and key, which must belong to a Coinbase account, and the JWT must verify in
/// full against this very request (see [`botjwt::verify`]).
fn authenticate_jwt<'c>(
    config: &'c Config,
    head: &Head<'_>,
    target: &Target<'_>,
    jwt: &str,
    now: SystemTime,
) -> Result<(&'c BotPolicy, botjwt::Seen), Rejection> {
    let decoded = botjwt::decode(jwt)?;
    let found = config.policy.authenticate_key(&decoded.kid, now)?;
    let bot = found.bot;
    let coinbase = config
        .account_of(bot)
        .is_some_and(|account| account.venue == VenueId::Coinbase);
    if !coinbase {
        return Err(Denied::AuthInvalid.into());
    }
    let host = head
        .authority
        .or_else(|| head.headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .ok_or(Denied::AuthInvalid)?;
    let binding = botjwt::Binding {
        method: head.method.as_str(),
        host,
        path: target.path,
    };
    let seen = botjwt::verify(&decoded, &found.key, binding, now)?;
    // Only now that the JWT proved the key may it learn the key's standing.
    found.standing?;
    Ok((bot, seen))
}

/// Routes a tokenless request to the one account that serves its venue's public
/// market data anonymously; anything else is `auth_missing`.
pub fn admit_public<'c>(
    config: &'c Config,
    method: &Method,
    target: &Target<'_>,
) -> Result<Admitted<'c>, Rejection> {
    for account in config.accounts.values().filter(|a| a.public_market_data) {
        let venue = account.venue.adapter();
        if let Route::Endpoint(endpoint) = route(venue, method, target.path)
            && endpoint.class == EndpointClass::Market
            && endpoint.security == Security::Public
        {
            return Ok(Admitted {
                bot: None,
                account,
                venue,
                endpoint,
                jwt: None,
            });
        }
    }
    Err(Denied::AuthMissing.into())
}

/// Routing and endpoint authorization for a known bot (`explain` starts here).
pub fn admit_bot<'c>(
    config: &'c Config,
    bot: &'c BotPolicy,
    method: &Method,
    target: &Target<'_>,
) -> Result<Admitted<'c>, Rejection> {
    let account = config.account_of(bot).ok_or(Denied::AuthInvalid)?;
    let venue = account.venue.adapter();
    match route(venue, method, target.path) {
        Route::Endpoint(endpoint) => {
            config
                .policy
                .authorize_endpoint(bot, &endpoint.endpoint_ref())?;
            Ok(Admitted {
                bot: Some(bot),
                account,
                venue,
                endpoint,
                jwt: None,
            })
        }
        Route::Floor(endpoint) => Err(config
            .policy
            .authorize_endpoint(bot, &endpoint)
            .err()
            .unwrap_or(Denied::MoneyMovement {
                endpoint: endpoint.key,
            })
            .into()),
        Route::MethodNotAllowed => Err(Rejection::MethodNotAllowed {
            path: target.path.to_owned(),
        }),
        Route::Unknown => Err(Denied::PathNotAllowed {
            endpoint: format!("{method} {}", target.path).into(),
        }
        .into()),
    }
}

/// What a decision may consult besides the request and the configuration.
pub trait Knowledge {
    /// False when there is no record of orders to consult (`keyward explain`
    /// offline, the tests): the orders a request names are then judged as it states
    /// them.
    fn knows_orders(&self) -> bool;

    /// keyward's record of the order `reference` names, for `bot` of `account`.
    fn order(&self, account: &str, bot: &str, reference: &OrderRef) -> Result<Record, OrderError>;

    /// Called when an order `call` names is not in the record: may look it up and take
    /// it as the bot's (`adopt_orders`); true to look again.
    fn learn_orders(
        &self,
        admitted: &Admitted<'_>,
        bot: &BotPolicy,
        call: &ParsedCall,
    ) -> impl Future<Output = bool> + Send;

    /// The reference prices known now for `symbols` of `account`.
    fn prices(&self, account: &Account, symbols: &[Symbol]) -> Fresh;

    /// Prices to decide again with, when the decision made with [`Knowledge::prices`]
    /// (`first`) wanted a price it did not have; `None` keeps `first`.
    fn fetch_prices(
        &self,
        admitted: &Admitted<'_>,
        call: &ParsedCall,
        symbols: &[Symbol],
        first: &Result<Permit, Rejection>,
    ) -> impl Future<Output = Option<Fresh>> + Send;
}

/// Knows no orders and no prices, and learns nothing: decisions from the
/// configuration alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigOnly;

impl Knowledge for ConfigOnly {
    fn knows_orders(&self) -> bool {
        false
    }

    fn order(&self, _: &str, _: &str, reference: &OrderRef) -> Result<Record, OrderError> {
        Err(OrderError::Unknown(reference.describe()))
    }

    async fn learn_orders(&self, _: &Admitted<'_>, _: &BotPolicy, _: &ParsedCall) -> bool {
        false
    }

    fn prices(&self, _: &Account, _: &[Symbol]) -> Fresh {
        Fresh::default()
    }

    async fn fetch_prices(
        &self,
        _: &Admitted<'_>,
        _: &ParsedCall,
        _: &[Symbol],
        _: &Result<Permit, Rejection>,
    ) -> Option<Fresh> {
        None
    }
}

/// A parsed request, judged: the call as resolved against the order record (as
/// parsed, where resolving it failed), and the verdict on it.
#[derive(Debug)]
pub struct Judged {
    /// The call.
    pub call: ParsedCall,
    /// The permit, or why there is none.
    pub verdict: Result<Permit, Rejection>,
}

/// Judges a parsed call: resolves the orders it names against `knowledge`'s record
/// (learning the unknown ones if it can), then authorizes it against the prices
/// `knowledge` has, and again with fresh ones if the first answer wanted a price.
/// Only symbols on the bot's own list are ever priced: a fetch spends exchange weight
/// every bot shares, and a request refused for its symbol must not cause one.
pub async fn judge<K: Knowledge>(
    config: &Config,
    admitted: &Admitted<'_>,
    mut call: ParsedCall,
    knowledge: &K,
) -> Judged {
    if let Err(rejection) = resolve(admitted, &mut call, knowledge).await {
        return Judged {
            call,
            verdict: Err(rejection),
        };
    }
    let symbols = priced_symbols(admitted, &call);
    let cached = knowledge.prices(admitted.account, &symbols);
    let first = authorize(config, admitted, &call, &cached);
    if symbols.is_empty() || !wants_prices(&first) {
        return Judged {
            call,
            verdict: first,
        };
    }
    let verdict = match knowledge
        .fetch_prices(admitted, &call, &symbols, &first)
        .await
    {
        Some(fresh) => authorize(config, admitted, &call, &fresh),
        None => first,
    };
    Judged { call, verdict }
}

/// [`judge`] with knowledge that never waits (`keyward explain`, tests, benchmarks):
/// runs it to its end at once. `None` if the knowledge did wait, which is a bug of
/// the caller's.
pub fn judge_at_once<K: Knowledge>(
    config: &Config,
    admitted: &Admitted<'_>,
    call: ParsedCall,
    knowledge: &K,
) -> Option<Judged> {
    let future = std::pin::pin!(judge(config, admitted, call, knowledge));
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(judged) => Some(judged),
        std::task::Poll::Pending => None,
    }
}

async fn resolve<K: Knowledge>(
    admitted: &Admitted<'_>,
    call: &mut ParsedCall,
    knowledge: &K,
) -> Result<(), Rejection> {
    let Some(bot) = admitted.bot else {
        return Ok(());
    };
    if !knowledge.knows_orders() {
        return if call.refs.cancels_everything {
            Err(OrderError::CancelsEverything.into())
        } else {
            Ok(())
        };
    }
    let account = &admitted.account.name;
    let lookup = |reference: &OrderRef| knowledge.order(account, bot.name(), reference);
    match resolve_orders(call, lookup) {
        Err(Rejection::Order(OrderError::Unknown(_)))
            if knowledge.learn_orders(admitted, bot, call).await =>
        {
            resolve_orders(call, lookup)
        }
        resolved => resolved,
    }
}

/// The symbols of `call`'s orders that the bot may trade: the only ones priced.
fn priced_symbols(admitted: &Admitted<'_>, call: &ParsedCall) -> Vec<Symbol> {
    match admitted.bot {
        Some(bot) => call
            .intent
            .orders
            .iter()
            .filter(|o| bot.allows_symbol(&o.symbol))
            .map(|o| o.symbol.clone())
            .collect(),
        None => Vec::new(),
    }
}

/// True when a decision (or, in shadow mode, what enforce mode would have decided)
/// lacked a reference price.
fn wants_prices(decided: &Result<Permit, Rejection>) -> bool {
    let denied = match decided {
        Err(Rejection::Denied(denied)) => Some(denied),
        Ok(permit) => permit.shadow_denial(),
        Err(_) => None,
    };
    matches!(
        denied,
        Some(Denied::ReferenceUnavailable { .. } | Denied::NotionalUnbounded { .. })
    )
}

/// The venue's strict parse of an admitted request.
pub fn parse(
    admitted: &Admitted<'_>,
    target: &Target<'_>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ParsedCall, Rejection> {
    let input = CallInput {
        query: target.query,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
        headers,
    };
    Ok(admitted
        .venue
        .parse_at(admitted.endpoint, target.path, &input)?)
}

/// Full authorization of a parsed call against `quotes` (reference prices).
pub fn authorize(
    config: &Config,
    admitted: &Admitted<'_>,
    call: &ParsedCall,
    quotes: &dyn Quotes,
) -> Result<Permit, Rejection> {
    Ok(match admitted.bot {
        Some(bot) => config.policy.authorize(bot, &call.intent, quotes)?,
        None => config
            .policy
            .authorize_public(&admitted.account.name, &call.intent)?,
    })
}

/// Sets what an amend is judged by from keyward's record of the order it names
/// (symbol, side, type, and the size and prices it leaves unchanged), and checks that
/// every order a request names is one the bot placed through keyward. `lookup` finds
/// the record of an order the bot placed.
pub fn resolve_orders(
    call: &mut ParsedCall,
    lookup: impl Fn(&OrderRef) -> Result<Record, OrderError>,
) -> Result<(), Rejection> {
    if call.refs.cancels_everything {
        return Err(OrderError::CancelsEverything.into());
    }
    let mut symbols = Vec::new();
    for amend in &call.refs.amends {
        let record = lookup(&amend.order)?;
        let order = call
            .intent
            .orders
            .get_mut(amend.leg)
            .ok_or(Rejection::Internal)?;
        if amend.side_given && order.side != record.side {
            return Err(OrderError::Mismatch {
                order: amend.order.describe(),
                recorded: format!("a {} order", record.side),
                stated: format!("a {} order", order.side),
            }
            .into());
        }
        order.symbol = record.symbol.clone();
        order.side = record.side;
        order.order_type = record.order_type.clone();
        order.execution = record.execution;
        order.reduce_only = record.reduce_only;
        if !amend.size_given {
            order.size = record.size;
        }
        if !amend.price_given {
            order.price = record.price;
        }
        if order.trigger.is_none() {
            order.trigger = record.trigger;
        }
        symbols.push(record.symbol);
    }
    for cancel in &call.refs.cancels {
        symbols.push(lookup(cancel)?.symbol);
    }
    let unresolved = keyward_venues::unresolved_symbol();
    call.intent.symbols.retain(|s| *s != unresolved);
    call.intent.symbols.extend(symbols);
    call.intent.symbols.sort();
    call.intent.symbols.dedup();
    Ok(())
}

/// The venue whose error envelope a refusal should use when the request never got as
/// far as naming its account (a bad token, a malformed head): Coinbase for a bearer
/// JWT (only its clients send one), the venue whose key header it carries, else the
/// first venue that knows its path. Only the envelope depends on it, so the bot's own
/// client can show keyward's message.
pub fn envelope_venue(method: &Method, path: &str, headers: &HeaderMap) -> Option<VenueId> {
    let bearer_jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(botjwt::looks_like_jwt);
    if bearer_jwt {
        return Some(VenueId::Coinbase);
    }
    let path = path.split('?').next().unwrap_or_default();
    VenueId::ALL
        .into_iter()
        .find(|venue| {
            let name = venue.adapter().key_header();
            name != "authorization" && headers.contains_key(name)
        })
        .or_else(|| {
            VenueId::ALL
                .into_iter()
                .find(|venue| !matches!(route(venue.adapter(), method, path), Route::Unknown))
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// A venue's API-key header.
    VenueHeader(&'static str),
    /// `Authorization: Bearer`.
    Bearer,
}

/// Every header some venue reads its API key from (`Authorization`, Coinbase's, is
/// read as a bearer token instead), as header names built once: looking a header up
/// by text parses the name again on every request.
fn key_headers() -> &'static [(HeaderName, &'static str)] {
    static NAMES: LazyLock<Vec<(HeaderName, &'static str)>> = LazyLock::new(|| {
        let mut names: Vec<&'static str> = VenueId::ALL
            .iter()
            .map(|v| v.adapter().key_header())
            .filter(|name| *name != "authorization")
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| Some((HeaderName::from_bytes(name.as_bytes()).ok()?, name)))
            .collect()
    });
    &NAMES
}

/// The one token a request presents, refusing two carriers or a repeated header
/// (ambiguity wins over validity: two headers is a 400 even if one holds garbage).
pub(crate) fn presented_token(headers: &HeaderMap) -> Result<Option<(&str, Carrier)>, Rejection> {
    let mut carriers = 0usize;
    let mut found = None;
    for (header, name) in key_headers() {
        for value in headers.get_all(header) {
            carriers += 1;
            found = Some((value.as_bytes(), Carrier::VenueHeader(name)));
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        if let Some(token) = bearer(value.as_bytes()) {
            carriers += 1;
            found = Some((token, Carrier::Bearer));
        }
    }
    match (carriers, found) {
        (0, _) => Ok(None),
        (1, Some((token, carrier))) => Ok(Some((text(token)?, carrier))),
        _ => Err(Rejection::AuthAmbiguous),
    }
}

/// Tokens are printable ASCII; anything else can only be an invalid token.
fn text(bytes: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(bytes).map_err(|_| Rejection::Denied(Denied::AuthInvalid))
}

fn bearer(value: &[u8]) -> Option<&[u8]> {
    let prefix = b"Bearer ";
    (value.len() > prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &value[prefix.len()..])
}

/// True if a token stands anywhere in the path or the query: it would be logged with
/// the target, and echoed in refusals that name the endpoint.
fn target_carries_token(target: &Target<'_>) -> bool {
    carries_token(target.path) || carries_token(target.query)
}

/// True if a token stands anywhere in `text`, as it is or once percent-decoded.
pub fn carries_token(text: &str) -> bool {
    mentions_token(text)
        || match form::decode_lenient(text) {
            Cow::Owned(decoded) => mentions_token(&decoded),
            // Nothing to decode: the same text, already searched.
            Cow::Borrowed(_) => false,
        }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use http::HeaderValue;
    use keyward_policy::TokenDigest;

    use super::*;
    use crate::config::InMemory;

    const SECRET: &str = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1enF1dXo";

    /// 2026-12-01T00:00:00Z; the bot's token expires ten days later.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
    }

    fn config(token: &str) -> Config {
        let text = format!(
            r#"[server]
listen = "127.0.0.1:8443"

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.spot]
venue = "binance-spot"
secret = "spot"

[bots.a]
account = "spot"
tokens = ["{}"]
expires = "2026-12-11T00:00:00Z"
endpoints = ["GET /api/v3/account"]
"#,
            TokenDigest::of(token)
        );
        let mut files = InMemory::new();
        files.insert("/kw/keyward.toml", text);
        Config::load_from(&files, Path::new("/kw/keyward.toml"), now()).unwrap()
    }

    /// A key a stream session verified stands for its bot on the session's twins:
    /// while the bot keeps the key, only on its own (a token besides is ambiguous),
    /// and never for a name no bot has.
    #[test]
    fn a_verified_stream_key_stands_for_its_bot_while_it_keeps_the_key() {
        let (key, _) = botjwt::generate().unwrap();
        let text = format!(
            r#"[server]
listen = "127.0.0.1:8443"

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.cb]
venue = "coinbase"
secret = "cb"

[bots.c]
account = "cb"
tokens = ["{}"]
expires = "2026-12-11T00:00:00Z"
allow = ["read"]
"#,
            botjwt::format_public_key(&key)
        );
        let mut files = InMemory::new();
        files.insert("/kw/keyward.toml", text);
        let config = Config::load_from(&files, Path::new("/kw/keyward.toml"), now()).unwrap();
        let hosts = config.server.host_policy(&[8443]);
        let name = key.key_name("c");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("localhost:8443"));
        let head = |headers: &HeaderMap, verified: &str| {
            let verified = verified.to_owned();
            let headers = headers.clone();
            move |check: &dyn Fn(&Head<'_>)| {
                let head = Head {
                    method: &Method::GET,
                    target: "/api/v3/brokerage/orders/historical/batch",
                    authority: None,
                    headers: &headers,
                    padded_credential: false,
                    verified_key: Some(&verified),
                };
                check(&head);
            }
        };
        head(&headers, &name)(&|head| {
            let (bot, _) = authenticate(&config, &hosts, head, now()).unwrap();
            assert_eq!(bot.map(BotPolicy::name), Some("c"));
        });
        // After its expiry the key no longer stands for the bot.
        head(&headers, &name)(&|head| {
            let later = now() + Duration::from_secs(11 * 86_400);
            let refused = authenticate(&config, &hosts, head, later).err();
            assert_eq!(
                refused.as_ref().map(Rejection::reason),
                Some("auth_expired")
            );
        });
        head(&headers, "kwk_c.0000")(&|head| {
            let refused = authenticate(&config, &hosts, head, now()).err();
            assert_eq!(
                refused.as_ref().map(Rejection::reason),
                Some("auth_invalid")
            );
        });
        let mut with_token = headers.clone();
        with_token.insert("authorization", HeaderValue::from_static("Bearer kw_other"));
        head(&with_token, &name)(&|head| {
            let refused = authenticate(&config, &hosts, head, now()).err();
            assert_eq!(
                refused.as_ref().map(Rejection::reason),
                Some("auth_ambiguous")
            );
        });
    }

    #[test]
    fn a_token_anywhere_in_the_target_is_refused_before_it_is_echoed_or_logged() {
        let token = format!("kw_a_{SECRET}");
        let config = config(&token);
        let hosts = config.server.host_policy(&[8443]);
        // The first came from fuzzing (the path was echoed in path_not_allowed's message
        // and recorded in the audit log); the second hides the token inside a value.
        let targets = [
            format!("/{token}api/v3/account"),
            format!("/api/v3/account?note=Bearer%20{token}"),
            format!("/api/v3/account?apiKey=kw%5Fa%5F{SECRET}"),
        ];
        for with_header in [true, false] {
            for target in &targets {
                let mut headers = HeaderMap::new();
                headers.insert(header::HOST, HeaderValue::from_static("localhost:8443"));
                if with_header {
                    headers.insert("x-mbx-apikey", HeaderValue::from_str(&token).unwrap());
                }
                let head = Head {
                    method: &Method::GET,
                    target,
                    authority: None,
                    headers: &headers,
                    padded_credential: false,
                    verified_key: None,
                };
                let refused = authenticate(&config, &hosts, &head, now()).err();
                assert_eq!(
                    refused.as_ref().map(Rejection::reason),
                    Some("token_in_query"),
                    "{target} (token in the header: {with_header})"
                );
            }
        }
    }
}
