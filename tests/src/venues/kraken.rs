//! The kraken fixture: not written yet (the account exists so the fixture loads).

use super::{FixtureArgs, VenueFixture};

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        "{}\n[accounts.kraken]\nvenue = \"kraken\"\nsecret = \"kraken\"\n{}\n{}\n",
        args.preamble(VenueFixture::Kraken),
        args.account_extra,
        args.upstream
    )
}

/// The account's vault entry (none yet).
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    None
}
