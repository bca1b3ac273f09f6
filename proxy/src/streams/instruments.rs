//! The venues' instrument codes, for venues whose WebSocket orders name instruments
//! by a number (OKX's `instIdCode`) while the policy names them by id: listed from
//! the account's venue when a message names one keyward does not know, kept per
//! account, and listed again at most once a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_venues::stream::{InstrumentCodes, InstrumentRef, StreamVenue};

use crate::app::App;

/// How soon after a listing another may be made for a name it did not hold: new
/// instruments are rare, and a bot naming a wrong code must not make keyward list
/// the venue's instruments on every message.
const RELIST_AFTER: Duration = Duration::from_secs(60);

/// Each account's instrument codes, and when they were listed.
#[derive(Debug, Default)]
pub struct Instruments {
    accounts: Mutex<HashMap<String, (Instant, Arc<InstrumentCodes>)>>,
    /// One listing at a time: messages waiting for it use its result.
    listing: tokio::sync::Mutex<()>,
}

impl Instruments {
    /// The codes of `account`'s venue, covering `named` if the venue lists them.
    pub async fn for_names(
        &self,
        app: &App,
        account: &str,
        streams: &'static dyn StreamVenue,
        named: &[InstrumentRef],
    ) -> Arc<InstrumentCodes> {
        let Some((key, queries)) = streams.instrument_lists() else {
            return Arc::default();
        };
        if let Some(codes) = self.fresh_enough(account, named) {
            return codes;
        }
        let _listing = self.listing.lock().await;
        // Another message may have listed them meanwhile.
        if let Some(codes) = self.fresh_enough(account, named) {
            return codes;
        }
        let snapshot = app.snapshot();
        let mut codes = InstrumentCodes::default();
        for query in queries {
            match crate::housekeeping::list_instruments(app, &snapshot, account, key, query).await {
                Ok((_, answer)) if answer.status.is_success() => {
                    codes.extend(streams.instrument_codes(&answer.body));
                }
                Ok((_, answer)) => {
                    tracing::warn!(
                        account,
                        query,
                        status = answer.status.as_u16(),
                        "the venue's instrument listing was refused"
                    );
                }
                Err(error) => {
                    tracing::warn!(account, query, %error, "the venue's instruments could not be listed");
                }
            }
        }
        let codes = Arc::new(codes);
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account.to_owned(), (Instant::now(), codes.clone()));
        codes
    }

    /// The codes kept for `account` when they cover `named`, or were listed too
    /// recently to list again.
    fn fresh_enough(&self, account: &str, named: &[InstrumentRef]) -> Option<Arc<InstrumentCodes>> {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let (listed, codes) = accounts.get(account)?;
        (codes.covers(named) || listed.elapsed() < RELIST_AFTER).then(|| codes.clone())
    }
}
