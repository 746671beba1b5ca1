//! Configuration shared by every subcommand.
//!
//! Every value comes from a command-line flag or the matching `PVCE_*`
//! environment variable, so `pvce user add --data-dir D` and
//! `pvce serve --data-dir D` always agree on the database and storage paths.

use std::path::PathBuf;
use std::time::Duration;

use crate::libvirt::{AccelSetting, AddressPolicy, DiskCache};
use crate::placement::Policy;
use crate::vms::layers::LayerStorage;

/// Settings common to all subcommands.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Directory holding the SQLite database, template layers and personal layers.
    #[arg(long, env = "PVCE_DATA_DIR", default_value = "/var/lib/pvce")]
    pub data_dir: PathBuf,

    /// Database URL; defaults to a SQLite file `pvce.db` inside the data dir.
    #[arg(long, env = "PVCE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// libvirt URI of the local node registered as `local` on first start.
    #[arg(long, env = "PVCE_NODE_URI", default_value = "qemu:///system")]
    pub node_uri: String,

    /// Accept `qemu+tcp://` nodes (libvirt without authentication or
    /// encryption): only for test rigs on a private network.
    #[arg(long, env = "PVCE_ALLOW_TCP_NODES", default_value_t = false)]
    pub allow_tcp_nodes: bool,

    /// Accept libvirt's fake `test:///default` driver as a node: tests only.
    #[arg(long, env = "PVCE_ALLOW_TEST_NODES", default_value_t = false)]
    pub allow_test_nodes: bool,

    /// Address the local node's VNC/SPICE consoles listen on (its management address).
    #[arg(long, env = "PVCE_CONSOLE_ADDRESS", default_value = "127.0.0.1")]
    pub console_address: String,

    /// Accelerator for QEMU nodes: `auto` uses KVM only with real hardware virtualization.
    #[arg(long, env = "PVCE_ACCEL", default_value = "auto", value_parser = parse_accel)]
    pub accel: AccelSetting,

    /// Host cache mode of VM disks: `writeback` works on any filesystem (tmpfs too);
    /// `none` (O_DIRECT) is what libvirt requires for live migration of VMs whose
    /// layers live on shared storage (several nodes).
    #[arg(long, env = "PVCE_DISK_CACHE", default_value = "writeback", value_parser = parse_disk_cache)]
    pub disk_cache: DiskCache,

    /// Largest accepted image upload, in bytes.
    #[arg(long, env = "PVCE_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Largest accepted virtual disk size of an imported image, in bytes.
    #[arg(long, env = "PVCE_MAX_VIRTUAL_SIZE", default_value_t = 256 * 1024 * 1024 * 1024)]
    pub max_virtual_size: u64,

    /// Seconds an ACPI shutdown may take before the VM is forced off.
    #[arg(long, env = "PVCE_SHUTDOWN_TIMEOUT", default_value_t = 60)]
    pub shutdown_timeout_secs: u64,

    /// Seconds a libvirt connection attempt may take before the node counts as unreachable.
    #[arg(long, env = "PVCE_CONNECT_TIMEOUT", default_value_t = 5)]
    pub connect_timeout_secs: u64,

    /// Base of the libvirt names pvce derives from its installation id
    /// (`<base>-<short id>-templates`, …; see src/installation).
    #[arg(long, env = "PVCE_LIBVIRT_PREFIX", default_value = "pvce")]
    pub libvirt_prefix: String,

    /// Prefix of the libvirt domain names pvce creates (`<prefix><vm-id>`);
    /// unset: `<libvirt prefix>-<short installation id>-`.
    #[arg(long, env = "PVCE_DOMAIN_PREFIX")]
    pub domain_prefix: Option<String>,

    /// Seconds a console token stays valid (it is single use).
    #[arg(long, env = "PVCE_CONSOLE_TOKEN_TTL", default_value_t = 60)]
    pub console_token_ttl_secs: u64,

    /// Seconds the one-time password in a `.vv` file (`GET /api/vms/{id}/console.vv`)
    /// works for a native viewer to connect (libvirt `passwdValidTo`).
    #[arg(long, env = "PVCE_CONSOLE_TICKET_TTL", default_value_t = 90, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub console_ticket_ttl_secs: u64,

    /// Concurrent console sessions allowed per user.
    #[arg(long, env = "PVCE_CONSOLE_MAX_PER_USER", default_value_t = 4)]
    pub console_max_per_user: usize,

    /// Concurrent console sessions allowed in total.
    #[arg(long, env = "PVCE_CONSOLE_MAX_TOTAL", default_value_t = 1000)]
    pub console_max_total: usize,

    /// The URL users reach pvce at (`https://lab.example.edu`), scheme and
    /// host[:port] only. Its origin is the server's own for Origin checks;
    /// with `https` the session cookie is `Secure` and `__Host-` prefixed.
    /// Unset: the origin is taken from each request's `Host` header.
    #[arg(long, env = "PVCE_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Trust `X-Forwarded-Proto` from the reverse proxy in front of pvce
    /// (only set this when every request comes through that proxy).
    #[arg(long, env = "PVCE_TRUST_FORWARDED_PROTO", default_value_t = false)]
    pub trust_forwarded_proto: bool,

    /// A bearer token `/metrics` requires (`Authorization: Bearer <token>`,
    /// Prometheus `authorization.credentials`); unset, `/metrics` is open to
    /// anyone who reaches it. Never logged.
    #[arg(long, env = "PVCE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Serve `/metrics` only on this separate address (`127.0.0.1:9464`),
    /// not on the main listener: the Prometheus convention, for a port only
    /// the monitoring network reaches.
    #[arg(long, env = "PVCE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Take the client's address from the last `X-Forwarded-For` entry (the one
    /// the reverse proxy in front of pvce appended) for the sign-in limits;
    /// without it every client behind the proxy shares the proxy's address.
    /// Only set this when every request comes through that proxy.
    #[arg(long, env = "PVCE_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Password checks run at once on the blocking pool (0: one per CPU core),
    /// so sign-ins never hold up the threads that answer everything else.
    #[arg(long, env = "PVCE_LOGIN_HASH_WORKERS", default_value_t = 0)]
    pub login_hash_workers: usize,

    /// Sign-ins that may wait for a password check; more at once answer 503
    /// `busy` with `Retry-After` (a class of 200 signing in at once fits).
    #[arg(long, env = "PVCE_LOGIN_HASH_QUEUE", default_value_t = crate::auth::DEFAULT_HASH_QUEUE)]
    pub login_hash_queue: usize,

    /// Failed sign-ins one source address (IPv6: its /64) may make in a burst
    /// before further sign-ins from it get 429 (README "Security notes": a
    /// campus NAT is hundreds of students, so this counts failures only and
    /// is generous; browsers that signed in before are not counted).
    #[arg(long, env = "PVCE_LOGIN_IP_BURST", default_value_t = crate::auth::DEFAULT_IP_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_ip_burst: u32,

    /// Failed sign-ins per minute a source address earns back after its burst.
    #[arg(long, env = "PVCE_LOGIN_IP_PER_MINUTE", default_value_t = crate::auth::DEFAULT_IP_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_ip_per_minute: u32,

    /// Benchmarks only: check passwords on the request's own thread, as
    /// before the blocking pool, to measure the difference (not a flag).
    #[arg(skip)]
    pub login_hash_inline: bool,

    /// Extra Origins allowed to open console WebSockets (comma-separated), besides the server's own.
    #[arg(long, env = "PVCE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Name of the libvirt storage pool that is each node's template store
    /// (a `dir` pool at the server's template directory path; see src/stores.rs);
    /// unset: `<libvirt prefix>-<short installation id>-templates`.
    #[arg(long, env = "PVCE_TEMPLATE_POOL")]
    pub template_pool: Option<String>,

    /// Where new personal VMs keep their layers: `shared` (the data dir's
    /// `overlays/`, mounted at the same path on every node: NFS/Gluster/Ceph;
    /// VMs run anywhere and live-migrate) or `node-local` (a libvirt volume on
    /// the node of the VM's first start; the VM is pinned there). Existing VMs
    /// keep the storage they were created with. See src/vms/layers.rs.
    #[arg(long, env = "PVCE_LAYER_STORAGE", default_value = "shared", value_parser = parse_layer_storage)]
    pub layer_storage: LayerStorage,

    /// Name of the libvirt storage pool holding node-local layers on each node;
    /// unset: `<libvirt prefix>-<short installation id>-layers`.
    #[arg(long, env = "PVCE_LAYER_POOL")]
    pub layer_pool: Option<String>,

    /// Directory of that pool on every node (same path everywhere; default
    /// `<data dir>/node-layers`).
    #[arg(long, env = "PVCE_LAYER_POOL_DIR")]
    pub layer_pool_dir: Option<PathBuf>,

    /// How a start picks among the nodes that can take the VM: `spread` (most
    /// free memory: VMs spread over the cluster, the default), `pack` (least
    /// free memory that fits: fills nodes one by one so the others can be
    /// powered down), `load-aware` (lowest recent CPU). See src/placement.rs.
    #[arg(long, env = "PVCE_PLACEMENT_POLICY", default_value = "spread", value_parser = parse_policy)]
    pub placement_policy: Policy,

    /// Memory (MiB) placement keeps free on every node for the host itself
    /// (libvirtd, QEMU's own overhead, page tables): a VM goes only where its
    /// memory plus this reserve is free.
    #[arg(long, env = "PVCE_HOST_RESERVE_MIB", default_value_t = crate::placement::DEFAULT_HOST_RESERVE_MIB)]
    pub host_reserve_mib: u64,

    /// VXLAN ids (`FIRST-LAST`) for students' lab networks that span nodes
    /// (src/labnets.rs). Installations whose nodes share an underlay need
    /// disjoint ranges: one VNI is one segment.
    #[arg(long, env = "PVCE_LAB_VNI_RANGE", default_value = "4096-1048575", value_parser = parse_vni_range)]
    pub lab_vni_range: crate::labnets::VniRange,

    /// Seconds between two load samples of every node (history charts, load-aware placement).
    #[arg(long, env = "PVCE_SAMPLE_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub sample_interval_secs: u64,

    /// Free space (MiB) below which the data dir (or the database's
    /// directory) counts as full: `/healthz` reports `degraded` (see src/space.rs).
    #[arg(long, env = "PVCE_MIN_FREE_MIB", default_value_t = crate::space::DEFAULT_MIN_FREE_MIB)]
    pub min_free_mib: u64,

    /// Days a resolved ticket waits for its reporter to confirm or reopen it
    /// before it closes unrated (the service desk, src/desk/).
    #[arg(long, env = "PVCE_DESK_CONFIRM_DAYS", default_value_t = crate::desk::DEFAULT_CONFIRM_DAYS, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub desk_confirm_days: u32,

    /// Days audit-log entries are kept before the daily prune removes them
    /// (0: kept for ever). See src/audit/.
    #[arg(long, env = "PVCE_AUDIT_RETENTION_DAYS", default_value_t = crate::audit::retention::DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub audit_retention_days: u32,

    /// The SMTP server notifications are mailed through (host name or
    /// address); unset: no e-mail is sent (in-app and webhooks still are).
    #[arg(long, env = "PVCE_SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// Its port (default 25, 587 or 465 after `--smtp-security`).
    #[arg(long, env = "PVCE_SMTP_PORT")]
    pub smtp_port: Option<u16>,

    /// `none` (a relay on this machine or a trusted network), `starttls`
    /// (required, the default) or `tls` (SMTPS from the first byte).
    #[arg(long, env = "PVCE_SMTP_SECURITY", default_value = "starttls", value_parser = parse_smtp_security)]
    pub smtp_security: crate::desk::notify::SmtpSecurity,

    /// The sender, e.g. `pvce 服务台 <desk@lab.example.edu>`.
    #[arg(long, env = "PVCE_SMTP_FROM", default_value = "pvce <pvce@localhost>")]
    pub smtp_from: String,

    /// The SMTP user name (with a password).
    #[arg(long, env = "PVCE_SMTP_USER")]
    pub smtp_user: Option<String>,

    /// The SMTP password, from the environment only (never a flag, so it
    /// does not show in `ps`); never logged.
    #[arg(skip = std::env::var("PVCE_SMTP_PASSWORD").ok().map(crate::desk::notify::mail::Secret::new))]
    pub smtp_password: Option<crate::desk::notify::mail::Secret>,

    /// A file holding the SMTP password (its first line), instead of
    /// `PVCE_SMTP_PASSWORD`.
    #[arg(long, env = "PVCE_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// A PEM CA certificate to trust for the SMTP server besides the public roots.
    #[arg(long, env = "PVCE_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,

    /// Webhooks that hear of every desk notification (comma-separated;
    /// `URL`, or `FORMAT:URL` with FORMAT json, text, markdown or chat).
    /// The URLs carry tokens: never logged.
    #[arg(long, env = "PVCE_NOTIFY_WEBHOOKS", value_delimiter = ',', value_parser = parse_webhook, hide_env_values = true)]
    pub notify_webhooks: Vec<crate::desk::notify::WebhookTarget>,

    /// The language of those webhooks' messages (`zh-CN` or `en`).
    #[arg(long, env = "PVCE_NOTIFY_WEBHOOK_LANG", default_value = "zh-CN", value_parser = parse_lang)]
    pub notify_webhook_lang: crate::desk::notify::Lang,

    /// URL prefixes users other than admins may point their own
    /// notification webhook at (comma-separated, e.g.
    /// `https://chat.lab.example.edu/hooks/`); none by default, so the
    /// server never posts into a network a user picks.
    #[arg(long, env = "PVCE_NOTIFY_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub notify_webhook_allow: Vec<String>,

    /// Tests only (not a flag): run the notifications loop. Tests that run
    /// its passes themselves, with their own clock, turn it off.
    #[arg(skip = true)]
    pub notify_loop: bool,
    /// Seconds of a lease's term (src/lease.rs): background work that runs
    /// once per cluster is taken over this long after its server dies.
    #[arg(long, env = "PVCE_LEASE_TERM_SECS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub lease_term_secs: u64,

    /// Seconds between two passes of the alert loop (src/alerts/service.rs);
    /// 0 turns the loop off (tests tick it with their own clock).
    #[arg(long, env = "PVCE_ALERT_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub alert_interval_secs: u64,

    /// Time of day (UTC, HH:MM) of the daily inspection (src/inspection/), or `off`.
    #[arg(long, env = "PVCE_INSPECTION_AT", default_value = "02:30")]
    pub inspection_at: crate::daily::TimeOfDay,

    /// Time of day (UTC, HH:MM) of the daily directory sync of the LDAP
    /// providers (src/directory/), or `off`.
    #[arg(long, env = "PVCE_DIRECTORY_SYNC_AT", default_value = "03:30")]
    pub directory_sync_at: crate::daily::TimeOfDay,

    /// Campus sign-in settings (TOML): the providers the login page offers
    /// and the rules from their attributes to roles (src/auth/providers.rs
    /// shows the format). Secrets live in files the settings name, never here.
    #[arg(long, env = "PVCE_AUTH_CONFIG")]
    pub auth_config: Option<PathBuf>,

    /// Lifetime of a login session, in hours.
    #[arg(long, env = "PVCE_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,

    /// Snapshots allowed per personal VM (at least 1; an import's backup counts too).
    #[arg(long, env = "PVCE_SNAPSHOT_QUOTA", default_value_t = crate::vms::snapshots::DEFAULT_QUOTA, value_parser = parse_quota)]
    pub snapshot_quota: usize,

    /// The restic repository backups go to (src/backup/): a directory, or
    /// `sftp:user@host:/path`, `s3:…`, `rest:…` as restic takes them (their
    /// credentials from restic's own environment variables). Unset: no backups.
    #[arg(long, env = "PVCE_BACKUP_REPO")]
    pub backup_repo: Option<String>,

    /// Time of day (UTC, HH:MM) of the nightly backup, or `off`.
    #[arg(long, env = "PVCE_BACKUP_AT", default_value = "02:00")]
    pub backup_at: crate::daily::TimeOfDay,

    /// Retention: daily, weekly and monthly backups kept (restic forget).
    #[arg(long, env = "PVCE_BACKUP_KEEP_DAILY", default_value_t = 7)]
    pub backup_keep_daily: u32,
    #[arg(long, env = "PVCE_BACKUP_KEEP_WEEKLY", default_value_t = 4)]
    pub backup_keep_weekly: u32,
    #[arg(long, env = "PVCE_BACKUP_KEEP_MONTHLY", default_value_t = 6)]
    pub backup_keep_monthly: u32,
    /// The lab's wall clock as an offset from UTC (`+08:00`): the timetable's
    /// sessions are entered and recur in it (src/classtime/).
    #[arg(long, env = "PVCE_LAB_UTC_OFFSET", default_value = "+08:00", value_parser = parse_utc_offset)]
    pub lab_utc_offset: time::UtcOffset,

    /// Minutes before a timetabled session its class's VMs are started.
    #[arg(long, env = "PVCE_CLASS_LEAD_MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=240))]
    pub class_lead_minutes: u32,

    /// Class pre-starts in flight at once per node (higher on KVM hosts than under TCG).
    #[arg(long, env = "PVCE_CLASS_STARTS_PER_NODE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub class_starts_per_node: u32,

    /// Video-wall screenshots in flight at once per node (each makes QEMU
    /// write its whole framebuffer). 8 refresh 40 tiles once a second on a
    /// 2-core TCG host (the wall_thumbs benchmark); 4 managed one in 1.4 s.
    #[arg(long, env = "PVCE_WALL_SHOTS_PER_NODE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub wall_shots_per_node: u32,

    /// Class pre-starts in flight at once in the whole cluster.
    #[arg(long, env = "PVCE_CLASS_STARTS_CLUSTER", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub class_starts_cluster: u32,

    /// Seconds a started guest counts as still starting (its boot) for the limits above.
    #[arg(long, env = "PVCE_CLASS_BOOT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=600))]
    pub class_boot_secs: u32,

    /// Seconds between two passes of the class-time loop; 0 turns it off
    /// (tests tick it with their own clock).
    #[arg(long, env = "PVCE_CLASS_INTERVAL", default_value_t = 15, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub class_interval_secs: u64,
}

