//! The command line: argument parsing and the operator-facing commands.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage, 64 invalid configuration.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use keyward_policy::{BotPolicy, TokenDigest};

use crate::config::{Config, Diagnostics};
use crate::tokens;
use crate::vault;

mod certs;
mod control;
mod report;
mod run;
mod secrets;

/// Exit code of `explain --exit-code` when the decision is deny.
pub const EXIT_DENIED: u8 = 3;

/// The configuration file when `--config` is not given: `$KEYWARD_CONFIG`, else the
/// first of `./keyward.toml` and `/etc/keyward/keyward.toml` that exists, else
/// `./keyward.toml` (so that the error names the file a newcomer expects).
fn default_config_path(
    from_environment: Option<std::ffi::OsString>,
    exists: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(path) = from_environment.filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    ["keyward.toml", "/etc/keyward/keyward.toml"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .unwrap_or_else(|| PathBuf::from("keyward.toml"))
}

/// Exit code for an invalid configuration (BSD `EX_DATAERR`).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;

/// The package version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KEYWARD_COMMIT"), ")");

/// keyward: a local TLS proxy that holds exchange API secrets, signs bots' requests
/// itself and enforces a per-bot policy.
#[derive(Debug, Parser)]
#[command(name = "keyward", version = VERSION, about)]
pub struct Cli {
    /// Accepted before the command too (`keyward --config FILE serve`), as scripts and
    /// manifests written so far put it; hidden so that help shows `--config` only on
    /// the commands that read a configuration.
    #[arg(
        long = "config",
        id = "config_before_command",
        hide = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--config`, on the commands that read a configuration.
#[derive(Debug, Clone, clap::Args)]
struct ConfigFile {
    /// The configuration file [default: $KEYWARD_CONFIG, else ./keyward.toml if it
    /// exists, else /etc/keyward/keyward.toml if it exists, else ./keyward.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and every file it includes, and the vault it names
    /// (an entry fit for every account); print each problem.
    Check {
        #[command(flatten)]
        file: ConfigFile,
        /// Ask for the vault's passphrase when [vault].key is "prompt", to check the
        /// vault too (without it, such a vault is not opened).
        #[arg(long)]
        vault: bool,
        /// Print the result as one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Show what keyward would do with a request from a bot, without sending anything.
    Explain {
        #[command(flatten)]
        file: ConfigFile,
        /// The bot sending the request.
        #[arg(long)]
        bot: String,
        /// A request body (form-encoded unless --header sets another Content-Type).
        #[arg(long)]
        body: Option<String>,
        /// An extra request header, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// The request, e.g. 'POST /api/v3/order?symbol=BTCUSDT&side=BUY&...'.
        request: String,
        /// Exit with 3 when the decision is deny (for scripts and CI checks of a
        /// policy).
        #[arg(long)]
        exit_code: bool,
        /// Print the explanation as one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Issue, list and revoke bot tokens.
    Token {
        #[command(flatten)]
        file: ConfigFile,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run the proxy until SIGTERM or Ctrl-C.
    Serve {
        #[command(flatten)]
        file: ConfigFile,
        /// How the log on standard error is written: JSON lines (for log pipelines),
        /// text, or auto (text when standard error is a terminal).
        #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value_t = crate::logging::Format::Json)]
        log_format: crate::logging::Format,
    },
    /// A self-contained quick start in a temporary directory, in dry-run mode.
    Demo {
        /// The bot port (0 lets the system choose).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Where to put the demo's files (default: a new directory under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Manage exchange secrets in the encrypted vault.
    Vault {
        #[command(flatten)]
        file: ConfigFile,
        #[command(subcommand)]
        action: VaultAction,
    },
    /// Manage keyward's local CA and server certificate.
    Certs {
        #[command(flatten)]
        file: ConfigFile,
        #[command(subcommand)]
        action: CertsAction,
    },
    /// Stop all signing now: nothing but cancels leaves keyward until `unfreeze`.
    Freeze {
        #[command(flatten)]
        file: ConfigFile,
        /// Freeze one account only.
        #[arg(long)]
        account: Option<String>,
        /// Also cancel every open order on each symbol the account's bots may trade.
        #[arg(long)]
        cancel_open_orders: bool,
        /// Print keyward's report as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Lift a freeze (through the control socket, for keyward's own user only).
    Unfreeze {
        #[command(flatten)]
        file: ConfigFile,
        /// Unfreeze one account only (default: lift every freeze).
        #[arg(long)]
        account: Option<String>,
        /// Print keyward's report as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running keyward's admin listener whether it is healthy, for container
    /// health checks in images without a shell: exit 0 on 200, 1 otherwise.
    Probe {
        /// The admin URL, e.g. http://127.0.0.1:9901/readyz.
        #[arg(default_value = "http://127.0.0.1:9901/readyz")]
        url: String,
        /// Keep asking until it answers 200 or this long has passed, e.g. "10s" (for
        /// scripts that start keyward and then use it).
        #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
        wait: Option<Duration>,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Print a shell completion script, e.g. `keyward completions bash >
    /// /etc/bash_completion.d/keyward`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into --dir.
    Man {
        /// Write keyward.1 and a page per subcommand (keyward-check.1, ...) here.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// The `--config` of a command that reads a configuration; `None` for the
    /// commands that do not.
    fn config_file(&self) -> Option<&ConfigFile> {
        match self {
            Self::Check { file, .. }
            | Self::Explain { file, .. }
            | Self::Token { file, .. }
            | Self::Serve { file, .. }
            | Self::Vault { file, .. }
            | Self::Certs { file, .. }
            | Self::Freeze { file, .. }
            | Self::Unfreeze { file, .. } => Some(file),
            Self::Demo { .. }
            | Self::Probe { .. }
            | Self::Audit { .. }
            | Self::Completions { .. }
            | Self::Man { .. } => None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Walk the hash chain through FILE... (oldest first, e.g. `audit-*.jsonl
    /// audit.jsonl`); exit 0 if intact, 1 naming the first broken line.
    Verify {
        /// The log files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum VaultAction {
    /// Create an empty vault keyed by [vault].key (a missing key file is generated).
    Init {
        /// Argon2id memory in KiB, when the key is a passphrase.
        #[arg(long, default_value_t = vault::DEFAULT_ARGON2.memory_kib)]
        argon2_memory_kib: u32,
        /// Argon2id passes, when the key is a passphrase.
        #[arg(long, default_value_t = vault::DEFAULT_ARGON2.iterations)]
        argon2_iterations: u32,
    },
    /// Add an entry: JSON {"api_key":..,"api_secret":..,"passphrase":..} on stdin, or
    /// prompts on a terminal.
    Add {
        /// Entry name, as an account's `secret` names it.
        name: String,
        #[command(flatten)]
        input: EntryInput,
    },
    /// Replace an entry's key (same input as add); a running keyward signs with the new
    /// key after SIGHUP or POST /reload, requests in flight finishing with the old one.
    Rotate {
        /// Entry name.
        name: String,
        #[command(flatten)]
        input: EntryInput,
    },
    /// List entries: name, venue, key type, created, API-key fingerprint.
    List,
    /// Remove an entry.
    Remove {
        /// Entry name.
        name: String,
    },
    /// Re-key the vault: every entry re-encrypted under a new passphrase or key file.
    Passwd {
        /// The new key: "prompt", "file:PATH" (generated if absent) or "env:VARIABLE".
        /// Default: a new passphrase for a prompt vault; for a key-file vault, a new
        /// random key file written in place of the old one.
        #[arg(long)]
        new_key: Option<String>,
        /// Argon2id memory in KiB, when the new key is a passphrase.
        #[arg(long, default_value_t = vault::DEFAULT_ARGON2.memory_kib)]
        argon2_memory_kib: u32,
        /// Argon2id passes, when the new key is a passphrase.
        #[arg(long, default_value_t = vault::DEFAULT_ARGON2.iterations)]
        argon2_iterations: u32,
    },
}

impl EntryInput {
    fn as_new_key(&self) -> secrets::NewKey<'_> {
        secrets::NewKey {
            key_type: self.key_type.as_deref(),
            venue: self.venue.clone(),
            secret_file: self.secret_file.as_deref(),
        }
    }
}

/// How `vault add` and `vault rotate` get the new key.
#[derive(Debug, clap::Args)]
struct EntryInput {
    /// Key type: hmac, ed25519 (PKCS#8 PEM), rsa (PEM) or ec-p256 (SEC1 or PKCS#8 PEM).
    /// Default: hmac for add, the replaced entry's type for rotate.
    #[arg(long)]
    key_type: Option<String>,
    /// The venue the key belongs to (shown by `list`; rotate keeps the old one by default).
    #[arg(long)]
    venue: Option<String>,
    /// Read the secret (e.g. a PEM private key) from this file (mode 0600) instead.
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CertsAction {
    /// Create the CA and server certificate in [tls].dir if missing.
    Init {
        /// Replace an existing CA (bots must then trust the new one, and every
        /// client certificate must be issued again).
        #[arg(long)]
        force: bool,
        /// Issue a new server certificate from the existing CA (renewal).
        #[arg(long)]
        renew_server: bool,
    },
    /// Issue a client certificate and key for BOT, signed by keyward's CA.
    IssueClient {
        /// The bot it names.
        bot: String,
        /// Days of validity.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Where to write BOT.pem and BOT.key (default: [tls].dir/clients).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the CA, the server certificate and every client certificate issued, with
    /// expiry and status.
    List {
        /// Print the list as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke BOT's client certificates (or one, by serial) and write the revocation
    /// list a running keyward loads on reload.
    Revoke {
        /// The bot.
        bot: String,
        /// Only the certificate with this serial (hex, from `certs list`).
        #[arg(long)]
        serial: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Mint a token for BOT, print it once, and add its digest to the configuration.
    New {
        /// The bot.
        bot: String,
        /// Also set the bot's expiry this many days from now.
        #[arg(long)]
        days: Option<u32>,
        /// For a coinbase bot: a plain keyward token (for clients that send it as a
        /// bearer token, e.g. ccxt's `token` option) instead of a signing key pair.
        #[arg(long)]
        bearer: bool,
    },
    /// List every bot's tokens (digests only) and expiry.
    List {
        /// Print the list as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke BOT's tokens (all of them, or those whose digest starts with --digest).
    Revoke {
        /// The bot.
        bot: String,
        /// Only revoke the token whose digest starts with this (e.g. sha256:1a2b3c), or
        /// a coinbase bot's key with this key id or key name.
        #[arg(long)]
        digest: Option<String>,
    },
}

/// Runs the command line against the process's arguments and standard streams,
/// after making the process safe to hold secrets in.
pub fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    harden_process();
    let mut stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let streams = Streams {
        input: &mut stdin,
        interactive,
        out: &mut stdout,
        err: &mut stderr,
    };
    ExitCode::from(run(std::env::args_os(), SystemTime::now(), streams))
}

/// Every command may hold secrets (the vault key, entries being added, unlocked
/// credentials), so before anything else: no core dumps, not dumpable (which also
/// keeps same-uid processes out of its memory), and a panic report that names only
/// the code location, never a message that might quote data.
fn harden_process() {
    use std::io::Write as _;
    if let Err(error) = crate::sys::disable_core_dumps() {
        let _ = writeln!(
            io::stderr(),
            "keyward: warning: cannot disable core dumps ({error}); secrets could reach a core file"
        );
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown".to_owned());
        tracing::error!(%location, "internal error (panic); the request or command was abandoned");
        // Where a log is installed (serve), the line above is the report, in its format.
        if !tracing::dispatcher::has_been_set() {
            let _ = writeln!(io::stderr(), "keyward: internal error at {location}");
        }
    }));
}

/// The command line's standard streams, injectable for tests.
pub struct Streams<'a> {
    /// Standard input (`vault add` reads JSON from it).
    pub input: &'a mut dyn io::Read,
    /// True when standard input is a terminal (then `vault add` prompts instead).
    pub interactive: bool,
    /// Standard output: results.
    pub out: &'a mut dyn io::Write,
    /// Standard error: diagnostics and notes.
    pub err: &'a mut dyn io::Write,
}

impl std::fmt::Debug for Streams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("interactive", &self.interactive)
            .finish_non_exhaustive()
    }
}

/// Runs the command line with explicit arguments, clock and streams; returns the exit
/// code. Tests drive the CLI through this.
pub fn run(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    now: SystemTime,
    streams: Streams<'_>,
) -> u8 {
    let Streams {
        input,
        interactive,
        out: stdout,
        err: stderr,
    } = streams;
    // Parsed through the matches so that the command's name as typed is at hand for
    // messages (clap knows it; a table of names here would only repeat it).
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(args)
        .and_then(|matches| {
            let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
            let name = matches.subcommand_name().unwrap_or_default().to_owned();
            Ok((cli, name))
        });
    let (cli, command_name) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let rendered = error.render();
            let target: &mut dyn io::Write = if error.use_stderr() { stderr } else { stdout };
            let _ = write!(target, "{rendered}");
            return u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
    let mut io = Io {
        input,
        interactive,
        out: stdout,
        err: stderr,
        notes: NoteStyle::Plain,
    };
    let config_path = match config_path(&cli, &command_name) {
        Ok(path) => path,
        Err(failure) => {
            io.failed(&failure);
            return failure.code;
        }
    };
    let result = match cli.command {
        Command::Check { vault, json, .. } => check(&mut io, &config_path, now, vault, json),
        Command::Explain {
            bot,
            body,
            headers,
            request,
            exit_code,
            json,
            ..
        } => explain(
            &mut io,
            &config_path,
            now,
            &crate::explain::Asked {
                bot,
                request,
                body,
                headers,
            },
            json,
        )
        .and_then(|denied| denied_exit(denied && exit_code)),
        Command::Token { action, .. } => match action {
            TokenAction::New { bot, days, bearer } => {
                token_new(&mut io, &config_path, now, &bot, days, bearer)
            }
            TokenAction::List { json } => token_list(&mut io, &config_path, now, json),
            TokenAction::Revoke { bot, digest } => {
                token_revoke(&mut io, &config_path, now, &bot, digest.as_deref())
            }
        },
        Command::Serve { log_format, .. } => run::serve(&mut io, &config_path, now, log_format),
        Command::Demo { port, dir } => run::demo(&mut io, port, dir),
        Command::Audit {
            action: AuditAction::Verify { files },
        } => audit_verify(&mut io, &files),
        Command::Probe { url, wait } => match wait {
            None => probe(&mut io, &url),
            Some(wait) => probe_until(&mut io, &url, wait),
        },
        Command::Freeze {
            account,
            cancel_open_orders,
            json,
            ..
        } => {
            let mut path = String::from("/freeze");
            let mut query = Vec::new();
            if let Some(account) = &account {
                query.push(format!("account={account}"));
            }
            if cancel_open_orders {
                query.push("cancel=1".to_owned());
            }
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            control_command(&mut io, &config_path, now, &path, json)
        }
        Command::Unfreeze { account, json, .. } => {
            let path = account.map_or_else(
                || "/unfreeze".to_owned(),
                |a| format!("/unfreeze?account={a}"),
            );
            control_command(&mut io, &config_path, now, &path, json)
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write, and a closed
            // pipe (`| head`) is not an internal error.
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "keyward", &mut script);
            io.out(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
        Command::Man { dir } => man(&mut io, dir.as_deref()),
        Command::Certs { action, .. } => match action {
            CertsAction::Init {
                force,
                renew_server,
            } => certs::init(&mut io, &config_path, now, force, renew_server),
            CertsAction::IssueClient { bot, days, out } => {
                certs::issue_client(&mut io, &config_path, now, &bot, days, out.as_deref())
            }
            CertsAction::List { json } => certs::list(&mut io, &config_path, now, json),
            CertsAction::Revoke { bot, serial } => {
                certs::revoke(&mut io, &config_path, now, &bot, serial.as_deref())
            }
        },
        Command::Vault { action, .. } => match action {
            VaultAction::Init {
                argon2_memory_kib,
                argon2_iterations,
            } => secrets::init(
                &mut io,
                &config_path,
                now,
                vault::Argon2Params {
                    memory_kib: argon2_memory_kib,
                    iterations: argon2_iterations,
                    parallelism: 1,
                },
            ),
            VaultAction::Add { name, input } => {
                secrets::add(&mut io, &config_path, now, &name, &input.as_new_key())
            }
            VaultAction::Rotate { name, input } => {
                secrets::rotate(&mut io, &config_path, now, &name, &input.as_new_key())
            }
            VaultAction::Passwd {
                new_key,
                argon2_memory_kib,
                argon2_iterations,
            } => secrets::passwd(
                &mut io,
                &config_path,
                now,
                new_key.as_deref(),
                vault::Argon2Params {
                    memory_kib: argon2_memory_kib,
                    iterations: argon2_iterations,
                    parallelism: 1,
                },
            ),
            VaultAction::List => secrets::list(&mut io, &config_path, now),
            VaultAction::Remove { name } => secrets::remove(&mut io, &config_path, now, &name),
        },
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            io.failed(&failure);
            failure.code
        }
    }
}

/// The configuration file a command reads: `--config` (before or after the command,
/// once), else the search path; `--config` on a command that reads none is a mistake
/// worth saying rather than ignoring.
fn config_path(cli: &Cli, command_name: &str) -> Result<PathBuf, Failure> {
    let after = cli.command.config_file().map(|f| f.config.as_ref());
    match (&cli.config, after) {
        (Some(_), None) => Err(Failure::usage(format!(
            "`keyward {command_name}` reads no configuration file; leave out --config"
        ))),
        (Some(before), Some(Some(after))) if before != after => Err(Failure::usage(format!(
            "--config is given twice ({} and {}); give it once",
            before.display(),
            after.display()
        ))),
        (Some(path), _) | (None, Some(Some(path))) => Ok(path.clone()),
        (None, _) => Ok(default_config_path(
            std::env::var_os("KEYWARD_CONFIG"),
            |p| p.exists(),
        )),
    }
}

/// `keyward man`: the top page on standard output, or every page into `dir`.
fn man(io: &mut Io<'_>, dir: Option<&Path>) -> Result<(), Failure> {
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(io.out)
            .map_err(|e| Failure::runtime(format!("cannot write the manual page: {e}"))),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(command, dir))
                .map_err(|e| Failure::runtime(format!("{}: {e}", dir.display())))?;
            io.note(format_args!(
                "wrote keyward.1 and one page per command into {}; e.g. `man {}/keyward-serve.1`",
                dir.display(),
                dir.display()
            ));
            Ok(())
        }
    }
}

