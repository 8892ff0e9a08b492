//! Queue semantics as pure functions: job states and the rules that move a
//! job between them. [`crate::store`] applies them to the database.
//!
//! ```text
//! blocked ─(deps succeeded)─▶ pending ─claim─▶ leased ─complete─▶ succeeded
//!    │                          ▲                 │
//!    │                          └─retry (backoff)─┤ fail / lease expired
//!    └─(a dep is dead)─▶ dead ◀─attempts spent────┘   (non-retryable: dead at once)
//! any unfinished state ─cancel─▶ cancelled
//! ```
//!
//! A failed attempt is not a stored state of its own: the job goes straight
//! back to `pending` (with `not_before` set by the backoff and `last_error`
//! kept) or to `dead`.

use std::fmt;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waits for the jobs it depends on.
    Blocked,
    /// Ready to be leased (once `not_before` has passed).
    Pending,
    /// A worker holds a lease on it.
    Leased,
    /// Finished; its result is recorded.
    Succeeded,
    /// Attempts spent, non-retryable failure, or a dependency died.
    Dead,
    /// Its sweep was cancelled.
    Cancelled,
}

impl JobState {
    /// Every state, in display order.
    pub const ALL: [JobState; 6] = [
        JobState::Blocked,
        JobState::Pending,
        JobState::Leased,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The state's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Pending => "pending",
            JobState::Leased => "leased",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for states a job never leaves on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back to pending, not before `delay_ms` from now.
    Retry {
        /// Backoff before the next attempt.
        delay_ms: i64,
    },
    /// No attempts left, or the error cannot be fixed by retrying.
    Dead,
}

/// Decides a failed attempt's outcome. `attempts` counts the attempt that just failed.
pub fn after_failure(
    attempts: i32,
    max_attempts: i32,
    retryable: bool,
    base_ms: i64,
    max_ms: i64,
) -> AfterFailure {
    if !retryable || attempts >= max_attempts {
        AfterFailure::Dead
    } else {
        AfterFailure::Retry {
            delay_ms: backoff_ms(attempts, base_ms, max_ms),
        }
    }
}

/// Exponential backoff: `base · 2^(attempts-1)`, capped at `max`.
pub fn backoff_ms(attempts: i32, base_ms: i64, max_ms: i64) -> i64 {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    base_ms.saturating_mul(1i64 << doublings).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for st in JobState::ALL {
            assert_eq!(JobState::parse(st.as_str()), Some(st));
        }
        assert_eq!(JobState::parse("failed"), None);
    }

    #[test]
    fn backoff_doubles_per_attempt_and_is_capped() {
        assert_eq!(backoff_ms(1, 100, 1_000), 100);
        assert_eq!(backoff_ms(2, 100, 1_000), 200);
        assert_eq!(backoff_ms(4, 100, 1_000), 800);
        assert_eq!(backoff_ms(5, 100, 1_000), 1_000);
        assert_eq!(backoff_ms(90, 100, 1_000), 1_000);
    }

    #[test]
    fn a_failure_retries_while_attempts_remain() {
        assert_eq!(
            after_failure(1, 3, true, 10, 100),
            AfterFailure::Retry { delay_ms: 10 }
        );
        assert_eq!(
            after_failure(2, 3, true, 10, 100),
            AfterFailure::Retry { delay_ms: 20 }
        );
        assert_eq!(after_failure(3, 3, true, 10, 100), AfterFailure::Dead);
    }

    #[test]
    fn a_non_retryable_failure_is_dead_at_once() {
        assert_eq!(after_failure(1, 3, false, 10, 100), AfterFailure::Dead);
    }
}
