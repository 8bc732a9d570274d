//! Wiring and lifetime of one gateway (the composition root: nothing in the crate
//! imports it): builds the state, the wire layer and the HTTP router around a
//! backend, runs the dispatcher, and owns the single shutdown mechanism (a
//! [`CancellationToken`] every task selects on).
//!
//! Shutdown order: refuse new handshakes and mark not ready → disconnect every
//! socket (their clean-up removes presence) → stop the HTTP server → exit, all
//! within `shutdown_deadline`.

use crate::config::GatewayConfig;
use crate::listener::{self, Tls};
use crate::presence::Coalescer;
use crate::state::{Backend, Shared};
use crate::subscriptions::Subscriptions;
use crate::{dispatch, http, socket};
use confab_backend::EventReceiver;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A gateway ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    wire: confab_sio::Server,
    /// The backend's own shutdown, run after the sessions' clean-up, inside the
    /// deadline.
    backend_shutdown: Option<futures_util::future::BoxFuture<'static, ()>>,
    app: axum::Router,
    events: EventReceiver,
    commands: dispatch::CommandReceiver,
    /// The public listener's TLS, once loaded (see [`Gateway::load_tls`]).
    tls: Option<Arc<Tls>>,
}

/// A gateway serving in the background (used by tests and benchmarks).
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        auth: Arc<crate::auth::Auth>,
        backend: Backend,
        events: EventReceiver,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let wire_config = confab_sio::Config {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.limits.max_payload.saturating_mul(4),
            max_buffer_bytes: config.socket_buffer_bytes,
            ws_read_buffer: config.ws_read_buffer,
            ..confab_sio::Config::default()
        };
        let Backend {
            broker,
            presence,
            access,
            status,
        } = backend;
        let (dispatcher, commands) = tokio::sync::mpsc::unbounded_channel();
        let ip_slots = crate::conncap::IpSlots::new(config.max_connections_per_ip);
        let shared = Arc::new(Shared {
            sessions: Default::default(),
            dispatcher,
            subs: Subscriptions::new(broker.clone()),
            config,
            auth,
            broker,
            presence,
            access,
            status,
            admin: Default::default(),
            local: Default::default(),
            ip_slots,
            readiness: Default::default(),
            quota_view: Default::default(),
            shutdown: CancellationToken::new(),
            metrics,
            dispatch_lag: Default::default(),
            sender_heat: Default::default(),
            probe_key: confab_auth::random_id("probe-"),
            tasks: Default::default(),
        });
        let allowed = shared.config.allowed_origins.clone();
        // Engine.IO sessions per client address: twice the connection cap, so
        // sessions that never join the namespace (which the connection cap, taken
        // at the Socket.IO handshake, does not see) are bounded too.
        let sessions_per_ip = shared.config.max_connections_per_ip.saturating_mul(2);
        let engine_slots = crate::conncap::IpSlots::new(sessions_per_ip);
        let trusted = shared.config.trusted_proxies.clone();
        let wire = confab_sio::Server::builder(wire_config)
            .admission(move |peer| {
                let Some(ip) = crate::conncap::client_ip(peer, &trusted) else {
                    return Ok(None);
                };
                match engine_slots.take(ip) {
                    Some(slot) => Ok(Some(Box::new(slot) as confab_sio::Guard)),
                    None => Err(format!(
                        "too many sessions from your address (at most {sessions_per_ip})"
                    )),
                }
            })
            .origin_check(move |origin, host| crate::config::origin_allowed(&allowed, origin, host))
            .ns(
                "/",
                socket::ChatNamespace {
                    shared: Arc::downgrade(&shared),
                },
            )
            .build();
        let app = http::router(shared.clone()).merge(wire.router("/socket.io"));
        Self {
            shared,
            wire,
            backend_shutdown: None,
            app,
            events,
            commands,
            tls: None,
        }
    }

    /// Load the TLS certificate and key named in the configuration (once; `None`
    /// without TLS). The handle reloads them ([`Tls::reload`], e.g. on SIGHUP).
    /// [`Gateway::run`] loads them itself when this was not called.
    pub fn load_tls(&mut self) -> std::io::Result<Option<Arc<Tls>>> {
        if self.tls.is_none() {
            self.tls = Tls::from_config(&self.shared.config)?;
        }
        Ok(self.tls.clone())
    }

    /// Run `f` (e.g. removing this gateway's heartbeat from Redis) once every
    /// session is cleaned up, inside the shutdown deadline.
    pub fn on_backend_shutdown(mut self, f: impl Future<Output = ()> + Send + 'static) -> Self {
        self.backend_shutdown = Some(Box::pin(f));
        self
    }

    /// Serve on `listener` until `signal` resolves (or the token is cancelled), then
    /// shut down gracefully within the configured deadline.
    pub async fn run(
        mut self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tls = self.load_tls()?;
        let Gateway {
            shared,
            wire,
            backend_shutdown,
            app,
            events,
            commands,
            tls: _,
        } = self;
        let token = shared.shutdown.clone();
        // Metrics and readiness on their own listener, when asked.
        let internal = match shared.config.internal_bind {
            Some(addr) => {
                let l = TcpListener::bind(addr).await?;
                let bound = l.local_addr()?;
                println!("confab: internal listener on http://{bound}");
                let t = token.clone();
                let router = http::internal_router(shared.clone());
                Some(tokio::spawn(async move {
                    let _ = axum::serve(l, router)
                        .with_graceful_shutdown(t.cancelled_owned())
                        .await;
                }))
            }
            None => {
                tracing::warn!(
                    "/metrics and /readyz are served on the public listener: \
                     give --internal-bind to keep them off it"
                );
                None
            }
        };
        // Moderation actions, carried out on this gateway's sessions.
        let (enforce, mut enforcements) = tokio::sync::mpsc::unbounded_channel();
        let enforcer = {
            let shared = shared.clone();
            let t = token.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        e = enforcements.recv() => match e {
                            Some(e) => crate::moderation::enforce(&shared, e),
                            None => break,
                        },
                        _ = t.cancelled() => break,
                    }
                }
            })
        };
        // Every gateway hears server-wide announcements.
        if let Err(e) = shared
            .subs
            .acquire(confab_backend::Topic::Room(
                confab_backend::ANNOUNCE_TOPIC.to_owned(),
            ))
            .await
        {
            tracing::warn!("announcements will not reach this gateway: {e}");
        }
        let mut tasks = vec![
            enforcer,
            tokio::spawn(
                dispatch::Dispatcher {
                    events,
                    commands,
                    coalescer: Coalescer::default(),
                    lag: shared.dispatch_lag.clone(),
                    presence_interval: shared.config.presence_interval,
                    presence_names_max: shared.config.limits.presence_names_max,
                    shutdown: token.clone(),
                    enforce,
                }
                .run(),
            ),
        ];
        tasks.extend(internal);
        tasks.push(tokio::spawn(crate::janitor::run(shared.clone())));
        // The delivery probe talks to the public listener over plain loopback.
        match (&tls, listener.local_addr()) {
            (None, Ok(addr)) => tasks.push(tokio::spawn(crate::probe::run(shared.clone(), addr))),
            (Some(_), _) if shared.config.probe_interval.is_some() => {
                tracing::warn!(
                    "no delivery probe with --tls-cert (the probe speaks plain websocket)"
                )
            }
            _ => {}
        }
        tasks.push(tokio::spawn(crate::admin::report(shared.clone())));
        if let Some(h) = shared.metrics.clone() {
            let (t, sh) = (token.clone(), shared.clone());
            metrics::gauge!(crate::metrics::DISPATCH_LAG).set(0.0);
            tasks.push(tokio::spawn(async move {
                for tick in 0u64.. {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = t.cancelled() => break,
                    }
                    // Sampled once a second: the dispatcher's hot path stays free of it.
                    metrics::gauge!(crate::metrics::DISPATCH_LAG)
                        .set(sh.dispatch_lag.get().as_secs_f64());
                    if tick % 5 == 4 {
                        h.run_upkeep();
                        // Cluster-wide, from presence (one cheap read every 5 s).
                        if let Ok((_, n)) = sh.presence.online_users(0).await {
                            metrics::gauge!(crate::metrics::ONLINE_USERS).set(n as f64);
                        }
                    }
                }
            }));
        }
        // The one shutdown trigger: an OS signal or a cancelled token.
        let trigger = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => trigger.cancel(),
                _ = trigger.cancelled() => {}
            }
        });
        // Once triggered: the HTTP server stops accepting at once (so nginx sends
        // reconnecting clients to other gateways), every transport is closed (stock
        // socket.io-clients reconnect by themselves after a transport close), and the
        // sockets' clean-up removes their presence. All bounded by the deadline.
        let deadline = shared.config.shutdown_deadline;
        // Our own accept loop (header-read deadline, connection cap, TLS; sets
        // TCP_NODELAY and puts `ConnectInfo<SocketAddr>` on every request).
        let serve = listener::serve(
            listener,
            app,
            listener::Options {
                header_read_timeout: shared.config.header_read_timeout,
                max_connections: shared.config.max_connections,
                tls,
            },
            token.clone(),
        );
        let drain = {
            let shared = shared.clone();
            async move {
                shared.shutdown.cancelled().await;
                tracing::info!(
                    sockets = shared.open_sessions(),
                    "shutting down: closing client transports"
                );
                // Every connection is closed; each socket's disconnect handler
                // queues its clean-up (presence, subscriptions) on the session's
                // tracked task. New handshakes are refused from now on.
                wire.close_all();
                shared.tasks.close();
                shared.tasks.wait().await;
                tracing::info!(open = shared.open_sessions(), "all sessions cleaned up");
                // Off the status page at once (its report task stopped at the
                // trigger), not after the report goes stale.
                if let Err(e) = shared.status.remove_gateway_status().await {
                    tracing::debug!(error = %e, "gateway status not removed");
                }
                if let Some(f) = backend_shutdown {
                    f.await;
                }
            }
        };
        let work = async {
            let (served, ()) = tokio::join!(serve, drain);
            served
        };
        let served = tokio::select! {
            r = work => r,
            _ = async {
                token.cancelled().await;
                tokio::time::sleep(deadline).await;
            } => {
                tracing::warn!(
                    open = shared.open_sessions(),
                    "shutdown deadline of {deadline:?} passed, exiting"
                );
                Ok(())
            }
        };
        for t in tasks {
            t.abort();
        }
        served
    }

    /// Bind `addr` and serve in the background until the returned token is cancelled.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<RunningGateway> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = self.shared.shutdown.clone();
        let task = tokio::spawn(self.run(listener, std::future::pending()));
        Ok(RunningGateway {
            addr,
            shutdown,
            task,
        })
    }
}
