//! The mock exchange's fault injection for soak runs: per request, a connection
//! reset before or in the middle of the answer, an answer slower than keyward's
//! upstream deadline, a 5xx, a 429 with `Retry-After`, or a malformed answer; per
//! connection, a TLS handshake that is aborted or presents a certificate from a CA
//! keyward does not trust. Faults are drawn from a seeded sequence, so a run with the
//! same seed draws the same faults in the same order (which request gets which
//! depends on how keyward's connections interleave).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_rustls::TlsAcceptor;

use crate::TempDir;

/// How often each fault happens: request faults per million requests, TLS faults per
/// million connections the mock accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Seeds the draws.
    pub seed: u64,
    /// Connection reset (RST) after the request was read, before any answer.
    pub reset: u32,
    /// Part of the answer's head, then a reset.
    pub reset_mid_answer: u32,
    /// The answer only after `slow_ms`.
    pub slow: u32,
    /// 500, 502 or 503.
    pub server_error: u32,
    /// 429 with `Retry-After: retry_after_s`.
    pub rate_limited: u32,
    /// An answer that is not valid HTTP/1.1 (several kinds).
    pub malformed: u32,
    /// The TLS handshake aborted after the ClientHello.
    pub tls_abort: u32,
    /// A certificate issued by a CA keyward does not trust.
    pub tls_bad_certificate: u32,
    /// How late a slow answer comes (set it past keyward's upstream deadline).
    pub slow_ms: u64,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_s: u64,
}

impl Faults {
    /// `per_million` of requests fail, spread over the request faults (429s a
    /// hundredth as often as the others, because each one pauses every bot for
    /// `retry_after_s`); `tls_per_million` of connections fail their handshake, half
    /// aborted, half with a bad certificate.
    pub fn mixed(seed: u64, per_million: u32, tls_per_million: u32, slow_ms: u64) -> Self {
        let share = per_million / 5;
        Self {
            seed,
            reset: share,
            reset_mid_answer: share,
            slow: share,
            server_error: share,
            malformed: share,
            rate_limited: per_million / 500,
            tls_abort: tls_per_million / 2,
            tls_bad_certificate: tls_per_million / 2,
            slow_ms,
            retry_after_s: 1,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// See [`Faults::reset`].
    Reset,
    /// See [`Faults::reset_mid_answer`].
    ResetMidAnswer,
    /// See [`Faults::slow`].
    Slow,
    /// See [`Faults::server_error`].
    ServerError,
    /// See [`Faults::rate_limited`].
    RateLimited,
    /// See [`Faults::malformed`].
    Malformed,
    /// See [`Faults::tls_abort`].
    TlsAbort,
    /// See [`Faults::tls_bad_certificate`].
    TlsBadCertificate,
}

impl Fault {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::ResetMidAnswer => "reset_mid_answer",
            Self::Slow => "slow_past_timeout",
            Self::ServerError => "5xx",
            Self::RateLimited => "429",
            Self::Malformed => "malformed",
            Self::TlsAbort => "tls_abort",
            Self::TlsBadCertificate => "tls_bad_certificate",
        }
    }
}

/// The mock's draws and what it injected.
#[derive(Debug, Default)]
pub(super) struct Injector {
    requests: AtomicU64,
    connections: AtomicU64,
    injected: Mutex<BTreeMap<Fault, u64>>,
    /// A server configuration whose certificate chains to a CA nobody trusts, made
    /// on first use.
    rogue: OnceLock<(Arc<rustls::ServerConfig>, TempDir)>,
}

/// The fault whose share of a million `draw` falls in, if any.
fn pick(draw: u64, shares: &[(Fault, u32)]) -> Option<Fault> {
    let mut at = draw % 1_000_000;
    for &(fault, share) in shares {
        if at < u64::from(share) {
            return Some(fault);
        }
        at -= u64::from(share);
    }
    None
}

impl Injector {
    fn count(&self, fault: Fault) {
        *self
            .injected
            .lock()
            .expect("fault counts")
            .entry(fault)
            .or_default() += 1;
    }

