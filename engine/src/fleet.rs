//! The async shell around the fleet [`FailoverPolicy`]: calls report turns and errors,
//! new calls ask which backend to start on, a timer task ticks the policy and runs the
//! synthetic probes of the half-open state, and every transition becomes a metric and a
//! log line with its reason and numbers.
//!
//! The policy sits behind a mutex held only for a policy call (microseconds, never across
//! an await); nothing on the media path takes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::backend::{BackendKind, ErrorKind};
use crate::failover::{Decision, FailoverPolicy, FleetState, Transition};
use crate::telemetry::Metrics;

/// Runs one synthetic probe turn against the provider: first-audio latency, or the
/// error class.
pub trait Prober: Send + Sync + 'static {
    /// One probe.
    fn probe(&self) -> Pin<Box<dyn Future<Output = Result<Duration, ErrorKind>> + Send + '_>>;
}

/// The shared fleet state. Clones share it.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Mutex<FailoverPolicy>,
    metrics: Metrics,
    /// The backend new calls go to, for whoever wants to follow it.
    live: tokio::sync::watch::Sender<BackendKind>,
    /// Something changed that may move the next deadline.
    wake: Notify,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("state", &self.state())
            .finish()
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Fleet {
    /// A shell over `policy`, exporting to `metrics`.
    pub fn new(policy: FailoverPolicy, metrics: Metrics) -> Self {
        metrics.set_live_backend(policy.live_backend());
        let live = tokio::sync::watch::channel(policy.live_backend()).0;
        Self {
            inner: Arc::new(Inner {
                policy: Mutex::new(policy),
                metrics,
                live,
                wake: Notify::new(),
            }),
        }
    }

    fn policy(&self) -> MutexGuard<'_, FailoverPolicy> {
        self.inner
            .policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies an input and publishes what it changed.
    fn with_policy<T>(&self, f: impl FnOnce(&mut FailoverPolicy) -> T) -> T {
        let mut policy = self.policy();
        let out = f(&mut policy);
        while let Some(transition) = policy.poll_transition() {
            self.publish(&transition);
        }
        let live = policy.live_backend();
        drop(policy);
        self.inner.metrics.set_live_backend(live);
        self.inner.live.send_if_modified(|current| {
            let changed = *current != live;
            *current = live;
            changed
        });
        self.inner.wake.notify_one();
        out
    }

    fn publish(&self, transition: &Transition) {
        let metrics = &self.inner.metrics;
        match transition {
            Transition::Failover {
                reason,
                detail,
                cooldown,
                trips,
                ..
            } => {
                metrics
                    .provider_failover_total
                    .with_label_values(&[reason.as_str()])
                    .inc();
                warn!(
                    transition = "failover",
                    reason = reason.as_str(),
                    %detail,
                    cooldown_s = cooldown.as_secs(),
                    trips,
                    alert = transition.needs_alert(),
                    "provider failed over to local"
                );
            }
            Transition::HalfOpen { .. } => {
                info!(
                    transition = "half_open",
                    "cooldown over: probing the provider"
                );
            }
            Transition::ProbeFailed {
                detail,
                cooldown,
                trips,
                ..
            } => warn!(
                transition = "probe_failed",
                %detail,
                cooldown_s = cooldown.as_secs(),
                trips,
                alert = transition.needs_alert(),
                "provider probe failed: staying on local"
            ),
            Transition::Failback { probes, detail, .. } => {
                metrics.failback_total.inc();
                info!(transition = "failback", probes, %detail, "provider healthy again: new calls ramp back");
            }
        }
    }

    /// Which backend a new call starts on.
    pub fn backend_for_new_call(&self) -> Decision {
        self.with_policy(|p| p.backend_for_new_call(now()))
    }

    /// The circuit's state (for calls deciding whether to return to the provider).
    pub fn state(&self) -> FleetState {
        self.policy().state()
    }

    /// The backend new calls go to now (the gauge).
    pub fn live_backend(&self) -> BackendKind {
        self.policy().live_backend()
    }

    /// Follows the backend new calls go to (changes on failover and failback).
    pub fn watch_live_backend(&self) -> tokio::sync::watch::Receiver<BackendKind> {
        self.inner.live.subscribe()
    }

    /// A turn answered by `backend`, its first reply audio `latency` after the end of
    /// the turn.
    pub fn record_turn(&self, backend: BackendKind, latency: Duration) {
        self.with_policy(|p| p.record_turn(now(), backend, latency));
    }

    /// A provider session connected.
    pub fn record_connected(&self) {
        self.with_policy(|p| p.record_connected(now()));
    }

    /// A backend failed with `kind`.
    pub fn record_error(&self, backend: BackendKind, kind: ErrorKind) {
        self.with_policy(|p| p.record_error(now(), backend, kind));
    }

    /// Ticks the policy at its deadlines and runs probes when due, until the returned
    /// task is aborted.
    pub fn spawn_timer(&self, prober: Arc<dyn Prober>) -> tokio::task::JoinHandle<()> {
        let fleet = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = fleet.policy().next_deadline();
                let sleep = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => {}
                    () = fleet.inner.wake.notified() => continue,
                }
                let probe = fleet.with_policy(|p| {
                    let at = now();
                    p.tick(at);
                    if p.probe_due(at) {
                        p.start_probe(at)
                    } else {
                        None
                    }
                });
                if let Some(id) = probe {
                    let (fleet, prober) = (fleet.clone(), prober.clone());
                    tokio::spawn(async move {
                        let result = prober.probe().await;
                        info!(
                            ok = result.is_ok(),
                            latency_ms = result.as_ref().map(|d| d.as_millis() as u64).unwrap_or(0),
                            "provider probe"
                        );
                        fleet.with_policy(|p| p.record_probe(now(), id, result));
                    });
                }
            }
        })
    }
}

