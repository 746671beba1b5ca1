//! The application state: the domain services every request handler shares,
//! and their wiring from the settings (opening storage and the database,
//! running migrations). Nothing here serves or runs in the background; that
//! is [`crate::app`]. `http/` depends on this module, never the other way.

use std::sync::Arc;

use crate::auth::SignIn;
use crate::config::Config;
use crate::console::{Console, ConsoleHub};
use crate::db::{self, Pool};
use crate::nodes::Nodes;
use crate::storage::Storage;
use crate::vms::VmManager;

/// State shared by every request handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: Pool,
    pub config: Arc<Config>,
    pub storage: Storage,
    pub nodes: Arc<Nodes>,
    pub vms: Arc<VmManager>,
    pub sign_in: Arc<SignIn>,
    pub console: Arc<Console>,
    pub health: Arc<crate::health::Health>,
    /// This server's leases on the cluster-wide background work.
    pub leases: Arc<crate::lease::Leases>,
    /// Whether a newer pvce has superseded this server (src/upgrade.rs).
    pub upgrade: Arc<crate::upgrade::Upgrade>,
    /// The `storage` health check (free space, failed writes).
    pub space: Arc<crate::space::SpaceCheck>,
    /// The service desk.
    pub desk: Arc<crate::desk::Desk>,
    /// Snapshots of personal layers.
    pub snapshots: Arc<crate::vms::snapshots::Snapshots>,
    /// Export and import of personal layers.
    pub portable: Arc<crate::portable::Portable>,
    /// Collecting files from a course's VMs.
    pub collector: Arc<crate::collect::Collector>,
    /// Courses and enrolment.
    pub courses: Arc<crate::courses::Courses>,
    /// The desk's notifications (in-app, e-mail, webhooks).
    pub notices: Arc<crate::desk::notices::Notices>,
    /// Service levels (indicators, objectives, status).
    pub slo: Arc<crate::slo::Slo>,
    /// Alerts at levels and the daily inspection.
    pub alerts: Arc<crate::alerts::service::Alerts>,
    pub inspections: Arc<crate::inspection::Inspections>,
    /// The template library, and templates being built.
    pub templates: Arc<crate::templates::Templates>,
    pub builds: Arc<crate::builds::Builds>,
    /// The periodic service reports.
    pub reports: Arc<crate::reports::Reports>,
    /// Backups of personal layers and the control plane.
    pub backups: Arc<crate::backup::Backups>,
    /// Campus sign-in (providers and rules).
    pub sso: Arc<crate::auth::sso::Sso>,
    /// The LDAP directory sync.
    pub directory: Arc<crate::directory::DirectorySync>,
    /// The audit log (reading and retention; services record themselves).
    pub audit: Arc<crate::audit::Audit>,
    /// Class time: the courses' timetables.
    pub sessions: Arc<crate::classtime::Sessions>,
    /// Class time: pre-starts, the admission queue, the end of sessions.
    pub class: Arc<crate::classtime::class::ClassTime>,
    /// Usage metering and quotas (src/usage/).
    pub usage: Arc<crate::usage::Usage>,
    pub quotas: Arc<crate::usage::quota::Quotas>,
    /// Idle auto-stop (src/idle/).
    pub idle: Arc<crate::idle::Idle>,
    /// This installation's id and the libvirt names derived from it.
    pub installation: crate::installation::Installation,
    pub names: Arc<crate::installation::LibvirtNames>,
    /// The invariant check (`pvce fsck`).
    pub fsck: Arc<crate::fsck::Fsck>,
    /// A person's own data (the right of access).
    pub mydata: Arc<crate::mydata::MyData>,
    /// The end of a term: archive, erasure after the retention, holds.
    pub term: Arc<crate::term::Term>,
    /// The teacher's video wall, raised hands, presentations.
    pub wall: Arc<crate::wall::Wall>,
}

/// Opens storage and the database (running migrations) — what every subcommand needs.
pub async fn open(config: &Config) -> anyhow::Result<(Storage, Pool)> {
    let storage = Storage::open(&config.data_dir)?;
    let pool = db::connect(&config.database_url()).await?;
    Ok((storage, pool))
}

