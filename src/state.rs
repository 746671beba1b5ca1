//! The application state: the domain services every request handler shares,
//! and their wiring from the settings (opening storage and the database,
//! running migrations). Nothing here serves or runs in the background; that
//! is [`crate::app`]. `http/` depends on this module, never the other way.

use std::sync::Arc;

use crate::auth::SignIn;
use crate::config::Config;
use crate::console::ConsoleHub;
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
    pub console: Arc<ConsoleHub>,
    pub health: Arc<crate::health::Health>,
    /// The `storage` health check (free space, failed writes).
    pub space: Arc<crate::space::SpaceCheck>,
    /// The service desk.
    pub desk: Arc<crate::desk::Desk>,
    /// The periodic service reports.
    pub reports: Arc<crate::reports::Reports>,
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
        let sign_in = Arc::new(sign_in(&config, &storage)?);
        let nodes = Arc::new(
            Nodes::new(pool.clone(), config.connect_timeout(), config.accel)
                .with_address_policy(config.address_policy()),
        );
        let stores = Arc::new(crate::stores::Stores::new(
            pool.clone(),
            storage.clone(),
            nodes.clone(),
            config.template_pool.clone(),
        ));
        let vms = Arc::new(
            VmManager::new(
                pool.clone(),
                storage.clone(),
                nodes.clone(),
                stores,
                config.shutdown_timeout(),
                config.domain_prefix.clone(),
            )
            .with_disk_cache(config.disk_cache)
            .with_placement(config.placement_policy, config.host_reserve_mib)
            .with_layers(crate::vms::layers::Layers::new(
                pool.clone(),
                nodes.clone(),
                config.layer_storage,
                config.layer_pool.clone(),
                config.layer_pool_dir(),
            )),
        );
        let desk = Arc::new(
            crate::desk::Desk::new(pool.clone(), nodes.clone(), vms.clone(), storage.root())
                .with_confirm_days(config.desk_confirm_days),
        );
        Ok(Self {
            reports: Arc::new(crate::reports::Reports::new(pool.clone())),
            desk,
            pool,
            storage,
            nodes,
            vms,
            console: Arc::new(ConsoleHub::new(
                std::time::Duration::from_secs(config.console_token_ttl_secs),
                config.console_max_per_user,
                config.console_max_total,
            )),
            sign_in,
            health: Arc::new(crate::health::Health::new()),
            space: Arc::new(crate::space::SpaceCheck::new(
                &config.data_dir,
                &config.database_url(),
                config.min_free_mib,
            )),
            config: Arc::new(config),
        })
    }
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
