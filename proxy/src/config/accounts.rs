//! `[accounts.NAME]`: the exchange accounts bots trade through, each with its venue,
//! vault entry, upstream and the budgets its bots share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use keyward_policy::{BudgetLimits, Rate};
use keyward_venues::VenueId;
use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::suggestion;
use super::raw::{RawAccount, RawDecimal};
use super::{Loader, Place, Source};

/// `[accounts.NAME]`: one exchange account and its key.
#[derive(Debug, Clone)]
pub struct Account {
    /// Account name.
    pub name: String,
    /// Which exchange and product.
    pub venue: VenueId,
    /// Vault entry holding the key.
    pub secret: String,
    /// Where `secret` is written.
    pub secret_at: Place,
    /// `https://host[:port]` requests go to.
    pub upstream: http::Uri,
    /// CA bundle to trust for the upstream instead of the web PKI.
    pub upstream_ca: Option<PathBuf>,
    /// Where keyward opens its own WebSockets for the account's bots.
    pub stream_upstream: StreamUpstream,
    /// `wss://host[:port]` where public market-data streams are relayed from, when
    /// not the host of the account's other WebSockets (a testnet that serves market
    /// data on a host of its own).
    pub market_upstream: Option<http::Uri>,
    /// Receive window keyward signs with.
    pub recv_window_ms: u32,
    /// Request rate across all the account's bots.
    pub rate: Option<Rate>,
    /// Serve public market data to clients without a token.
    pub public_market_data: bool,
    /// Stop sending when the exchange reports usage within this percentage of a limit.
    pub exchange_headroom_percent: u8,
    /// How many times the venue's documented default limits this account has (a
    /// higher tier, a test exchange).
    pub exchange_limits_multiplier: u64,
    /// Rolling budgets and the open-order limit shared by the account's bots.
    pub budget: BudgetLimits,
    /// How old a reference price may be and still be used.
    pub reference_max_age: Duration,
    /// How long a client order id may not be used again on the account.
    pub client_order_id_window: Duration,
    /// Freeze the account when one of its bots is refused this often.
    pub freeze_after_denials: Option<Rate>,
}

/// Where an account's WebSockets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamUpstream {
    /// The venue's production WebSocket hosts (the account trades on the production
    /// API).
    Production,
    /// `wss://host[:port]` (`stream_upstream`), each venue path under it.
    Base(http::Uri),
    /// None: the account has its own REST upstream (a testnet, a mock) and no
    /// `stream_upstream`, and its key must not be taken to the production hosts.
    Off,
}

/// Accounts as declared (with their venue when it parsed) and those fully valid.
#[derive(Default)]
pub(super) struct Accounts {
    pub(super) declared: BTreeMap<String, Option<VenueId>>,
    pub(super) valid: BTreeMap<String, Account>,
}

