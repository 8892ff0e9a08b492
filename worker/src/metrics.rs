//! A worker's Prometheus metrics (`worker --metrics-listen`): the jobs it runs now with
//! their epoch, loss and pace, and how its attempts ended.

use asdsweep_shared::proto::{Job, Progress};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// What a worker reports about itself.
#[derive(Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    job: IntGaugeVec,
    epoch: IntGaugeVec,
    epochs: IntGaugeVec,
    loss: GaugeVec,
    steps_per_s: GaugeVec,
    ended: IntCounterVec,
}

impl Default for WorkerMetrics {
    fn default() -> WorkerMetrics {
        WorkerMetrics::new()
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &["job"]).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("distinct names");
    g
}

fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("distinct names");
    g
}

impl WorkerMetrics {
    /// Fresh metrics in a registry of their own (with the process's CPU and memory).
    pub fn new() -> WorkerMetrics {
        let r = asdsweep_shared::telemetry::registry();
        let ended = IntCounterVec::new(
            Opts::new(
                "asdsweep_worker_attempts_total",
                "Attempts this worker ended, by outcome (succeeded, failed, released, abandoned)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        r.register(Box::new(ended.clone())).expect("distinct names");
        WorkerMetrics {
            job: int_gauge(
                &r,
                "asdsweep_worker_job",
                "1 for each job this worker runs now",
                &["job", "sweep_id", "job_id", "family", "stage"],
            ),
            epoch: int_gauge(
                &r,
                "asdsweep_worker_epoch",
                "Epoch a running job last finished",
                &["job"],
            ),
            epochs: int_gauge(
                &r,
                "asdsweep_worker_epochs",
                "Epochs a running job trains",
                &["job"],
            ),
            loss: gauge(
                &r,
                "asdsweep_worker_loss",
                "A running job's mean training loss over its last epoch",
            ),
            steps_per_s: gauge(
                &r,
                "asdsweep_worker_steps_per_second",
                "A running job's optimiser steps per second over its last epoch",
            ),
            ended,
            registry: r,
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn job_labels(job: &Job) -> [String; 5] {
        [
            job.job_key.clone(),
            job.sweep_id.to_string(),
            job.job_id.to_string(),
            job.family.clone(),
            job.stage.clone(),
        ]
    }

    /// A job started.
    pub fn started(&self, job: &Job) {
        self.job.with_label_values(&Self::job_labels(job)).set(1);
    }

    /// A running job reported progress.
    pub fn progress(&self, job: &Job, p: &Progress) {
        let key = [job.job_key.as_str()];
        self.epoch.with_label_values(&key).set(i64::from(p.epoch));
        self.epochs.with_label_values(&key).set(i64::from(p.epochs));
        if let Some(loss) = p.loss {
            self.loss.with_label_values(&key).set(loss);
        }
        self.steps_per_s.with_label_values(&key).set(p.steps_per_s);
    }

    /// Attempts this worker ended with `outcome` (what [`WorkerSummary`](crate::WorkerSummary)
    /// reports).
    pub fn attempts(&self, outcome: &str) -> u64 {
        self.ended.with_label_values(&[outcome]).get()
    }

    /// A job's attempt ended with `outcome`; its series go.
    pub fn ended(&self, job: &Job, outcome: &str) {
        self.ended.with_label_values(&[outcome]).inc();
        let _ = self.job.remove_label_values(&Self::job_labels(job));
        let key = [job.job_key.as_str()];
        let _ = self.epoch.remove_label_values(&key);
        let _ = self.epochs.remove_label_values(&key);
        let _ = self.loss.remove_label_values(&key);
        let _ = self.steps_per_s.remove_label_values(&key);
    }
}
