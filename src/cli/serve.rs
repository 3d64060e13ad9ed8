//! `tandem serve`: the daemon.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::audit::anchor::AuditKey;
use crate::audit::{Actor, Event};
use crate::error::{Error, Result};
use crate::run::App;
use crate::store::Store;
use crate::witness::Anchor;

/// How long a stopping daemon waits for witnesses to take its shutdown checkpoint.
const SHUTDOWN_CHECKPOINT_WAIT: Duration = Duration::from_secs(15);

pub async fn serve(config_path: &Path, listen: Option<String>) -> Result<()> {
    let (config, catalog) = super::local::load(config_path, &[])?;
    // Opening a PostgreSQL store blocks (and may wait for the database): off the workers.
    let store_config = config.clone();
    let store = tokio::task::spawn_blocking(move || Store::for_config(&store_config))
        .await
        .map_err(|e| Error::Usage(format!("startup task failed: {e}")))??;
    let listen = listen.unwrap_or_else(|| config.listen.clone());
    let versions: serde_json::Map<String, serde_json::Value> = catalog
        .runbooks
        .values()
        .map(|rb| (rb.name.clone(), json!(rb.version)))
        .collect();
    let config_sha = config.sha256.clone();
    let calendar_shas = calendar_digests(&config);
    // Bind first so links in prompts can name the real address (port 0 in tests).
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listening socket", e))?;
    // The key that signs audit checkpoints, made on the first start (SPEC §8).
    let state_dir = config.state_dir.clone();
    let key = tokio::task::spawn_blocking(move || AuditKey::load_or_create(&state_dir))
        .await
        .map_err(|e| Error::Usage(format!("startup task failed: {e}")))??;
    let app = App::new(config, catalog, store, &format!("http://{addr}"))?;

    // Rule 8: before accepting anything, settle what a crash left behind.
    let a = app.clone();
    let recovered = tokio::task::spawn_blocking(move || -> Result<usize> {
        let n = a.recover()?;
        // Rule 5 across restarts: what expired while the daemon was down is expired now.
        a.expire_due()?;
        a.store.audit(
            &Actor::system(),
            None,
            Event::ConfigLoaded,
            json!({"config_sha256": config_sha, "runbooks": versions, "calendars": calendar_shas}),
        )?;
        Ok(n)
    })
    .await
    .map_err(|e| Error::Usage(format!("startup task failed: {e}")))??;
    if recovered > 0 {
        tracing::warn!(
            runs = recovered,
            "runs interrupted by the last stop were marked interrupted"
        );
    }
    // Runs the last daemon accepted but did not start (approved while it drained) start now.
    let a = app.clone();
    let held = tokio::task::spawn_blocking(move || a.start_held())
        .await
        .map_err(|e| Error::Usage(format!("startup task failed: {e}")))??;
    if held > 0 {
        tracing::info!(
            runs = held,
            "runs approved while the last daemon drained are starting"
        );
    }

    let anchor = Anchor::new(app.clone(), key).await?;
    tokio::spawn(anchor.clone().run());
    tokio::spawn(expiry_loop(app.clone()));
    if let Some(cluster) = app.store.cluster() {
        tracing::info!(node = %cluster.node, "sharing the store with other nodes");
        tokio::spawn(lease_loop(app.clone(), cluster.lease));
    }
    tokio::spawn(app.clone().scheduler_loop());
    tokio::spawn(reload_loop(app.clone(), config_path.to_path_buf()));
    outln!("listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        axum::serve(listener, crate::server::router(app.clone())).with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
    let server = tokio::spawn(async move { server.await });

    shutdown_signal().await;
    tracing::warn!("stopping: no new runs; waiting for active runs to finish");
    app.drain().await;
    // The last word of this daemon's log goes to the witnesses before it stops.
    anchor.shutdown(SHUTDOWN_CHECKPOINT_WAIT).await;
    let _ = stop_tx.send(());
    // Open connections (a follower of a run still awaiting approval) get a moment to end.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// Expires pending approvals whose time is up, twice a second.
async fn expiry_loop(app: std::sync::Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = app.clone();
        match tokio::task::spawn_blocking(move || a.expire_due()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "expiring approvals failed"),
            Err(e) => tracing::error!(error = %e, "expiry task failed"),
        }
    }
}