/// A POST on the running keyward's control socket; prints its answer.
fn control_command(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    route: &str,
    json: bool,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let socket = crate::app::control_socket(&config);
    let (status, text) = match control::request(&socket, "POST", route, b"") {
        None => {
            return Err(Failure::runtime(format!(
                "no keyward is running with this configuration (nothing answers on {})",
                socket.display()
            )));
        }
        Some(Err(error)) => return Err(Failure::runtime(error)),
        Some(Ok(answer)) => answer,
    };
    // A freeze or unfreeze that happened answers with its report, even when some of
    // its cancels failed (502); a refusal (an unknown account) is one sentence.
    let Some(report) = report::freeze_report(&text) else {
        return if status == 200 {
            io.out(text.trim_end());
            Ok(())
        } else {
            Err(Failure::runtime(format!(
                "keyward answered {status}: {}",
                text.trim_end()
            )))
        };
    };
    if json {
        io.out(&report);
    } else {
        io.out(report::freeze_text(&report).trim_end());
    }
    match report.get("error").and_then(serde_json::Value::as_str) {
        Some(error) => Err(Failure::runtime(error)),
        None if status != 200 => Err(Failure::runtime(format!("keyward answered {status}"))),
        None => Ok(()),
    }
}

/// `--wait`'s value, written as the configuration's durations are.
fn parse_wait(text: &str) -> Result<Duration, String> {
    crate::config::duration::parse_millis(text).map(Duration::from_millis)
}

