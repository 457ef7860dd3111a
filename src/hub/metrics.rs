//! Prometheus metrics of the hub (SPEC A5): runs by outcome, run durations, items pushed
//! per side and kind, conflicts, held runs, errors by kind, appointment writes.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pushed {
    side: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

/// The hub's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    runs: Family<Outcome, Counter>,
    duration: Histogram,
    pushed: Family<Pushed, Counter>,
    conflicts: Counter,
    held: Counter,
    errors: Family<Kind, Counter>,
    appointments: Family<Kind, Counter>,
    throttle_waits: Counter,
    throttle_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Users loaded from the store for a run (not kept in memory).
    loads: Counter,
    /// Runs that found nothing new before loading their user.
    quiet_unloaded: Counter,
    /// What the connectors had counted at the last render.
    seen: std::sync::Mutex<(u64, f64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("synchub");
        let runs = Family::<Outcome, Counter>::default();
        registry.register("runs", "User runs by outcome (ok, failed, held)", runs.clone());
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("run_duration_seconds", "How long a user's run took", duration.clone());
        let pushed = Family::<Pushed, Counter>::default();
        registry.register("items_pushed", "Items written to a side, by side and kind", pushed.clone());
        let conflicts = Counter::default();
        registry.register("conflicts", "Same-field conflicts resolved (SPEC C5)", conflicts.clone());
        let held = Counter::default();
        registry.register("held_runs", "Runs held by the mass-change guard (SPEC X5)", held.clone());
        let errors = Family::<Kind, Counter>::default();
        registry.register("errors", "Errors of runs, by kind", errors.clone());
        let appointments = Family::<Kind, Counter>::default();
        registry.register("appointments", "Appointment writes (created, updated, cancelled)", appointments.clone());
        let throttle_waits = Counter::default();
        registry.register(
            "throttle_waits",
            "Waits a throttling Graph or CRM asked for (429/503)",
            throttle_waits.clone(),
        );
        let throttle_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("throttle_wait_seconds", "Time spent in those waits", throttle_seconds.clone());
        let loads = Counter::default();
        registry.register("user_loads", "Users loaded from the store for a run (not kept in memory)", loads.clone());
        let quiet_unloaded = Counter::default();
        registry.register(
            "quiet_runs_unloaded",
            "Runs whose pulls found nothing new, ended without loading the user",
            quiet_unloaded.clone(),
        );
        Metrics {
            registry,
            loads,
            quiet_unloaded,
            runs,
            duration,
            pushed,
            conflicts,
            held,
            errors,
            appointments,
            throttle_waits,
            throttle_seconds,
            seen: std::sync::Mutex::new((0, 0.0)),
        }
    }

    /// Count one run: its outcome, duration, pushes per side, conflicts and appointment writes.
    pub fn run(&self, outcome: &str, seconds: f64, counts: &[[u32; 3]; 2], conflicts: u32, appointments: [u32; 3]) {
        self.runs.get_or_create(&Outcome { outcome: outcome.to_string() }).inc();
        self.duration.observe(seconds);
        for (side, c) in ["exchange", "crm"].iter().zip(counts) {
            for (kind, n) in ["created", "updated", "deleted"].iter().zip(c) {
                if *n > 0 {
                    self.pushed
                        .get_or_create(&Pushed { side: side.to_string(), kind: kind.to_string() })
                        .inc_by(u64::from(*n));
                }
            }
        }
        self.conflicts.inc_by(u64::from(conflicts));
        for (kind, n) in ["created", "updated", "cancelled"].iter().zip(appointments) {
            if n > 0 {
                self.appointments.get_or_create(&Kind { kind: kind.to_string() }).inc_by(u64::from(n));
            }
        }
        if outcome == "held" {
            self.held.inc();
        }
    }

    /// Count a user loaded from the store for a run.
    pub fn user_loaded(&self) {
        self.loads.inc();
    }

    /// Count a run that ended after its pulls, without loading its user.
    pub fn quiet_unloaded(&self) {
        self.quiet_unloaded.inc();
    }

    /// Users loaded so far, and runs ended without loading.
    pub fn loads(&self) -> (u64, u64) {
        (self.loads.get(), self.quiet_unloaded.get())
    }

    /// Count an error of `kind` (throttled, unavailable, invalid_data, calendar, …).
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&Kind { kind: kind.to_string() }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        {
            let (waits, time) = synchub_connectors::http::throttle_waits();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            self.throttle_waits.inc_by(waits.saturating_sub(seen.0));
            self.throttle_seconds.inc_by((time.as_secs_f64() - seen.1).max(0.0));
            *seen = (waits, time.as_secs_f64());
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_shows_in_the_text() {
        let m = Metrics::new();
        m.run("ok", 0.02, &[[1, 2, 0], [0, 0, 3]], 1, [1, 0, 0]);
        m.error("throttled");
        let text = m.render();
        assert!(text.contains(r#"synchub_runs_total{outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"synchub_items_pushed_total{side="crm",kind="deleted"} 3"#), "{text}");
        assert!(text.contains("synchub_conflicts_total 1"), "{text}");
        assert!(text.contains(r#"synchub_errors_total{kind="throttled"} 1"#), "{text}");
        assert!(text.contains("synchub_run_duration_seconds_count 1"), "{text}");
        assert!(text.contains("synchub_throttle_waits_total"), "{text}");
    }
}
