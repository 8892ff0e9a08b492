//! Progress of a long step inside a job (making augmented views, say) as periodic log lines:
//! a worker runs without a terminal, so where a command shows a bar, a worker logs how far
//! it is, how fast it goes and when it will be done, every few seconds, from any thread.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a [`ProgressLog`] logs by default.
pub const EVERY: Duration = Duration::from_secs(10);

/// Counts the items of a step done and logs a [`Line`] at most once per interval.
#[derive(Debug)]
pub struct ProgressLog {
    job: String,
    what: &'static str,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    next: Mutex<Instant>,
    every: Duration,
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Items done.
    pub done: usize,
    /// Items in all.
    pub total: usize,
    /// Items per second since the start.
    pub per_s: f64,
    /// Seconds left at that rate (`None` before the first item).
    pub eta_s: Option<f64>,
}

impl ProgressLog {
    /// A step of `total` items of job `job`, described as `what` ("making views").
    pub fn new(job: &str, what: &'static str, total: usize) -> ProgressLog {
        ProgressLog::every(job, what, total, EVERY)
    }

    /// As [`ProgressLog::new`], logging at most once per `every`.
    pub fn every(job: &str, what: &'static str, total: usize, every: Duration) -> ProgressLog {
        let started = Instant::now();
        ProgressLog {
            job: job.to_owned(),
            what,
            total,
            done: AtomicUsize::new(0),
            started,
            next: Mutex::new(started + every),
            every,
        }
    }

    /// One more item done; logs when an interval has passed since the last line.
    pub fn tick(&self) {
        if let Some(line) = self.count() {
            tracing::info!(
                job = %self.job,
                done = line.done,
                total = line.total,
                per_s = format_args!("{:.2}", line.per_s),
                eta_s = line.eta_s.map(|s| s.round()),
                "{}",
                self.what
            );
        }
    }

    /// Counts one item; the line to log when one is due (never two threads at once).
    fn count(&self) -> Option<Line> {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut next = self.next.try_lock().ok()?;
        if now < *next {
            return None;
        }
        *next = now + self.every;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let per_s = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        Some(Line {
            done,
            total: self.total,
            per_s,
            eta_s: (per_s > 0.0).then(|| self.total.saturating_sub(done) as f64 / per_s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_once_per_interval_and_counts_every_item() {
        let quiet = ProgressLog::every("j", "making views", 10, Duration::from_secs(3600));
        assert!((0..5).all(|_| quiet.count().is_none()));

        let log = ProgressLog::every("j", "making views", 10, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        let lines: Vec<Line> = (0..4).filter_map(|_| log.count()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3].done, 4);
        assert_eq!(lines[3].total, 10);
        let line = lines[3];
        assert!(line.per_s > 0.0 && line.per_s < 4.0 / 0.02 + 1e-9);
        let eta = line.eta_s.expect("a rate, so an eta");
        assert!((eta - 6.0 / line.per_s).abs() < 1e-9);
    }
}
