//! Who is on the other end of a bot connection, beyond its token: the client
//! certificate it presented (mTLS) or its Unix peer credentials; the check that a
//! bound bot's token arrived with that proof; and the TLS material the bot listener
//! serves, with every certificate's expiry.

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Binding, Config};
use crate::error::Rejection;

/// Certificates expiring within this many days are warned about (log, `keyward
/// check`, `certs list`) and show in the metrics like any other.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// How a request reached keyward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The TLS listener; with the subject name of the client certificate, if one was
    /// presented (and verified: the handshake refuses any other).
    Tls {
        /// The certificate's subject common name.
        client: Option<Arc<str>>,
    },
    /// The loopback plain-HTTP listener.
    Plain,
    /// The Unix socket, with the peer's credentials as the kernel reports them.
    Unix(PeerCred),
}

/// `SO_PEERCRED` of a Unix socket peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PeerCred {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id, where the kernel tells it.
    pub pid: Option<i32>,
}

impl Transport {
    /// Its name in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tls { client: None } => "tls",
            Self::Tls { client: Some(_) } => "mtls",
            Self::Plain => "plain",
            Self::Unix(_) => "unix",
        }
    }

    /// The client certificate's name, if any.
    pub fn client_cert(&self) -> Option<&str> {
        match self {
            Self::Tls { client } => client.as_deref(),
            _ => None,
        }
    }

    /// The Unix peer's credentials, if any.
    pub fn peer_cred(&self) -> Option<PeerCred> {
        match self {
            Self::Unix(cred) => Some(*cred),
            _ => None,
        }
    }
}

/// Refuses a request (or a WebSocket logon) of `bot` that lacks the proof its
/// configured binding names, if it has one.
pub fn check_bot_binding(
    config: &Config,
    bot: &str,
    transport: &Transport,
) -> Result<(), Rejection> {
    match config.bindings.get(bot) {
        Some(binding) => check_binding(bot, binding, transport),
        None => Ok(()),
    }
}

/// Refuses a bound bot's request that lacks the proof its binding names.
pub fn check_binding(bot: &str, binding: &Binding, transport: &Transport) -> Result<(), Rejection> {
    if binding.client_cert && transport.client_cert() != Some(bot) {
        return Err(Rejection::BindingMismatch(
            "this bot's token is accepted only with the client certificate issued for it",
        ));
    }
    if let Some(uid) = binding.peer_uid
        && transport.peer_cred().map(|c| c.uid) != Some(uid)
    {
        return Err(Rejection::BindingMismatch(
            "this bot's token is accepted only from its own user over keyward's Unix socket",
        ));
    }
    Ok(())
}

/// What the bot listener serves, built from the files as they are now.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The rustls configuration for new connections.
    pub server: Arc<rustls::ServerConfig>,
    /// When each certificate keyward serves, trusts for bots, or issued expires.
    pub expiries: Vec<Expiry>,
}

/// One certificate's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What it is: `server`, `ca`, `client_ca:<name>` or `client:<bot>:<serial>`.
    pub certificate: String,
    /// Its end of validity.
    pub not_after: OffsetDateTime,
}

/// Loads the server certificate, its key and the client CA and revocation lists.
pub fn load_tls(config: &Config) -> Result<TlsMaterial, keyward_certs::CertsError> {
    let server = keyward_certs::server_config(&config.tls.dir, config.tls.client_auth.as_ref())?;
    Ok(TlsMaterial {
        server,
        expiries: expiries(config)?,
    })
}

/// Every certificate keyward serves or relies on, and every client certificate it
/// issued that is neither revoked nor expired.
pub fn expiries(config: &Config) -> Result<Vec<Expiry>, keyward_certs::CertsError> {
    use keyward_certs::inspect::inspect_pem;
    let dir = &config.tls.dir;
    let mut found = Vec::new();
    if let Some(server) = inspect_pem(&dir.join(keyward_certs::SERVER_CERT))?.first() {
        found.push(Expiry {
            certificate: "server".to_owned(),
            not_after: server.not_after,
        });
    }
    let ca_path = dir.join(keyward_certs::CA_CERT);
    if let Some(ca) = inspect_pem(&ca_path)?.first() {
        found.push(Expiry {
            certificate: "ca".to_owned(),
            not_after: ca.not_after,
        });
    }
    if let Some(clients) = &config.tls.client_auth
        && clients.ca != ca_path
    {
        for ca in inspect_pem(&clients.ca)? {
            found.push(Expiry {
                certificate: format!("client_ca:{}", label_safe(&ca.subject)),
                not_after: ca.not_after,
            });
        }
    }
    let now = OffsetDateTime::now_utc();
    for entry in keyward_certs::clients::ledger(dir)? {
        if entry.revoked.is_none() && entry.info.not_after > now {
            found.push(Expiry {
                certificate: format!("client:{}:{}", entry.info.subject, entry.info.serial),
                not_after: entry.info.not_after,
            });
        }
    }
    Ok(found)
}