/// A setting that must never reach a log: `Debug` prints `Secret(…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        // A header value carries visible ASCII only; an empty token would
        // make `Bearer ` match.
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be non-empty visible ASCII (no spaces)".into());
        }
        Ok(Secret(t.to_owned()))
    }
}

/// `scheme://host[:port]` with scheme http or https, no path, query or user
/// info; a trailing `/` is dropped. Returned in the form Origin headers use.
fn parse_public_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let (scheme, rest) = t
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not a URL like https://lab.example.edu"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "public URL scheme must be http or https, not {scheme:?}"
        ));
    }
    let ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(format!(
            "public URL must be scheme://host[:port] without path, query or user info: {s:?}"
        ));
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

fn parse_smtp_security(s: &str) -> Result<crate::desk::notify::SmtpSecurity, String> {
    use crate::desk::notify::SmtpSecurity as S;
    match s {
        "none" => Ok(S::None),
        "starttls" => Ok(S::Starttls),
        "tls" => Ok(S::Tls),
        other => Err(format!(
            "unknown SMTP security {other:?}; use none, starttls or tls"
        )),
    }
}

/// `+08:00`, `-05:30`, `Z`.
fn parse_utc_offset(s: &str) -> Result<time::UtcOffset, String> {
    let t = s.trim();
    if t == "Z" || t == "UTC" {
        return Ok(time::UtcOffset::UTC);
    }
    time::UtcOffset::parse(
        t,
        time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
    )
    .map_err(|_| format!("{s:?} is not an offset from UTC like +08:00"))
}

