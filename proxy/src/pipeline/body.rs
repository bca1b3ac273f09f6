//! The request's bytes: the target as the front must see it, and the body read under
//! its size cap and deadline (or drained, for a request refused before it was needed).

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use super::Context;
use crate::app::Snapshot;
use crate::config::Limits;
use crate::error::Rejection;
use crate::framing::Verdicts;
use crate::front::FrontError;

/// Reads and discards the body of a request refused before its body was needed, so
/// that the answer does not overtake a client still sending: over HTTP/2 an answer to
/// an unread body ends with RST_STREAM, which some clients (curl among them) report
/// as a failure instead of the refusal. Bounded by the body size cap and deadline.
pub(super) async fn drain(snapshot: &Snapshot, headers: &HeaderMap, body: Incoming) {
    let _ = collect_capped(&snapshot.config.server.limits, headers, body).await;
}

/// A request target without its query.
pub(super) fn path_only(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// The target as the front must see it: HTTP/1 absolute-form stays absolute (and is
/// refused); HTTP/2's `:path` is taken alone, its `:authority` checked separately.
pub(super) fn request_target(uri: &http::Uri, http2: bool) -> String {
    if http2 {
        uri.path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_owned())
    } else {
        uri.to_string()
    }
}

/// The body under its caps; trailers are refused, and so is a body over which the
/// framing guard lost trust while it streamed in.
pub(super) async fn read_body(
    cx: Context<'_>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, Rejection> {
    let conn = cx.conn;
    let collected = collect_capped(&cx.snapshot.config.server.limits, headers, body).await?;
    if collected.trailers().is_some() {
        return Err(FrontError::Trailers.into());
    }
    // The guard may have lost trust in the framing while the body streamed in.
    if let Some(reason) = conn.verdicts.as_ref().and_then(Verdicts::poisoned) {
        return Err(reason.into());
    }
    Ok(collected.to_bytes())
}

/// The whole body under the size cap and the body deadline; a declared size over the
/// cap is refused without reading.
pub(super) async fn collect_capped(
    limits: &Limits,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<http_body_util::Collected<Bytes>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(Rejection::BodyTooLarge(limits.max_body_bytes));
    }
    tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout)?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            Rejection::BodyTooLarge(limits.max_body_bytes)
        } else {
            FrontError::FramingAmbiguous.into()
        }
    })
}
