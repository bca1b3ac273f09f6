//! Every reason keyward refuses a request, mapped to an HTTP status and a stable
//! reason code in one exhaustive place. Messages never carry secrets, tokens or
//! request bytes beyond sanitised parameter names.

use http::StatusCode;
use keyward_policy::Denied;
use keyward_venues::{Fault, ParseError, Refusal, RefusalClass};

use crate::front::FrontError;
use crate::orders::OrderError;
use crate::upstream::UpstreamError;

/// Why keyward answers a request itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The request head failed the front's checks.
    #[error("{0}")]
    Front(FrontError),
    /// More than one token carrier (two API-key headers, or a header and a bearer).
    #[error(
        "more than one credential was presented; send the keyward token once, in the API-key header"
    )]
    AuthAmbiguous,
    /// Refused by policy.
    #[error("{0}")]
    Denied(Denied),
    /// Too many failed authentications from this source: refused without being
    /// looked at further until the window has room.
    #[error(
        "too many failed authentications from this source; retry in {}s",
        retry_after.as_secs().max(1)
    )]
    AuthThrottled {
        /// Until the source's window has room.
        retry_after: std::time::Duration,
    },
    /// A valid token of a bot bound to a client certificate or a peer uid, without
    /// that proof.
    #[error("{0}")]
    BindingMismatch(&'static str),
    /// The path exists in the venue catalogue, but not for this method.
    #[error("method not allowed for {path}")]
    MethodNotAllowed {
        /// The canonical path.
        path: String,
    },
    /// Refused by the venue's request grammar.
    #[error("{0}")]
    Parse(ParseError),
    /// The request names an order keyward did not place for this bot, or reuses a
    /// client order id.
    #[error("{0}")]
    Order(OrderError),
    /// The body is larger than `max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body did not arrive within `body_timeout_ms`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The audit record could not be written, so nothing is sent.
    #[error("the audit log cannot be written; keyward sends nothing it cannot record")]
    AuditUnavailable,
    /// The state replicas share (Redis) could not be reached in time, so nothing
    /// that spends a shared limit is sent.
    #[error(
        "keyward's shared state (Redis) cannot be reached; nothing that spends a shared limit is sent until it can"
    )]
    StateUnavailable,
    /// The exchange could not be reached or answered unusably.
    #[error("{0}")]
    Upstream(UpstreamError),
    /// The exchange rate-limited or banned keyward's IP; nothing is sent until the
    /// pause it asked for has passed.
    #[error(
        "the exchange {} keyward; nothing is sent to it for {}s",
        if *banned { "banned" } else { "rate-limited" },
        retry_after.as_secs().max(1)
    )]
    ExchangeBackoff {
        /// Time left.
        retry_after: std::time::Duration,
        /// True for a ban.
        banned: bool,
    },
    /// The exchange reported usage this close to one of its limits.
    #[error(
        "the exchange's own limit is nearly used up; keyward stops here to keep the account from being banned"
    )]
    ExchangeLimitNear {
        /// Until the exchange's window ends.
        retry_after: std::time::Duration,
    },
    /// The bot has used its share of one of the exchange's limits in the current
    /// window; the rest is the other bots'.
    #[error(
        "this bot has used its {share}% share of the exchange's limit in this window; retry in {}s",
        retry_after.as_secs().max(1)
    )]
    ExchangeShareUsed {
        /// Until the exchange's window ends.
        retry_after: std::time::Duration,
        /// The bot's share, in percent.
        share: u8,
    },
    /// The kill switch is on for the account: nothing but cancels is signed.
    #[error(
        "keyward is frozen for this account (since {since}, by {by}); it signs nothing but cancels until an operator runs `keyward unfreeze`"
    )]
    Frozen {
        /// When.
        since: String,
        /// Who or what.
        by: String,
    },
    /// A fault of keyward's own.
    #[error("internal error")]
    Internal,
}

impl Rejection {
    /// A wrong, revoked or expired token (not a missing one, which is no guess):
    /// what a flood of guesses produces, and what is throttled per source.
    pub fn is_failed_authentication(&self) -> bool {
        matches!(
            self,
            Self::Denied(Denied::AuthInvalid | Denied::AuthRevoked | Denied::AuthExpired)
        )
    }

