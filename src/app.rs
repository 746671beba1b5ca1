//! The application: start-up (the local node, the root template, settling
//! what a crash left, the first reconcile), the background loops and serving.
//! Tests start it on port 0. The shared state itself is [`crate::state`].
//!
//! Background loops whose work is the cluster's (node monitor, sampler,
//! reconciler, desk pass, notices, alerts, the daily jobs, audit prune,
//! term, class time, idle stop) run through [`crate::lease::spawn_leased`],
//! so one server of several on a database runs each; the console closer,
//! the storage check, the desk watch and the node capabilities' reader run
//! on every server (the list and why: [`crate::lease`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::vms::VmState;

use crate::state::AppState;

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

impl Server {
    /// A clean stop: stops serving and the background loops, waits until
    /// the loops have ended, then hands this server's leases back, so
    /// another server takes the cluster-wide work over at once rather than
    /// a lease term later (src/lease.rs).
    pub async fn stop(mut self) {
        self.abort();
        for b in self.background.drain(..) {
            // Aborted: the error is the cancellation itself.
            let _ = b.await;
        }
        match self.state.leases.release_mine().await {
            Ok(n) => tracing::info!(leases = n, "leases handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "leases not handed back; they expire after their term")
            }
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
    match state.leases.settle_at_start().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            leases = n,
            "dropped the leases an earlier server process left"
        ),
        Err(e) => tracing::warn!(error = %e, "could not drop the leases an earlier server left"),
    }
    // The sweeps below settle what a killed server left in the shared data
    // dir; with another server alive that could be its work in progress,
    // so they run only on a server that starts alone (src/lease.rs).
    let alone = match state.leases.join().await {
        Ok(alone) => alone,
        Err(e) => {
            tracing::warn!(error = %e, "could not tell whether other servers run: start-up sweeps skipped");
            false
        }
    };
    state
        .nodes
        .ensure_local(&state.config.node_uri, &state.config.console_address)
        .await?;
    if alone {
        sweep_at_start(&state).await?;
    }
    crate::templates::ensure_root(&state.pool, &state.storage).await?;
    // Upgrade from a pvce without installation ids: its store pools are
    // adopted under this installation's names (src/installation).
    let adopted = state.vms.adopt_legacy_pools().await;
    if adopted > 0 {
        tracing::info!(adopted, "store pools of an older pvce adopted");
    }
    if alone {
        // With other servers running, their leased reconciler does this.
        if let Err(e) = state.vms.reconcile_once().await {
            tracing::warn!(error = %e, "initial reconcile failed");
        }
        if let Err(e) = state.leases.finish_start().await {
            tracing::warn!(error = %e, "start-up lease not handed back; it expires");
        }
    }
    let mut background = vec![
        state.leases.spawn_presence(),
        state
            .nodes
            .clone()
            .spawn_monitor(&state.health, &state.leases),
        state.nodes.clone().spawn_capabilities(&state.health),
        Arc::new(crate::monitor::Monitor::new(
            state.pool.clone(),
            state.nodes.clone(),
            Duration::from_secs(state.config.sample_interval_secs),
            state.names.template_pool.clone(),
            state.names.domain_prefix.clone(),
        ))
        .spawn(&state.health, &state.leases),
        state
            .vms
            .clone()
            .spawn_reconciler(&state.health, &state.leases),
        spawn_console_closer(&state),
        crate::upgrade::spawn_check(state.upgrade.clone(), &state.health, state.leases.clone()),
        spawn_space_check(&state),
        spawn_desk_pass(&state),
        spawn_desk_watch(&state),
    ];
    if state.config.notify_loop {
        background.push(spawn_notices(&state));
    }
    background.extend(spawn_alerts_and_inspection(&state));
    background.push(spawn_audit_prune(&state));
    background.push(spawn_term(&state));
    if state.config.class_interval_secs > 0 {
        background.push(spawn_class_time(&state));
        background.push(spawn_idle(&state));
    }
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

/// What a killed server left, settled before this server serves: uploads
/// in progress, template files, personal layers, unsent screenshots. Only
/// on a server that starts alone ([`crate::lease::Leases::join`]).
async fn sweep_at_start(state: &AppState) -> anyhow::Result<()> {
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
    // Layers an import, derive or flatten killed before its row left.
    let swept = crate::templates::sweep_at_start(&state.pool, &state.storage).await?;
    if swept != crate::templates::TemplateSweep::default() {
        tracing::warn!(
            temp_removed = swept.temp_removed,
            quarantined = ?swept.quarantined,
            "settled template files left by an interrupted operation"
        );
    }
    // Layers left by a crash (an enrolment killed midway) are settled before
    // anyone can start a VM on them.
    let swept = crate::vms::sweep_layers_at_start(&state.pool, &state.storage).await?;
    if swept != crate::vms::SweepReport::default() {
        tracing::warn!(
            published = swept.published,
            removed = swept.removed,
            temp_removed = swept.temp_removed,
            quarantined = ?swept.quarantined,
            "settled personal layers left by an interrupted operation"
        );
    }
    // Screenshots of reports never sent, and files a killed server left.
    if let Err(e) = state
        .desk
        .sweep_screenshots(time::OffsetDateTime::now_utc())
        .await
    {
        tracing::warn!(error = %e, "screenshot sweep failed");
    }
    Ok(())
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
/// close unrated; SLA escalation steps newly crossed are written;
/// screenshots never attached to a report are removed). The time
/// it acts on is the wall clock's, read here; the desk itself takes it as
/// an argument, so tests pass their own.
fn spawn_desk_pass(state: &AppState) -> tokio::task::JoinHandle<()> {
    let desk = state.desk.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "desk",
        crate::desk::PASS_INTERVAL,
        move || {
            let desk = desk.clone();
            async move {
                let now = time::OffsetDateTime::now_utc();
                // One failing does not keep the others from running.
                let closed = desk.close_unconfirmed(now).await.map(|_| ());
                let escalated = desk.escalate(now).await.map(|_| ());
                // Requests whose template got sealed (catch-up of the seal's own call).
                let sealed = desk.resolve_sealed_requests(now).await.map(|_| ());
                let swept = desk.sweep_screenshots(now).await.map(|_| ());
                closed.and(escalated).and(sealed).and(swept)
            }
        },
    )
}

/// The desk's notifications: new timeline entries become in-app rows and
/// deliveries, due deliveries are sent (the time is the wall clock's, read
/// here; tests call `Notices::run_once` with their own).
fn spawn_notices(state: &AppState) -> tokio::task::JoinHandle<()> {
    let notices = state.notices.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "notices",
        crate::desk::notices::INTERVAL,
        move || {
            let notices = notices.clone();
            async move { notices.run_once(time::OffsetDateTime::now_utc()).await }
        },
    )
}

