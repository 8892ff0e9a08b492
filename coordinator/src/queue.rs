//! Queue semantics as pure functions: job states and the rules that move a
//! job between them. [`crate::store`] applies them to the database: the states
//! in its SQL are the [`Event::sources`] and [`Event::target`] of the move it
//! makes, so the rules live here and nowhere else.
//!
//! ```text
//! blocked ─(deps succeeded)─▶ pending ─claim─▶ leased ─complete─▶ succeeded
//!    │                          ▲                 │
//!    │                          └─retry (backoff)─┤ fail / lease expired
//!    └─(a dep is dead)─▶ dead ◀─attempts spent────┘   (non-retryable: dead at once)
//! any unfinished state ─cancel─▶ cancelled
//! cancelled (and, asked to, dead) ─retry─▶ blocked
//! ```
//!
//! A failed attempt is not a stored state of its own: the job goes straight
//! back to `pending` (with `not_before` set by the backoff and `last_error`
//! kept) or to `dead`.

use crate::ids::FencingToken;
use sea_orm::DeriveValueType;
use std::fmt;
use std::str::FromStr;

/// Where a job is in its life. Stored in `jobs.state` by its name ([`JobState::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
#[sea_orm(value_type = "String")]
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

    /// The state a job is launched in: it waits if it depends on other jobs.
    pub fn at_launch(has_dependencies: bool) -> JobState {
        if has_dependencies {
            JobState::Blocked
        } else {
            JobState::Pending
        }
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

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<JobState, UnknownState> {
        JobState::parse(s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A stored state name that no state has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state \"{0}\"")]
pub struct UnknownState(pub String);

/// Whether a sweep's jobs may be leased. Stored in `sweeps.state` by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, DeriveValueType)]
#[sea_orm(value_type = "String")]
pub enum SweepState {
    /// Launched (or retried): its jobs run.
    Active,
    /// Cancelled by the operator.
    Cancelled,
}

impl SweepState {
    /// The state's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Active => "active",
            SweepState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for SweepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SweepState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<SweepState, UnknownState> {
        [SweepState::Active, SweepState::Cancelled]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A move of the state machine: what happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A worker leases the job.
    Claim,
    /// The lease holder reports the job's result.
    Complete,
    /// The lease holder reports a failed attempt; [`after_failure`] decided its outcome.
    Fail(AfterFailure),
    /// The lease ran out without a heartbeat: a failed attempt, always retryable
    /// while attempts remain ([`after_expiry`]).
    Expire(AfterFailure),
    /// The lease holder hands the job back without counting the attempt (a worker stopping).
    Release,
    /// The operator cancels the job's sweep.
    Cancel,
    /// The operator re-queues ended jobs with a fresh attempt budget: the
    /// cancelled ones, and with `dead` the dead ones too. They wait for their
    /// dependencies again ([`Event::Unblock`] follows at once where those succeeded).
    Retry {
        /// Dead jobs are re-queued too.
        dead: bool,
    },
    /// Every job it waits for has succeeded.
    Unblock,
    /// A job it waits for ended dead.
    DependencyDead,
}

impl Event {
    /// Whether this event may move a job in state `from`.
    pub fn applies_to(self, from: JobState) -> bool {
        use JobState::*;
        match self {
            Event::Claim => from == Pending,
            Event::Complete | Event::Fail(_) | Event::Expire(_) | Event::Release => from == Leased,
            Event::Cancel => !from.is_final(),
            Event::Retry { dead } => from == Cancelled || (dead && from == Dead),
            Event::Unblock | Event::DependencyDead => from == Blocked,
        }
    }

    /// The states this event moves a job out of, in display order.
    pub fn sources(self) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|&st| self.applies_to(st))
            .collect()
    }

    /// The state this event moves a job into (from any of its [`Event::sources`]).
    pub fn target(self) -> JobState {
        match self {
            Event::Claim => JobState::Leased,
            Event::Complete => JobState::Succeeded,
            Event::Fail(outcome) | Event::Expire(outcome) => match outcome {
                AfterFailure::Retry { .. } => JobState::Pending,
                AfterFailure::Dead => JobState::Dead,
            },
            Event::Release | Event::Unblock => JobState::Pending,
            Event::Cancel => JobState::Cancelled,
            Event::Retry { .. } => JobState::Blocked,
            Event::DependencyDead => JobState::Dead,
        }
    }
}

