//! The restic command line, the one place that runs it.
//!
//! restic is told its repository and password through the environment
//! (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD_FILE`), never on the command line,
//! so neither shows in `ps` or a log; its cache lives under the backup
//! directory of the data dir. Every call has a deadline; output is read as
//! JSON where restic offers it. A failure keeps the last lines of restic's
//! stderr (which name what went wrong, never the password).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

/// Longest wait for one restic command (a nightly run of big layers takes
/// a while; a hung SFTP/S3 backend must not stall the loop forever).
const DEADLINE: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    #[error("restic is not installed (the Debian package `restic`)")]
    Missing,
    #[error("restic {command} failed: {detail}")]
    Failed {
        command: &'static str,
        detail: String,
    },
    #[error("restic {0} took too long")]
    TimedOut(&'static str),
    #[error("restic {command} gave unreadable output: {detail}")]
    Output {
        command: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Retention: how many snapshots `forget --prune` keeps per backed-up path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Default for Keep {
    fn default() -> Self {
        Keep {
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

/// One repository.
#[derive(Debug, Clone)]
pub struct Restic {
    repository: String,
    password_file: PathBuf,
    cache_dir: PathBuf,
}

/// What `restic backup --json` reports at the end.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub snapshot_id: String,
    /// Bytes the repository grew by (after deduplication).
    #[serde(default)]
    pub data_added: u64,
    /// Bytes read.
    #[serde(default)]
    pub total_bytes_processed: u64,
}

/// One snapshot of `restic snapshots --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl Restic {
    pub fn new(repository: String, password_file: PathBuf, cache_dir: PathBuf) -> Self {
        Self {
            repository,
            password_file,
            cache_dir,
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn command(&self) -> Command {
        let mut c = Command::new("restic");
        c.env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env("RESTIC_CACHE_DIR", &self.cache_dir)
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, name: &'static str, args: &[&str]) -> Result<Vec<u8>, ResticError> {
        let mut c = self.command();
        c.args(args);
        finish(name, c).await
    }

    /// Creates the repository unless it exists.
    pub async fn init_if_needed(&self) -> Result<(), ResticError> {
        // `cat config` succeeds exactly when the repository exists and the
        // password opens it; a wrong password must not lead to `init`.
        match self.run("cat config", &["cat", "config"]).await {
            Ok(_) => Ok(()),
            Err(ResticError::Failed { detail, .. })
                if detail.contains("does not exist")
                    || detail.contains("unable to open config file")
                    || detail.contains("Is there a repository at the following location") =>
            {
                self.run("init", &["init"]).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Backs up `paths` as one snapshot at `time` (Unix seconds, so the
    /// snapshot's time is the caller's instant), with `tags`.
    pub async fn backup(
        &self,
        paths: &[&Path],
        tags: &[String],
        time: i64,
    ) -> Result<Summary, ResticError> {
        let mut args = backup_args(tags, time);
        args.push("--".into());
        for p in paths {
            args.push(p.to_string_lossy().into_owned());
        }
        // restic reads TZ for `--time`; UTC is what we formatted.
        let mut c = self.command();
        c.env("TZ", "UTC").args(&args);
        let out = finish("backup", c).await?;
        summary(&out)
    }

    /// Backs up the content of the file `from` as if it were the file
    /// `as_path` (fed on stdin with `--stdin-filename`, which keeps the
    /// whole absolute path), so the snapshot has exactly the paths and tags
    /// a backup of `as_path` itself has: the same retention group, the same
    /// `dump` path. For a running VM's layer, read from a consistent copy.
    pub async fn backup_as(
        &self,
        from: &Path,
        as_path: &Path,
        tags: &[String],
        time: i64,
    ) -> Result<Summary, ResticError> {
        let mut args = backup_args(tags, time);
        args.push("--stdin".into());
        args.push("--stdin-filename".into());
        args.push(as_path.to_string_lossy().into_owned());
        let mut c = self.command();
        c.env("TZ", "UTC")
            .args(&args)
            .stdin(std::fs::File::open(from)?);
        let out = finish("backup", c).await?;
        summary(&out)
    }

    /// Removes stale locks (of a restic that died with the server); a
    /// live process's lock stays.
    pub async fn unlock(&self) -> Result<(), ResticError> {
        self.run("unlock", &["unlock"]).await.map(|_| ())
    }

    /// Every snapshot in the repository.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, ResticError> {
        let out = self.run("snapshots", &["snapshots", "--json"]).await?;
        serde_json::from_slice(&out).map_err(|e| ResticError::Output {
            command: "snapshots",
            detail: e.to_string(),
        })
    }

    /// Applies the retention to every backed-up path and prunes what no
    /// snapshot needs any more.
    pub async fn forget_prune(&self, keep: Keep) -> Result<(), ResticError> {
        let (d, w, m) = (
            keep.daily.to_string(),
            keep.weekly.to_string(),
            keep.monthly.to_string(),
        );
        self.run(
            "forget",
            &[
                "forget",
                "--prune",
                "--group-by",
                "host,paths",
                "--keep-daily",
                &d,
                "--keep-weekly",
                &w,
                "--keep-monthly",
                &m,
            ],
        )
        .await
        .map(|_| ())
    }

    /// Removes the given snapshots (an erased layer's) and prunes.
    pub async fn forget_ids(&self, ids: &[String]) -> Result<(), ResticError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["forget", "--prune"];
        args.extend(ids.iter().map(String::as_str));
        self.run("forget", &args).await.map(|_| ())
    }

    /// The repository's own consistency check.
    pub async fn check(&self) -> Result<(), ResticError> {
        self.run("check", &["check"]).await.map(|_| ())
    }

    /// Writes the file `path` of snapshot `id` to `to`.
    pub async fn dump(&self, id: &str, path: &str, to: &Path) -> Result<(), ResticError> {
        let file = std::fs::File::create(to)?;
        let mut c = self.command();
        c.args(["dump", "--", id, path]).stdout(file);
        finish("dump", c).await.map(|_| ())
    }

    /// Restores the whole snapshot `id` under `target` (paths kept).
    pub async fn restore(&self, id: &str, target: &Path) -> Result<(), ResticError> {
        let t = target.to_string_lossy();
        self.run("restore", &["restore", id, "--target", &t])
            .await
            .map(|_| ())
    }
}

/// The common arguments of `restic backup`: JSON output, our host name,
/// the snapshot time `time` (Unix seconds, written in UTC) and the tags.
fn backup_args(tags: &[String], time: i64) -> Vec<String> {
    let at =
        time::OffsetDateTime::from_unix_timestamp(time).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--json".into(),
        "--host".into(),
        "pvce".into(),
        "--time".into(),
        stamp,
    ];
    for t in tags {
        args.push("--tag".into());
        args.push(t.clone());
    }
    args
}

/// The summary line of `restic backup --json` (the last JSON line whose
/// `message_type` is `summary`).
fn summary(stdout: &[u8]) -> Result<Summary, ResticError> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .rev()
        .filter(|l| l.contains("\"summary\""))
        .find_map(|l| serde_json::from_str::<Summary>(l).ok())
        .ok_or_else(|| ResticError::Output {
            command: "backup",
            detail: "no summary line".into(),
        })
}

/// Runs `c` under the deadline: its stdout when it exits 0; a missing
/// binary, a timeout or a failure (with the end of its stderr) as errors.
async fn finish(name: &'static str, mut c: Command) -> Result<Vec<u8>, ResticError> {
    let child = match c.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ResticError::Missing),
        Err(e) => return Err(e.into()),
    };
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| ResticError::TimedOut(name))??;
    if !out.status.success() {
        return Err(ResticError::Failed {
            command: name,
            detail: tail(&out.stderr),
        });
    }
    Ok(out.stdout)
}

/// The last few lines of stderr, for the error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let mut s = lines[start..].join(" | ");
    if s.len() > 500 {
        let mut cut = 500;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() { "no detail".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        let out = br#"{"message_type":"status","percent_done":1}
{"message_type":"summary","data_added":12,"total_bytes_processed":30,"snapshot_id":"e663a459"}
"#;
        let s = summary(out).expect("summary");
        assert_eq!(
            (
                s.snapshot_id.as_str(),
                s.data_added,
                s.total_bytes_processed
            ),
            ("e663a459", 12, 30)
        );
        assert!(summary(b"{\"message_type\":\"status\"}").is_err());
    }

    #[test]
    fn keeps_the_last_lines_of_stderr() {
        assert_eq!(tail(b"a\n\nb\nc\nd\n"), "b | c | d");
        assert_eq!(tail(b""), "no detail");
    }
}