impl AppState {
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let (storage, pool) = open(&config).await?;
        let installation = crate::installation::Installation::load_or_create(&pool).await?;
        let names = config.libvirt_names(&installation);
        let leases = Arc::new(crate::lease::Leases::new(
            pool.clone(),
            crate::lease::holder_id(),
            std::time::Duration::from_secs(config.lease_term_secs),
        ));
        let sign_in = Arc::new(sign_in(&config, &storage)?);
        let nodes = Arc::new(
            Nodes::new(pool.clone(), config.connect_timeout(), config.accel)
                .with_address_policy(config.address_policy()),
        );
        let stores = Arc::new(
            crate::stores::Stores::new(
                pool.clone(),
                storage.clone(),
                nodes.clone(),
                names.template_pool.clone(),
            )
            .with_claim(crate::libvirt::PoolClaim {
                derived: names.template_pool_derived,
                legacy: names.legacy_template_pool.clone(),
            }),
        );
        let vms = Arc::new(
            VmManager::new(
                pool.clone(),
                storage.clone(),
                nodes.clone(),
                stores.clone(),
                config.shutdown_timeout(),
                names.domain_prefix.clone(),
            )
            .with_installation(installation.mark())
            .with_leases(leases.clone())
            .with_disk_cache(config.disk_cache)
            .with_placement(config.placement_policy, config.host_reserve_mib)
            .with_lab_vni_range(config.lab_vni_range)
            .with_layers(
                crate::vms::layers::Layers::new(
                    pool.clone(),
                    nodes.clone(),
                    config.layer_storage,
                    names.layer_pool.clone(),
                    config.layer_pool_dir(),
                )
                .with_claim(crate::libvirt::PoolClaim {
                    derived: names.layer_pool_derived,
                    legacy: names.legacy_layer_pool.clone(),
                }),
            ),
        );
        let desk = Arc::new(
            crate::desk::Desk::new(pool.clone(), nodes.clone(), vms.clone(), storage.root())
                .with_confirm_days(config.desk_confirm_days),
        );
        let snapshots = Arc::new(crate::vms::snapshots::Snapshots::new(
            vms.clone(),
            config.snapshot_quota,
        ));
        let portable = Arc::new(crate::portable::Portable::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
            crate::templates::ImportLimits {
                max_upload_bytes: config.max_upload_bytes,
                max_virtual_size: config.max_virtual_size,
            },
        ));
        let collector = Arc::new(crate::collect::Collector::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
        ));
        let courses = Arc::new(crate::courses::Courses::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
        ));
        let console = Arc::new(Console::new(
            ConsoleHub::new(
                pool.clone(),
                std::time::Duration::from_secs(config.console_token_ttl_secs),
                config.console_max_per_user,
                config.console_max_total,
            )
            .with_recorder(crate::slo::ConsoleRecorder::spawn(pool.clone())),
            pool.clone(),
            vms.clone(),
            nodes.clone(),
            std::time::Duration::from_secs(config.console_ticket_ttl_secs),
        ));
        let notices = Arc::new(notices(&config, &pool)?);
        let slo = Arc::new(crate::slo::Slo::new(pool.clone()));
        let alerts = Arc::new(
            crate::alerts::service::Alerts::new(
                pool.clone(),
                desk.clone(),
                storage.root().to_path_buf(),
            )
            .with_signals(slo.clone()),
        );
        let inspections = Arc::new(crate::inspection::Inspections::new(
            pool.clone(),
            nodes.clone(),
            desk.clone(),
            storage.clone(),
            stores,
            config.min_free_mib,
        ));
        let templates = Arc::new(crate::templates::Templates::new(
            pool.clone(),
            storage.clone(),
            crate::templates::ImportLimits {
                max_upload_bytes: config.max_upload_bytes,
                max_virtual_size: config.max_virtual_size,
            },
        ));
        let builds = Arc::new(crate::builds::Builds::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
            config.shutdown_timeout(),
        ));
        let backups = Arc::new(crate::backup::Backups::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
            config.backup_settings(),
            config.backup_at,
        ));
        let sso = Arc::new(sso(&config, &pool)?);
        sso.set_after_sign_in(courses.clone());
        let directory = Arc::new(crate::directory::DirectorySync::new(
            pool.clone(),
            sso.clone(),
            courses.clone(),
            config.directory_sync_at,
        ));
        let sessions = Arc::new(crate::classtime::Sessions::new(
            pool.clone(),
            config.lab_utc_offset,
        ));
        let usage = Arc::new(crate::usage::Usage::new(pool.clone(), sessions.clone()));
        // Every VM start passes the quotas (src/usage/quota.rs).
        vms.set_gate(Arc::new(crate::usage::quota::QuotaGate::new(
            pool.clone(),
            usage.clone(),
        )));
        let fsck = Arc::new(crate::fsck::Fsck::new(
            pool.clone(),
            storage.clone(),
            nodes.clone(),
            installation.mark(),
            names.layer_pool.clone(),
        ));
        let mydata = Arc::new(
            crate::mydata::MyData::new(pool.clone())
                .with_section(
                    "erasures",
                    "SELECT at, course_id, course_code, vm_id, vm_name, what, rule, bytes, backups_pruned
                     FROM erasures WHERE user_id = $1 ORDER BY at",
                )
                .with_section(
                    "holds",
                    "SELECT created_at, reason FROM term_holds WHERE user_id = $1",
                ),
        );
        let term = Arc::new(crate::term::Term::new(
            pool.clone(),
            vms.clone(),
            backups.clone(),
        ));
        let wall = Arc::new(crate::wall::Wall::new(
            pool.clone(),
            storage.clone(),
            vms.clone(),
            console.clone(),
            config.wall_shots_per_node as usize,
        ));
        tracing::info!(server_id = leases.holder(), "this server's lease holder id");
        let health = Arc::new(crate::health::Health::new());
        health.set_server_id(leases.holder());
        let upgrade = Arc::new(crate::upgrade::Upgrade::new(pool.clone()));
        Ok(Self {
            mydata,
            term,
            wall,
            backups,
            sso,
            directory,
            templates,
            builds,
            console,
            collector,
            courses,
            alerts,
            inspections,
            reports: Arc::new(crate::reports::Reports::new(pool.clone())),
            audit: Arc::new(crate::audit::Audit::new(
                pool.clone(),
                config.audit_retention_days,
            )),
            quotas: Arc::new(crate::usage::quota::Quotas::new(
                pool.clone(),
                usage.clone(),
            )),
            idle: Arc::new(
                crate::idle::Idle::load(pool.clone(), vms.clone(), usage.clone()).await?,
            ),
            usage,
            sessions: sessions.clone(),
            class: Arc::new(
                crate::classtime::class::ClassTime::load(
                    sessions,
                    vms.clone(),
                    nodes.clone(),
                    crate::classtime::class::ClassSettings {
                        limits: crate::classtime::admission::Limits {
                            per_node: config.class_starts_per_node,
                            cluster: config.class_starts_cluster,
                        },
                        lead: time::Duration::minutes(i64::from(config.class_lead_minutes)),
                        boot: time::Duration::seconds(i64::from(config.class_boot_secs)),
                    },
                )
                .await?,
            ),
            desk,
            snapshots,
            portable,
            notices,
            pool,
            storage,
            nodes,
            vms,
            slo,
            sign_in,
            health,
            leases,
            upgrade,
            space: Arc::new(crate::space::SpaceCheck::new(
                &config.data_dir,
                &config.database_url(),
                config.min_free_mib,
            )),
            config: Arc::new(config),
            fsck,
            installation,
            names: Arc::new(names),
        })
    }
}