/// `probe --wait`: [`probe`] every 200 ms until it succeeds or `wait` has passed; the
/// last failure is the one reported.
fn probe_until(io: &mut Io<'_>, url: &str, wait: Duration) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match probe(io, url) {
            Ok(()) => return Ok(()),
            Err(failure) if std::time::Instant::now() >= deadline => {
                return Err(Failure::runtime(format!(
                    "{} (still, after {}s)",
                    failure.message,
                    wait.as_secs_f32()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `probe URL`: one plain-HTTP GET to the admin listener.
fn probe(io: &mut Io<'_>, url: &str) -> Result<(), Failure> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Failure::runtime("the probe URL must be http://HOST:PORT/PATH (the admin listener)")
    })?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let address = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Failure::runtime(format!("cannot resolve {authority}")))?;
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| Failure::runtime(format!("{authority}: {e}")))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| Failure::runtime(format!("{authority}: {e}")))?;
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).unwrap_or("none");
    if status == "200" {
        io.out(format_args!("{url}: 200"));
        Ok(())
    } else {
        Err(Failure::runtime(format!("{url}: status {status}")))
    }
}

/// `audit verify FILE...`.
fn audit_verify(io: &mut Io<'_>, files: &[PathBuf]) -> Result<(), Failure> {
    match crate::audit::verify(files) {
        Ok(crate::audit::Verified::Intact {
            lines,
            anchor,
            head,
        }) => {
            let start = if anchor.bytes().all(|b| b == b'0') {
                "the start of the log".to_owned()
            } else {
                format!("prev {anchor} (earlier files not given)")
            };
            io.out(format_args!(
                "intact: {lines} records in {} file{}, chained from {start}; head {head}",
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            ));
            Ok(())
        }
        Ok(crate::audit::Verified::Broken {
            file,
            line,
            problem,
        }) => Err(Failure::runtime(format!(
            "{}:{line}: {problem}",
            file.display()
        ))),
        Err(error) => Err(Failure::runtime(format!(
            "cannot read the audit log: {error}"
        ))),
    }
}

