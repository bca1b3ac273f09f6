//! Fixtures for the venues other than Binance: each venue's configuration (the attack
//! corpus's policy for it as bot `a`, a broader bot `c` for real clients) and its
//! canary credentials, in one file per venue.

use crate::FixtureTokens;

pub mod bybit;
pub mod coinbase;
pub mod kraken;
pub mod okx;

/// A venue fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueFixture {
    /// P-BYB, port 8447.
    Bybit,
    /// P-OKX, port 8446.
    Okx,
    /// P-KRK, port 8445.
    Kraken,
    /// Coinbase Advanced Trade, port 8448.
    Coinbase,
}

impl VenueFixture {
    /// Every venue fixture.
    pub const ALL: [Self; 4] = [Self::Bybit, Self::Okx, Self::Kraken, Self::Coinbase];

    /// The configuration file's name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Bybit => "p-byb.toml",
            Self::Okx => "p-okx.toml",
            Self::Kraken => "p-krk.toml",
            Self::Coinbase => "p-cb.toml",
        }
    }

    /// The corpus's `setup.listener` name.
    pub fn listener(self) -> &'static str {
        match self {
            Self::Bybit => "bybit",
            Self::Okx => "okx",
            Self::Kraken => "kraken",
            Self::Coinbase => "coinbase",
        }
    }

    /// The corpus's port for it.
    pub fn port(self) -> u16 {
        match self {
            Self::Bybit => 8447,
            Self::Okx => 8446,
            Self::Kraken => 8445,
            Self::Coinbase => 8448,
        }
    }
}

/// What a venue's configuration text is made from.
#[derive(Debug)]
pub struct FixtureArgs<'a> {
    /// The fixture tokens (bot `a` uses `bot`, bot `c` uses `bot_b`).
    pub tokens: &'a FixtureTokens,
    /// RFC 3339 expiry for the bots.
    pub expires: &'a str,
    /// Listener override.
    pub listen: Option<&'a str>,
    /// `upstream = ...` and `upstream_ca = ...` lines, or empty.
    pub upstream: &'a str,
    /// Extra `[server]` lines.
    pub server_extra: &'a str,
    /// Extra lines for bot `a`.
    pub bot_extra: &'a str,
    /// Extra lines for the account.
    pub account_extra: &'a str,
}

impl FixtureArgs<'_> {
    /// The `[server]` and `[vault]` tables every fixture starts with.
    pub fn preamble(&self, venue: VenueFixture) -> String {
        let default_listen = format!("127.0.0.1:{}", venue.port());
        format!(
            "[server]\nlisten = \"{}\"\n{}\n\n[vault]\nfile = \"keyward.vault\"\nkey = \"file:master.key\"\n",
            self.listen.unwrap_or(&default_listen),
            self.server_extra
        )
    }
}

/// The configuration of one venue fixture.
pub fn config_text(venue: VenueFixture, args: &FixtureArgs<'_>) -> String {
    match venue {
        VenueFixture::Bybit => bybit::config(args),
        VenueFixture::Okx => okx::config(args),
        VenueFixture::Kraken => kraken::config(args),
        VenueFixture::Coinbase => coinbase::config(args),
    }
}

/// The vault entries of every venue fixture: (entry name, entry), holding the venue's
/// canary credentials in the shape that venue's keys have.
pub fn vault_entries() -> Vec<(&'static str, keyward::vault::Entry)> {
    [
        ("bybit", bybit::vault_entry()),
        ("okx", okx::vault_entry()),
        ("kraken", kraken::vault_entry()),
        ("coinbase", coinbase::vault_entry()),
    ]
    .into_iter()
    .filter_map(|(name, entry)| entry.map(|e| (name, e)))
    .collect()
}