/// A subject name from a CA keyward did not create, reduced to characters that are
/// safe in a metric label and a log line.
fn label_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One sentence per certificate that expires within [`EXPIRY_WARNING_DAYS`] (or has
/// expired), with what to do about it.
pub fn expiry_warnings(expiries: &[Expiry], now: OffsetDateTime) -> Vec<String> {
    expiries
        .iter()
        .filter_map(|e| {
            let left = e.not_after - now;
            if left.whole_days() >= EXPIRY_WARNING_DAYS {
                return None;
            }
            let when = e
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let remedy = match e.certificate.split(':').next() {
                Some("server") => "run `keyward certs init --renew-server`; a reload serves it",
                Some("ca") => {
                    "run `keyward certs init --force` and give bots the new ca.pem (every client certificate must be issued again)"
                }
                Some("client") => "issue the bot a new one with `keyward certs issue-client`",
                _ => "replace it",
            };
            Some(if left.is_negative() {
                format!("certificate {} expired at {when}; {remedy}", e.certificate)
            } else {
                format!(
                    "certificate {} expires at {when}, in {} days; {remedy}",
                    e.certificate,
                    left.whole_days()
                )
            })
        })
        .collect()
}

/// The audit reason for a TLS handshake refused over the bot's certificate, or None
/// for a handshake that failed for another reason (no TLS at all, a timeout, a
/// protocol keyward does not offer).
pub fn certificate_refusal(error: &std::io::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    let rustls_error = error.get_ref()?.downcast_ref::<Error>()?;
    Some(match rustls_error {
        Error::NoCertificatesPresented => "tls_client_cert_missing",
        Error::InvalidCertificate(reason) => match reason {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "tls_client_cert_untrusted"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "tls_client_cert_expired"
            }
            CertificateError::Revoked => "tls_client_cert_revoked",
            _ => "tls_client_cert_invalid",
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_with(client: Option<&str>) -> Transport {
        Transport::Tls {
            client: client.map(Arc::from),
        }
    }

    #[test]
    fn a_bound_bot_needs_its_own_proof() {
        let cert = Binding {
            client_cert: true,
            peer_uid: None,
        };
        assert!(check_binding("a", &cert, &tls_with(Some("a"))).is_ok());
        for other in [
            tls_with(Some("b")),
            tls_with(Some("a ")),
            tls_with(None),
            Transport::Plain,
            Transport::Unix(PeerCred {
                uid: 0,
                gid: 0,
                pid: None,
            }),
        ] {
            let refused = check_binding("a", &cert, &other).unwrap_err();
            assert_eq!(refused.reason(), "auth_binding_mismatch");
            assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
        }
        let uid = Binding {
            client_cert: false,
            peer_uid: Some(1000),
        };
        let from = |uid| {
            Transport::Unix(PeerCred {
                uid,
                gid: 1000,
                pid: Some(7),
            })
        };
        assert!(check_binding("a", &uid, &from(1000)).is_ok());
        assert!(check_binding("a", &uid, &from(1001)).is_err());
        assert!(check_binding("a", &uid, &Transport::Plain).is_err());
        assert!(check_binding("a", &uid, &tls_with(Some("a"))).is_err());
        assert!(check_binding("a", &Binding::default(), &Transport::Plain).is_ok());
    }

    #[test]
    fn warnings_name_what_expires_soon_and_what_to_do() {
        let now = OffsetDateTime::now_utc();
        let soon = |certificate: &str, days: i64| Expiry {
            certificate: certificate.to_owned(),
            not_after: now + time::Duration::days(days) + time::Duration::hours(1),
        };
        let warnings = expiry_warnings(
            &[
                soon("server", 9),
                soon("ca", 400),
                soon("client:a:41ab", -2),
                soon("client:b:41cd", 14),
            ],
            now,
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("server expires") && warnings[0].contains("in 9 days"));
        assert!(warnings[0].contains("--renew-server"));
        assert!(warnings[1].contains("client:a:41ab expired"));
    }
}