    /// The fault for the next request, if it gets one, and a draw that picks among
    /// its variants.
    pub(super) fn next_request(&self, plan: &Faults) -> Option<(Fault, u64)> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let fault = pick(
            crate::splitmix(plan.seed, n),
            &[
                (Fault::Reset, plan.reset),
                (Fault::ResetMidAnswer, plan.reset_mid_answer),
                (Fault::Slow, plan.slow),
                (Fault::ServerError, plan.server_error),
                (Fault::RateLimited, plan.rate_limited),
                (Fault::Malformed, plan.malformed),
            ],
        )?;
        self.count(fault);
        Some((fault, crate::splitmix(plan.seed ^ 0x5EED, n)))
    }

    /// The fault for the next accepted connection, if it gets one.
    pub(super) fn next_connection(&self, plan: &Faults) -> Option<Fault> {
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        let fault = pick(
            crate::splitmix(!plan.seed, n),
            &[
                (Fault::TlsAbort, plan.tls_abort),
                (Fault::TlsBadCertificate, plan.tls_bad_certificate),
            ],
        )?;
        self.count(fault);
        Some(fault)
    }

    /// How many of each fault were injected.
    pub(super) fn injected(&self) -> BTreeMap<Fault, u64> {
        self.injected.lock().expect("fault counts").clone()
    }

    /// The acceptor presenting an untrusted certificate.
    pub(super) fn rogue_acceptor(&self) -> TlsAcceptor {
        self.rogue
            .get_or_init(|| {
                let dir = TempDir::new("mock-rogue");
                (crate::test_server_tls(dir.path()), dir)
            })
            .0
            .clone()
            .into()
    }
}

/// Reads whatever the client sent first (its ClientHello) and gives up: the caller
/// drops the socket, which with a zero linger resets it.
pub(super) async fn abort_handshake(tcp: &mut tokio::net::TcpStream) {
    let mut hello = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut hello)).await;
}

/// Answers (or fails to) as `fault` says, in place of `normal`; returns whether the
/// connection can carry another request.
pub(super) async fn misbehave<S: AsyncRead + AsyncWrite + Unpin>(
    fault: Fault,
    plan: &Faults,
    draw: u64,
    stream: &mut S,
    normal: &[u8],
) -> bool {
    let answer: Vec<u8> = match fault {
        // Dropped unanswered; the zero linger makes the close a reset.
        Fault::Reset | Fault::TlsAbort | Fault::TlsBadCertificate => return false,
        Fault::ResetMidAnswer => {
            let head = normal.len().min(20);
            let _ = stream.write_all(&normal[..head]).await;
            let _ = stream.flush().await;
            return false;
        }
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(plan.slow_ms)).await;
            normal.to_vec()
        }
        Fault::ServerError => {
            let (status, reason) = [
                (500, "Internal Server Error"),
                (502, "Bad Gateway"),
                (503, "Service Unavailable"),
            ][usize::try_from(draw % 3).unwrap_or(0)];
            super::http(
                status,
                reason,
                &[],
                r#"{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}"#,
            )
        }
        Fault::RateLimited => super::http(
            429,
            "Too Many Requests",
            &[("Retry-After", plan.retry_after_s.to_string())],
            r#"{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}"#,
        ),
        Fault::Malformed => {
            let kinds: [&[u8]; 5] = [
                // Both framings at once, then a smuggled second answer.
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                // Not a status line.
                b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
                // A header line without a colon.
                b"HTTP/1.1 200 OK\r\nContent-Length 2\r\nthis is not a header\r\n\r\n{}",
                // A body shorter than announced, then the end of the connection.
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"orderId\":",
                // Not HTTP at all.
                b"\x16\x03\x01\x00\x05hello garbage\r\n\r\n",
            ];
            let kind = kinds[usize::try_from(draw % 5).unwrap_or(0)];
            let _ = stream.write_all(kind).await;
            let _ = stream.flush().await;
            return false;
        }
    };
    stream.write_all(&answer).await.is_ok() && stream.flush().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_shares_and_the_seed() {
        let plan = Faults::mixed(7, 100_000, 200_000, 1);
        let injector = Injector::default();
        let draws: Vec<Option<Fault>> = (0..100_000)
            .map(|_| injector.next_request(&plan).map(|(fault, _)| fault))
            .collect();
        let faults = draws.iter().flatten().count();
        assert!((9_000..11_000).contains(&faults), "{faults} of 100000");
        let limited = draws
            .iter()
            .filter(|d| **d == Some(Fault::RateLimited))
            .count();
        assert!(
            (8..40).contains(&limited),
            "{limited} 429s, expected about 20"
        );
        let again = Injector::default();
        assert!(
            draws
                .iter()
                .take(1000)
                .all(|d| *d == again.next_request(&plan).map(|(fault, _)| fault)),
            "the same seed draws the same faults"
        );
        let tls = (0..10_000)
            .filter(|_| injector.next_connection(&plan).is_some())
            .count();
        assert!((1_800..2_200).contains(&tls), "{tls} of 10000 handshakes");
    }
}
