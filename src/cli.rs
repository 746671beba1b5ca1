//! The `pvce` command line. Every subcommand takes the same [`Config`] flags
//! (and `PVCE_*` variables), so they all share one data dir and database.

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::Role;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "pvce",
    version,
    about = "Virtualized lab-environment orchestrator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTP API, web UI, console proxy, node monitor).
    Serve {
        #[command(flatten)]
        config: Config,
        /// Address to listen on.
        #[arg(long, env = "PVCE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the template library.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// The LDAP directories of campus sign-in (src/directory/).
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Check the installation's invariants (src/fsck): orphan domains, VM
    /// records without layers, files without records, half-written files,
    /// broken template chains. Exit status 0: clean; 1: everything found was
    /// repaired; 2: findings are left.
    Fsck {
        #[command(flatten)]
        config: Config,
        /// Make the safe repairs (best with the server stopped). Orphan
        /// layers are moved to the data dir's quarantine, never deleted.
        #[arg(long)]
        repair: bool,
        /// The report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Judge files at least this old (younger ones may be being written
        /// by a running operation). 0 judges everything: right when the
        /// server is stopped, or idle after a crash.
        #[arg(long, default_value_t = crate::fsck::GRACE.as_secs())]
        grace_secs: u64,
    },
    /// The database itself (src/dbmove.rs).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Rebuild an installation from its backup repository onto an empty
    /// data dir (src/backup/install.rs).
    Restore {
        #[command(flatten)]
        config: Config,
        /// The restic repository the installation was backed up to.
        #[arg(long = "from")]
        from: String,
        /// The repository's password: a copy of the old data dir's
        /// `backup/restic-password`.
        #[arg(long)]
        password_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[command(flatten)]
        config: Config,
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Apply what the directories say now: accounts they removed or
    /// disabled are disabled (their sessions end), roles and course
    /// enrolments follow; prints what changed.
    Sync {
        #[command(flatten)]
        config: Config,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy the data dir's SQLite database (or `--database-url sqlite://…`)
    /// into an empty PostgreSQL database: every table in one transaction,
    /// row counts and key checksums verified before the commit. Stop the
    /// server first; afterwards start it with `--database-url` = the target.
    MigrateFromSqlite {
        #[command(flatten)]
        config: Config,
        /// The PostgreSQL database to fill (`postgres://user@host/db`); it
        /// must hold no data.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Build the templates declared in a templates-tree directory that are missing (idempotent).
    Build {
        #[command(flatten)]
        config: Config,
        /// The directory of template definitions.
        dir: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "role must be student, teacher, admin or staff".into())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen } => {
            let server = crate::app::start(config, &listen).await?;
            tracing::info!(url = %server.url(), "pvce serving");
            crate::logging::say(&format!("pvce listening on {}", server.url()));
            tokio::signal::ctrl_c().await?;
            server.stop().await;
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    config,
                    username,
                    role,
                    display_name,
                    password_stdin: _,
                },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let (_, pool) = crate::state::open(&config).await?;
            let user = crate::users::create(
                &pool,
                crate::users::NewUser {
                    username,
                    password,
                    role,
                    display_name,
                },
            )
            .await?;
            crate::logging::say(&format!(
                "created {} ({}) id {}",
                user.username,
                user.role.as_str(),
                user.id
            ));
            Ok(())
        }
        Command::Directory {
            command: DirectoryCommand::Sync { config, dry_run },
        } => {
            let state = crate::state::AppState::new(config).await?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let report = state
                .directory
                .requested(dry_run, crate::directory::Trigger::Command, now)
                .await?;
            for line in report.lines() {
                crate::logging::say(&line);
            }
            Ok(())
        }
        Command::Db {
            command: DbCommand::MigrateFromSqlite { config, to },
        } => {
            let report = crate::dbmove::migrate_from_sqlite(&config.database_url(), &to).await?;
            for t in &report.tables {
                crate::logging::say(&format!(
                    "{}: {} rows copied; verified: {} in SQLite = {} in PostgreSQL, key checksum {:016x} on both",
                    t.table, t.copied, t.source_rows, t.target_rows, t.checksum
                ));
            }
            crate::logging::say(&format!(
                "moved {} tables ({} rows) at schema version {}; start pvce with --database-url set to the target",
                report.tables.len(),
                report.tables.iter().map(|t| t.copied).sum::<u64>(),
                report.schema_version,
            ));
            Ok(())
        }
        Command::Restore {
            config,
            from,
            password_file,
        } => {
            let r = crate::backup::install::restore(&config, &from, &password_file).await?;
            crate::logging::say(&format!(
                "restored {} templates and {} personal layers into {}{}",
                r.templates,
                r.layers,
                config.data_dir.display(),
                if r.without_backup.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} VMs had no backup and start from a fresh layer",
                        r.without_backup.len()
                    )
                }
            ));
            Ok(())
        }
        Command::Fsck {
            config,
            repair,
            json,
            grace_secs,
        } => {
            let state = crate::state::AppState::new(config).await?;
            let report = state
                .fsck
                .run_with_grace(
                    std::time::SystemTime::now(),
                    std::time::Duration::from_secs(grace_secs),
                    repair,
                )
                .await?;
            let text = if json {
                serde_json::to_string_pretty(&report)?
            } else {
                report.to_text()
            };
            crate::logging::say(text.trim_end());
            let code = if report.is_clean() {
                0
            } else if report.unrepaired() == 0 {
                1
            } else {
                2
            };
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Templates {
            command: TemplatesCommand::Build { config, dir },
        } => {
            let (storage, pool) = crate::state::open(&config).await?;
            let limits = crate::templates::ImportLimits {
                max_upload_bytes: config.max_upload_bytes,
                max_virtual_size: config.max_virtual_size,
            };
            let report = crate::library::build(&pool, &storage, limits, &dir).await?;
            for line in report {
                crate::logging::say(&line);
            }
            Ok(())
        }
    }
}
