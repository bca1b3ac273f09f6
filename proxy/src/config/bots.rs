//! `[bots.NAME]`: who may call through keyward and what each bot may do (its tokens or
//! keys, expiry, endpoints, symbols, order types and limits), checked step by step into
//! the policy's `BotPolicy`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use keyward_policy::{
    Amount, Band, BotPolicy, BotSpec, EndpointClass, Grant, Mode, PolicyError, Rule, Symbol,
    TokenDigest,
};
use keyward_venues::{Route, VenueId, route};
use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::suggestion;
use super::raw::{RawBot, RawDate};
use super::{Loader, Source};

/// Where a bot's table and keys are in the configuration files.
#[derive(Debug, Clone)]
pub struct BotSource {
    /// The file holding `[bots.NAME]`.
    pub file: PathBuf,
    /// (line, column) of the table header and of each key.
    pub positions: BTreeMap<String, (usize, usize)>,
}

impl BotSource {
    /// `file:line:col` of a key (or of the table when the key is absent).
    pub fn locate(&self, key: &str) -> String {
        let (line, column) = self
            .positions
            .get(key)
            .or_else(|| self.positions.get(""))
            .copied()
            .unwrap_or((1, 1));
        format!("{}:{line}:{column}", self.file.display())
    }
}

/// What a bot must prove besides its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    /// The TLS client certificate must name the bot.
    pub client_cert: bool,
    /// The request must come over the Unix socket from this uid.
    pub peer_uid: Option<u32>,
}

const CLASS_NAMES: &str = "market, read, trade, cancel, configure";

/// What each step of building a bot needs to know about the table it checks.
struct BotTable<'a> {
    source: &'a Source,
    /// The `[bots.NAME]` header: where problems of the table as a whole are reported.
    header: std::ops::Range<usize>,
    name: &'a str,
    /// `[bots.NAME]`, as messages name the table.
    table: String,
    raw: &'a RawBot,
    /// The venue of the bot's account; None when the account is not declared or its
    /// venue is unknown (already reported), so venue checks are skipped.
    venue: Option<&'static dyn keyward_venues::Venue>,
}

/// A bot's token digests and keys, active and revoked.
struct Credentials {
    tokens: Vec<TokenDigest>,
    revoked_tokens: Vec<TokenDigest>,
    keys: keyward_policy::BotKeys,
}

