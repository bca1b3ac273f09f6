//! Kraken's names for one asset pair, resolved to the one operators write.
//!
//! Kraken accepts a pair by its id (`XXBTZUSD`, legacy assets carrying an `X` or `Z`
//! prefix), its altname (`XBTUSD`), its WebSocket name (`XBT/USD`), and evidently
//! the common code for bitcoin (`BTC/USD`). ccxt sends ids, krakenex what its user
//! typed. keyward resolves each of these to the altname in capitals, which is what
//! Kraken's own answers (`descr.pair`) use, checks that against the allowlist and
//! forwards it. Any other spelling (lower case above all) is not resolved: it stays
//! what it is, is not a spelling operators may allow ([`is_canonical`]), and so is
//! refused as a symbol the bot may not trade.

/// Legacy asset ids and their altnames.
const LEGACY: &[(&str, &str)] = &[
    ("XXBT", "XBT"),
    ("XETH", "ETH"),
    ("XLTC", "LTC"),
    ("XXRP", "XRP"),
    ("XXLM", "XLM"),
    ("XXMR", "XMR"),
    ("XZEC", "ZEC"),
    ("XETC", "ETC"),
    ("XREP", "REP"),
    ("XMLN", "MLN"),
    ("XXDG", "XDG"),
    ("ZUSD", "USD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("ZJPY", "JPY"),
    ("ZCAD", "CAD"),
    ("ZAUD", "AUD"),
];

/// Kraken calls bitcoin XBT; BTC is accepted for it.
const BITCOIN: (&str, &str) = ("BTC", "XBT");

/// Longest pair spelling keyward reads.
const MAX_LEN: usize = 32;

/// True if `text` is in the grammar of a pair spelling: letters and digits, with at
/// most one `/` between two non-empty halves.
pub(super) fn is_spelling(text: &str) -> bool {
    let halves: Vec<&str> = text.split('/').collect();
    (1..=MAX_LEN).contains(&text.len())
        && halves.len() <= 2
        && halves
            .iter()
            .all(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The spelling operators write: capitals and digits, 2 to 24 of them, and not
/// itself an alias of another spelling.
pub(super) fn is_canonical(text: &str) -> bool {
    (2..=24).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && alias_of(text) == text
}

/// The canonical spelling of `text` if it is an alias Kraken documents, else `text`
/// unchanged. `text` must satisfy [`is_spelling`].
///
/// The spelling keyward forwards must name the pair it checked when Kraken reads it
/// again: one that would itself be taken for an alias of yet another pair (`BTCBTC`
/// joins to `XBTBTC`, which reads as `XBTXBT`; `XXBTZ/USD` to `XXBTZUSD`, which reads
/// as `XBTUSD`) names no pair unambiguously, and stays unresolved.
pub(super) fn resolve(text: &str) -> String {
    let resolved = alias_of(text);
    if alias_of(&resolved) == resolved {
        resolved
    } else {
        text.to_owned()
    }
}

/// One step of resolution: what `text` is an alias of, if anything.
fn alias_of(text: &str) -> String {
    let resolved = match text.split_once('/') {
        Some((base, quote)) => format!("{}{}", asset(base), asset(quote)),
        None => joined(text),
    };
    let upper = resolved
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if upper { resolved } else { text.to_owned() }
}

/// One asset's altname.
fn asset(name: &str) -> &str {
    if name == BITCOIN.0 {
        return BITCOIN.1;
    }
    LEGACY
        .iter()
        .find(|(id, _)| *id == name)
        .map_or(name, |(_, alt)| *alt)
}

/// A pair written without a separator: a legacy id of two legacy assets, or BTC
/// joined to a three-letter code. Longer neighbours are left alone: `ETHWBTC` is ETH
/// against WBTC, not ETHW against bitcoin, and without Kraken's asset list the split
/// is a guess, so such a name stays what it is (and resolving stays idempotent).
fn joined(text: &str) -> String {
    if text.len() == 8 {
        let (base, quote) = text.split_at(4);
        let legacy = |a: &str| LEGACY.iter().any(|(id, _)| *id == a);
        if legacy(base) && legacy(quote) {
            return format!("{}{}", asset(base), asset(quote));
        }
    }
    let three_letters = |rest: &str| rest.len() == 3;
    if let Some(rest) = text.strip_prefix(BITCOIN.0)
        && three_letters(rest)
    {
        return format!("{}{rest}", BITCOIN.1);
    }
    if let Some(rest) = text.strip_suffix(BITCOIN.0)
        && three_letters(rest)
    {
        return format!("{rest}{}", BITCOIN.1);
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_alias_resolves_to_the_altname() {
        for alias in [
            "XBTUSD",
            "XXBTZUSD",
            "XBT/USD",
            "BTC/USD",
            "BTCUSD",
            "XXBT/ZUSD",
        ] {
            assert!(is_spelling(alias), "{alias}");
            assert_eq!(resolve(alias), "XBTUSD", "{alias}");
        }
        assert_eq!(resolve("XETHXXBT"), "ETHXBT");
        assert_eq!(resolve("ETH/BTC"), "ETHXBT");
        assert_eq!(resolve("ETHBTC"), "ETHXBT");
        assert_eq!(resolve("SOLUSD"), "SOLUSD");
        assert_eq!(resolve("SOL/USD"), "SOLUSD");
        assert_eq!(resolve("WBTCUSD"), "WBTCUSD");
    }

    #[test]
    fn btc_inside_a_longer_asset_name_is_not_bitcoin() {
        for (spelling, resolved) in [
            ("ETH/WBTC", "ETHWBTC"),
            ("ETHWBTC", "ETHWBTC"),
            ("EURWBTC", "EURWBTC"),
            ("WBTC/XBT", "WBTCXBT"),
            ("BTCUSDT", "BTCUSDT"),
        ] {
            assert_eq!(resolve(spelling), resolved, "{spelling}");
            assert_eq!(resolve(resolved), resolved, "{spelling} twice");
        }
        assert!(is_canonical("ETHWBTC"));
    }

    #[test]
    fn other_spellings_stay_themselves_and_are_not_canonical() {
        for other in ["xbtusd", "XbtUsd", "xbt/usd", "xxbtzusd"] {
            assert!(is_spelling(other), "{other}");
            assert_eq!(resolve(other), other);
            assert!(!is_canonical(&resolve(other)), "{other}");
        }
        for bad in [
            "",
            "XBT/",
            "/USD",
            "XBT/USD/EUR",
            "XBT-USD",
            "XBT USD",
            "XBTUSD.d",
        ] {
            assert!(!is_spelling(bad), "{bad:?}");
        }
        assert!(!is_spelling(&"A".repeat(33)));
    }

    #[test]
    fn what_keyward_forwards_resolves_to_itself() {
        // Found by fuzzing venue_kraken: `pair=BTCX/TUSD` was forwarded as `BTCXTUSD`,
        // which keyward then read as `XBTXTUSD`. A joined BTC now names bitcoin only
        // beside a three-letter code, so `BTCXTUSD` is itself; these still read twice.
        assert_eq!(resolve("BTCX/TUSD"), "BTCXTUSD");
        for ambiguous in ["BTCBTC", "XXBTZ/USD"] {
            assert_eq!(resolve(ambiguous), ambiguous, "{ambiguous}");
            assert!(!is_canonical(&resolve(ambiguous)), "{ambiguous}");
        }
        for spelling in [
            "XBTUSD",
            "XXBTZUSD",
            "BTC/USD",
            "ETH/BTC",
            "BTCX/TUSD",
            "BTCBTC",
            "SOL/USD",
        ] {
            let once = resolve(spelling);
            assert_eq!(resolve(&once), once, "{spelling}");
        }
    }

    #[test]
    fn operators_write_the_altname() {
        assert!(is_canonical("XBTUSD"));
        assert!(is_canonical("ETHUSD"));
        assert!(is_canonical("USDTUSD"));
        for alias in ["XXBTZUSD", "BTCUSD", "XBT/USD", "xbtusd", "X"] {
            assert!(!is_canonical(alias), "{alias}");
        }
    }
}
