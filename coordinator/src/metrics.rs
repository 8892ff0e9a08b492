//! The coordinator's Prometheus metrics (`serve --metrics-listen`): counters and
//! histograms kept by the services as calls happen, and gauges read from the database at
//! each scrape (jobs by family and state, live workers), so that every replica of a
//! scaled-out coordinator reports the whole queue.

use crate::ids::JobId;
use crate::queue::JobState;
use crate::service::LIVE_WINDOW_MS;
use crate::store::{Store, now_ms};
use prometheus::{
    Histogram, HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntGauge, IntGaugeVec,
    Opts, Registry,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A job leased by this coordinator: family, stage and when.
type Running = (String, String, Instant);

/// The coordinator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    workers_live: IntGauge,
    /// Leases handed to workers.
    pub leases_granted: IntCounter,
    /// Leases the reaper returned to the queue after they expired.
    pub leases_expired: IntCounter,
    /// Completions (and failure reports) refused because their lease was no longer current.
    pub stale_completions: IntCounter,
    /// Heartbeats refused because their lease was no longer current.
    pub stale_heartbeats: IntCounter,
    job_seconds: HistogramVec,
    db_seconds: HistogramVec,
    scrape_db_seconds: Histogram,
    /// Jobs leased by this coordinator: family, stage and when, for their duration.
    running: Arc<Mutex<HashMap<i64, Running>>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are distinct");
    c
}

impl Metrics {
    /// Fresh metrics in a registry of their own (with the process's CPU and memory).
    pub fn new() -> Metrics {
        let r = asdsweep_shared::telemetry::registry();
        let db_buckets = prometheus::exponential_buckets(0.000_25, 2.0, 14).expect("buckets");
        Metrics {
            jobs: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("asdsweep_jobs", "Jobs by family and state, all sweeps"),
                    &["family", "state"],
                )
                .expect("valid metric"),
            ),
            workers_live: register(
                &r,
                IntGauge::new(
                    "asdsweep_workers_live",
                    "Workers that called within the last minute",
                )
                .expect("valid metric"),
            ),
            leases_granted: register(
                &r,
                IntCounter::new("asdsweep_leases_granted_total", "Leases granted to workers")
                    .expect("valid metric"),
            ),
            leases_expired: register(
                &r,
                IntCounter::new(
                    "asdsweep_leases_expired_total",
                    "Expired leases returned to the queue by this coordinator's reaper",
                )
                .expect("valid metric"),
            ),
            stale_completions: register(
                &r,
                IntCounter::new(
                    "asdsweep_stale_completions_total",
                    "Completions and failure reports refused because the lease was no longer current",
                )
                .expect("valid metric"),
            ),
            stale_heartbeats: register(
                &r,
                IntCounter::new(
                    "asdsweep_stale_heartbeats_total",
                    "Heartbeats refused because the lease was no longer current",
                )
                .expect("valid metric"),
            ),
            job_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "asdsweep_job_duration_seconds",
                        "Time from lease to accepted result, by family and stage",
                    )
                    .buckets(prometheus::exponential_buckets(0.01, 4.0, 12).expect("buckets")),
                    &["family", "stage"],
                )
                .expect("valid metric"),
            ),
            db_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "asdsweep_db_seconds",
                        "Database time of the queue's calls, by operation",
                    )
                    .buckets(db_buckets.clone()),
                    &["op"],
                )
                .expect("valid metric"),
            ),
            scrape_db_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "asdsweep_scrape_db_seconds",
                        "Database time of reading the gauges for a scrape",
                    )
                    .buckets(db_buckets),
                )
                .expect("valid metric"),
            ),
            registry: r,
            running: Arc::default(),
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Times one database operation until the timer is dropped.
    pub fn db(&self, op: &str) -> HistogramTimer {
        self.db_seconds.with_label_values(&[op]).start_timer()
    }

    /// A lease was granted on a job.
    pub fn leased(&self, job_id: i64, family: &str, stage: &str) {
        self.leases_granted.inc();
        self.running.lock().expect("metrics lock poisoned").insert(
            job_id,
            (family.to_owned(), stage.to_owned(), Instant::now()),
        );
    }

    /// The reaper returned these jobs' expired leases to the queue: their attempts ended
    /// without a result.
    pub fn expired(&self, job_ids: &[JobId]) {
        self.leases_expired.inc_by(job_ids.len() as u64);
        for id in job_ids {
            self.ended(id.0, false);
        }
    }

    /// A job's attempt ended: with a result (its duration is recorded) or without.
    pub fn ended(&self, job_id: i64, succeeded: bool) {
        let started = self
            .running
            .lock()
            .expect("metrics lock poisoned")
            .remove(&job_id);
        if let (true, Some((family, stage, at))) = (succeeded, started) {
            self.job_seconds
                .with_label_values(&[family.as_str(), stage.as_str()])
                .observe(at.elapsed().as_secs_f64());
        }
    }

    /// Reads the gauges from the database (at each scrape); a failure leaves them as they
    /// were and is logged.
    pub async fn refresh(&self, store: &Store) {
        let _t = self.scrape_db_seconds.start_timer();
        match store.job_counts().await {
            Ok(counts) => {
                self.jobs.reset();
                // Every state of every family, zeros included, so that a query such as
                // sum(asdsweep_jobs{state="pending"}) sees 0 rather than no series.
                let families: BTreeSet<&str> = counts.iter().map(|(f, _, _)| f.as_str()).collect();
                for family in families {
                    for state in JobState::ALL {
                        self.jobs
                            .with_label_values(&[family, state.as_str()])
                            .set(0);
                    }
                }
                for (family, state, n) in &counts {
                    self.jobs
                        .with_label_values(&[family.as_str(), state.as_str()])
                        .set(*n as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading job counts for /metrics failed"),
        }
        match store
            .count_workers_seen_since(now_ms() - LIVE_WINDOW_MS)
            .await
        {
            Ok(n) => self.workers_live.set(n as i64),
            Err(e) => tracing::warn!(error = %e, "reading live workers for /metrics failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(m: &Metrics) -> u64 {
        m.job_seconds
            .with_label_values(&["f", "run"])
            .get_sample_count()
    }

    #[test]
    fn an_expired_lease_ends_its_attempt_and_a_late_result_times_nothing() {
        let m = Metrics::new();
        m.leased(1, "f", "run");
        m.leased(2, "f", "run");
        m.expired(&[JobId(1)]);
        assert_eq!(m.leases_expired.get(), 1);
        assert_eq!(
            m.running.lock().unwrap().len(),
            1,
            "job 1 is no longer running"
        );
        // A result for job 1 after its lease expired would be refused; had it been
        // accepted, its duration would not be that of any lease this coordinator holds.
        m.ended(1, true);
        assert_eq!(observed(&m), 0);
        m.ended(2, true);
        assert_eq!(observed(&m), 1);
        assert!(m.running.lock().unwrap().is_empty());
    }
}