/// How often a node looks for runs whose lease lapsed (at most): a dead node's runs are
/// taken over within `lease_timeout` plus this. The look is one read.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Several nodes (SPEC §10): every [`SWEEP_EVERY`] (or third of the lease, if shorter)
/// takes over the runs whose node stopped renewing their lease; every third of the lease
/// renews the leases of the runs this node executes (a write) and starts the runs another
/// node accepted but left queued (it drained), see [`App::take_up_held`].
async fn lease_loop(app: std::sync::Arc<App>, lease: Duration) {
    let sweep = (lease / 3).min(SWEEP_EVERY);
    let sweeps_per_renewal = ((lease / 3).as_millis() / sweep.as_millis().max(1)).max(1);
    let mut tick = tokio::time::interval(sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let mut sweeps: u128 = 0;
    loop {
        tick.tick().await;
        let renew = sweeps % sweeps_per_renewal == 0;
        sweeps = sweeps.wrapping_add(1);
        let a = app.clone();
        let seen = seen.clone();
        let pass = tokio::task::spawn_blocking(move || -> Result<usize> {
            if renew {
                a.store.renew_leases()?;
            }
            let taken = a.take_over_expired()?;
            if renew {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                a.take_up_held(&mut seen)?;
            }
            Ok(taken)
        })
        .await;
        match pass {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "renewing or sweeping leases failed"),
            Err(e) => tracing::error!(error = %e, "lease task failed"),
        }
    }
}

/// SHA-256 of each calendar's `.ics` file as in force, by calendar name, for `config_loaded`.
fn calendar_digests(config: &crate::config::Config) -> serde_json::Map<String, serde_json::Value> {
    config
        .calendars
        .iter()
        .filter_map(|(name, c)| c.ics.as_ref().map(|f| (name.clone(), json!(f.sha256))))
        .collect()
}

/// What the reload watcher compares: each watched file's length and modification time
/// (the config, the runbooks, and the calendars' `.ics` files).
fn fingerprint(
    config_path: &Path,
    config: &crate::config::Config,
) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let runbooks_dir = &config.runbooks_dir;
    let stat = |p: std::path::PathBuf| {
        let m = std::fs::metadata(&p).ok();
        let len = m.as_ref().map_or(0, |m| m.len());
        let modified = m.and_then(|m| m.modified().ok());
        (p, len, modified)
    };
    let mut out = vec![stat(config_path.to_path_buf())];
    if let Ok(entries) = std::fs::read_dir(runbooks_dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        out.extend(files.into_iter().map(stat));
    }
    out.extend(config.calendar_files().into_iter().map(stat));
    out
}

/// Reloads config and runbooks on SIGHUP and when their files change. A broken edit keeps
/// the last good version in force and is reported in the log and the audit log.
async fn reload_loop(app: std::sync::Arc<App>, config_path: std::path::PathBuf) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&config_path, &app.config());
    // Every 2 s a stat of each watched file: cheap for a few hundred runbooks; with
    // thousands, SIGHUP is the immediate path and the poll is spread out.
    let every = Duration::from_secs(if seen.len() > 1000 { 10 } else { 2 });
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let forced = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                _ = tick.tick() => false,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        #[cfg(not(unix))]
        let forced = {
            tick.tick().await;
            false
        };
        let now = fingerprint(&config_path, &app.config());
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let (a, path) = (app.clone(), config_path.clone());
        let outcome = tokio::task::spawn_blocking(move || -> Result<()> {
            let loaded = crate::config::Config::reload(&path, &a.config())
                .map_err(Error::from)
                .and_then(|(config, kept)| {
                    let catalog = crate::runbook::Catalog::load_dir(&config.runbooks_dir, &config)?;
                    Ok((config, catalog, kept))
                });
            match loaded {
                Ok((config, catalog, kept)) => {
                    // A calendar file that broke keeps its last good version, on record.
                    for k in &kept {
                        tracing::error!(calendar = %k.calendar, error = %k.error, "calendar file unreadable; its last good version stays in force");
                        a.store.audit(&Actor::system(), None, Event::CalendarReloadFailed, json!({"calendar": k.calendar, "errors": k.error.to_string(), "kept": "last good version"}))?;
                    }
                    let versions: serde_json::Map<String, serde_json::Value> =
                        catalog.runbooks.values().map(|rb| (rb.name.clone(), json!(rb.version))).collect();
                    let sha = config.sha256.clone();
                    // On record first: a config the audit log does not show never takes effect.
                    a.store.audit(&Actor::system(), None, Event::ConfigLoaded, json!({"config_sha256": sha, "runbooks": versions, "calendars": calendar_digests(&config), "reload": true}))?;
                    a.replace_loaded(config, catalog);
                    a.schedule_wake.notify_one();
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(errors = %e, "reload failed; the last good config and runbooks stay in force");
                    a.store.audit(&Actor::system(), None, Event::ConfigReloadFailed, json!({"errors": e.to_string()}))?;
                    Ok(())
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload could not be recorded; the last good config stays in force")
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; the last good config stays in force")
            }
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
