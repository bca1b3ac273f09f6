//! The commands that run something: `serve` and `demo`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Failure, Io, load};
use crate::config::Config;
use crate::{demo, logging, server};

/// `keyward serve`: validate, start, serve until SIGTERM or Ctrl-C, drain, exit.
pub(crate) fn serve(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    log_format: logging::Format,
) -> Result<(), Failure> {
    io.notes = if log_format.is_text() {
        super::NoteStyle::LogText
    } else {
        super::NoteStyle::LogJson
    };
    let config = load(io, path, now)?;
    // Whatever `check` would report stops the start the same way (exit 64, at its
    // line); a prompted vault is checked when it is unlocked, below.
    super::vault_preflight(io, &config, path, false)?;
    let repeats = logging::init(log_format, "info");
    runtime()?.block_on(async {
        report_repeats(repeats);
        let running = server::start(config)
            .await
            .map_err(|e| Failure::runtime(format!("keyward cannot start: {e}")))?;
        io.note(format_args!(
            "keyward listening on https://{} (admin: {}); bots trust {}",
            running.bot_addr,
            running
                .admin_addr
                .map_or_else(|| "off".to_owned(), |a| format!("http://{a}")),
            running.ca_path.display()
        ));
        // Only the path is kept: a reference into the snapshot would keep the whole
        // first snapshot (its credentials, upstream pools and TLS material) alive
        // for as long as keyward runs, whatever reloads replace it.
        let unix_socket = running.app.snapshot().config.server.listen_unix.clone();
        if let Some(plain) = running.plain_addr {
            io.note(format_args!(
                "plain HTTP for bots on http://{plain} (loopback only)"
            ));
        }
        if let Some(socket) = &unix_socket {
            io.note(format_args!(
                "plain HTTP for bots on the Unix socket {}",
                socket.display()
            ));
        }
        crate::sdnotify::ready();
        wait_for_stop().await;
        crate::sdnotify::stopping();
        io.note("stopping: finishing requests in flight");
        running.shutdown().await;
        Ok(())
    })
}

/// `keyward demo`: prepare a throwaway dry-run setup and serve it.
pub(crate) fn demo(io: &mut Io<'_>, port: u16, dir: Option<PathBuf>) -> Result<(), Failure> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keyward-demo-{}", std::process::id()))
    });
    if dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure::runtime(format!(
            "{} is not empty; pass --dir with a new directory",
            dir.display()
        )));
    }
    let prepared = demo::prepare(&dir, port)
        .map_err(|e| Failure::runtime(format!("demo setup failed: {e}")))?;
    let config = Config::load(&prepared.config, SystemTime::now()).map_err(|d| {
        Failure::runtime(format!("the demo configuration is invalid (a bug):\n{d}"))
    })?;
    let repeats = logging::init(logging::Format::Text, "warn");
    runtime()?.block_on(async {
        report_repeats(repeats);
        let running = server::start(config).await.map_err(|e| {
            Failure::runtime(format!(
                "keyward demo cannot start: {e}\n(if port {port} is taken, run `keyward demo --port 18443`)"
            ))
        })?;
        io.out(demo::instructions(&prepared, running.bot_addr, running.admin_addr, &running.ca_path));
        wait_for_stop().await;
        running.shutdown().await;
        io.note(format_args!("demo stopped; its files stay in {}", prepared.dir.display()));
        Ok(())
    })
}

/// `keyward certs init`: create what is missing in [tls].dir.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

/// Reports the warnings held back, once per interval, for as long as the runtime runs.
fn report_repeats(repeats: logging::RepeatGate) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(logging::REPEAT_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            repeats.report();
        }
    });
}

async fn wait_for_stop() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