impl Loader<'_> {
    pub(super) fn build_bots(
        &mut self,
        tables: &[(&Source, Spanned<DeValue<'_>>)],
        accounts: &BTreeMap<String, Option<VenueId>>,
        max_token_days: u32,
    ) -> (Vec<BotPolicy>, BTreeMap<String, BotSource>) {
        let mut bots = Vec::new();
        let mut sources: BTreeMap<String, BotSource> = BTreeMap::new();
        for (source, value) in tables {
            let DeValue::Table(table) = value.get_ref() else {
                self.diagnostics.error(
                    source,
                    value.span(),
                    "bots must be tables, e.g. [bots.grid]",
                );
                continue;
            };
            for (key, value) in table.iter() {
                let name = key.get_ref().to_string();
                if let Some(existing) = sources.get(&name) {
                    let first = existing.locate("");
                    self.diagnostics.error(
                        source,
                        key.span(),
                        format!("bot `{name}` is already defined at {first}; rename one of them"),
                    );
                    continue;
                }
                let mut positions = BTreeMap::new();
                positions.insert(String::new(), source.position(key.span().start));
                if let DeValue::Table(fields) = value.get_ref() {
                    for (field, _) in fields.iter() {
                        positions.insert(
                            field.get_ref().to_string(),
                            source.position(field.span().start),
                        );
                    }
                }
                sources.insert(
                    name.clone(),
                    BotSource {
                        file: source.path.clone(),
                        positions,
                    },
                );
                let Some(raw) = self.section::<RawBot>(source, value, &format!("[bots.{name}]"))
                else {
                    continue;
                };
                if let Some(bot) =
                    self.build_bot(source, key.span(), &name, raw, accounts, max_token_days)
                {
                    bots.push(bot);
                }
            }
        }
        (bots, sources)
    }

    /// Checks one `[bots.NAME]` table, a step per key or group of keys. The steps keep
    /// this order because problems reported at the same place (most often the table
    /// header) are listed in the order they were found.
    fn build_bot(
        &mut self,
        source: &Source,
        header: std::ops::Range<usize>,
        name: &str,
        raw: RawBot,
        accounts: &BTreeMap<String, Option<VenueId>>,
        max_token_days: u32,
    ) -> Option<BotPolicy> {
        let errors_before = self.error_count();
        self.binding(source, name, &raw);
        let venue = self.bot_venue(source, &raw, accounts);
        let bot = BotTable {
            source,
            header,
            name,
            table: format!("[bots.{name}]"),
            raw: &raw,
            venue,
        };
        let credentials = self.credentials(&bot);
        let expires = self.expires(&bot, max_token_days, &credentials);
        let Credentials {
            tokens,
            revoked_tokens,
            keys,
        } = credentials;
        let grants = self.grants(&bot);
        let symbols = self.symbols(&bot);
        let order_types = self.order_types(&bot);
        let max_order_notional = raw
            .max_order_notional
            .as_ref()
            .and_then(|v| self.amount(source, v, "max_order_notional"));
        let max_order_qty = self.max_order_qty(&bot, &symbols);
        let rate = raw.rate.as_ref().and_then(|r| self.rate(source, r, "rate"));
        let order_rate = raw
            .order_rate
            .as_ref()
            .and_then(|r| self.rate(source, r, "order_rate"));
        let mode = self.mode(&bot);
        let price_band = self.price_band(&bot);
        let budget = self.budget(
            source,
            raw.daily_notional.as_ref(),
            raw.max_orders.as_ref(),
            raw.max_open_orders.as_ref(),
        );
        let exchange_share = self.exchange_share(&bot);
        let spec = BotSpec {
            name: name.to_owned(),
            account: raw.account.get_ref().clone(),
            tokens,
            revoked_tokens,
            keys,
            expires: expires.unwrap_or(self.now),
            grants,
            symbols,
            order_types,
            allow_margin: raw.allow_margin.as_ref().is_some_and(|a| *a.get_ref()),
            allow_position_close: raw
                .allow_position_close
                .as_ref()
                .is_some_and(|a| *a.get_ref()),
            adopt_orders: raw.adopt_orders.as_ref().is_some_and(|a| *a.get_ref()),
            exchange_share,
            max_order_notional,
            max_order_qty,
            rate,
            order_rate,
            mode,
            price_band,
            budget,
        };
        // A bot with a mistake of its own is not also judged as a whole: the policy's
        // errors would only restate it.
        if self.error_count() > errors_before {
            return None;
        }
        self.bot_policy(&bot, spec)
    }

    /// The venue of the bot's account, when the account is declared and its venue known.
    fn bot_venue(
        &mut self,
        source: &Source,
        raw: &RawBot,
        accounts: &BTreeMap<String, Option<VenueId>>,
    ) -> Option<&'static dyn keyward_venues::Venue> {
        let account = accounts.get(raw.account.get_ref());
        if account.is_none() {
            let names: Vec<&str> = accounts.keys().map(String::as_str).collect();
            let hint = suggestion(raw.account.get_ref(), &names);
            self.diagnostics.error(
                source,
                raw.account.span(),
                format!(
                    "account `{}` is not defined{hint}; add [accounts.{}] or use one of: {}",
                    raw.account.get_ref(),
                    raw.account.get_ref(),
                    names.join(", ")
                ),
            );
        }
        account.copied().flatten().map(VenueId::adapter)
    }

    /// `tokens` and `revoked_tokens`: digests and bot keys, each claimed for this bot.
    fn credentials(&mut self, bot: &BotTable<'_>) -> Credentials {
        let (source, raw, name, table) = (bot.source, bot.raw, bot.name, &bot.table);
        let mut tokens = Vec::new();
        let mut keys = keyward_policy::BotKeys::default();
        match &raw.tokens {
            None => self.diagnostics.warning(
                source,
                bot.header.clone(),
                no_token_yet(table, name, raw.expires.is_some()),
            ),
            Some(list) => {
                for token in list.get_ref() {
                    if token.get_ref().starts_with(keyward_policy::P256_KEY_PREFIX) {
                        self.bot_key(source, token, name, bot.venue, &mut keys.active);
                        continue;
                    }
                    match token.get_ref().parse::<TokenDigest>() {
                        Ok(digest) => {
                            if self.claim_digest(source, token, digest, name) {
                                tokens.push(digest);
                            }
                        }
                        Err(e) => self.diagnostics.error(
                            source,
                            token.span(),
                            format!("{e}; store the digest printed by `keyward token new`, never the token itself"),
                        ),
                    }
                }
            }
        }
        let mut revoked_tokens = Vec::new();
        for token in raw.revoked_tokens.iter().flatten() {
            if token.get_ref().starts_with(keyward_policy::P256_KEY_PREFIX) {
                self.bot_key(source, token, name, bot.venue, &mut keys.revoked);
                continue;
            }
            match token.get_ref().parse::<TokenDigest>() {
                Ok(digest) => {
                    if self.claim_digest(source, token, digest, name) {
                        revoked_tokens.push(digest);
                    }
                }
                Err(e) => self.diagnostics.error(source, token.span(), e.to_string()),
            }
        }
        // Only revoked tokens left is no token either.
        if raw.tokens.as_ref().is_some_and(|t| t.get_ref().is_empty()) {
            let span = raw
                .tokens
                .as_ref()
                .map_or(bot.header.clone(), Spanned::span);
            self.diagnostics.warning(
                source,
                span,
                no_token_yet(table, name, raw.expires.is_some()),
            );
        }
        Credentials {
            tokens,
            revoked_tokens,
            keys,
        }
    }

    /// `expires`, which every bot with a token must have. A new bot has neither yet:
    /// `keyward token new BOT --days N` sets both, so their absence is not an error
    /// that would stop the command that mends it.
    fn expires(
        &mut self,
        bot: &BotTable<'_>,
        max_token_days: u32,
        credentials: &Credentials,
    ) -> Option<SystemTime> {
        match &bot.raw.expires {
            None if credentials.tokens.is_empty() && credentials.keys.active.is_empty() => None,
            None => {
                self.diagnostics.error(
                    bot.source,
                    bot.header.clone(),
                    format!(
                        "{} has no `expires`; every bot's tokens must expire, e.g. expires = \"2027-02-19T00:00:00Z\" (`keyward token new {} --days 30` sets it)",
                        bot.table, bot.name
                    ),
                );
                None
            }
            Some(value) => self.expiry(bot.source, value, bot.name, max_token_days),
        }
    }

    /// `allow` (classes of the venue's catalogue) and `endpoints` (single entries).
    fn grants(&mut self, bot: &BotTable<'_>) -> Vec<Grant> {
        let (source, raw, venue) = (bot.source, bot.raw, bot.venue);
        let mut grants = Vec::new();
        for class in raw.allow.iter().flat_map(Spanned::get_ref) {
            let text = class.get_ref();
            match EndpointClass::grantable_from_name(text) {
                Some(class) => {
                    let specs = venue.iter().flat_map(|v| v.catalogue().entries());
                    for spec in specs.filter(|s| s.class == class) {
                        grants.push(Grant {
                            endpoint: spec.endpoint_ref(),
                            via: Rule::Allow,
                            bears_orders: spec.bears_orders(),
                        });
                    }
                }
                None if is_money_word(text) => self.diagnostics.error(
                    source,
                    class.span(),
                    format!("`{text}` cannot be allowed: keyward never signs withdrawals, transfers or key changes; allowable classes are {CLASS_NAMES}"),
                ),
                None => {
                    let hint = suggestion(text, &["market", "read", "trade", "cancel", "configure"]);
                    self.diagnostics.error(source, class.span(), format!("unknown class `{text}`{hint}; classes are {CLASS_NAMES}"));
                }
            }
        }
        if let Some(venue) = venue {
            for entry in raw.endpoints.iter().flatten() {
                match self.endpoint_grant(venue, entry.get_ref()) {
                    Ok(grant) => grants.push(grant),
                    Err(message) => self.diagnostics.error(source, entry.span(), message),
                }
            }
        }
        if raw.allow.is_none() && raw.endpoints.is_none() {
            self.diagnostics.warning(
                source,
                bot.header.clone(),
                format!(
                    "{} has neither `allow` nor `endpoints`, so every request it makes is refused",
                    bot.table
                ),
            );
        }
        grants
    }

    /// `symbols`, each as the account's exchange writes it.
    fn symbols(&mut self, bot: &BotTable<'_>) -> Vec<Symbol> {
        let (source, venue) = (bot.source, bot.venue);
        let mut symbols = Vec::new();
        for symbol in bot.raw.symbols.iter().flatten() {
            let text = symbol.get_ref();
            let venue_check = venue.map_or(Ok(()), |v| v.check_symbol(text));
            match (Symbol::new(text), venue_check) {
                (Ok(s), Ok(())) => {
                    if symbols.contains(&s) {
                        self.diagnostics.warning(source, symbol.span(), format!("symbol `{text}` is listed twice"));
                    }
                    symbols.push(s);
                }
                (_, Err(expected)) => self.diagnostics.error(source, symbol.span(), format!("`{text}` is not a symbol of this account's exchange: write {expected}")),
                (Err(_), Ok(())) => self.diagnostics.error(source, symbol.span(), format!("`{text}` is not a symbol: write it exactly as the exchange does, e.g. \"BTCUSDT\"")),
            }
        }
        symbols
    }

    /// `order_types`, each one the account's venue knows.
    fn order_types(&mut self, bot: &BotTable<'_>) -> Vec<String> {
        let mut order_types = Vec::new();
        if let Some(venue) = bot.venue {
            let known: Vec<&str> = venue.order_types().iter().map(|t| t.name).collect();
            for order_type in bot.raw.order_types.iter().flatten() {
                let text = order_type.get_ref();
                if known.contains(&text.as_str()) {
                    order_types.push(text.clone());
                } else {
                    let hint = suggestion(text, &known);
                    self.diagnostics.error(
                        bot.source,
                        order_type.span(),
                        format!(
                            "unknown order type `{text}` for {}{hint}; known types: {}",
                            venue.id(),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        order_types
    }

    /// `max_order_qty`: a quantity cap per symbol, which applies only to listed symbols.
    fn max_order_qty(&mut self, bot: &BotTable<'_>, symbols: &[Symbol]) -> Vec<(Symbol, Amount)> {
        let source = bot.source;
        let mut max_order_qty = Vec::new();
        for (symbol, limit) in bot.raw.max_order_qty.iter().flatten() {
            let Some(amount) = self.amount(source, limit, "max_order_qty") else {
                continue;
            };
            match Symbol::new(symbol.get_ref()) {
                Ok(s) => {
                    if !symbols.contains(&s) {
                        self.diagnostics.warning(source, symbol.span(), format!("max_order_qty names `{}`, which is not in symbols, so it never applies", symbol.get_ref()));
                    }
                    max_order_qty.push((s, amount));
                }
                Err(_) => self.diagnostics.error(
                    source,
                    symbol.span(),
                    "max_order_qty keys must be symbols, e.g. { BTCUSDT = \"0.01\" }",
                ),
            }
        }
        max_order_qty
    }

    /// `mode`, enforcing when absent.
    fn mode(&mut self, bot: &BotTable<'_>) -> Mode {
        match &bot.raw.mode {
            None => Mode::Enforce,
            Some(m) => Mode::from_name(m.get_ref()).unwrap_or_else(|| {
                self.diagnostics.error(
                    bot.source,
                    m.span(),
                    "mode must be \"enforce\", \"shadow\" or \"dry-run\"",
                );
                Mode::Enforce
            }),
        }
    }

    /// `price_band`: how far from the reference price an order may be.
    fn price_band(&mut self, bot: &BotTable<'_>) -> Option<Band> {
        bot.raw.price_band.as_ref().and_then(|band| {
            band.get_ref()
                .parse::<Band>()
                .map_err(|e| {
                    self.diagnostics
                        .error(bot.source, band.span(), format!("price_band: {e}"))
                })
                .ok()
        })
    }

    /// `exchange_share`: the percentage of the exchange's limits the bot may use.
    fn exchange_share(&mut self, bot: &BotTable<'_>) -> Option<u8> {
        bot.raw.exchange_share.as_ref().and_then(|share| {
            let percent = share
                .get_ref()
                .strip_suffix('%')
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=100).contains(p));
            if percent.is_none() {
                self.diagnostics.error(
                    bot.source,
                    share.span(),
                    "exchange_share must be a whole percentage from 1% to 100%, e.g. \"50%\"",
                );
            }
            percent
        })
    }

    /// The bot as the policy sees it. The policy's own refusals are placed at the key
    /// that could mend them, or at the table header.
    fn bot_policy(&mut self, bot: &BotTable<'_>, spec: BotSpec) -> Option<BotPolicy> {
        let (source, raw, header, table) = (bot.source, bot.raw, &bot.header, &bot.table);
        match BotPolicy::new(spec) {
            Ok(policy) => {
                if policy.grants().iter().any(|g| g.bears_orders)
                    && raw.symbols.as_ref().is_none_or(Vec::is_empty)
                {
                    self.diagnostics.warning(source, header.clone(), format!("{table} may place orders but lists no symbols, so every order is refused"));
                }
                Some(policy)
            }
            Err(errors) => {
                for error in errors {
                    let span = match &error {
                        PolicyError::MissingNotionalCap | PolicyError::MissingOrderTypes => raw
                            .allow
                            .as_ref()
                            .map_or_else(|| header.clone(), Spanned::span),
                        _ => header.clone(),
                    };
                    self.diagnostics
                        .error(source, span, format!("{table}: {error}"));
                }
                None
            }
        }
    }

    /// `require_client_cert` and `peer_uid`: each needs the listener that can prove
    /// it, and a bot can be bound to one of them, not both (no request could satisfy
    /// both: the Unix socket carries no certificate).
    fn binding(&mut self, source: &Source, name: &str, raw: &RawBot) {
        let client_cert = raw.require_client_cert.as_ref();
        if let Some(flag) = client_cert.filter(|f| *f.get_ref())
            && !self.client_certs
        {
            self.diagnostics.error(
                source,
                flag.span(),
                "require_client_cert needs [tls] client_ca (e.g. client_ca = \"tls/ca.pem\"), so the bot listener asks for certificates",
            );
        }
        let peer_uid = match &raw.peer_uid {
            Some(uid) => match u32::try_from(*uid.get_ref()) {
                Ok(value) if value != u32::MAX => {
                    if !self.unix_listener {
                        self.diagnostics.error(
                            source,
                            uid.span(),
                            "peer_uid needs [server] listen_unix: only the Unix socket tells keyward who connected",
                        );
                    }
                    Some(value)
                }
                _ => {
                    self.diagnostics.error(
                        source,
                        uid.span(),
                        "peer_uid must be a user id from 0 to 4294967294",
                    );
                    None
                }
            },
            None => None,
        };
        let binding = Binding {
            client_cert: client_cert.is_some_and(|f| *f.get_ref()),
            peer_uid,
        };
        if binding.client_cert
            && binding.peer_uid.is_some()
            && let Some(uid) = &raw.peer_uid
        {
            self.diagnostics.error(
                source,
                uid.span(),
                "a bot can be bound to a client certificate or to a peer uid, not both; remove one",
            );
        }
        if binding != Binding::default() {
            self.bindings.insert(name.to_owned(), binding);
        }
    }

    /// Records that `bot` lists `digest`; refuses a digest already listed elsewhere.
    fn claim_digest(
        &mut self,
        source: &Source,
        at: &Spanned<String>,
        digest: TokenDigest,
        bot: &str,
    ) -> bool {
        let (line, column) = source.position(at.span().start);
        let here = format!("{}:{line}:{column}", source.path.display());
        match self.token_owners.get(&digest) {
            Some((owner, place)) => {
                let message = format!(
                    "token digest {} is already listed for bot `{owner}` at {place}; each token belongs to exactly one bot, once",
                    digest.short()
                );
                self.diagnostics.error(source, at.span(), message);
                false
            }
            None => {
                self.token_owners.insert(digest, (bot.to_owned(), here));
                true
            }
        }
    }

    /// A `"p256:<base64 SPKI>"` entry: a public key a Coinbase bot signs its own JWTs
    /// with. Only bots of a Coinbase account may have one (no other venue's clients
    /// send JWTs), and a key belongs to one bot, once.
    fn bot_key(
        &mut self,
        source: &Source,
        at: &Spanned<String>,
        bot: &str,
        venue: Option<&'static dyn keyward_venues::Venue>,
        into: &mut Vec<keyward_policy::BotKey>,
    ) {
        if venue.is_some_and(|v| v.id() != VenueId::Coinbase) {
            self.diagnostics.error(
                source,
                at.span(),
                format!("bot `{bot}` is not on a coinbase account; only coinbase bots sign their own JWTs with a \"p256:\" key"),
            );
            return;
        }
        let Some(key) = crate::botjwt::parse_public_key(at.get_ref()) else {
            self.diagnostics.error(
                source,
                at.span(),
                "a bot key is \"p256:\" followed by the base64 SubjectPublicKeyInfo of an EC P-256 key, as `keyward token new` prints it",
            );
            return;
        };
        // Claimed under a digest of its id so the same key cannot authenticate two bots.
        let marker = TokenDigest::of(&format!("{}{}", keyward_policy::P256_KEY_PREFIX, key.id()));
        if self.claim_digest(source, at, marker, bot) {
            into.push(key);
        }
    }

    fn endpoint_grant(
        &self,
        venue: &'static dyn keyward_venues::Venue,
        entry: &str,
    ) -> Result<Grant, String> {
        let Some((method, path)) = entry.split_once(' ') else {
            return Err(format!(
                "endpoint `{entry}` must be \"METHOD /path\", e.g. \"GET /api/v3/myTrades\""
            ));
        };
        let Ok(method) = method.parse::<http::Method>() else {
            return Err(format!(
                "endpoint `{entry}` has an unknown method; use GET, POST, PUT or DELETE"
            ));
        };
        match route(venue, &method, path) {
            Route::Endpoint(spec) => Ok(Grant {
                endpoint: spec.endpoint_ref(),
                via: Rule::Endpoints,
                bears_orders: spec.bears_orders(),
            }),
            Route::Floor(endpoint) => Err(format!(
                "{} is {}: keyward never signs it, whatever the configuration says",
                endpoint.key,
                match endpoint.class {
                    EndpointClass::KeyManagement => "API-key management",
                    _ => "money movement",
                }
            )),
            Route::MethodNotAllowed => {
                let methods: Vec<&str> = venue
                    .catalogue()
                    .entries()
                    .iter()
                    .filter(|s| s.path == path)
                    .map(|s| s.method.as_str())
                    .collect();
                Err(format!(
                    "{entry} is not in the {} catalogue; {path} takes {}",
                    venue.id(),
                    methods.join(", ")
                ))
            }
            Route::Unknown => Err(format!(
                "{entry} is not in the {} catalogue; run `keyward explain` to see what a request maps to",
                venue.id()
            )),
        }
    }

    fn expiry(
        &mut self,
        source: &Source,
        value: &Spanned<RawDate>,
        name: &str,
        max_token_days: u32,
    ) -> Option<SystemTime> {
        let text = match value.get_ref() {
            RawDate::Datetime(dt) => dt.to_string(),
            RawDate::Text(text) => text.clone(),
        };
        let Ok(parsed) =
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        else {
            self.diagnostics.error(
                source,
                value.span(),
                "expires must be an RFC 3339 time with a zone, e.g. \"2027-02-19T00:00:00Z\"",
            );
            return None;
        };
        let expires = SystemTime::from(parsed);
        let limit = self.now + Duration::from_secs(u64::from(max_token_days) * 86_400);
        if expires > limit {
            let days = expires
                .duration_since(self.now)
                .map_or(0, |d| d.as_secs().div_ceil(86_400));
            self.diagnostics.error(
                source,
                value.span(),
                format!("bot `{name}` expires in {days} days, beyond max_token_days = {max_token_days}; choose an earlier date or raise max_token_days"),
            );
            return None;
        }
        if expires <= self.now {
            self.diagnostics.warning(
                source,
                value.span(),
                format!("bot `{name}` has expired; its tokens no longer work"),
            );
        }
        Some(expires)
    }
}

/// Words an operator might write when trying to allow money movement.
/// The warning for a bot that has no token yet. Not an error: every command that
/// does not serve must work on such a bot (`token new` is how it gets one), and
/// serving it is safe, since a bot without a token cannot be authenticated.
fn no_token_yet(table: &str, name: &str, has_expiry: bool) -> String {
    let days = if has_expiry { "" } else { " --days 30" };
    format!(
        "{table} has no token yet, so every request for it is refused; run `keyward token new {name}{days}` to issue one"
    )
}

fn is_money_word(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "withdraw",
        "transfer",
        "deposit",
        "convert",
        "borrow",
        "loan",
        "money",
        "sub-account",
        "subaccount",
        "key",
        "sapi",
        "all",
        "*",
    ]
    .iter()
    .any(|w| lower.contains(w))
}