/// Where a command reads and writes: results to `out`, diagnostics and notes to `err`.
pub(crate) struct Io<'a> {
    pub(crate) input: &'a mut dyn io::Read,
    pub(crate) interactive: bool,
    out: &'a mut dyn io::Write,
    err: &'a mut dyn io::Write,
    /// How notes are written on `err`.
    pub(crate) notes: NoteStyle,
}

/// How a command's notes and errors are written: sentences, or (for `serve`, whose
/// stderr is its log) log lines in the log's own format, so that a log pipeline
/// reads one format from the first line to the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoteStyle {
    /// One sentence per line.
    Plain,
    /// JSON lines, as [`crate::logging`] writes them.
    LogJson,
    /// Text log lines, as [`crate::logging`] writes them.
    LogText,
}

impl Io<'_> {
    pub(crate) fn out(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{text}");
    }

    pub(crate) fn note(&mut self, text: impl std::fmt::Display) {
        self.emit("INFO", &text.to_string());
    }

    pub(crate) fn warn(&mut self, text: impl std::fmt::Display) {
        self.emit("WARN", &text.to_string());
    }

    /// A failure: each configuration problem at its own level (in a log, one record
    /// each), then the failure's message.
    fn failed(&mut self, failure: &Failure) {
        for problem in &failure.problems {
            let level = match problem.severity {
                crate::config::Severity::Error => "ERROR",
                crate::config::Severity::Warning => "WARN",
            };
            self.emit(level, &problem.to_string());
        }
        let message = failure.message.trim_end();
        if !message.is_empty() {
            self.emit("ERROR", message);
        }
    }

    fn emit(&mut self, level: &str, text: &str) {
        let at = || crate::audit::timestamp(SystemTime::now());
        match self.notes {
            NoteStyle::Plain => {
                let _ = writeln!(self.err, "{text}");
            }
            NoteStyle::LogJson => {
                for line in text.lines() {
                    let record = serde_json::json!({
                        "timestamp": at(),
                        "level": level,
                        "message": line,
                        "target": "keyward::cli",
                    });
                    let _ = writeln!(self.err, "{record}");
                }
            }
            NoteStyle::LogText => {
                for line in text.lines() {
                    let _ = writeln!(self.err, "{} {level:>5} keyward::cli: {line}", at());
                }
            }
        }
    }
}