/// Opens and annotates system incidents as nodes go down and come back,
/// and as VMs fail to start (supervised: restarted if it ever ends).
fn spawn_desk_watch(state: &AppState) -> tokio::task::JoinHandle<()> {
    let nodes = state.nodes.clone();
    let desk = state.desk.clone();
    let vms = state.vms.clone();
    crate::health::spawn_supervised(&state.health, "desk_watch", move || {
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = nodes.watch();
        let mut vm_events = vms.subscribe();
        let desk = desk.clone();
        async move {
            loop {
                tokio::select! {
                    c = changes.recv() => match c {
                        Ok(c) => {
                            if let Err(e) = desk.node_changed(c.node, c.up).await {
                                tracing::warn!(node = %c.node, error = %e, "system incident not written");
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "desk missed node changes");
                        }
                        Err(RecvError::Closed) => return,
                    },
                    ev = vm_events.recv() => match ev {
                        // A failed start ends stopped (or fenced).
                        Ok(ev) if matches!(ev.state, VmState::Stopped | VmState::NodeDown) => {
                            if let Err(e) = desk.vm_changed(ev.vm_id).await {
                                tracing::warn!(vm = %ev.vm_id, error = %e, "system incident not written");
                            }
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        }
    })
}

/// The alert loop, the nightly backup, the daily directory sync and the daily inspection's schedule, on the wall clock
/// (both services take the instant as an argument; tests pass their own).
fn spawn_alerts_and_inspection(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut out = Vec::new();
    if state.config.alert_interval_secs > 0 {
        let alerts = state.alerts.clone();
        out.push(crate::lease::spawn_leased(
            &state.health,
            &state.leases,
            "alerts",
            Duration::from_secs(state.config.alert_interval_secs),
            move || {
                let alerts = alerts.clone();
                async move {
                    alerts
                        .tick(time::OffsetDateTime::now_utc().unix_timestamp())
                        .await
                        .map(|_| ())
                }
            },
        ));
    }
    if state.backups.configured() && state.config.backup_at.minute_of_day().is_some() {
        let backups = state.backups.clone();
        out.push(spawn_daily(state, "backup", move |now, since| {
            let backups = backups.clone();
            async move { backups.run_if_due(now, since).await.map(|_| ()) }
        }));
    }
    if state.config.directory_sync_at.0.is_some() && state.sso.directories().next().is_some() {
        let directory = state.directory.clone();
        out.push(spawn_daily(state, "directory_sync", move |now, since| {
            let directory = directory.clone();
            async move { directory.run_if_due(now, since).await.map(|_| ()) }
        }));
    }
    if let Some(minute) = state.config.inspection_at.minute_of_day() {
        let inspections = state.inspections.clone();
        out.push(spawn_daily(state, "inspection", move |now, since| {
            let inspections = inspections.clone();
            async move { inspections.run_if_due(now, since, minute).await.map(|_| ()) }
        }));
    }
    out
}

/// A job that runs at a time of day: `pass(now, since)` every
/// [`crate::inspection::POLL`] on the wall clock, `since` being when the loop
/// started (each service's `run_if_due` decides from both whether it is due).
fn spawn_daily<F, Fut, E>(
    state: &AppState,
    name: &'static str,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(i64, i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display + Send,
{
    let since = time::OffsetDateTime::now_utc().unix_timestamp();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        name,
        crate::inspection::POLL,
        move || pass(time::OffsetDateTime::now_utc().unix_timestamp(), since),
    )
}

/// The class-time loop (src/classtime/class.rs) on the wall clock.
fn spawn_class_time(state: &AppState) -> tokio::task::JoinHandle<()> {
    let class = state.class.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "class_time",
        Duration::from_secs(state.config.class_interval_secs),
        move || {
            let class = class.clone();
            async move {
                class
                    .tick(time::OffsetDateTime::now_utc())
                    .await
                    .map(|_| ())
            }
        },
    )
}

/// The idle auto-stop (src/idle/) on the wall clock, as often as the
/// class-time loop.
fn spawn_idle(state: &AppState) -> tokio::task::JoinHandle<()> {
    let idle = state.idle.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "idle_stop",
        Duration::from_secs(state.config.class_interval_secs),
        move || {
            let idle = idle.clone();
            async move { idle.tick(time::OffsetDateTime::now_utc()).await.map(|_| ()) }
        },
    )
}

/// Ends console sessions when their VM stops or their node stops answering
/// (supervised: restarted if it ever ends).
fn spawn_console_closer(state: &AppState) -> tokio::task::JoinHandle<()> {
    let console = state.console.clone();
    crate::health::spawn_supervised(&state.health, "console_closer", move || {
        let console = console.clone();
        async move { console.close_ended_sessions().await }
    })
}

/// The end-of-term pass (archive at the end date, erase after the
/// retention) on the wall clock; `Term::tick` takes the instant, tests pass
/// their own.
fn spawn_term(state: &AppState) -> tokio::task::JoinHandle<()> {
    let term = state.term.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "term",
        crate::term::INTERVAL,
        move || {
            let term = term.clone();
            async move { term.tick(time::OffsetDateTime::now_utc()).await.map(|_| ()) }
        },
    )
}

/// The audit log's daily prune on the wall clock (`Audit::prune` takes the
/// instant as an argument; tests pass their own).
fn spawn_audit_prune(state: &AppState) -> tokio::task::JoinHandle<()> {
    let audit = state.audit.clone();
    crate::lease::spawn_leased(
        &state.health,
        &state.leases,
        "audit_prune",
        crate::audit::retention::PRUNE_INTERVAL,
        move || {
            let audit = audit.clone();
            async move {
                audit
                    .prune(time::OffsetDateTime::now_utc())
                    .await
                    .map(|_| ())
            }
        },
    )
}