fn parse_lang(s: &str) -> Result<crate::desk::notify::Lang, String> {
    match s {
        "zh-CN" | "en" => Ok(crate::desk::notify::Lang::from_tag(s)),
        other => Err(format!("unknown language {other:?}; use zh-CN or en")),
    }
}

/// `URL` or `FORMAT:URL`; the error never repeats the URL (it holds a token).
fn parse_webhook(s: &str) -> Result<crate::desk::notify::WebhookTarget, String> {
    use crate::desk::notify::{WebhookFormat as F, WebhookTarget};
    let s = s.trim();
    let (format, url) = match s.split_once(':') {
        Some(("json", u)) => (F::Json, u),
        Some(("text", u)) => (F::Text, u),
        Some(("markdown", u)) => (F::Markdown, u),
        Some(("chat", u)) => (F::Chat, u),
        _ => (F::Json, s),
    };
    let t = WebhookTarget {
        url: url.to_owned(),
        format,
    };
    t.validate().map_err(|_| {
        "a webhook must be an http(s) URL, optionally after json:, text:, markdown: or chat:"
            .to_string()
    })?;
    Ok(t)
}

fn parse_accel(s: &str) -> Result<AccelSetting, String> {
    match s {
        "auto" => Ok(AccelSetting::Auto),
        "kvm" => Ok(AccelSetting::Kvm),
        "tcg" => Ok(AccelSetting::Tcg),
        other => Err(format!(
            "unknown accelerator {other:?}; use auto, kvm or tcg"
        )),
    }
}

