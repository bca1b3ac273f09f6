//! `keyward certs`: the local CA and server certificate, bot client certificates
//! (issue, list, revoke), and the certificate part of `keyward check`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keyward_certs::inspect::CertInfo;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Failure, Io, load, plural};
use crate::config::Config;
use crate::identity::{EXPIRY_WARNING_DAYS, expiry_warnings};

/// `keyward certs init [--force] [--renew-server]`.
pub(crate) fn init(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    force: bool,
    renew_server: bool,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let dir = &config.tls.dir;
    let report = keyward_certs::init(dir, &config.server.names, force)
        .map_err(|e| Failure::runtime(format!("cannot create TLS material: {e}")))?;
    let renewed = renew_server && !report.issued_server;
    if renewed {
        keyward_certs::reissue_server(dir, &config.server.names)
            .map_err(|e| Failure::runtime(format!("cannot issue a server certificate: {e}")))?;
    }
    let what = match (report.created_ca, report.issued_server || renewed) {
        (true, _) => "created a new CA and server certificate",
        (false, true) => "issued a new server certificate from the existing CA",
        (false, false) => {
            "the CA and server certificate already exist; nothing changed (--renew-server issues a new server certificate, --force replaces the CA)"
        }
    };
    io.out(format_args!(
        "{}: {what}; bots trust {}",
        dir.display(),
        report.ca_path.display()
    ));
    if report.created_ca && force {
        io.note(
            "note: client certificates issued by the old CA are no longer trusted; issue each bot a new one",
        );
    }
    if renewed {
        io.note("a running keyward serves it to new connections after a reload (SIGHUP, POST /reload, or the file watcher)");
    }
    Ok(())
}

/// `keyward certs issue-client BOT [--days N] [--out DIR]`.
pub(crate) fn issue_client(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    bot: &str,
    days: u32,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    if config.policy.bot(bot).is_none() {
        return Err(super::no_bot(&config, bot, path));
    }
    if !(1..=825).contains(&days) {
        return Err(Failure::usage("--days must be from 1 to 825"));
    }
    let dir = &config.tls.dir;
    let out = out.map_or_else(|| dir.join("clients"), Path::to_path_buf);
    let now = OffsetDateTime::from(now);
    let not_after = now + time::Duration::days(i64::from(days));
    // A certificate cannot outlive the CA that vouches for it.
    let ca = keyward_certs::inspect::inspect_pem(&dir.join(keyward_certs::CA_CERT))
        .map_err(|e| Failure::runtime(format!("{e}; run `keyward certs init` first")))?;
    if let Some(ca) = ca.first()
        && ca.not_after < not_after
    {
        return Err(Failure::runtime(format!(
            "the CA expires at {}, before this certificate would; use fewer --days or replace the CA",
            rfc3339(ca.not_after)
        )));
    }
    // Valid from a minute ago, so a bot whose clock runs a little behind keyward's
    // can use it at once.
    let issued = keyward_certs::clients::issue_client(
        dir,
        bot,
        now - time::Duration::minutes(1),
        not_after,
        &out,
    )
    .map_err(|e| Failure::runtime(format!("cannot issue a client certificate: {e}")))?;
    io.out(format_args!(
        "issued a client certificate for bot {bot}: serial {}, expires {}\n  certificate: {}\n  key:         {} (mode 0600; give it to the bot only)",
        issued.info.serial,
        rfc3339(issued.info.not_after),
        issued.cert.display(),
        issued.key.display(),
    ));
    let bound = config.bindings.get(bot).is_some_and(|b| b.client_cert);
    match (&config.tls.client_auth, bound) {
        (None, _) => io.note(format_args!(
            "note: keyward does not ask for client certificates yet: set client_ca = \"{}\" in [tls] and require_client_cert = true in [bots.{bot}]",
            dir.join(keyward_certs::CA_CERT).display()
        )),
        (Some(_), false) => io.note(format_args!(
            "note: [bots.{bot}] does not set require_client_cert = true, so its token alone still works"
        )),
        (Some(_), true) => {}
    }
    Ok(())
}