    /// The HTTP status the bot receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Front(front) => match front {
                FrontError::TargetTooLong => StatusCode::URI_TOO_LONG,
                FrontError::MethodNotAllowed(_) | FrontError::Connect => {
                    StatusCode::METHOD_NOT_ALLOWED
                }
                FrontError::HostMismatch => StatusCode::MISDIRECTED_REQUEST,
                FrontError::ContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                FrontError::Expectation => StatusCode::EXPECTATION_FAILED,
                FrontError::AbsoluteForm
                | FrontError::Upgrade
                | FrontError::WebSocketHandshake
                | FrontError::PathNonCanonical
                | FrontError::HostDuplicate
                | FrontError::HeaderDuplicate(_)
                | FrontError::FramingAmbiguous
                | FrontError::Trailers
                | FrontError::RequestLineInvalid
                | FrontError::HeaderInvalid => StatusCode::BAD_REQUEST,
            },
            Self::AuthAmbiguous => StatusCode::BAD_REQUEST,
            Self::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BindingMismatch(_) => StatusCode::UNAUTHORIZED,
            Self::Denied(denied) => match denied {
                Denied::AuthMissing
                | Denied::AuthInvalid
                | Denied::AuthExpired
                | Denied::AuthRevoked => StatusCode::UNAUTHORIZED,
                Denied::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                Denied::PathNotAllowed { .. }
                | Denied::MoneyMovement { .. }
                | Denied::KeyManagement { .. }
                | Denied::SymbolNotAllowed { .. }
                | Denied::OrderTypeNotAllowed { .. }
                | Denied::MarginNotAllowed { .. }
                | Denied::NotionalExceedsLimit { .. }
                | Denied::QtyExceedsLimit { .. }
                | Denied::NotionalUnbounded { .. }
                | Denied::ExchangeSized { .. }
                | Denied::PriceOutOfBand { .. }
                | Denied::DailyNotionalExceeded { .. }
                | Denied::MaxOrdersExceeded { .. }
                | Denied::MaxOpenOrdersExceeded { .. } => StatusCode::FORBIDDEN,
                Denied::MarketOrderInBand { .. } => StatusCode::FORBIDDEN,
                // keyward cannot check the order right now; nothing wrong with the bot.
                Denied::ReferenceUnavailable { .. } | Denied::SpreadTooWide { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Order(order) => match order {
                OrderError::Unknown(_)
                | OrderError::NotOwned(_)
                | OrderError::CancelsEverything => StatusCode::FORBIDDEN,
                OrderError::Mismatch { .. } => StatusCode::BAD_REQUEST,
                OrderError::DuplicateClientId(_) => StatusCode::CONFLICT,
            },
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::StateUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(error) => error.status(),
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Frozen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ExchangeBackoff { banned: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ExchangeBackoff { banned: false, .. }
            | Self::ExchangeLimitNear { .. }
            | Self::ExchangeShareUsed { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Parse(parse) => parse.status(),
        }
    }

    /// The stable reason code (also sent as `x-keyward-error`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Front(front) => front.reason(),
            Self::AuthAmbiguous => "auth_ambiguous",
            Self::AuthThrottled { .. } => "auth_throttled",
            Self::BindingMismatch(_) => "auth_binding_mismatch",
            Self::Denied(denied) => denied.reason(),
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Parse(parse) => parse.reason(),
            Self::Order(order) => order.reason(),
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BodyTimeout => "timeout_body",
            Self::AuditUnavailable => "audit_unavailable",
            Self::StateUnavailable => "state_unavailable",
            Self::Upstream(error) => error.reason(),
            Self::Internal => "internal",
            Self::Frozen { .. } => "frozen",
            Self::ExchangeBackoff { banned: true, .. } => "upstream_ip_banned",
            Self::ExchangeBackoff { banned: false, .. } => "upstream_rate_limited",
            Self::ExchangeLimitNear { .. } => "exchange_limit_near",
            Self::ExchangeShareUsed { .. } => "exchange_share_exceeded",
        }
    }

    /// The refusal as a venue writes it in the exchange's error envelope.
    pub fn refusal(&self) -> Refusal {
        Refusal {
            class: self.class(),
            status: self.status(),
            reason: self.reason(),
            message: self.to_string(),
        }
    }

    /// The kind of refusal, as exchanges' error codes tell them apart.
    fn class(&self) -> RefusalClass {
        let invalid = RefusalClass::Invalid(Fault::Other);
        match self {
            Self::Front(front) => match front {
                FrontError::MethodNotAllowed(_) | FrontError::Connect => {
                    RefusalClass::MethodNotAllowed
                }
                FrontError::ContentEncoding => RefusalClass::UnsupportedEncoding,
                FrontError::TargetTooLong
                | FrontError::HostMismatch
                | FrontError::Expectation
                | FrontError::AbsoluteForm
                | FrontError::Upgrade
                | FrontError::WebSocketHandshake
                | FrontError::PathNonCanonical
                | FrontError::HostDuplicate
                | FrontError::HeaderDuplicate(_)
                | FrontError::FramingAmbiguous
                | FrontError::Trailers
                | FrontError::RequestLineInvalid
                | FrontError::HeaderInvalid => invalid,
            },
            Self::AuthAmbiguous
            | Self::BodyTooLarge(_)
            | Self::BodyTimeout
            | Self::Order(OrderError::Mismatch { .. } | OrderError::DuplicateClientId(_)) => {
                invalid
            }
            Self::AuthThrottled { .. }
            | Self::ExchangeBackoff { banned: false, .. }
            | Self::ExchangeLimitNear { .. }
            | Self::ExchangeShareUsed { .. } => RefusalClass::RateLimited,
            Self::ExchangeBackoff { banned: true, .. } => RefusalClass::ExchangeBanned,
            Self::BindingMismatch(_) => RefusalClass::Unauthenticated,
            Self::Denied(denied) => match denied {
                Denied::AuthMissing
                | Denied::AuthInvalid
                | Denied::AuthExpired
                | Denied::AuthRevoked => RefusalClass::Unauthenticated,
                Denied::RateLimited { .. } => RefusalClass::RateLimited,
                Denied::SymbolNotAllowed { .. } => RefusalClass::SymbolForbidden,
                Denied::PathNotAllowed { .. }
                | Denied::MoneyMovement { .. }
                | Denied::KeyManagement { .. }
                | Denied::OrderTypeNotAllowed { .. }
                | Denied::MarginNotAllowed { .. }
                | Denied::NotionalExceedsLimit { .. }
                | Denied::QtyExceedsLimit { .. }
                | Denied::NotionalUnbounded { .. }
                | Denied::ExchangeSized { .. }
                | Denied::PriceOutOfBand { .. }
                | Denied::MarketOrderInBand { .. }
                | Denied::DailyNotionalExceeded { .. }
                | Denied::MaxOrdersExceeded { .. }
                | Denied::MaxOpenOrdersExceeded { .. } => RefusalClass::Forbidden,
                Denied::ReferenceUnavailable { .. } | Denied::SpreadTooWide { .. } => {
                    RefusalClass::Unavailable
                }
            },
            Self::MethodNotAllowed { .. } => RefusalClass::MethodNotAllowed,
            Self::Parse(parse) => parse.class(),
            Self::Order(
                OrderError::Unknown(_) | OrderError::NotOwned(_) | OrderError::CancelsEverything,
            ) => RefusalClass::Forbidden,
            Self::AuditUnavailable | Self::StateUnavailable | Self::Frozen { .. } => {
                RefusalClass::Unavailable
            }
            Self::Upstream(UpstreamError::Timeout) => RefusalClass::Timeout,
            // Only a connection that never opened proves nothing was sent; the
            // pipeline records the orders of the others as unknown too.
            Self::Upstream(UpstreamError::Unavailable | UpstreamError::LoginRefused) => {
                RefusalClass::Unavailable
            }
            Self::Upstream(
                UpstreamError::Tls
                | UpstreamError::Redirect
                | UpstreamError::TooLarge
                | UpstreamError::Invalid,
            ) => RefusalClass::OutcomeUnknown,
            Self::Internal => RefusalClass::Internal,
        }
    }

    /// How long the bot should wait before trying again, when keyward knows.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Denied(Denied::RateLimited { retry_after, .. })
            | Self::AuthThrottled { retry_after }
            | Self::ExchangeBackoff { retry_after, .. }
            | Self::ExchangeLimitNear { retry_after }
            | Self::ExchangeShareUsed { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Who caused it: the bot (4xx), the exchange (502, 504) or keyward (500, 503).
    pub fn caused_by_bot(&self) -> bool {
        self.status().is_client_error()
    }

    /// True when the connection must be closed after answering, because the bytes
    /// that follow on it can no longer be trusted to be framed the way we think.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Self::BodyTooLarge(_) | Self::BodyTimeout)
            || matches!(
                self,
                Self::Front(
                    FrontError::FramingAmbiguous
                        | FrontError::HostDuplicate
                        | FrontError::HostMismatch
                        | FrontError::HeaderDuplicate(_)
                        | FrontError::TargetTooLong
                        | FrontError::Upgrade
                        | FrontError::WebSocketHandshake
                        | FrontError::RequestLineInvalid
                        | FrontError::HeaderInvalid
                )
            )
    }
}

impl From<FrontError> for Rejection {
    fn from(error: FrontError) -> Self {
        Self::Front(error)
    }
}

impl From<Denied> for Rejection {
    fn from(denied: Denied) -> Self {
        Self::Denied(denied)
    }
}

impl From<OrderError> for Rejection {
    fn from(error: OrderError) -> Self {
        Self::Order(error)
    }
}

impl From<ParseError> for Rejection {
    fn from(error: ParseError) -> Self {
        Self::Parse(error)
    }
}

#[cfg(test)]
mod tests;
