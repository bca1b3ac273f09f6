//! A refusal keyward answers itself, in the terms a venue's error envelope needs.
//!
//! The proxy decides why it refuses (its own reasons, statuses and messages); a venue
//! only writes that down in the exchange's envelope, with the HTTP status the exchange
//! uses for it, so a client library raises the error it knows. The proxy hands the venue a [`Refusal`] whose [`RefusalClass`] is a
//! closed set: every venue maps each class with an exhaustive match, so a new kind of
//! refusal is a compile error in every venue, never a silent default, and renaming a
//! reason code changes no exchange's error code.

use http::StatusCode;

/// A refusal, as a venue's envelope sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal it is, for choosing the exchange's error code.
    pub class: RefusalClass,
    /// keyward's own HTTP status for it, the one its audit record and log show; the
    /// answer goes out with the venue's ([`crate::Venue::refusal_status`]).
    pub status: StatusCode,
    /// keyward's stable reason code (also sent as `x-keyward-error`).
    pub reason: &'static str,
    /// The human-readable explanation (never a secret, a token or request bytes
    /// beyond sanitised parameter names).
    pub message: String,
}

/// The kinds of refusal exchanges tell apart in their error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// 401: no valid keyward credential.
    Unauthenticated,
    /// 403: the policy or the order record forbids it.
    Forbidden,
    /// 403: the symbol is not one the bot may trade (Bybit has its own code).
    SymbolForbidden,
    /// 405: the path exists, not for this method.
    MethodNotAllowed,
    /// 415: the body is not of the media type the endpoint takes.
    UnsupportedMediaType,
    /// 415: the body has a content coding keyward does not take.
    UnsupportedEncoding,
    /// 429: a limit (the bot's, keyward's or the exchange's) says wait.
    RateLimited,
    /// 503: the exchange banned keyward's IP; nothing is sent until the ban ends.
    ExchangeBanned,
    /// 500: a fault of keyward's own.
    Internal,
    /// 502 or 503, nothing sent: the exchange cannot be reached, the audit log or the
    /// reference price is not available, or the account is frozen.
    Unavailable,
    /// 502: the request may have reached the exchange, but no usable answer came back
    /// (TLS failed, a redirect, an answer too large or malformed), so whether it
    /// executed is unknown. Apart from [`RefusalClass::Unavailable`] because a venue
    /// that refuses inside an HTTP 200 body must not make it read as refused.
    OutcomeUnknown,
    /// 504: the exchange did not answer in time (it may have acted).
    Timeout,
    /// Any other refusal of the request as sent (400, 408, 409, 413, 414, 417, 421).
    Invalid(Fault),
}

/// What is wrong with a request refused as invalid, as far as exchanges' codes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A parameter given twice, or in the query and the body.
    ParamDuplicate,
    /// A required parameter is absent.
    ParamMissing,
    /// A parameter the endpoint does not take.
    ParamUnknown,
    /// JSON that does not parse, or repeats a key.
    JsonInvalid,
    /// Anything else.
    Other,
}
