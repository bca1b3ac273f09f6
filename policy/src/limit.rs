//! Rate limits per bot and per account (governor GCRA), with an injectable clock.
//!
//! `check` takes a [`Permit`], so only requests that passed policy consume quota: a
//! flood of refused requests cannot starve the bot's legitimate ones.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};

use crate::error::{Denied, RateScope};
use crate::policy::{Permit, Policy, account_rate};
use crate::rate::Rate;

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Bucket<C: Clock> {
    limiter: Limiter<C>,
    rate: Rate,
}

struct BotBuckets<C: Clock> {
    requests: Option<Arc<Bucket<C>>>,
    orders: Option<Arc<Bucket<C>>>,
}

/// Live rate-limit state for every bot and account of a policy.
pub struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    bots: HashMap<Arc<str>, BotBuckets<C>>,
    accounts: HashMap<Arc<str>, Arc<Bucket<C>>>,
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Fresh (full) buckets for every rate the policy names.
    pub fn new(policy: &Policy, clock: C) -> Self {
        Self::build(policy, clock, None)
    }

    /// Buckets for a reloaded policy: where a bot or account keeps the same rate, its
    /// bucket carries over with what it has used, so a reload never hands out a fresh
    /// burst; new or changed rates start full.
    pub fn carried_over(&self, policy: &Policy) -> Self {
        Self::build(policy, self.clock.clone(), Some(self))
    }

    fn build(policy: &Policy, clock: C, previous: Option<&Self>) -> Self {
        let bucket = |rate: Rate, old: Option<&Arc<Bucket<C>>>| match old {
            Some(old) if old.rate == rate => old.clone(),
            _ => Arc::new(Bucket {
                limiter: RateLimiter::direct_with_clock(rate.quota(), clock.clone()),
                rate,
            }),
        };
        let bots = policy
            .bots()
            .into_iter()
            .map(|bot| {
                let old = previous.and_then(|p| p.bots.get(bot.name()));
                let buckets = BotBuckets {
                    requests: bot
                        .rate()
                        .map(|rate| bucket(rate, old.and_then(|o| o.requests.as_ref()))),
                    orders: bot
                        .order_rate()
                        .map(|rate| bucket(rate, old.and_then(|o| o.orders.as_ref()))),
                };
                (Arc::from(bot.name()), buckets)
            })
            .collect();
        let accounts = policy
            .accounts()
            .into_iter()
            .filter_map(|(name, _)| {
                let old = previous.and_then(|p| p.accounts.get(name));
                account_rate(policy, name).map(|rate| (Arc::from(name), bucket(rate, old)))
            })
            .collect();
        Self {
            clock,
            bots,
            accounts,
        }
    }

    /// Consumes one request (and one unit per order) from the permitted bot's and its
    /// account's buckets, or says how long to wait.
    pub fn check(&self, permit: &Permit) -> Result<(), Denied> {
        if let Some(buckets) = self.bots.get(permit.bot()) {
            if let Some(bucket) = &buckets.requests {
                self.take(bucket, 1, RateScope::Bot)?;
            }
            if let (Some(bucket), Some(orders)) =
                (&buckets.orders, NonZeroU32::new(permit.orders()))
            {
                self.take(bucket, orders.get(), RateScope::BotOrders)?;
            }
        }
        if let Some(bucket) = self.accounts.get(permit.account()) {
            self.take(bucket, 1, RateScope::Account)?;
        }
        Ok(())
    }

    /// The rates [`RateLimits::check`] would take from for `permit`, and how many
    /// cells from each, for a backend that keeps the buckets elsewhere (replicas
    /// sharing them through Redis).
    pub fn charges(&self, permit: &Permit) -> Vec<(RateScope, Rate, u32)> {
        let mut charges = Vec::new();
        if let Some(buckets) = self.bots.get(permit.bot()) {
            if let Some(bucket) = &buckets.requests {
                charges.push((RateScope::Bot, bucket.rate, 1));
            }
            if let (Some(bucket), orders @ 1..) = (&buckets.orders, permit.orders()) {
                charges.push((RateScope::BotOrders, bucket.rate, orders));
            }
        }
        if let Some(bucket) = self.accounts.get(permit.account()) {
            charges.push((RateScope::Account, bucket.rate, 1));
        }
        charges
    }

    fn take(&self, bucket: &Bucket<C>, n: u32, scope: RateScope) -> Result<(), Denied> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match bucket.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Denied::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                scope,
            }),
            // More orders in one request than the bucket can ever hold.
            Err(_insufficient) => Err(Denied::RateLimited {
                retry_after: bucket.rate.period(),
                scope,
            }),
        }
    }
}

impl<C: Clock> fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("bots", &self.bots.len())
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}