impl Loader<'_> {
    /// Builds `[accounts.*]`. `loopback` says the bot listener is on a loopback
    /// address: there, each venue's public market data is served
    /// to tokenless clients by default, by the account that says
    /// `public_market_data = true`, else by the venue's first account in the file
    /// that does not say `false`. Clients send no key on public endpoints, and an
    /// operator should not have to know that to make one load its markets.
    pub(super) fn build_accounts(
        &mut self,
        source: &Source,
        value: &Spanned<DeValue<'_>>,
        loopback: bool,
    ) -> Accounts {
        let mut accounts = Accounts::default();
        let mut public_by_venue: BTreeMap<VenueId, String> = BTreeMap::new();
        let mut unset_by_venue: BTreeMap<VenueId, String> = BTreeMap::new();
        let DeValue::Table(table) = value.get_ref() else {
            self.diagnostics.error(
                source,
                value.span(),
                "accounts must be tables, e.g. [accounts.binance-main]",
            );
            return accounts;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            if !is_valid_name(&name) {
                self.diagnostics.error(
                    source,
                    key.span(),
                    format!("account name `{name}` must be 1 to 64 of a-z, 0-9, '_' and '-'"),
                );
            }
            let raw = self.section::<RawAccount>(source, value, &format!("[accounts.{name}]"));
            let venue = raw
                .as_ref()
                .and_then(|r| VenueId::from_name(r.venue.get_ref()));
            if let (Some(raw), Some(venue)) = (&raw, venue)
                && let Some(public) = raw.public_market_data.as_ref().filter(|p| *p.get_ref())
            {
                match public_by_venue.get(&venue) {
                    Some(other) => self.diagnostics.error(
                        source,
                        public.span(),
                        format!(
                            "account `{other}` already serves {venue} public market data; only one account per venue may"
                        ),
                    ),
                    None => {
                        public_by_venue.insert(venue, name.clone());
                    }
                }
            }
            if let (Some(raw), Some(venue)) = (&raw, venue)
                && raw.public_market_data.is_none()
            {
                unset_by_venue.entry(venue).or_insert_with(|| name.clone());
            }
            accounts.declared.insert(name.clone(), venue);
            if let Some(account) = raw.and_then(|raw| self.build_account(source, &name, raw)) {
                accounts.valid.insert(name, account);
            }
        }
        if loopback {
            for (venue, name) in unset_by_venue {
                if !public_by_venue.contains_key(&venue)
                    && let Some(account) = accounts.valid.get_mut(&name)
                {
                    account.public_market_data = true;
                }
            }
        }
        accounts
    }

    fn build_account(&mut self, source: &Source, name: &str, raw: RawAccount) -> Option<Account> {
        let venue = VenueId::from_name(raw.venue.get_ref());
        if venue.is_none() {
            let names: Vec<&str> = VenueId::ALL.iter().map(|v| v.name()).collect();
            let hint = suggestion(raw.venue.get_ref(), &names);
            self.diagnostics.error(
                source,
                raw.venue.span(),
                format!(
                    "unknown venue `{}`{hint}; this keyward supports {}",
                    raw.venue.get_ref(),
                    names.join(", ")
                ),
            );
        }
        let secret_ok = is_valid_name(raw.secret.get_ref());
        if !secret_ok {
            self.diagnostics.error(
                source,
                raw.secret.span(),
                "secret must name a vault entry: 1 to 64 of a-z, 0-9, '_' and '-'",
            );
        }
        let upstream_text = raw
            .upstream
            .as_ref()
            .map(|u| u.get_ref().clone())
            .or_else(|| venue.map(|v| v.adapter().default_upstream().to_owned()));
        let upstream_span = raw
            .upstream
            .as_ref()
            .map_or_else(|| raw.venue.span(), Spanned::span);
        let upstream = upstream_text.and_then(|text| match parse_upstream(&text) {
            Ok(uri) => Some(uri),
            Err(message) => {
                self.diagnostics
                    .error(source, upstream_span.clone(), message);
                None
            }
        });
        let market_upstream = match &raw.market_upstream {
            Some(text) => match parse_wss("market_upstream", text.get_ref()) {
                Ok(uri) => Some(Some(uri)),
                Err(message) => {
                    self.diagnostics.error(source, text.span(), message);
                    None
                }
            },
            None => Some(None),
        };
        let stream_upstream = match (&raw.stream_upstream, &raw.upstream) {
            (Some(text), _) => match parse_wss("stream_upstream", text.get_ref()) {
                Ok(uri) => Some(StreamUpstream::Base(uri)),
                Err(message) => {
                    self.diagnostics.error(source, text.span(), message);
                    None
                }
            },
            (None, Some(upstream))
                if venue.is_none_or(|v| upstream.get_ref() != v.adapter().default_upstream()) =>
            {
                Some(StreamUpstream::Off)
            }
            (None, _) => Some(StreamUpstream::Production),
        };
        let recv_window_ms = self.duration_ms(
            source,
            raw.recv_window_ms.as_ref(),
            raw.recv_window.as_ref(),
            "recv_window_ms (the exchange's maximum is 60s)",
            5_000,
            1..=60_000,
        ) as u32;
        let rate = raw.rate.as_ref().and_then(|r| self.rate(source, r, "rate"));
        let exchange_headroom_percent = self.int_in_range(
            source,
            raw.exchange_headroom_percent.as_ref(),
            "exchange_headroom_percent",
            10,
            0..=50,
        ) as u8;
        let budget = self.budget(
            source,
            raw.daily_notional.as_ref(),
            raw.max_orders.as_ref(),
            raw.max_open_orders.as_ref(),
        );
        let reference_max_age = Duration::from_millis(self.duration_ms(
            source,
            raw.reference_max_age_ms.as_ref(),
            raw.reference_max_age.as_ref(),
            "reference_max_age_ms",
            5_000,
            500..=300_000,
        ));
        let exchange_limits_multiplier = self.int_in_range(
            source,
            raw.exchange_limits_multiplier.as_ref(),
            "exchange_limits_multiplier",
            1,
            1..=1_000_000,
        );
        let client_order_id_window = Duration::from_millis(self.duration_ms(
            source,
            raw.client_order_id_window_ms.as_ref(),
            raw.client_order_id_window.as_ref(),
            "client_order_id_window_ms",
            86_400_000,
            0..=7 * 86_400_000,
        ));
        let freeze_after_denials = raw
            .freeze_after_denials
            .as_ref()
            .and_then(|r| self.rate(source, r, "freeze_after_denials"));
        Some(Account {
            name: name.to_owned(),
            venue: venue?,
            secret: raw.secret.get_ref().clone(),
            secret_at: source.place(&raw.secret.span()),
            upstream: upstream?,
            upstream_ca: raw.upstream_ca.map(|p| PathBuf::from(p.get_ref())),
            stream_upstream: stream_upstream?,
            market_upstream: market_upstream?,
            recv_window_ms,
            rate,
            public_market_data: raw.public_market_data.is_some_and(|p| *p.get_ref()),
            exchange_headroom_percent,
            exchange_limits_multiplier,
            budget,
            reference_max_age,
            client_order_id_window,
            freeze_after_denials,
        })
        .filter(|_| secret_ok)
    }

    /// `daily_notional`, `max_orders` and `max_open_orders` of a bot or account table.
    pub(super) fn budget(
        &mut self,
        source: &Source,
        daily_notional: Option<&Spanned<RawDecimal>>,
        max_orders: Option<&Spanned<String>>,
        max_open_orders: Option<&Spanned<i64>>,
    ) -> BudgetLimits {
        let daily_notional = daily_notional.and_then(|v| self.amount(source, v, "daily_notional"));
        let max_orders = max_orders.and_then(|v| {
            let rate = self.rate(source, v, "max_orders")?;
            if rate.period() > Duration::from_secs(7 * 86_400) {
                self.diagnostics.error(
                    source,
                    v.span(),
                    "max_orders counts over at most 7 days, e.g. \"500/d\"",
                );
                return None;
            }
            Some(rate)
        });
        let max_open_orders = max_open_orders.map(|v| {
            let n = self.int_in_range(source, Some(v), "max_open_orders", 0, 1..=100_000);
            u32::try_from(n).unwrap_or(u32::MAX)
        });
        BudgetLimits {
            daily_notional,
            max_orders,
            max_open_orders,
        }
    }
}

fn parse_upstream(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|_| {
        format!("upstream `{text}` is not a URL; write it as \"https://host[:port]\"")
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "upstream `{text}` must use https://; keyward never sends signed requests in clear text"
        ));
    }
    let authority_ok = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !authority_ok || !path_ok {
        return Err(format!(
            "upstream `{text}` must be just \"https://host[:port]\", without user, path or query"
        ));
    }
    Ok(uri)
}

/// A `wss://host[:port]` setting named `key`.
fn parse_wss(key: &str, text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{key} `{text}` is not a URL; write it as \"wss://host[:port]\""))?;
    if uri.scheme_str() != Some("wss") {
        return Err(format!(
            "{key} `{text}` must use wss://; keyward never sends messages in clear text"
        ));
    }
    let authority_ok = uri
        .authority()
        .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty());
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !authority_ok || !path_ok {
        return Err(format!(
            "{key} `{text}` must be just \"wss://host[:port]\", without user, path or query: keyward adds each venue path"
        ));
    }
    Ok(uri)
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
