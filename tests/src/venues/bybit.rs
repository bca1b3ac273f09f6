//! The bybit fixture: not written yet (the account exists so the fixture loads).

use super::{FixtureArgs, VenueFixture};

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        "{}\n[accounts.bybit]\nvenue = \"bybit\"\nsecret = \"bybit\"\n{}\n{}\n",
        args.preamble(VenueFixture::Bybit),
        args.account_extra,
        args.upstream
    )
}

/// The account's vault entry (none yet).
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    None
}