/// The notification service from the settings: a mail server is checked
/// here (a wrong setting stops the start-up rather than losing mail later).
fn notices(config: &Config, pool: &Pool) -> anyhow::Result<crate::desk::notices::Notices> {
    use crate::desk::notify::{Mailer, Notifier, WebhookSender};
    let mailer = config
        .smtp_settings()?
        .map(|s| Mailer::new(&s))
        .transpose()?;
    let mail = mailer.is_some();
    let notifier = Notifier::new(
        mailer,
        WebhookSender::new(std::time::Duration::from_secs(10))?,
    );
    Ok(crate::desk::notices::Notices::new(
        pool.clone(),
        notifier,
        mail,
        crate::desk::notices::NoticeConfig {
            public_url: config.public_url.clone(),
            hooks: config.notify_webhooks.clone(),
            hooks_lang: config.notify_webhook_lang,
            allowed_webhooks: config.notify_webhook_allow.clone(),
            lab_offset: config.lab_utc_offset,
        },
    ))
}

/// Sign-in protection from the settings; the device-cookie key is kept in
/// the data dir so browsers stay recognised across restarts.
fn sign_in(config: &Config, storage: &Storage) -> anyhow::Result<SignIn> {
    use crate::auth::{device::DeviceKey, hashing::HashPool, throttle::Limits};
    let key = DeviceKey::load_or_create(&storage.root().join("device-cookie.key"))?;
    Ok(SignIn::new(
        Limits {
            ip_burst: config.login_ip_burst,
            ip_per_minute: config.login_ip_per_minute,
        },
        HashPool::new(config.login_hash_workers, config.login_hash_queue)
            .inline(config.login_hash_inline),
        key,
    ))
}

/// Campus sign-in from its settings file; a bad file stops the start-up.
fn sso(config: &Config, pool: &Pool) -> anyhow::Result<crate::auth::sso::Sso> {
    use crate::auth::providers::AuthSettings;
    let settings = match &config.auth_config {
        Some(path) => AuthSettings::load(path)?,
        None => AuthSettings::default(),
    };
    crate::auth::sso::Sso::new(
        pool.clone(),
        settings,
        std::time::Duration::from_secs(config.session_hours * 3600),
    )
}
