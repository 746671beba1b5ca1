//! The application: shared state, start-up (migrations, local node, root
//! template, background loops) and serving. Tests start it on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::SignIn;
use crate::config::Config;
use crate::console::{self, ConsoleHub};
use crate::db::{self, Pool};
use crate::nodes::Nodes;
use crate::storage::Storage;
use crate::vms::{VmManager, VmState};

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
            .with_layers(crate::layers::Layers::new(
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

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `--metrics-listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    handle: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and the background loops (VMs keep running on their nodes).
    pub fn abort(&self) {
        self.handle.abort();
        for b in &self.background {
            b.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Prepares state, registers the local node and the root template, reconciles
/// with libvirt, then serves on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: &str) -> anyhow::Result<Server> {
    let state = AppState::new(config).await?;
    // Nothing in uploads/ outlives its request: what is there was left by a
    // server that was killed mid-request.
    match state.storage.clean_uploads() {
        Ok((0, _)) => {}
        Ok((entries, bytes)) => {
            tracing::info!(
                entries,
                bytes,
                "removed what interrupted uploads left behind"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not clean the uploads directory"),
    }
    state
        .nodes
        .ensure_local(&state.config.node_uri, &state.config.console_address)
        .await?;
    crate::templates::ensure_root(&state.pool, &state.storage).await?;
    // Layers left by a crash (an enrolment killed midway) are settled before
    // anyone can start a VM on them.
    let swept = crate::vms::sweep_layers_at_start(&state.pool, &state.storage).await?;
    if swept != crate::vms::SweepReport::default() {
        tracing::warn!(
            published = swept.published,
            removed = swept.removed,
            quarantined = ?swept.quarantined,
            "settled personal layers left by an interrupted operation"
        );
    }
    if let Err(e) = state.vms.reconcile_once().await {
        tracing::warn!(error = %e, "initial reconcile failed");
    }
    let mut background = vec![
        state.nodes.clone().spawn_monitor(&state.health),
        Arc::new(crate::monitor::Monitor::new(
            state.pool.clone(),
            state.nodes.clone(),
            Duration::from_secs(state.config.sample_interval_secs),
            state.config.template_pool.clone(),
            state.config.domain_prefix.clone(),
        ))
        .spawn(&state.health),
        state.vms.clone().spawn_reconciler(&state.health),
        spawn_console_closer(&state),
        spawn_space_check(&state),
        spawn_desk_pass(&state),
    ];
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut metrics_addr = None;
    if let Some(metrics_listen) = &state.config.metrics_listen {
        let l = TcpListener::bind(metrics_listen).await?;
        metrics_addr = Some(l.local_addr()?);
        let router = crate::http::metrics_router(state.clone());
        background.push(tokio::spawn(crate::http::serve::serve(l, router)));
    }
    let router = crate::http::router(state.clone());
    // TCP_NODELAY on every accepted socket (console echoes must not wait
    // for ACKs), and hyper's own refusals in JSON: see src/http/serve.rs.
    let handle = tokio::spawn(crate::http::serve::serve(listener, router));
    Ok(Server {
        addr,
        metrics_addr,
        state,
        handle,
        background,
    })
}

/// The periodic `storage` health check (`statvfs` off the async threads: a
/// hung network file system must not stall the runtime).
fn spawn_space_check(state: &AppState) -> tokio::task::JoinHandle<()> {
    let (space, health) = (state.space.clone(), state.health.clone());
    crate::health::spawn_periodic(
        &state.health,
        crate::space::CHECK,
        crate::space::CHECK_INTERVAL,
        move || {
            let (space, health) = (space.clone(), health.clone());
            async move { tokio::task::spawn_blocking(move || space.refresh(&health)).await }
        },
    )
}

/// The service desk's periodic pass (resolved tickets nobody confirmed
/// close unrated). The time it acts on is the wall clock's, read here;
/// the desk itself takes it as an argument, so tests pass their own.
fn spawn_desk_pass(state: &AppState) -> tokio::task::JoinHandle<()> {
    let desk = state.desk.clone();
    crate::health::spawn_periodic(
        &state.health,
        "desk",
        crate::desk::PASS_INTERVAL,
        move || {
            let desk = desk.clone();
            async move {
                desk.close_unconfirmed(time::OffsetDateTime::now_utc())
                    .await
                    .map(|_| ())
            }
        },
    )
}

/// Ends console sessions when their VM stops or moves to another node
/// (supervised: restarted if it ever ends).
fn spawn_console_closer(state: &AppState) -> tokio::task::JoinHandle<()> {
    let vms = state.vms.clone();
    let hub = state.console.clone();
    crate::health::spawn_supervised(&state.health, "console_closer", move || {
        let mut events = vms.subscribe();
        let hub = hub.clone();
        async move {
            loop {
                match events.recv().await {
                    // Tokens issued before a restart name the old boot and are
                    // refused on redeem, so only stops need acting on here.
                    Ok(ev) if matches!(ev.state, VmState::Stopped | VmState::Error) => {
                        hub.end_vm(ev.vm_id, console::close::VM_STOPPED, "VM stopped");
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        }
    })
}