/// Probes the provider with a real turn: a phrase of speech in, first reply audio out.
pub struct ProviderProber {
    backend: crate::backend::provider::ProviderBackend,
    /// 8 kHz speech (a static phrase) played as the caller.
    audio: Vec<i16>,
    timeout: Duration,
}

impl ProviderProber {
    /// A prober speaking `audio` (8 kHz) to `backend`, giving up after `timeout`.
    pub fn new(
        backend: crate::backend::provider::ProviderBackend,
        audio: Vec<i16>,
        timeout: Duration,
    ) -> Self {
        Self {
            backend,
            audio,
            timeout,
        }
    }

    async fn run(&self) -> Result<Duration, ErrorKind> {
        use crate::backend::{next_event, Session, SessionConfig, SessionEvent, Utterance};
        let mut session = self
            .backend
            .open(SessionConfig {
                rate: 8000,
                telephony_ulaw: true,
                language: "en".into(),
                instructions: "This is a health probe. Answer in one short sentence.".into(),
                history: Vec::new(),
            })
            .await
            .map_err(|e| e.kind)?;
        for frame in self.audio.chunks(160) {
            session.push_audio(frame).map_err(|e| e.kind)?;
        }
        let committed = Instant::now();
        session
            .commit(Utterance {
                end_of_speech: committed.into_std(),
                voiced: Duration::from_millis(self.audio.len() as u64 / 8),
                trailing: Duration::ZERO,
            })
            .map_err(|e| e.kind)?;
        let outcome = loop {
            match next_event(&mut session).await {
                Some(SessionEvent::ReplyAudio(_)) => break Ok(committed.elapsed()),
                Some(SessionEvent::Error(e)) if e.fatal => break Err(e.kind),
                Some(_) => {}
                None => break Err(ErrorKind::ClosedMidResponse),
            }
        };
        session.close();
        outcome
    }
}

impl Prober for ProviderProber {
    fn probe(&self) -> Pin<Box<dyn Future<Output = Result<Duration, ErrorKind>> + Send + '_>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.run())
                .await
                .unwrap_or(Err(ErrorKind::Timeout))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::FailoverConfig;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct ScriptedProber {
        latency_ms: u64,
        calls: AtomicU32,
    }

    impl Prober for ScriptedProber {
        fn probe(&self) -> Pin<Box<dyn Future<Output = Result<Duration, ErrorKind>> + Send + '_>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let latency = Duration::from_millis(self.latency_ms);
            Box::pin(async move {
                tokio::time::sleep(latency).await;
                Ok(latency)
            })
        }
    }

    fn gauge(metrics: &Metrics, backend: &str) -> f64 {
        let text = metrics.render();
        let series = format!("tom_realtime_backend{{backend=\"{backend}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn counter(metrics: &Metrics, series: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[tokio::test(start_paused = true)]
    async fn slow_provider_trips_the_fleet_and_healthy_probes_bring_it_back() {
        let config = FailoverConfig {
            allow_egress: true,
            cooldown_s: 60,
            ..FailoverConfig::default()
        };
        let metrics = Metrics::new().expect("metrics");
        let fleet = Fleet::new(
            FailoverPolicy::new(config, 7).expect("policy"),
            metrics.clone(),
        );
        assert_eq!(gauge(&metrics, "provider"), 1.0);
        let prober = Arc::new(ScriptedProber {
            latency_ms: 300,
            calls: AtomicU32::new(0),
        });
        let timer = fleet.spawn_timer(prober.clone());

        // 20 slow provider turns: p95 over 800 ms trips the fleet.
        for _ in 0..20 {
            fleet.record_turn(BackendKind::Provider, Duration::from_millis(950));
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        assert_eq!(fleet.backend_for_new_call().backend, BackendKind::Local);
        assert_eq!(gauge(&metrics, "local"), 1.0);
        assert_eq!(gauge(&metrics, "provider"), 0.0);
        assert_eq!(
            counter(&metrics, r#"tom_provider_failover_total{reason="latency"}"#),
            1.0
        );

        // No failback before the cooldown (60 s + jitter ≤ 10%) and the healthy probes.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(fleet.live_backend(), BackendKind::Local);
        assert_eq!(prober.calls.load(Ordering::Relaxed), 0);
        // Three healthy probes, one every 5 s once half-open.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(prober.calls.load(Ordering::Relaxed) >= 3);
        assert_eq!(fleet.state(), FleetState::Closed);
        assert_eq!(counter(&metrics, "tom_failback_total"), 1.0);
        assert_eq!(gauge(&metrics, "provider"), 1.0);
        timer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn without_egress_nothing_is_probed_and_local_serves() {
        let metrics = Metrics::new().expect("metrics");
        let fleet = Fleet::new(
            FailoverPolicy::new(FailoverConfig::default(), 1).expect("policy"),
            metrics.clone(),
        );
        let prober = Arc::new(ScriptedProber {
            latency_ms: 10,
            calls: AtomicU32::new(0),
        });
        let timer = fleet.spawn_timer(prober.clone());
        fleet.record_error(BackendKind::Provider, ErrorKind::Server);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(fleet.backend_for_new_call().backend, BackendKind::Local);
        assert_eq!(prober.calls.load(Ordering::Relaxed), 0);
        assert_eq!(gauge(&metrics, "local"), 1.0);
        timer.abort();
    }
}
