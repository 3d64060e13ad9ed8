//! The command line (SPEC §6): clap arguments → calls. Printing happens here and only here.
//! `main` prints an error once, with its whole context, and maps it to the exit code.

/// `println!` that ignores a closed stdout (`tandem runs | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

mod client;
mod local;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};

/// tandem: runbooks for co-managed IT, with scopes, approvals and a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        default_value = "tandem.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `tandem trigger …`.
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Offline: what a payload would start (params, targets, approvals, digest), without
    /// starting anything or checking its signature.
    Test {
        /// The trigger's name in `triggers:`.
        name: String,
        /// A JSON file: the body the sender would post.
        #[arg(long, value_name = "FILE")]
        payload: PathBuf,
    },
}

/// How a client command reaches the daemon.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The daemon's URL.
    #[arg(long, env = "TANDEM_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Your bearer token.
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config and runbooks (all of runbooks_dir, or the given files).
    Validate { paths: Vec<PathBuf> },
    /// Show what a run would do, offline: targets, scope, approvals, plan digest.
    Plan {
        runbook: String,
        /// A parameter, `name=value`.
        #[arg(short = 'p', long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// Plan as this user (default: the runbook owner's first operator).
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
        /// Narrow the plan to these of the runbook's targets (hosts or `tag:NAME`).
        #[arg(long, value_delimiter = ',', value_name = "TARGET,…")]
        limit: Vec<String>,
        /// List every target host and every host an approval is needed for, instead of
        /// counts per owner.
        #[arg(long)]
        targets: bool,
    },
    /// Triggers (alerts that start runs).
    Trigger {
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// Run the daemon: workers, HTTP API.
    Serve {
        /// Address to listen on (default: `listen` from the config).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Start a runbook.
    Run {
        runbook: String,
        #[arg(short = 'p', long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// Wait for the run to end and exit with its outcome.
        #[arg(long)]
        wait: bool,
        /// Start an emergency runbook at once, without approval.
        #[arg(long, requires = "reason")]
        break_glass: bool,
        /// Why (required with --break-glass).
        #[arg(long)]
        reason: Option<String>,
        /// Narrow the run to these of the runbook's targets: hosts or `tag:NAME`,
        /// comma-separated. Part of the plan and its digest.
        #[arg(long, value_delimiter = ',', value_name = "TARGET,…")]
        limit: Vec<String>,
        /// A reference the run carries into `show`, the audit log and every notice (a
        /// ticket number; at most 128 printable characters).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a run waiting for your party.
    Approve {
        run: String,
        #[arg(long)]
        comment: Option<String>,
        /// The plan digest you reviewed (from `show`); refused if the run is not that plan.
        #[arg(long)]
        digest: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deny a run waiting for your party.
    Deny {
        run: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Acknowledge the after-the-fact review of a break-glass run.
    Review {
        run: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List runs waiting for a decision you may make.
    Approvals {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List break-glass runs whose review is still open.
    Reviews {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a run.
    Cancel {
        run: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List runs.
    Runs {
        #[arg(long)]
        status: Option<String>,
        /// Only runs carrying this reference.
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one run.
    Show {
        run: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a run's log.
    Logs {
        run: String,
        /// Keep printing until the run ends.
        #[arg(long, conflicts_with = "raw")]
        follow: bool,
        /// Write the exact bytes of the output as stored (secrets redacted), control
        /// characters and invalid UTF-8 included, instead of lines.
        #[arg(long)]
        raw: bool,
        /// With --raw: only this host's output.
        #[arg(long, requires = "raw")]
        host: Option<String>,
        /// With --raw: only this stream (stdout, stderr, log, event).
        #[arg(long, requires = "raw")]
        stream: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Freeze hosts your party owns: every further action on them is refused, also in runs
    /// already going (rule 11). TARGET: a host, `tag:NAME`, or `all`.
    Freeze {
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lift freezes of hosts your party owns.
    Unfreeze {
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your party's frozen hosts.
    Frozen {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The next fire times of a runbook's schedule, offline, in UTC and local time.
    Next {
        runbook: String,
        /// Start after this instant (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// List schedules with their next slots and approval state.
    Schedules {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Give a schedule a standing approval for a period (e.g. `30d`).
    Standing {
        runbook: String,
        #[arg(long = "for", value_name = "PERIOD")]
        period: String,
        /// The schedule digest you reviewed (from `schedules --json`).
        #[arg(long)]
        digest: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The business-review report over a period, from the store's audit log: patch
    /// compliance, restore tests, incidents, approvals, failures, each party's activity.
    Report {
        /// The first day (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        from: String,
        /// The last day, included (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        to: String,
        /// Only what this party may see (rule 10), as its own report would show it.
        #[arg(long, value_name = "PARTY")]
        party: Option<String>,
        #[arg(long, value_enum, default_value = "html")]
        format: crate::report::render::Format,
        /// Write the report to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The state store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the SQLite state in state_dir into an empty PostgreSQL database (runs, logs,
    /// approvals, schedules, the audit chain unchanged), then check the copy. Stop the
    /// daemon first; afterwards set `database_url`.
    Migrate {
        /// The PostgreSQL database: `postgres://USER@HOST/DB?sslmode=require`.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of the store's log, or of an export, and that it extends every
    /// checkpoint given.
    Verify {
        #[arg(long, value_name = "EXPORT")]
        file: Option<PathBuf>,
        /// A checkpoint file: one checkpoint, or JSON lines of several (a file witness).
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The public key that signed the checkpoints, `ed25519 BASE64` (default: the key
        /// in state_dir).
        #[arg(long, value_name = "KEY", requires = "checkpoints")]
        key: Option<String>,
    },
    /// Print the whole log as JSON lines: from the store, or your party's view over the API.
    Export {
        /// Fetch your party's view from this daemon instead of reading the store.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Your bearer token (with --server).
        #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Print the public key that signs checkpoints (`ed25519 BASE64`), making the key if needed.
    Key,
    /// Sign a checkpoint over the store's current head now and print it.
    Checkpoint,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token and the `token_sha256` line for the config.
    New { user: String },
}

/// Parses the command line, runs the command, prints any error once; returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => 0,
        Err(e) => {
            match &e {
                Error::Load(_) => errln!("{e}"),
                _ => errln!("error: {e}"),
            }
            e.exit_code()
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Validate { paths } => local::validate(&cli.config, &paths),
        Command::Plan {
            runbook,
            params,
            as_user,
            limit,
            targets,
        } => local::plan(
            &cli.config,
            &runbook,
            &params,
            as_user.as_deref(),
            &limit,
            targets,
            json,
        ),
        Command::Serve { listen } => serve::serve(&cli.config, listen).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    checkpoints,
                    key,
                },
        } => local::audit_verify(&cli.config, file.as_deref(), &checkpoints, key.as_deref()),
        Command::Audit {
            command: AuditCommand::Export { server: None, .. },
        } => local::audit_export(&cli.config),
        Command::Audit {
            command:
                AuditCommand::Export {
                    server: Some(server),
                    token,
                },
        } => client::audit_export(&ServerArgs { server, token }).await,
        Command::Audit {
            command: AuditCommand::Key,
        } => local::audit_key(&cli.config, json),
        Command::Audit {
            command: AuditCommand::Checkpoint,
        } => local::audit_checkpoint(&cli.config),
        Command::Token {
            command: TokenCommand::New { user },
        } => local::token_new(&user, json),
        Command::Report {
            from,
            to,
            party,
            format,
            out,
        } => local::report(
            &cli.config,
            &from,
            &to,
            party.as_deref(),
            format,
            out.as_deref(),
        ),
        Command::Store {
            command: StoreCommand::Migrate { to },
        } => local::store_migrate(&cli.config, &to),
        Command::Run {
            runbook,
            params,
            wait,
            break_glass,
            reason,
            limit,
            reference,
            server,
        } => {
            let req = client::RunRequest {
                runbook: &runbook,
                params: &params,
                break_glass,
                reason,
                limit: &limit,
                reference,
            };
            client::run(&server, req, wait, json).await
        }
        Command::Trigger {
            command: TriggerCommand::Test { name, payload },
        } => local::trigger_test(&cli.config, &name, &payload, json),
        Command::Approve {
            run,
            comment,
            digest,
            server,
        } => {
            client::decide(
                &server,
                &run,
                "approve",
                json!({"comment": comment}),
                digest,
                json,
            )
            .await
        }
        Command::Deny {
            run,
            reason,
            server,
        } => client::decide(&server, &run, "deny", json!({"reason": reason}), None, json).await,
        Command::Review {
            run,
            comment,
            server,
        } => client::review(&server, &run, &comment, json).await,
        Command::Approvals { server } => client::list(&server, "/api/v1/approvals", json).await,
        Command::Reviews { server } => client::list(&server, "/api/v1/reviews", json).await,
        Command::Next {
            runbook,
            from,
            count,
        } => local::next(&cli.config, &runbook, from.as_deref(), count, json),
        Command::Schedules { server } => client::schedules(&server, json).await,
        Command::Standing {
            runbook,
            period,
            digest,
            comment,
            server,
        } => client::standing(&server, &runbook, &period, digest, comment, json).await,
        Command::Cancel { run, server } => client::cancel(&server, &run, json).await,
        Command::Runs {
            status,
            reference,
            server,
        } => client::runs(&server, status.as_deref(), reference.as_deref(), json).await,
        Command::Show { run, server } => client::show(&server, &run, json).await,
        Command::Logs {
            run,
            follow,
            raw: true,
            host,
            stream,
            server,
        } if !follow => client::raw_logs(&server, &run, host.as_deref(), stream.as_deref()).await,
        Command::Logs {
            run,
            follow,
            server,
            ..
        } => client::logs(&server, &run, follow, json).await,
        Command::Freeze {
            targets,
            reason,
            server,
        } => client::freeze(&server, &targets, &reason, json).await,
        Command::Unfreeze { targets, server } => client::unfreeze(&server, &targets, json).await,
        Command::Frozen { server } => client::frozen(&server, json).await,
    }
}

use serde_json::json;

/// Parses `-p name=value` pairs into a JSON object of strings; the runbook's declared types
/// convert them.
pub fn parse_params(pairs: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("parameter `{p}` must be NAME=VALUE")))?;
        if k.is_empty() {
            return Err(Error::Usage(format!("parameter `{p}` has no name")));
        }
        out.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    Ok(out)
}