/// A failed command: what to print, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The configuration problems behind it, each printed (or logged, at its own
    /// level) before `message`.
    problems: Vec<crate::config::Diagnostic>,
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>, code: u8) -> Self {
        Self {
            problems: Vec::new(),
            message: message.into(),
            code,
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_RUNTIME)
    }

    /// A failure already reported on standard output (the `--json` forms), or said by
    /// its exit code alone (`explain --exit-code`).
    fn silent(code: u8) -> Self {
        Self::new(String::new(), code)
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_USAGE)
    }

    /// An invalid configuration: its problems, then `conclusion`.
    fn invalid(diagnostics: &Diagnostics, conclusion: impl Into<String>) -> Self {
        Self {
            problems: diagnostics.items().to_vec(),
            ..Self::new(conclusion, EXIT_CONFIG)
        }
    }

    fn config(diagnostics: &Diagnostics) -> Self {
        let errors = diagnostics
            .items()
            .iter()
            .filter(|d| d.severity == crate::config::Severity::Error)
            .count();
        Self::invalid(
            diagnostics,
            format!(
                "{errors} error{} found; keyward will not start with this configuration",
                plural(errors)
            ),
        )
    }
}

pub(crate) fn load(io: &mut Io<'_>, path: &Path, now: SystemTime) -> Result<Config, Failure> {
    let config = Config::load(path, now).map_err(|d| Failure::config(&d))?;
    for warning in &config.warnings {
        io.warn(warning);
    }
    Ok(config)
}