/// A quota of 0 would make the snapshot feature unusable without saying so;
/// refuse it at start-up instead.
fn parse_quota(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("the snapshot quota must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn parse_layer_storage(s: &str) -> Result<LayerStorage, String> {
    LayerStorage::parse(s)
        .ok_or_else(|| format!("unknown layer storage {s:?}; use shared or node-local"))
}

fn parse_vni_range(s: &str) -> Result<crate::labnets::VniRange, String> {
    crate::labnets::VniRange::parse(s)
        .ok_or_else(|| format!("bad VNI range {s:?}; use FIRST-LAST within 1-16777215"))
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s)
        .ok_or_else(|| format!("unknown placement policy {s:?}; use spread, pack or load-aware"))
}

fn parse_disk_cache(s: &str) -> Result<DiskCache, String> {
    match s {
        "writeback" => Ok(DiskCache::Writeback),
        "none" => Ok(DiskCache::None),
        other => Err(format!(
            "unknown disk cache mode {other:?}; use writeback or none"
        )),
    }
}

impl Config {
    /// A configuration with defaults for everything but the data dir (used by tests).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database_url: None,
            node_uri: "qemu:///system".into(),
            allow_tcp_nodes: false,
            allow_test_nodes: false,
            console_address: "127.0.0.1".into(),
            accel: AccelSetting::Auto,
            disk_cache: DiskCache::Writeback,
            max_upload_bytes: 20 * 1024 * 1024 * 1024,
            max_virtual_size: 256 * 1024 * 1024 * 1024,
            shutdown_timeout_secs: 60,
            connect_timeout_secs: 5,
            libvirt_prefix: "pvce".into(),
            domain_prefix: None,
            console_token_ttl_secs: 60,
            console_ticket_ttl_secs: 90,
            console_max_per_user: 4,
            console_max_total: 1000,
            allowed_origins: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            public_url: None,
            trust_forwarded_proto: false,
            trust_forwarded_for: false,
            login_hash_workers: 0,
            login_hash_queue: crate::auth::DEFAULT_HASH_QUEUE,
            login_ip_burst: crate::auth::DEFAULT_IP_BURST,
            login_ip_per_minute: crate::auth::DEFAULT_IP_PER_MINUTE,
            login_hash_inline: false,
            min_free_mib: crate::space::DEFAULT_MIN_FREE_MIB,
            session_hours: 12,
            auth_config: None,
            desk_confirm_days: crate::desk::DEFAULT_CONFIRM_DAYS,
            audit_retention_days: crate::audit::retention::DEFAULT_DAYS,
            smtp_host: None,
            smtp_port: None,
            smtp_security: crate::desk::notify::SmtpSecurity::Starttls,
            smtp_from: "pvce <pvce@localhost>".into(),
            smtp_user: None,
            smtp_password: None,
            smtp_password_file: None,
            smtp_ca_file: None,
            notify_webhooks: Vec::new(),
            notify_webhook_lang: crate::desk::notify::Lang::ZhCn,
            notify_webhook_allow: Vec::new(),
            notify_loop: true,
            snapshot_quota: crate::vms::snapshots::DEFAULT_QUOTA,
            lab_utc_offset: time::macros::offset!(+08:00),
            class_lead_minutes: 10,
            class_starts_per_node: 4,
            class_starts_cluster: 30,
            wall_shots_per_node: 8,
            class_boot_secs: 20,
            class_interval_secs: 15,
            alert_interval_secs: 60,
            lease_term_secs: 8,
            inspection_at: crate::daily::TimeOfDay(Some(150)),
            directory_sync_at: crate::daily::TimeOfDay(Some(210)),
            sample_interval_secs: 5,
            template_pool: None,
            layer_storage: LayerStorage::Shared,
            layer_pool: None,
            layer_pool_dir: None,
            placement_policy: Policy::Spread,
            host_reserve_mib: crate::placement::DEFAULT_HOST_RESERVE_MIB,
            lab_vni_range: crate::labnets::VniRange::default(),
            backup_repo: None,
            backup_at: crate::daily::TimeOfDay(Some(120)),
            backup_keep_daily: 7,
            backup_keep_weekly: 4,
            backup_keep_monthly: 6,
        }
    }

    /// The backup settings, when a repository is configured.
    pub fn backup_settings(&self) -> Option<crate::backup::Settings> {
        self.backup_repo
            .as_ref()
            .map(|repo| crate::backup::Settings {
                repository: repo.clone(),
                keep: crate::backup::restic::Keep {
                    daily: self.backup_keep_daily,
                    weekly: self.backup_keep_weekly,
                    monthly: self.backup_keep_monthly,
                },
            })
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("pvce.db").display()),
        }
    }

    /// The mail server settings, if one is configured (the password read
    /// from its file now).
    pub fn smtp_settings(&self) -> anyhow::Result<Option<crate::desk::notify::SmtpSettings>> {
        let Some(host) = &self.smtp_host else {
            return Ok(None);
        };
        let password = match &self.smtp_password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading the SMTP password file {}: {e}", path.display())
                })?;
                Some(crate::desk::notify::mail::Secret::new(
                    text.lines().next().unwrap_or_default(),
                ))
            }
            None => self.smtp_password.clone(),
        };
        Ok(Some(crate::desk::notify::SmtpSettings {
            host: host.clone(),
            port: self.smtp_port,
            security: self.smtp_security,
            from: self.smtp_from.clone(),
            username: self.smtp_user.clone(),
            password,
            ca_file: self.smtp_ca_file.clone(),
            timeout_secs: None,
        }))
    }

    /// The libvirt names of installation `installation`'s objects.
    pub fn libvirt_names(
        &self,
        installation: &crate::installation::Installation,
    ) -> crate::installation::LibvirtNames {
        crate::installation::names(
            &self.libvirt_prefix,
            &installation.short(),
            &crate::installation::NameOverrides {
                domain_prefix: self.domain_prefix.clone(),
                template_pool: self.template_pool.clone(),
                layer_pool: self.layer_pool.clone(),
            },
        )
    }

    /// The node-local layer pool's directory (same path on every node).
    pub fn layer_pool_dir(&self) -> PathBuf {
        self.layer_pool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("node-layers"))
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Which node transports beyond tls/ssh/local the server accepts.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_tcp: self.allow_tcp_nodes,
            allow_test: self.allow_test_nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_an_origin() {
        assert_eq!(
            parse_public_url("https://Lab.Example.edu/"),
            Ok("https://lab.example.edu".into())
        );
        assert_eq!(
            parse_public_url("http://10.0.0.5:8080"),
            Ok("http://10.0.0.5:8080".into())
        );
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("https://x/path").is_err());
        assert!(parse_public_url("https://u@x").is_err());
        assert!(parse_public_url("lab.example.edu").is_err());
    }

    #[test]
    fn secrets_parse_and_never_print() {
        let s: Secret = " s3cret-Token ".parse().expect("token");
        assert_eq!(s.expose(), "s3cret-Token");
        assert!(!format!("{s:?}").contains("s3cret"));
        let mut c = Config::for_data_dir("/d");
        c.metrics_token = Some(s);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!("".parse::<Secret>().is_err());
        assert!("a b".parse::<Secret>().is_err());
    }

    #[test]
    fn notification_settings_parse_and_keep_their_secrets() {
        use crate::desk::notify::WebhookFormat;
        let t = parse_webhook("chat:https://chat.lab.example/hooks/TOKEN123").expect("chat");
        assert_eq!(t.format, WebhookFormat::Chat);
        assert_eq!(t.url, "https://chat.lab.example/hooks/TOKEN123");
        let t = parse_webhook("https://x.example/h").expect("plain");
        assert_eq!(t.format, WebhookFormat::Json);
        let err = parse_webhook("ftp://x.example/SECRET").expect_err("not http");
        assert!(!err.contains("SECRET"), "{err}");
        assert!(parse_webhook("bogus:https://x.example/").is_err());
        assert!(parse_smtp_security("tls").is_ok() && parse_smtp_security("ssl").is_err());
        assert!(parse_lang("en").is_ok() && parse_lang("fr").is_err());

        let mut c = Config::for_data_dir("/d");
        c.notify_webhooks =
            vec![parse_webhook("https://chat.lab.example/hooks/TOKEN123").expect("ok")];
        c.smtp_host = Some("smtp.lab.example".into());
        c.smtp_password = Some(crate::desk::notify::mail::Secret::new("hunter2-pw"));
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("TOKEN123") && !dbg.contains("hunter2"),
            "{dbg}"
        );
        let s = c.smtp_settings().expect("settings").expect("configured");
        assert_eq!(s.password.expect("password").expose(), "hunter2-pw");
        c.smtp_host = None;
        assert!(c.smtp_settings().expect("settings").is_none());
    }

    #[test]
    fn the_lab_offset_parses_and_its_default_is_china() {
        use time::macros::offset;
        assert_eq!(parse_utc_offset("+08:00"), Ok(offset!(+08:00)));
        assert_eq!(parse_utc_offset("-05:30"), Ok(offset!(-05:30)));
        assert_eq!(parse_utc_offset("Z"), Ok(time::UtcOffset::UTC));
        for bad in ["8", "+8:00", "+0800", "", "+25:00"] {
            assert!(parse_utc_offset(bad).is_err(), "{bad:?}");
        }
        // The flags' defaults parse (clap runs the parsers on them).
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            config: Config,
        }
        use clap::Parser;
        let args = Args::try_parse_from(["pvce"]).expect("defaults parse");
        assert_eq!(args.config.lab_utc_offset, offset!(+08:00));
        assert_eq!(args.config.class_starts_per_node, 4);
    }

    #[test]
    fn snapshot_quota_must_be_positive() {
        assert_eq!(parse_quota("3"), Ok(3));
        assert!(parse_quota("0").is_err());
        assert!(parse_quota("-1").is_err());
        assert!(parse_quota("many").is_err());
    }

    #[test]
    fn placement_policies_parse_by_their_api_names() {
        assert_eq!(parse_policy("spread"), Ok(Policy::Spread));
        assert_eq!(parse_policy("pack"), Ok(Policy::Pack));
        assert_eq!(parse_policy("load-aware"), Ok(Policy::LoadAware));
        assert!(parse_policy("random").is_err());
        assert!(parse_policy("").is_err());
    }
}
