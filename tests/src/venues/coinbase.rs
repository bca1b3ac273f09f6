//! The coinbase fixture: not written yet (the account exists so the fixture loads).

use super::{FixtureArgs, VenueFixture};

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        "{}\n[accounts.coinbase]\nvenue = \"coinbase\"\nsecret = \"coinbase\"\n{}\n{}\n",
        args.preamble(VenueFixture::Coinbase),
        args.account_extra,
        args.upstream
    )
}

/// The account's vault entry (none yet).
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    None
}