fn check(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    prompt_vault: bool,
    json: bool,
) -> Result<(), Failure> {
    if json {
        return check_json(io, path, now, prompt_vault);
    }
    let config = load(io, path, now)?;
    vault_preflight(io, &config, path, prompt_vault)?;
    let bots = config.policy.bots();
    io.out(format_args!(
        "{}: ok: {} account{}, {} bot{}, {} file{}",
        path.display(),
        config.accounts.len(),
        plural(config.accounts.len()),
        bots.len(),
        plural(bots.len()),
        config.files.len(),
        plural(config.files.len()),
    ));
    for bot in bots {
        let account = config.account_of(bot);
        io.out(format_args!(
            "  bot {}: account {} ({}), mode {}, {} endpoint{}, {} token{}, expires {}",
            bot.name(),
            bot.account(),
            account.map_or("?", |a| a.venue.name()),
            bot.mode().name(),
            bot.grants().len(),
            plural(bot.grants().len()),
            bot.tokens().len(),
            plural(bot.tokens().len()),
            describe_expiry(bot, now),
        ));
        match config.bindings.get(bot.name()) {
            Some(binding) if binding.client_cert => io.out(format_args!(
                "    bound to the client certificate naming {}",
                bot.name()
            )),
            Some(binding) => {
                if let Some(uid) = binding.peer_uid {
                    io.out(format_args!("    bound to uid {uid} on the Unix socket"));
                }
            }
            None => {}
        }
    }
    let tls = certs::check(&config, now)?;
    io.out(format_args!("  tls: {}", tls.summary));
    for warning in &tls.warnings {
        io.note(format_args!("warning: {warning}"));
    }
    Ok(())
}

/// `check --json`: one object on standard output whatever the outcome, every problem
/// in `problems` with its place; the exit code is the same as the text form's.
fn check_json(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    prompt_vault: bool,
) -> Result<(), Failure> {
    let mut report = serde_json::json!({ "config": path.display().to_string(), "ok": false });
    let config = match Config::load(path, now) {
        Ok(config) => config,
        Err(diagnostics) => {
            report["problems"] = diagnostics
                .items()
                .iter()
                .map(report::diagnostic_json)
                .collect();
            io.out(&report);
            return Err(Failure::silent(EXIT_CONFIG));
        }
    };
    let mut problems: Vec<serde_json::Value> = config
        .warnings
        .iter()
        .map(report::diagnostic_json)
        .collect();
    let mut notes = Vec::new();
    let mut failed = None;
    match crate::preflight::vault_problems(&config, path, prompt_vault) {
        Ok(found) => {
            if !found.is_empty() {
                failed = Some(EXIT_CONFIG);
            }
            problems.extend(found.iter().map(report::diagnostic_json));
        }
        Err(crate::preflight::Skipped::NeedsPrompt) => notes.push(VAULT_NOT_CHECKED.to_owned()),
    }
    report["bots"] = config
        .policy
        .bots()
        .iter()
        .map(|bot| {
            let binding = config.bindings.get(bot.name());
            serde_json::json!({
                "name": bot.name(),
                "account": bot.account(),
                "venue": config.account_of(bot).map(|a| a.venue.name()),
                "mode": bot.mode().name(),
                "endpoints": bot.grants().len(),
                "tokens": bot.tokens().len(),
                "expires": crate::audit::timestamp(bot.expires()),
                "expired": bot.expires() <= now,
                "client_certificate": binding.is_some_and(|b| b.client_cert),
                "peer_uid": binding.and_then(|b| b.peer_uid),
            })
        })
        .collect();
    report["accounts"] = config.accounts.keys().cloned().collect();
    report["files"] = config
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    match certs::check(&config, now) {
        Ok(tls) => {
            report["tls"] = tls.summary.into();
            notes.extend(tls.warnings);
        }
        Err(failure) => {
            failed.get_or_insert(failure.code);
            report["tls"] = failure.message.into();
        }
    }
    report["notes"] = notes.into();
    report["ok"] = failed.is_none().into();
    report["problems"] = problems.into();
    io.out(&report);
    failed.map_or(Ok(()), |code| Err(Failure::silent(code)))
}

const VAULT_NOT_CHECKED: &str = "the vault was not checked: [vault].key is \"prompt\"; `keyward check --vault` asks for the passphrase and checks it";