impl JobState {
    /// Where `event` moves a job in this state, or why it cannot.
    pub fn on(self, event: Event) -> Result<JobState, IllegalTransition> {
        if event.applies_to(self) {
            Ok(event.target())
        } else {
            Err(IllegalTransition { from: self, event })
        }
    }
}

/// An event that does not apply to the job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot take {event:?}")]
pub struct IllegalTransition {
    /// The job's state.
    pub from: JobState,
    /// What was asked of it.
    pub event: Event,
}

/// How a lease holder's call (heartbeat, complete, fail) stands against the
/// job's stored state and fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// The caller holds the job's current lease: the call may act.
    Current,
    /// The job was cancelled with its sweep: the worker must stop it.
    Cancelled,
    /// This very lease already completed the job: a repeated completion (whose
    /// answer was lost) is answered as the first was.
    AlreadyCompleted,
    /// The lease has ended (expired and re-leased, or the job finished): refused.
    Stale,
}

/// Judges a call carrying `presented` against a job in `state` whose current token is `current`.
pub fn judge_lease(
    state: JobState,
    current: FencingToken,
    presented: FencingToken,
) -> LeaseVerdict {
    match state {
        JobState::Leased if presented == current => LeaseVerdict::Current,
        JobState::Cancelled => LeaseVerdict::Cancelled,
        JobState::Succeeded if presented == current => LeaseVerdict::AlreadyCompleted,
        _ => LeaseVerdict::Stale,
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

/// Decides the outcome of an attempt whose lease expired: retried like a
/// retryable failure while attempts remain (the worker may have died for
/// reasons of its own), dead once they are spent.
pub fn after_expiry(attempts: i32, max_attempts: i32, base_ms: i64, max_ms: i64) -> AfterFailure {
    after_failure(attempts, max_attempts, true, base_ms, max_ms)
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
        assert_eq!("dead".parse::<JobState>(), Ok(JobState::Dead));
        assert_eq!(
            "failed".parse::<JobState>(),
            Err(UnknownState("failed".into()))
        );
        for st in [SweepState::Active, SweepState::Cancelled] {
            assert_eq!(st.as_str().parse::<SweepState>(), Ok(st));
        }
    }

    #[test]
    fn state_names_are_plain_lowercase_words_safe_inside_sql_quotes() {
        for st in JobState::ALL {
            assert!(
                !st.as_str().is_empty() && st.as_str().chars().all(|c| c.is_ascii_lowercase()),
                "{st}"
            );
        }
    }

    /// Every event of the state machine, with both failure outcomes.
    fn events() -> Vec<Event> {
        let (retry, dead) = (AfterFailure::Retry { delay_ms: 10 }, AfterFailure::Dead);
        vec![
            Event::Claim,
            Event::Complete,
            Event::Fail(retry),
            Event::Fail(dead),
            Event::Expire(retry),
            Event::Expire(dead),
            Event::Release,
            Event::Cancel,
            Event::Retry { dead: false },
            Event::Retry { dead: true },
            Event::Unblock,
            Event::DependencyDead,
        ]
    }

    #[test]
    fn each_event_moves_a_job_from_its_sources_to_its_target() {
        use JobState::*;
        let (retry, dead) = (AfterFailure::Retry { delay_ms: 10 }, AfterFailure::Dead);
        let table = [
            (Event::Claim, vec![Pending], Leased),
            (Event::Complete, vec![Leased], Succeeded),
            (Event::Fail(retry), vec![Leased], Pending),
            (Event::Fail(dead), vec![Leased], Dead),
            (Event::Expire(retry), vec![Leased], Pending),
            (Event::Expire(dead), vec![Leased], Dead),
            (Event::Release, vec![Leased], Pending),
            (Event::Cancel, vec![Blocked, Pending, Leased], Cancelled),
            (Event::Retry { dead: false }, vec![Cancelled], Blocked),
            (Event::Retry { dead: true }, vec![Dead, Cancelled], Blocked),
            (Event::Unblock, vec![Blocked], Pending),
            (Event::DependencyDead, vec![Blocked], Dead),
        ];
        assert_eq!(table.len(), events().len());
        for (event, sources, target) in table {
            assert_eq!(event.sources(), sources, "{event:?}");
            assert_eq!(event.target(), target, "{event:?}");
            for from in JobState::ALL {
                let expected = if sources.contains(&from) {
                    Ok(target)
                } else {
                    Err(IllegalTransition { from, event })
                };
                assert_eq!(from.on(event), expected, "{from} on {event:?}");
            }
        }
    }

    #[test]
    fn illegal_moves_are_refused() {
        assert!(
            JobState::Succeeded.on(Event::Claim).is_err(),
            "a succeeded job leased again"
        );
        assert!(
            JobState::Leased.on(Event::Claim).is_err(),
            "a leased job leased twice"
        );
        assert!(
            JobState::Blocked.on(Event::Claim).is_err(),
            "leased before its dependencies"
        );
        assert!(
            JobState::Cancelled.on(Event::Complete).is_err(),
            "a cancelled job completed"
        );
        assert!(
            JobState::Pending.on(Event::Release).is_err(),
            "a lease handed back twice"
        );
        assert!(
            JobState::Succeeded.on(Event::Cancel).is_err(),
            "a finished job cancelled"
        );
        assert!(JobState::Pending.on(Event::DependencyDead).is_err());
        assert!(
            JobState::Dead.on(Event::Retry { dead: false }).is_err(),
            "dead jobs are re-queued only when asked to"
        );
        assert_eq!(
            JobState::Cancelled
                .on(Event::Complete)
                .unwrap_err()
                .to_string(),
            "a cancelled job cannot take Complete"
        );
    }

    #[test]
    fn a_final_state_is_left_only_by_an_operator_retry() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for event in events() {
                if from.on(event).is_ok() {
                    assert!(matches!(event, Event::Retry { .. }), "{from} on {event:?}");
                }
            }
        }
        // Every unfinished state can be cancelled, and only those.
        assert_eq!(
            Event::Cancel.sources(),
            JobState::ALL
                .into_iter()
                .filter(|s| !s.is_final())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn only_the_current_lease_may_act_and_a_stale_token_is_refused() {
        use LeaseVerdict::*;
        let (t1, t2, t3) = (FencingToken(1), FencingToken(2), FencingToken(3));
        assert_eq!(judge_lease(JobState::Leased, t2, t2), Current);
        // Expired and leased again: the old holder's token is refused, as is a made-up newer one.
        assert_eq!(judge_lease(JobState::Leased, t2, t1), Stale);
        assert_eq!(judge_lease(JobState::Leased, t2, t3), Stale);
        // Expired and back in the queue.
        assert_eq!(judge_lease(JobState::Pending, t1, t1), Stale);
        // Completed: the same lease may repeat its completion, no other.
        assert_eq!(judge_lease(JobState::Succeeded, t2, t2), AlreadyCompleted);
        assert_eq!(judge_lease(JobState::Succeeded, t2, t1), Stale);
        // Cancelled: the worker learns it, whatever token it holds.
        assert_eq!(judge_lease(JobState::Cancelled, t2, t2), Cancelled);
        assert_eq!(judge_lease(JobState::Cancelled, t2, t1), Cancelled);
        assert_eq!(judge_lease(JobState::Dead, t2, t2), Stale);
    }

    #[test]
    fn an_expired_lease_is_retried_until_the_attempts_are_spent() {
        assert_eq!(
            after_expiry(1, 3, 10, 100),
            AfterFailure::Retry { delay_ms: 10 }
        );
        assert_eq!(after_expiry(3, 3, 10, 100), AfterFailure::Dead);
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