/// `keyward certs list`: the CA, the server certificate and every issued client
/// certificate, with expiry and status.
pub(crate) fn list(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    json: bool,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let dir = &config.tls.dir;
    let now = OffsetDateTime::from(now);
    let runtime = |e: keyward_certs::CertsError| Failure::runtime(e.to_string());
    let mut rows: Vec<Listed> = Vec::new();
    for (kind, file) in [
        ("ca", keyward_certs::CA_CERT),
        ("server", keyward_certs::SERVER_CERT),
    ] {
        let path = dir.join(file);
        if !path.is_file() {
            rows.push(Err((kind, path)));
            continue;
        }
        if let Some(info) = keyward_certs::inspect::inspect_pem(&path)
            .map_err(runtime)?
            .into_iter()
            .next()
        {
            rows.push(Ok((kind, info, None)));
        }
    }
    let ledger = keyward_certs::clients::ledger(dir).map_err(runtime)?;
    let clients = ledger.len();
    rows.extend(
        ledger
            .into_iter()
            .map(|entry| Ok(("client", entry.info, entry.revoked))),
    );
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| match row {
                Ok((kind, info, revoked)) => serde_json::json!({
                    "kind": kind,
                    "subject": info.subject,
                    "serial": info.serial,
                    "not_before": rfc3339(info.not_before),
                    "expires": rfc3339(info.not_after),
                    "days_left": info.days_left(now),
                    "revoked": revoked.map(rfc3339),
                    "status": status(info.not_after, *revoked, now),
                }),
                Err((kind, path)) => serde_json::json!({
                    "kind": kind,
                    "missing": path.display().to_string(),
                }),
            })
            .collect();
        io.out(serde_json::Value::from(list));
        return Ok(());
    }
    io.out(format_args!(
        "{:<8} {:<24} {:<32} {:<25} STATUS",
        "KIND", "SUBJECT", "SERIAL", "EXPIRES"
    ));
    for row in &rows {
        match row {
            Ok((kind, info, revoked)) => {
                io.out(self::row(kind, info, status(info.not_after, *revoked, now)));
            }
            Err((kind, path)) => io.out(format_args!(
                "{kind:<8} (none: `keyward certs init` creates {})",
                path.display()
            )),
        }
    }
    if clients == 0 {
        io.out("(no client certificates issued: `keyward certs issue-client BOT`)");
    }
    Ok(())
}

/// A row of `certs list`: (kind, what it says, when revoked), or (kind, the file that
/// is missing).
type Listed = Result<(&'static str, CertInfo, Option<OffsetDateTime>), (&'static str, PathBuf)>;

/// `keyward certs revoke BOT [--serial S]`.
pub(crate) fn revoke(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    bot: &str,
    serial: Option<&str>,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let dir = &config.tls.dir;
    let revoked = keyward_certs::clients::revoke(dir, bot, serial, OffsetDateTime::from(now))
        .map_err(|e| Failure::runtime(format!("nothing revoked: {e}")))?;
    for info in &revoked {
        io.out(format_args!(
            "revoked the client certificate of bot {bot}, serial {}",
            info.serial
        ));
    }
    io.out(format_args!(
        "wrote {}; a running keyward refuses {} at the handshake after its next reload (SIGHUP, POST /reload, or the file watcher)",
        keyward_certs::clients::crl_path(dir).display(),
        if revoked.len() == 1 { "it" } else { "them" }
    ));
    Ok(())
}

/// What `keyward check` says of the bot listener's TLS files.
pub(crate) struct TlsCheck {
    /// One line: what was checked.
    pub(crate) summary: String,
    /// Certificates expiring soon.
    pub(crate) warnings: Vec<String>,
}

/// For `keyward check`: the bot listener's TLS configuration can be built from the
/// files (when they exist yet), and which certificates expire soon.
pub(crate) fn check(config: &Config, now: SystemTime) -> Result<TlsCheck, Failure> {
    let dir = &config.tls.dir;
    if !dir.join(keyward_certs::SERVER_CERT).is_file() {
        return Ok(TlsCheck {
            summary: format!(
                "{} has no certificates yet; `keyward serve` or `keyward certs init` creates them",
                dir.display()
            ),
            warnings: Vec::new(),
        });
    }
    let material = crate::identity::load_tls(config).map_err(|e| {
        Failure::runtime(format!(
            "the bot listener's TLS configuration cannot be built: {e}"
        ))
    })?;
    let clients = match &config.tls.client_auth {
        Some(auth) => format!(
            "client certificates required (CA {}, {} revocation list{})",
            auth.ca.display(),
            auth.crls.len(),
            plural(auth.crls.len())
        ),
        None => "no client certificates".to_owned(),
    };
    Ok(TlsCheck {
        summary: format!(
            "{} certificate{} checked, {clients}",
            material.expiries.len(),
            plural(material.expiries.len())
        ),
        warnings: expiry_warnings(&material.expiries, OffsetDateTime::from(now)),
    })
}

fn row(kind: &str, info: &CertInfo, status: String) -> String {
    format!(
        "{kind:<8} {:<24} {:<32} {:<25} {status}",
        info.subject,
        info.serial,
        rfc3339(info.not_after)
    )
}

fn status(
    not_after: OffsetDateTime,
    revoked: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> String {
    let left = (not_after - now).whole_days();
    match revoked {
        Some(when) => format!("revoked {}", rfc3339(when)),
        None if not_after <= now => "expired".to_owned(),
        None if left < EXPIRY_WARNING_DAYS => format!("valid, expires in {left} days (renew)"),
        None => format!("valid ({left} days left)"),
    }
}

fn rfc3339(when: OffsetDateTime) -> String {
    when.format(&Rfc3339).unwrap_or_default()
}