/// The vault checked against the configuration ([`crate::preflight`]): any problem
/// fails like a configuration error (exit 64), each at the setting it concerns.
pub(crate) fn vault_preflight(
    io: &mut Io<'_>,
    config: &Config,
    path: &Path,
    may_prompt: bool,
) -> Result<(), Failure> {
    match crate::preflight::vault_problems(config, path, may_prompt) {
        Ok(problems) if problems.is_empty() => Ok(()),
        Ok(problems) => {
            let mut diagnostics = Diagnostics::default();
            for problem in problems {
                diagnostics.add(problem);
            }
            Err(Failure::config(&diagnostics))
        }
        Err(crate::preflight::Skipped::NeedsPrompt) => {
            io.note(VAULT_NOT_CHECKED);
            Ok(())
        }
    }
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn describe_expiry(bot: &BotPolicy, now: SystemTime) -> String {
    let when = time::OffsetDateTime::from(bot.expires())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".to_owned());
    match bot.expires().duration_since(now) {
        Ok(left) => format!("{when} (in {} days)", left.as_secs() / 86_400),
        Err(_) => format!("{when} (expired)"),
    }
}

fn explain(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    asked: &crate::explain::Asked,
    json: bool,
) -> Result<bool, Failure> {
    let config = load(io, path, now)?;
    if config.policy.bot(&asked.bot).is_none() {
        return Err(no_bot(&config, &asked.bot, path));
    }
    // A running keyward answers with its live reference prices and budgets.
    let socket = crate::app::control_socket(&config);
    let question = serde_json::to_vec(asked).unwrap_or_default();
    let text = match control::request(&socket, "POST", "/explain", &question) {
        Some(Ok((200, text))) => text,
        Some(Ok((_, text))) => return Err(Failure::runtime(text.trim_end())),
        Some(Err(error)) => return Err(Failure::runtime(error)),
        None => crate::explain::explain(&config, asked, None)
            .map_err(|e| Failure::runtime(e.replace("{config}", &path.display().to_string())))?,
    };
    if json {
        io.out(report::explanation_json(&text));
    } else {
        io.out(text.trim_end());
    }
    Ok(report::decision_of(&text) == Some("deny"))
}

/// `explain --exit-code` on a deny: the explanation is printed; the exit code says it.
fn denied_exit(denied: bool) -> Result<(), Failure> {
    if denied {
        Err(Failure::silent(EXIT_DENIED))
    } else {
        Ok(())
    }
}

/// An unknown bot, with the nearest name the configuration has.
fn no_bot(config: &Config, name: &str, path: &Path) -> Failure {
    let names: Vec<&str> = config.policy.bots().iter().map(|b| b.name()).collect();
    let hint = crate::config::suggest(name, &names);
    Failure::runtime(format!(
        "no bot named `{name}` in {}{hint}; bots: {}",
        path.display(),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

fn token_new(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    bot_name: &str,
    days: Option<u32>,
    bearer: bool,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let bot = config
        .policy
        .bot(bot_name)
        .ok_or_else(|| no_bot(&config, bot_name, path))?;
    let source = config.bot_sources.get(bot_name).ok_or_else(|| {
        Failure::runtime(format!("cannot find where bot `{bot_name}` is defined"))
    })?;
    let expires = match days {
        Some(days) if days == 0 || days > config.max_token_days => {
            return Err(Failure::runtime(format!(
                "--days must be from 1 to max_token_days ({})",
                config.max_token_days
            )));
        }
        Some(days) => Some(
            time::OffsetDateTime::from(now + Duration::from_secs(u64::from(days) * 86_400))
                .replace_nanosecond(0)
                .map_err(|_| Failure::runtime("cannot compute the expiry"))?
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|_| Failure::runtime("cannot format the expiry"))?,
        ),
        None => None,
    };
    let had_expiry = source
        .positions
        .contains_key("expires")
        .then(|| bot.expires());
    let coinbase = config
        .account_of(bot)
        .is_some_and(|account| account.venue == keyward_venues::VenueId::Coinbase);
    if coinbase && !bearer {
        coinbase_key_new(io, path, now, bot_name, &source.file, expires.as_deref())?;
        if let Some(expires) = &expires {
            note_expiry_change(io, bot_name, had_expiry, expires);
        }
        return Ok(());
    }
    let token = tokens::mint(bot_name).map_err(|e| Failure::runtime(e.to_string()))?;
    let digest = TokenDigest::of(&token);
    let original = tokens::add_digest(&source.file, bot_name, &digest, expires.as_deref())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if let Err(diagnostics) = Config::load(path, now) {
        let _ = tokens::restore(&source.file, &original);
        return Err(Failure::invalid(
            &diagnostics,
            "the new token was not added: the edited configuration did not validate",
        ));
    }
    io.note(format_args!(
        "added {} to bots.{bot_name}.tokens in {}; reload keyward to activate it.\nThe token is printed once, below. Store it where the bot reads its API key; keyward keeps only the digest.",
        digest.short(),
        source.file.display()
    ));
    if let Some(expires) = &expires {
        note_expiry_change(io, bot_name, had_expiry, expires);
    }
    io.out(token.as_str());
    Ok(())
}

/// `--days` sets the bot's `expires`, which every token of the bot shares: say so, with
/// the value it replaced.
fn note_expiry_change(io: &mut Io<'_>, bot: &str, was: Option<SystemTime>, now_set: &str) {
    let was = was.map_or_else(
        || "it had none".to_owned(),
        |was| format!("it was {}", crate::audit::timestamp(was)),
    );
    io.note(format_args!(
        "set bots.{bot}.expires to {now_set} ({was}); the expiry applies to every token of {bot}, not only the new one"
    ));
}

/// A coinbase bot's signing key: keyward keeps the public key in `tokens` and prints
/// the key name and the private key (SEC1 PEM, as Coinbase CDP keys look) once.
fn coinbase_key_new(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    bot_name: &str,
    file: &Path,
    expires: Option<&str>,
) -> Result<(), Failure> {
    let (key, pem) = crate::botjwt::generate()
        .ok_or_else(|| Failure::runtime("the system random number generator failed"))?;
    let entry = crate::botjwt::format_public_key(&key);
    let original = tokens::add_entry(file, bot_name, &entry, expires)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if let Err(diagnostics) = Config::load(path, now) {
        let _ = tokens::restore(file, &original);
        return Err(Failure::invalid(
            &diagnostics,
            "the new key was not added: the edited configuration did not validate",
        ));
    }
    io.note(format_args!(
        "added key {} to bots.{bot_name}.tokens in {}; reload keyward to activate it.\nThe key name and private key are printed once, below. Give them to the bot as its Coinbase API key name and secret; keyward keeps only the public key.",
        key.id(),
        file.display()
    ));
    io.out(key.key_name(bot_name));
    io.out(pem.trim_end());
    Ok(())
}

fn token_list(io: &mut Io<'_>, path: &Path, now: SystemTime, json: bool) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    if json {
        let bots: Vec<serde_json::Value> = config
            .policy
            .bots()
            .iter()
            .map(|bot| {
                let keys = |keys: &[keyward_policy::BotKey]| -> Vec<serde_json::Value> {
                    keys.iter()
                        .map(|key| {
                            serde_json::json!({ "id": key.id(), "key_name": key.key_name(bot.name()) })
                        })
                        .collect()
                };
                serde_json::json!({
                    "bot": bot.name(),
                    "account": bot.account(),
                    "expires": crate::audit::timestamp(bot.expires()),
                    "expired": bot.expires() <= now,
                    "tokens": bot.tokens().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "revoked_tokens": bot.revoked_tokens().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "keys": keys(&bot.keys().active),
                    "revoked_keys": keys(&bot.keys().revoked),
                })
            })
            .collect();
        io.out(serde_json::Value::from(bots));
        return Ok(());
    }
    for bot in config.policy.bots() {
        io.out(format_args!(
            "{}  account {}  expires {}",
            bot.name(),
            bot.account(),
            describe_expiry(bot, now)
        ));
        for digest in bot.tokens() {
            io.out(format_args!("  active   {digest}"));
        }
        for digest in bot.revoked_tokens() {
            io.out(format_args!("  revoked  {digest}"));
        }
        for key in &bot.keys().active {
            io.out(format_args!(
                "  active   key {}  {}",
                key.id(),
                key.key_name(bot.name())
            ));
        }
        for key in &bot.keys().revoked {
            io.out(format_args!(
                "  revoked  key {}  {}",
                key.id(),
                key.key_name(bot.name())
            ));
        }
    }
    Ok(())
}

fn token_revoke(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    bot_name: &str,
    digest: Option<&str>,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let source = config
        .bot_sources
        .get(bot_name)
        .ok_or_else(|| no_bot(&config, bot_name, path))?;
    let (moved, original) = tokens::revoke(&source.file, bot_name, digest)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if let Err(diagnostics) = Config::load(path, now) {
        let _ = tokens::restore(&source.file, &original);
        return Err(Failure::invalid(
            &diagnostics,
            "nothing was revoked: the edited configuration did not validate",
        ));
    }
    io.out(format_args!(
        "revoked {moved} token{} of bot {bot_name} in {}; reload keyward for it to take effect",
        plural(moved),
        source.file.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::default_config_path;

    #[test]
    fn the_configuration_is_found_on_the_documented_search_path() {
        let none = |_: &Path| false;
        let etc_only = |p: &Path| p == Path::new("/etc/keyward/keyward.toml");
        let both = |_: &Path| true;
        assert_eq!(
            default_config_path(Some("/srv/kw.toml".into()), both),
            PathBuf::from("/srv/kw.toml")
        );
        assert_eq!(
            default_config_path(None, both),
            PathBuf::from("keyward.toml")
        );
        assert_eq!(
            default_config_path(None, etc_only),
            PathBuf::from("/etc/keyward/keyward.toml")
        );
        assert_eq!(
            default_config_path(None, none),
            PathBuf::from("keyward.toml")
        );
        // An empty variable is no setting.
        assert_eq!(
            default_config_path(Some("".into()), etc_only),
            PathBuf::from("/etc/keyward/keyward.toml")
        );
    }
}
