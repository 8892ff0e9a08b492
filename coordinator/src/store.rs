//! The durable queue: every state change of sweeps, jobs, leases and results
//! is one SQL statement or transaction here. The database is the truth; the
//! coordinator keeps nothing a restart would lose.
//!
//! The same SQL runs on SQLite and Postgres (parameters are written `$N`,
//! which both accept). Claiming is one atomic `UPDATE … RETURNING`; on
//! Postgres its subquery takes the row `FOR UPDATE SKIP LOCKED`, so several
//! coordinators can share one database. Every call after a claim is guarded
//! by the job's fencing token, so a late call from an expired lease changes
//! nothing.

use crate::entity::{job, job_dep, result, result_metric, sweep, worker};
use crate::error::{Error, Result};
use crate::ids::{FencingToken, JobId, SweepId, WorkerId};
use crate::queue::{
    AfterFailure, Event, JobState, LeaseVerdict, SweepState, after_expiry, after_failure,
    judge_lease,
};
use asdsweep_migrations::{Migrator, MigratorTrait};
use asdsweep_shared::analysis::Direction;
use asdsweep_shared::grid::{self, JobSpec};
use asdsweep_shared::spec::{Backend, QueueSpec, Spec};
use futures::future::BoxFuture;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, Statement, TransactionTrait, Value,
};

mod lease;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Milliseconds since the Unix epoch on this host's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Rows inserted per statement at launch (well under SQLite's 32766 bound parameters).
const INSERT_CHUNK: usize = 500;

/// A handle on the queue database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// When each worker's `last_seen_ms` was last written (the hot path writes
    /// it at most once per [`TOUCH_EVERY_MS`] per worker) and its backend.
    touched: Arc<Mutex<HashMap<WorkerId, Seen>>>,
    /// The task that the hot path's calls go through.
    hot: HotPath,
}

/// The task that the leasing calls go through, by database.
#[derive(Debug, Clone)]
enum HotPath {
    /// SQLite: the group-commit writer, through which every write goes, and the
    /// checkpointer beside it.
    Writer {
        ops: tokio::sync::mpsc::UnboundedSender<Op>,
        checkpoints: Arc<Checkpointer>,
    },
    /// Postgres: the batchers of claims, heartbeats and completions ([`batches`]); every
    /// other call is a statement or transaction of its own.
    Batchers(Batchers),
}

impl HotPath {
    fn writer(&self) -> Option<&tokio::sync::mpsc::UnboundedSender<Op>> {
        match self {
            HotPath::Writer { ops, .. } => Some(ops),
            HotPath::Batchers(_) => None,
        }
    }
}

/// A worker as the hot path knows it.
#[derive(Debug, Clone)]
struct Seen {
    /// Last `last_seen_ms` written.
    at_ms: i64,
    /// The backend it registered with (fixed for the worker id's life).
    backend: String,
}

/// Called with the batch's commit outcome; sends the operation's answer.
type BatchReply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// One general operation of a group-commit batch.
type BatchOp = Box<dyn for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, BatchReply> + Send>;
/// Where an operation's answer goes.
type Answer<T> = tokio::sync::oneshot::Sender<Result<T>>;

/// An operation for the SQLite writer. Claims, heartbeats and completions are
/// typed so that every waiting call of a kind is answered by one batched
/// statement ([`lease`]); anything else is a closure run in its own savepoint.
enum Op {
    Claim(lease::Claimant, Answer<Option<Claimed>>),
    Beat(lease::Beat, Answer<HeartbeatOutcome>),
    Complete(Box<lease::Completion>, Answer<()>),
    Other(BatchOp),
}

/// Most operations committed together.
const MAX_BATCH: usize = 256;

/// A call waiting for one of the Postgres batchers, and where its answer goes.
type Call<C, T> = (C, Answer<T>);

/// The Postgres batchers' inboxes, one per kind of leasing call.
#[derive(Debug, Clone)]
struct Batchers {
    claims: tokio::sync::mpsc::UnboundedSender<Call<lease::Claimant, Option<Claimed>>>,
    beats: tokio::sync::mpsc::UnboundedSender<Call<lease::Beat, HeartbeatOutcome>>,
    dones: tokio::sync::mpsc::UnboundedSender<Call<lease::Completion, ()>>,
}

/// Most calls answered by one batch on Postgres.
const MAX_CALLS: usize = 64;

impl Batchers {
    /// Starts one batcher per kind of call on `db`.
    fn start(db: &DatabaseConnection) -> Batchers {
        let (claims, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batches(db.clone(), rx, claim_batch));
        let (beats, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batches(db.clone(), rx, beat_batch));
        let (dones, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batches(db.clone(), rx, completion_batch));
        Batchers {
            claims,
            beats,
            dones,
        }
    }
}

/// Hands `call` to a batcher and waits for its answer.
async fn batched<C, T>(
    inbox: &tokio::sync::mpsc::UnboundedSender<Call<C, T>>,
    call: C,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    inbox
        .send((call, tx))
        .map_err(|_| Error::Db(DbErr::Custom("the queue's batcher has stopped".into())))?;
    rx.await
        .map_err(|_| Error::Db(DbErr::Custom("the queue's batcher dropped a call".into())))?
}

/// Postgres: answers every waiting call of one kind together with `run`, one batch at a
/// time. Under load the calls that arrive while a batch runs form the next one, so a fleet
/// finishing jobs together costs a few statements instead of one per worker; a lone call
/// goes at once. Claims, heartbeats and completions each have a batcher of their own, so
/// their batches run side by side on connections of the pool.
async fn batches<C, T>(
    db: DatabaseConnection,
    mut calls: tokio::sync::mpsc::UnboundedReceiver<Call<C, T>>,
    run: impl AsyncFn(&DatabaseConnection, &[C]) -> Vec<Result<T>>,
) {
    let mut batch = Vec::with_capacity(MAX_CALLS);
    while calls.recv_many(&mut batch, MAX_CALLS).await > 0 {
        let (args, answers): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        for (answer, out) in answers.into_iter().zip(run(&db, &args).await) {
            let _ = answer.send(out);
        }
    }
}

/// Claims together: one statement per backend ([`lease::claim_many`]). A failure fails the
/// claims of its batch only, and the workers ask again (had the jobs been leased before the
/// failure, in reading an evaluation job's inputs, their leases expire and they are leased
/// again).
async fn claim_batch(
    db: &DatabaseConnection,
    claimants: &[lease::Claimant],
) -> Vec<Result<Option<Claimed>>> {
    match lease::claim_many(db, claimants, now_ms()).await {
        Ok(claimed) => claimed.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(error = %e, claims = claimants.len(), "a batch of claims failed");
            claimants
                .iter()
                .map(|_| {
                    Err(Error::Db(DbErr::Custom(format!(
                        "claiming a job failed: {e}"
                    ))))
                })
                .collect()
        }
    }
}

/// Heartbeats together: one `UPDATE` per [`lease::rounds`] round (a job at most once in
/// each); when one fails, its beats again one by one, so that a bad beat fails alone.
async fn beat_batch(
    db: &DatabaseConnection,
    beats: &[lease::Beat],
) -> Vec<Result<HeartbeatOutcome>> {
    let now = now_ms();
    in_rounds(
        beats,
        |b| b.job_id,
        |round| async move { lease::heartbeat_many(db, &round, now).await },
    )
    .await
}

/// Completions together: a round of one is one statement ([`lease::complete_one`]); a
/// larger round is one transaction ([`lease::complete_many`]), committed once. When a
/// round fails, its completions again one by one.
async fn completion_batch(db: &DatabaseConnection, dones: &[lease::Completion]) -> Vec<Result<()>> {
    let now = now_ms();
    in_rounds(
        dones,
        |c| c.job_id,
        |round| async move {
            match &round[..] {
                [one] => Ok(vec![lease::complete_one(db, one, now).await]),
                _ => {
                    let txn = db.begin().await?;
                    let outs = lease::complete_many(&txn, &round, now).await?;
                    txn.commit().await?;
                    Ok(outs)
                }
            }
        },
    )
    .await
}

/// Answers `calls` with `run`, a [`lease::rounds`] round at a time (a job at most once in
/// each), in their order; a round whose `run` fails is run again a call at a time.
async fn in_rounds<C: Clone, T, F: Future<Output = Result<Vec<Result<T>>>>>(
    calls: &[C],
    job_id: impl Fn(&C) -> JobId,
    run: impl Fn(Vec<C>) -> F,
) -> Vec<Result<T>> {
    let mut outs: Vec<Option<Result<T>>> = calls.iter().map(|_| None).collect();
    let indices: Vec<usize> = (0..calls.len()).collect();
    for round in lease::rounds(indices, |&i| job_id(&calls[i])) {
        let args: Vec<C> = round.iter().map(|&i| calls[i].clone()).collect();
        let found = match run(args).await {
            Ok(found) => found,
            Err(e) if round.len() > 1 => {
                tracing::warn!(error = %e, calls = round.len(), "a batch failed; running its calls one by one");
                let mut found = Vec::with_capacity(round.len());
                for &i in &round {
                    found.push(run(vec![calls[i].clone()]).await.and_then(only));
                }
                found
            }
            Err(e) => vec![Err(e)],
        };
        for (i, out) in round.into_iter().zip(found) {
            outs[i] = Some(out);
        }
    }
    // Every call is in one round and each round answers all of its calls; should a
    // statement answer fewer, the rest get an error rather than the batcher a panic.
    outs.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(Error::Db(DbErr::Custom(
                    "the batch gave no answer for this call".into(),
                )))
            })
        })
        .collect()
}

/// When SQLite's write-ahead log is checkpointed ([`Checkpointer`]).
#[derive(Debug, Clone, Copy)]
struct CheckpointPolicy {
    /// How often the background checkpointer copies the log back into the database file.
    every: Duration,
    /// Pages in the log beyond which the writer checkpoints itself between two
    /// batches, so that the log starts again from its beginning.
    restart_pages: i64,
}

/// A checkpoint every quarter second; the log restarted past 16,384 pages of 4 KiB
/// (64 MiB, the bound it had with automatic checkpoints).
const CHECKPOINTS: CheckpointPolicy = CheckpointPolicy {
    every: Duration::from_millis(250),
    restart_pages: 16_384,
};

/// SQLite's checkpoints, kept off the writer's path. In WAL mode with
/// `synchronous = NORMAL` SQLite syncs its files only when it checkpoints, and a
/// commit that crosses `wal_autocheckpoint` checkpoints inside the commit: the
/// group-commit writer, and every call waiting on it, stalled for the syncs
/// (seen with strace in the fleet benchmark: 0.16–0.23 s each on the development
/// machine's disk). So the writer's connection never checkpoints on its own; a
/// connection of its own copies the log back every [`CheckpointPolicy::every`] in
/// `PASSIVE` mode, which waits for nobody and blocks nobody, and which also puts
/// the results in the database file within a fraction of a second.
#[derive(Debug)]
struct Checkpointer {
    db: DatabaseConnection,
    task: tokio::task::JoinHandle<()>,
    /// Set when the log has passed its bound. Passive checkpoints alone cannot
    /// start the log again while the writer keeps appending to it, so the writer
    /// then checkpoints itself between two batches ([`group_commit`]), when
    /// little is left to copy, and its next batch starts the log from its beginning.
    restart: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to the (migrated) database at `url`.
    async fn start(url: &str, policy: CheckpointPolicy) -> Result<Checkpointer> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .max_connections(1)
            .min_connections(1);
        opts.map_sqlx_sqlite_opts(|o| {
            o.synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
        let db = Database::connect(opts).await?;
        let restart = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(checkpoint_in_background(
            db.clone(),
            restart.clone(),
            policy,
        ));
        Ok(Checkpointer { db, task, restart })
    }

    /// Stops the task and closes its connection.
    async fn stop(&self) -> Result<()> {
        self.task.abort();
        self.db.close_by_ref().await?;
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `PRAGMA wal_checkpoint` reports.
#[derive(Debug, Clone, Copy)]
struct WalState {
    /// Another connection was checkpointing: this one did nothing.
    busy: bool,
    /// Pages in the log.
    pages: i64,
    /// Of those, pages now in the database file.
    copied: i64,
}

/// Runs a `PASSIVE` checkpoint on `db`.
async fn checkpoint_passive(db: &DatabaseConnection) -> Result<WalState> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?
        .ok_or_else(|| Error::Db(DbErr::Custom("wal_checkpoint returned no row".into())))?;
    Ok(WalState {
        busy: row.try_get::<i64>("", "busy")? != 0,
        pages: row.try_get("", "log")?,
        copied: row.try_get("", "checkpointed")?,
    })
}

/// The checkpointer's loop ([`Checkpointer`]).
async fn checkpoint_in_background(
    db: DatabaseConnection,
    restart: Arc<AtomicBool>,
    policy: CheckpointPolicy,
) {
    let mut every = tokio::time::interval(policy.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Failures in a row: the first is logged, and then one in a thousand (every few
    // minutes), not four a second.
    let mut failing = 0u64;
    loop {
        every.tick().await;
        match checkpoint_passive(&db).await {
            Ok(wal) => {
                if failing > 0 {
                    tracing::info!(failures = failing, "background checkpoints work again");
                    failing = 0;
                }
                if wal.pages >= policy.restart_pages {
                    restart.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                if failing.is_multiple_of(1000) {
                    tracing::warn!(error = %e, failures = failing + 1, "a background checkpoint failed; the write-ahead log grows until one succeeds");
                }
                failing += 1;
            }
        }
    }
}

/// The writer's own checkpoint, when the checkpointer asked for one: once it has
/// copied the whole log, the writer's next transaction starts the log afresh.
async fn restart_log_if_asked(db: &DatabaseConnection, restart: &AtomicBool) {
    if !restart.load(Ordering::Relaxed) {
        return;
    }
    match checkpoint_passive(db).await {
        Ok(wal) if !wal.busy && wal.copied == wal.pages => restart.store(false, Ordering::Relaxed),
        // The background checkpoint was running, or a reader holds old pages:
        // again after the next batch.
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the writer's checkpoint failed"),
    }
}

/// The answer to send once the batch's commit outcome is known.
fn reply_after_commit<T: Send + 'static>(answer: Answer<T>, out: Result<T>) -> BatchReply {
    Box::new(move |committed: std::result::Result<(), String>| {
        let _ = answer.send(match (out, committed) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(why)) => Err(Error::Db(DbErr::Custom(format!(
                "batch commit failed: {why}"
            )))),
            (Err(e), _) => Err(e),
        });
    })
}

/// Calls of one kind, in order, and where their answers go.
struct Calls<C, T> {
    args: Vec<C>,
    answers: Vec<Answer<T>>,
}

impl<C, T: Send + 'static> Calls<C, T> {
    fn new(calls: Vec<(C, Answer<T>)>) -> Self {
        let (args, answers) = calls.into_iter().unzip();
        Calls { args, answers }
    }

    /// The answers to send once the batch commits: `outs` holds one per call.
    fn replies(self, outs: Vec<Result<T>>) -> impl Iterator<Item = BatchReply> {
        self.answers
            .into_iter()
            .zip(outs)
            .map(|(answer, out)| reply_after_commit(answer, out))
    }

    /// Runs each call alone in a savepoint of its own, so that a bad call
    /// cannot fail the others.
    async fn one_by_one(
        self,
        txn: &DatabaseTransaction,
        run: impl AsyncFn(&DatabaseTransaction, &[C]) -> Result<Vec<Result<T>>>,
    ) -> Vec<BatchReply> {
        let mut outs = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            outs.push(
                in_savepoint(txn, async |sp| run(sp, std::slice::from_ref(arg)).await)
                    .await
                    .and_then(only),
            );
        }
        self.replies(outs).collect()
    }
}

/// The claims, heartbeats and completions of one group-commit batch;
/// completions and heartbeats split into [`lease::rounds`].
struct LeaseCalls {
    dones: Vec<Calls<lease::Completion, ()>>,
    beats: Vec<Calls<lease::Beat, HeartbeatOutcome>>,
    claims: Calls<lease::Claimant, Option<Claimed>>,
}

/// What [`LeaseCalls::together`] found: one answer per call, in order.
type LeaseOutcome = (
    Vec<Vec<Result<()>>>,
    Vec<Vec<Result<HeartbeatOutcome>>>,
    Vec<Option<Claimed>>,
);

impl LeaseCalls {
    /// Answers every call with the batched statements of [`lease`], straight in
    /// `txn` (no savepoints: the fewest statements, for the common case). A
    /// statement error fails it as a whole; the writer then rolls `txn` back
    /// and runs [`LeaseCalls::one_by_one`] instead. Completions run first (they
    /// may make jobs ready for this batch's claims), then heartbeats and claims.
    async fn together(&self, txn: &DatabaseTransaction, now: i64) -> Result<LeaseOutcome> {
        let mut dones = Vec::with_capacity(self.dones.len());
        for round in &self.dones {
            dones.push(lease::complete_many(txn, &round.args, now).await?);
        }
        let mut beats = Vec::with_capacity(self.beats.len());
        for round in &self.beats {
            beats.push(lease::heartbeat_many(txn, &round.args, now).await?);
        }
        let claims = lease::claim_many(txn, &self.claims.args, now).await?;
        Ok((dones, beats, claims))
    }

    /// The answers to send once the batch commits, from what [`LeaseCalls::together`] found.
    fn replies(self, (dones, beats, claims): LeaseOutcome) -> Vec<BatchReply> {
        let mut replies = Vec::new();
        for (round, outs) in self.dones.into_iter().zip(dones) {
            replies.extend(round.replies(outs));
        }
        for (round, outs) in self.beats.into_iter().zip(beats) {
            replies.extend(round.replies(outs));
        }
        replies.extend(self.claims.replies(claims.into_iter().map(Ok).collect()));
        replies
    }

    /// Runs every call alone in a savepoint of its own.
    async fn one_by_one(self, txn: &DatabaseTransaction, now: i64) -> Vec<BatchReply> {
        let mut replies = Vec::new();
        for round in self.dones {
            replies.extend(
                round
                    .one_by_one(txn, async move |t, calls| {
                        lease::complete_many(t, calls, now).await
                    })
                    .await,
            );
        }
        for round in self.beats {
            replies.extend(
                round
                    .one_by_one(txn, async move |t, calls| {
                        lease::heartbeat_many(t, calls, now).await
                    })
                    .await,
            );
        }
        replies.extend(
            self.claims
                .one_by_one(txn, async move |t, calls| {
                    Ok(lease::claim_many(t, calls, now)
                        .await?
                        .into_iter()
                        .map(Ok)
                        .collect())
                })
                .await,
        );
        replies
    }
}

/// Runs `work` in a savepoint of `txn`: undone if it fails.
async fn in_savepoint<T>(
    txn: &DatabaseTransaction,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T>,
) -> Result<T> {
    let sp = txn.begin().await?;
    match work(&sp).await {
        Ok(v) => {
            sp.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sp.rollback().await;
            Err(e)
        }
    }
}

/// The single SQLite writer: takes every operation that is waiting, runs them
/// in one transaction and commits once, so the write-ahead log is appended
/// once per batch instead of once per call. Leasing calls go first, batched
/// ([`LeaseCalls`]); then the rest, each in a savepoint of its own.
async fn group_commit(
    db: DatabaseConnection,
    mut ops: tokio::sync::mpsc::UnboundedReceiver<Op>,
    restart: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while ops.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let now = now_ms();
        let (mut claims, mut beats, mut dones, mut others) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for op in batch.drain(..) {
            match op {
                Op::Claim(worker, answer) => claims.push((worker, answer)),
                Op::Beat(beat, answer) => beats.push((beat, answer)),
                Op::Complete(done, answer) => dones.push((*done, answer)),
                Op::Other(op) => others.push(op),
            }
        }
        let calls = LeaseCalls {
            dones: lease::rounds(dones, |(c, _)| c.job_id)
                .into_iter()
                .map(Calls::new)
                .collect(),
            beats: lease::rounds(beats, |(b, _)| b.job_id)
                .into_iter()
                .map(Calls::new)
                .collect(),
            claims: Calls::new(claims),
        };
        // Dropping the operations (on a failed BEGIN) answers their callers with an error; workers retry.
        let Ok(mut txn) = begin_logged(&db).await else {
            continue;
        };
        let mut replies = match calls.together(&txn, now).await {
            Ok(found) => calls.replies(found),
            Err(e) => {
                tracing::warn!(error = %e, "a batch of leasing calls failed; running them one by one");
                let _ = txn.rollback().await;
                let Ok(fresh) = begin_logged(&db).await else {
                    continue;
                };
                txn = fresh;
                calls.one_by_one(&txn, now).await
            }
        };
        for op in others {
            replies.push(op(&txn).await);
        }
        let committed = txn.commit().await.map_err(|e| e.to_string());
        for reply in replies {
            reply(committed.clone());
        }
        restart_log_if_asked(&db, &restart).await;
    }
}

/// Opens the writer's transaction; logs why not.
async fn begin_logged(db: &DatabaseConnection) -> std::result::Result<DatabaseTransaction, DbErr> {
    db.begin().await.inspect_err(
        |e| tracing::error!(error = %e, "cannot open a write transaction; dropping this batch"),
    )
}

/// Least interval between two `last_seen_ms` writes for one worker.
const TOUCH_EVERY_MS: i64 = 1_000;

/// A sweep to store: its identity, its spec and its expanded jobs.
#[derive(Debug, Clone, Copy)]
pub struct NewSweep<'a> {
    /// Human name.
    pub name: &'a str,
    /// Hash of the parsed spec.
    pub spec_hash: &'a str,
    /// Identity for idempotent launch.
    pub sweep_key: &'a str,
    /// The spec as launched.
    pub spec_toml: &'a str,
    /// Queue settings for every job.
    pub queue: &'a QueueSpec,
    /// The jobs.
    pub jobs: &'a [JobSpec],
}

/// The outcome of a launch.
#[derive(Debug, Clone)]
pub struct Launched {
    /// The sweep.
    pub sweep: sweep::Model,
    /// False when the same spec had been launched before and that sweep is returned.
    pub created: bool,
}

/// A job just leased by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job row after the claim (state `leased`, new token, attempt counted).
    pub job: job::Model,
    /// Artifacts produced by the jobs it depends on.
    pub input_artifacts: Vec<String>,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The lease was extended to this time.
    Extended(i64),
    /// The job was cancelled: the worker must stop it.
    Cancelled,
}

/// A registering worker's description.
#[derive(Debug, Clone, Default)]
pub struct NewWorker {
    /// Name it gave.
    pub name: String,
    /// Training backend.
    pub backend: String,
    /// Device.
    pub device: String,
    /// Memory for jobs, bytes.
    pub memory_bytes: u64,
    /// Labels.
    pub labels: Vec<String>,
    /// Kinds it runs.
    pub kinds: Vec<String>,
    /// Build version.
    pub version: String,
}

/// Metrics of a finished job, as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewResult {
    /// Name of the proxy metric.
    pub proxy_metric: String,
    /// Proxy value.
    pub proxy_value: Option<f64>,
    /// Direction of the proxy metric as its family declares it; `None` when undeclared.
    pub proxy_direction: Option<Direction>,
    /// Further named metrics (names unique), stored in `result_metrics`.
    pub metrics: Vec<NamedMetric>,
    /// LP in-domain AUC.
    pub lp_in_auc: Option<f64>,
    /// LP in-domain pAUC.
    pub lp_in_pauc: Option<f64>,
    /// LP out-of-domain AUC.
    pub lp_out_auc: Option<f64>,
    /// LP out-of-domain pAUC.
    pub lp_out_pauc: Option<f64>,
    /// MD AUC.
    pub md_auc: Option<f64>,
    /// MD pAUC.
    pub md_pauc: Option<f64>,
    /// Extra metrics (JSON object).
    pub extra: Json,
    /// Provenance (JSON object).
    pub provenance: Json,
    /// Artifacts produced.
    pub artifacts: Vec<String>,
}

/// A further named metric of a result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NamedMetric {
    /// Name, unique within its result.
    pub name: String,
    /// Value; `None` when it could not be measured.
    pub value: Option<f64>,
    /// Direction when it is a proxy metric; `None` otherwise.
    pub direction: Option<Direction>,
}

impl From<result_metric::Model> for NamedMetric {
    fn from(m: result_metric::Model) -> Self {
        NamedMetric {
            direction: m.declared_direction(),
            name: m.name,
            value: m.value,
        }
    }
}

/// A job's recorded result with its further metrics, as [`Store::results`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// The `results` row.
    pub result: result::Model,
    /// Its further metrics, by name.
    pub metrics: Vec<NamedMetric>,
}

/// A sweep's progress.
#[derive(Debug, Clone)]
pub struct SweepProgress {
    /// The sweep.
    pub sweep: sweep::Model,
    /// Jobs per state.
    pub counts: Vec<(JobState, u64)>,
    /// Succeeded jobs per second over the last minute.
    pub throughput_per_s: f64,
    /// Seconds to finish at that rate.
    pub eta_s: Option<f64>,
    /// Dead jobs: key, attempts, last error.
    pub dead: Vec<(String, i32, String)>,
}

impl SweepProgress {
    /// Jobs in a state.
    pub fn count(&self, state: JobState) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
    /// All jobs.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
    /// True when no job can run any more.
    pub fn is_finished(&self) -> bool {
        self.counts.iter().all(|(s, n)| *n == 0 || s.is_final())
    }
}

#[derive(Debug, FromQueryResult)]
struct StateCount {
    state: JobState,
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct IdRow {
    id: JobId,
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct BackendsCount {
    backends: String,
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct BackendRow {
    backend: String,
}

/// Creates the schema and applies the migrations on Postgres under an advisory lock held
/// by a connection of its own, so that coordinators started at the same moment on an empty
/// database take turns (the first migrates, the others find it done) instead of racing to
/// create the same tables and types. The lock is per schema; a session's advisory lock is
/// released with its connection, so a coordinator killed while migrating holds nobody up.
async fn migrate_postgres(url: &str, db: &DatabaseConnection, schema: Option<&str>) -> Result<()> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .max_connections(1)
        .min_connections(1);
    let lock = Database::connect(opts).await?;
    // `schema` passed `check_schema_name`: a plain identifier, safe inside the literal.
    let key = format!(
        "hashtextextended('asdsweep migrations {}', 0)",
        schema.unwrap_or("public")
    );
    lock.execute_unprepared(&format!("SELECT pg_advisory_lock({key})"))
        .await?;
    let migrated = async {
        if let Some(schema) = schema {
            db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
        }
        Migrator::up(db, None).await
    }
    .await;
    let unlocked = lock
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({key})"))
        .await;
    let closed = lock.close().await;
    migrated?;
    unlocked?;
    closed?;
    Ok(())
}

impl Store {
    /// Connects to a sea-orm URL (`sqlite://PATH?mode=rwc`, `postgres://…`) and
    /// applies the migrations. `schema` selects a Postgres schema (created if
    /// missing); it is ignored for SQLite.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Store> {
        Store::open_with(url, schema, CHECKPOINTS).await
    }

    /// [`Store::open`] with SQLite's checkpoints as `checkpoints` says.
    async fn open_with(
        url: &str,
        schema: Option<&str>,
        checkpoints: CheckpointPolicy,
    ) -> Result<Store> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite:") {
            // One connection serialises all statements in-process: no SQLITE_BUSY
            // round trips between our own connections; WAL lets other processes
            // (the CLI) read while we write, and the busy timeout covers them.
            opts.max_connections(1).min_connections(1);
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Checkpoints are the [`Checkpointer`]'s.
                    .pragma("wal_autocheckpoint", "0")
            });
        } else {
            opts.max_connections(16).min_connections(1);
            if let Some(schema) = schema {
                check_schema_name(schema)?;
                opts.set_schema_search_path(schema.to_owned());
            }
        }
        let db = Database::connect(opts).await?;
        match db.get_database_backend() {
            DbBackend::Postgres => migrate_postgres(url, &db, schema).await?,
            _ => Migrator::up(&db, None).await?,
        }
        let hot = if db.get_database_backend() == DbBackend::Sqlite {
            let checkpoints = Arc::new(Checkpointer::start(url, checkpoints).await?);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(group_commit(db.clone(), rx, checkpoints.restart.clone()));
            HotPath::Writer {
                ops: tx,
                checkpoints,
            }
        } else {
            HotPath::Batchers(Batchers::start(&db))
        };
        Ok(Store {
            db,
            touched: Arc::default(),
            hot,
        })
    }

    /// Closes the connections: the store is not usable afterwards, by this handle or any
    /// clone. On SQLite the write-ahead log is first written back into the database file
    /// and emptied, so the file alone holds every result (whoever copies `asdsweep.db`
    /// copies them all).
    pub async fn close(&self) -> Result<()> {
        if let HotPath::Writer { checkpoints, .. } = &self.hot {
            checkpoints.stop().await?;
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        self.db.close_by_ref().await?;
        Ok(())
    }

    /// The underlying connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        stmt(&self.db, sql, values)
    }

    // ----- sweeps --------------------------------------------------------

    /// Launches a spec: expands it and stores its jobs. Launching the same spec
    /// again returns the existing sweep unless `force_new` is set.
    pub async fn launch(&self, spec: &Spec, spec_toml: &str, force_new: bool) -> Result<Launched> {
        let hash = spec.hash();
        let key = if force_new {
            format!("{hash}-{:016x}", rand::random::<u64>())
        } else {
            hash.clone()
        };
        let jobs = grid::expand(spec);
        self.launch_jobs(NewSweep {
            name: &spec.name,
            spec_hash: &hash,
            sweep_key: &key,
            spec_toml,
            queue: &spec.queue,
            jobs: &jobs,
        })
        .await
    }

    /// Stores a sweep with an explicit job list (used by [`Store::launch`] and by tools
    /// that build jobs themselves, such as the queue benchmark).
    pub async fn launch_jobs(&self, new: NewSweep<'_>) -> Result<Launched> {
        if let Some(existing) = self.sweep_by_key(new.sweep_key).await? {
            return Ok(Launched {
                sweep: existing,
                created: false,
            });
        }
        match self.insert_sweep(&new).await {
            Ok(sweep) => Ok(Launched {
                sweep,
                created: true,
            }),
            // Another coordinator launched the same spec at the same moment.
            Err(e) => match self.sweep_by_key(new.sweep_key).await? {
                Some(existing) => Ok(Launched {
                    sweep: existing,
                    created: false,
                }),
                None => Err(e),
            },
        }
    }

    async fn sweep_by_key(&self, key: &str) -> Result<Option<sweep::Model>> {
        Ok(sweep::Entity::find()
            .filter(sweep::Column::SweepKey.eq(key))
            .one(&self.db)
            .await?)
    }

    async fn insert_sweep(&self, new: &NewSweep<'_>) -> Result<sweep::Model> {
        let NewSweep {
            name,
            spec_hash,
            sweep_key,
            spec_toml,
            queue,
            jobs,
        } = *new;
        let now = now_ms();
        let txn = self.db.begin().await?;
        let inserted = sweep::Entity::insert(sweep::ActiveModel {
            sweep_key: Set(sweep_key.to_owned()),
            name: Set(name.to_owned()),
            spec_hash: Set(spec_hash.to_owned()),
            spec_toml: Set(spec_toml.to_owned()),
            state: Set(SweepState::Active),
            job_count: Set(jobs.len() as i64),
            created_at_ms: Set(now),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let sweep_id = inserted.last_insert_id;
        let mut dependents: HashMap<&str, i32> = HashMap::new();
        for dep in jobs.iter().flat_map(|j| &j.depends_on) {
            *dependents.entry(dep.as_str()).or_default() += 1;
        }
        for chunk in jobs.chunks(INSERT_CHUNK) {
            let rows = chunk.iter().map(|j| job::ActiveModel {
                sweep_id: Set(sweep_id),
                job_key: Set(j.key.clone()),
                kind: Set(j.kind.clone()),
                stage: Set(j.stage.as_str().to_owned()),
                family: Set(j.family.clone()),
                config: Set(j.config.clone()),
                device: Set(j.device.clone()),
                seed: Set(j.seed as i64),
                params: Set(j.params.clone()),
                state: Set(JobState::at_launch(!j.depends_on.is_empty())),
                priority: Set(j.priority),
                attempts: Set(0),
                max_attempts: Set(queue.max_attempts as i32),
                lease_ttl_ms: Set(queue.lease_ttl_ms as i64),
                backoff_base_ms: Set(queue.backoff_base_ms as i64),
                backoff_max_ms: Set(queue.backoff_max_ms as i64),
                lease_token: Set(FencingToken(0)),
                lease_expires_at_ms: Set(None),
                worker_id: Set(None),
                not_before_ms: Set(0),
                last_error: Set(None),
                dependents: Set(dependents.get(j.key.as_str()).copied().unwrap_or(0)),
                progress: Set(None),
                created_at_ms: Set(now),
                started_at_ms: Set(None),
                finished_at_ms: Set(None),
                backends: Set(backend_list(&j.backends)),
                ..Default::default()
            });
            job::Entity::insert_many(rows).exec(&txn).await?;
        }
        if jobs.iter().any(|j| !j.depends_on.is_empty()) {
            let ids: HashMap<String, JobId> = job::Entity::find()
                .filter(job::Column::SweepId.eq(sweep_id))
                .all(&txn)
                .await?
                .into_iter()
                .map(|j| (j.job_key, j.id))
                .collect();
            let mut edges = Vec::new();
            for j in jobs {
                for dep in &j.depends_on {
                    let dep_id = *ids.get(dep).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "job {} depends on unknown job {dep}",
                            j.key
                        ))
                    })?;
                    edges.push(job_dep::ActiveModel {
                        job_id: Set(ids[&j.key]),
                        dep_id: Set(dep_id),
                    });
                }
            }
            for chunk in edges.chunks(INSERT_CHUNK) {
                job_dep::Entity::insert_many(chunk.to_vec())
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        // Fresh statistics after a bulk insert: with the table's stats from when it was
        // (nearly) empty, Postgres plans the claim as a sort of every pending job instead of
        // a walk of `idx_jobs_claim` (seen with auto_explain: leases took twice as long).
        if self.db.get_database_backend() == DbBackend::Postgres {
            self.db.execute_unprepared("ANALYZE jobs").await?;
        }
        sweep::Entity::find_by_id(sweep_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("sweep {sweep_id} just inserted"),
            })
    }

    /// Finds a sweep by id (`"12"`) or name (the newest sweep of that name).
    pub async fn resolve_sweep(&self, sweep: &str) -> Result<sweep::Model> {
        let found = match sweep.parse::<i64>() {
            Ok(id) => sweep::Entity::find_by_id(SweepId(id)).one(&self.db).await?,
            Err(_) => {
                sweep::Entity::find()
                    .filter(sweep::Column::Name.eq(sweep))
                    .order_by_desc(sweep::Column::Id)
                    .one(&self.db)
                    .await?
            }
        };
        found.ok_or_else(|| Error::NotFound {
            what: format!("sweep \"{sweep}\""),
        })
    }

    /// Every sweep, oldest first.
    pub async fn sweeps(&self) -> Result<Vec<sweep::Model>> {
        Ok(sweep::Entity::find()
            .order_by_asc(sweep::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Cancels a sweep: no job of it is leased again; running jobs learn it at
    /// their next heartbeat. Returns the number of jobs cancelled.
    pub async fn cancel(&self, sweep_id: SweepId) -> Result<u64> {
        let now = now_ms();
        let txn = self.db.begin().await?;
        txn.execute_raw(self.stmt(
            "UPDATE sweeps SET state = $2 WHERE id = $1",
            vec![sweep_id.into(), SweepState::Cancelled.into()],
        ))
        .await?;
        let res = txn
            .execute_raw(self.stmt(
                &format!(
                    "UPDATE jobs SET state = {to}, last_error = 'cancelled by operator', finished_at_ms = $2, \
                     lease_expires_at_ms = NULL WHERE sweep_id = $1 AND {from}",
                    to = sql_target(Event::Cancel),
                    from = sql_sources(Event::Cancel),
                ),
                vec![sweep_id.into(), now.into()],
            ))
            .await?;
        txn.commit().await?;
        Ok(res.rows_affected())
    }

    /// Re-queues a sweep's cancelled jobs (and with `dead`, its dead jobs) with a
    /// fresh attempt budget. Returns the number of jobs re-queued.
    pub async fn retry(&self, sweep_id: SweepId, dead: bool) -> Result<u64> {
        let requeue = Event::Retry { dead };
        let txn = self.db.begin().await?;
        txn.execute_raw(self.stmt(
            "UPDATE sweeps SET state = $2 WHERE id = $1",
            vec![sweep_id.into(), SweepState::Active.into()],
        ))
        .await?;
        let res = txn
            .execute_raw(self.stmt(
                &format!(
                    "UPDATE jobs SET state = {to}, attempts = 0, not_before_ms = 0, finished_at_ms = NULL, \
                     worker_id = NULL WHERE sweep_id = $1 AND {from}",
                    to = sql_target(requeue),
                    from = sql_sources(requeue),
                ),
                vec![sweep_id.into()],
            ))
            .await?;
        txn.execute_raw(self.stmt(&unblock_sql("sweep_id = $1"), vec![sweep_id.into()]))
            .await?;
        txn.commit().await?;
        Ok(res.rows_affected())
    }

    /// Counts, throughput, ETA and dead jobs of a sweep.
    pub async fn progress(&self, sweep: &sweep::Model) -> Result<SweepProgress> {
        let now = now_ms();
        let counts = StateCount::find_by_statement(self.stmt(
            "SELECT state, COUNT(*) AS n FROM jobs WHERE sweep_id = $1 GROUP BY state",
            vec![sweep.id.into()],
        ))
        .all(&self.db)
        .await?;
        let counts: Vec<(JobState, u64)> = JobState::ALL
            .into_iter()
            .map(|st| {
                (
                    st,
                    counts
                        .iter()
                        .find(|c| c.state == st)
                        .map(|c| c.n as u64)
                        .unwrap_or(0),
                )
            })
            .collect();
        let window_ms = (now - sweep.created_at_ms).clamp(1_000, 60_000);
        let recent = CountRow::find_by_statement(self.stmt(
            &format!(
                "SELECT COUNT(*) AS n FROM jobs WHERE sweep_id = $1 AND state = {} AND finished_at_ms >= $2",
                sql_state(JobState::Succeeded)
            ),
            vec![sweep.id.into(), (now - window_ms).into()],
        ))
        .one(&self.db)
        .await?
        .map(|r| r.n)
        .unwrap_or(0);
        let throughput_per_s = recent as f64 / (window_ms as f64 / 1000.0);
        let dead: Vec<(String, i32, String)> = job::Entity::find()
            .filter(job::Column::SweepId.eq(sweep.id))
            .filter(job::Column::State.eq(JobState::Dead))
            .order_by_asc(job::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|j| (j.job_key, j.attempts, j.last_error.unwrap_or_default()))
            .collect();
        let mut p = SweepProgress {
            sweep: sweep.clone(),
            counts,
            throughput_per_s,
            eta_s: None,
            dead,
        };
        let open =
            p.count(JobState::Blocked) + p.count(JobState::Pending) + p.count(JobState::Leased);
        p.eta_s = if open == 0 {
            Some(0.0)
        } else if throughput_per_s > 0.0 {
            Some(open as f64 / throughput_per_s)
        } else {
            None
        };
        Ok(p)
    }

    /// Pending jobs of a sweep that only some backends may run, per allowed list.
    pub async fn pending_by_backends(&self, sweep_id: SweepId) -> Result<Vec<(String, u64)>> {
        Ok(BackendsCount::find_by_statement(self.stmt(
            &format!(
                "SELECT backends, COUNT(*) AS n FROM jobs WHERE sweep_id = $1 AND state = {} \
                 AND backends IS NOT NULL GROUP BY backends ORDER BY backends",
                sql_state(JobState::Pending)
            ),
            vec![sweep_id.into()],
        ))
        .all(&self.db)
        .await?
        .into_iter()
        .map(|r| (r.backends, r.n as u64))
        .collect())
    }

    /// Jobs of every sweep counted by family and state (for `/metrics`).
    pub async fn job_counts(&self) -> Result<Vec<(String, JobState, u64)>> {
        #[derive(Debug, FromQueryResult)]
        struct FamilyStateCount {
            family: String,
            state: JobState,
            n: i64,
        }
        Ok(FamilyStateCount::find_by_statement(self.stmt(
            "SELECT family, state, COUNT(*) AS n FROM jobs GROUP BY family, state",
            vec![],
        ))
        .all(&self.db)
        .await?
        .into_iter()
        .map(|r| (r.family, r.state, r.n as u64))
        .collect())
    }

    /// Every job of a sweep with its result and that result's further metrics, in job order.
    pub async fn results(&self, sweep_id: SweepId) -> Result<Vec<(job::Model, Option<JobResult>)>> {
        let jobs = job::Entity::find()
            .filter(job::Column::SweepId.eq(sweep_id))
            .order_by_asc(job::Column::Id)
            .all(&self.db)
            .await?;
        let mut results: HashMap<i64, result::Model> = result::Entity::find()
            .filter(result::Column::SweepId.eq(sweep_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.job_id, r))
            .collect();
        let mut metrics: HashMap<i64, Vec<NamedMetric>> = HashMap::new();
        for m in result_metric::Entity::find()
            .from_raw_sql(self.stmt(
                "SELECT m.* FROM result_metrics m JOIN results r ON r.id = m.result_id \
                 WHERE r.sweep_id = $1",
                vec![sweep_id.into()],
            ))
            .all(&self.db)
            .await?
        {
            metrics.entry(m.result_id).or_default().push(m.into());
        }
        // Sorted here, not in SQL: Postgres may collate names otherwise than SQLite.
        for named in metrics.values_mut() {
            named.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(jobs
            .into_iter()
            .map(|j| {
                let r = results.remove(&j.id.0).map(|result| JobResult {
                    metrics: metrics.remove(&result.id).unwrap_or_default(),
                    result,
                });
                (j, r)
            })
            .collect())
    }

    /// How many workers were seen since `since_ms` (one `COUNT`, for `/metrics`).
    pub async fn count_workers_seen_since(&self, since_ms: i64) -> Result<u64> {
        Ok(worker::Entity::find()
            .filter(worker::Column::LastSeenMs.gte(since_ms))
            .count(&self.db)
            .await?)
    }

    /// Workers seen since `since_ms`, each with the key of a job it holds a lease on.
    pub async fn workers_seen_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(worker::Model, Option<String>)>> {
        let workers = worker::Entity::find()
            .filter(worker::Column::LastSeenMs.gte(since_ms))
            .order_by_asc(worker::Column::Name)
            .all(&self.db)
            .await?;
        let mut running: HashMap<WorkerId, String> = job::Entity::find()
            .filter(job::Column::State.eq(JobState::Leased))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|j| j.worker_id.map(|w| (w, j.job_key)))
            .collect();
        Ok(workers
            .into_iter()
            .map(|w| {
                let job = running.remove(&w.id);
                (w, job)
            })
            .collect())
    }

    // ----- workers and leases -------------------------------------------

    /// Registers a worker and returns its new id.
    pub async fn register_worker(&self, w: NewWorker) -> Result<WorkerId> {
        let now = now_ms();
        let id = WorkerId(format!("w-{:016x}", rand::random::<u64>()));
        let backend = w.backend;
        // Claims match it inside a LIKE pattern: keep it to plain names.
        if !backend
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::InvalidArgument(format!(
                "worker backend \"{backend}\" is not a plain name: expected flex, tch, cuda or none"
            )));
        }
        worker::Entity::insert(worker::ActiveModel {
            id: Set(id.clone()),
            name: Set(w.name),
            backend: Set(backend.clone()),
            device: Set(w.device),
            memory_bytes: Set(w.memory_bytes.min(i64::MAX as u64) as i64),
            labels: Set(serde_json::json!(w.labels)),
            kinds: Set(serde_json::json!(w.kinds)),
            version: Set(w.version),
            registered_at_ms: Set(now),
            last_seen_ms: Set(now),
        })
        .exec(&self.db)
        .await?;
        self.touched
            .lock()
            .expect("touch cache lock poisoned")
            .insert(
                id.clone(),
                Seen {
                    at_ms: now,
                    backend,
                },
            );
        Ok(id)
    }

    /// Marks a worker as seen (at most once a second) and returns its backend;
    /// fails if it is not registered.
    async fn touch_worker(&self, worker_id: &WorkerId, now: i64) -> Result<String> {
        {
            let mut touched = self.touched.lock().expect("touch cache lock poisoned");
            if let Some(seen) = touched.get_mut(worker_id) {
                if now - seen.at_ms < TOUCH_EVERY_MS {
                    return Ok(seen.backend.clone());
                }
                seen.at_ms = now;
            }
        }
        let row = BackendRow::find_by_statement(self.stmt(
            "UPDATE workers SET last_seen_ms = $2 WHERE id = $1 RETURNING backend",
            vec![worker_id.clone().into(), now.into()],
        ))
        .one(&self.db)
        .await?;
        let mut touched = self.touched.lock().expect("touch cache lock poisoned");
        match row {
            Some(BackendRow { backend }) => {
                touched.insert(
                    worker_id.clone(),
                    Seen {
                        at_ms: now,
                        backend: backend.clone(),
                    },
                );
                Ok(backend)
            }
            None => {
                touched.remove(worker_id);
                Err(Error::NotFound {
                    what: format!("worker {worker_id} (register again)"),
                })
            }
        }
    }

    /// Runs `work` in a transaction. On SQLite it joins the group-commit batch
    /// of the single writer task, inside a savepoint of its own so that a failing
    /// operation undoes only itself; elsewhere it gets a transaction of its own.
    /// `work` must do all its reads and writes through the transaction it is given.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let Some(writer) = self.hot.writer() else {
            return self.alone(async |txn| work(txn).await).await;
        };
        let op = move |answer: Answer<T>| {
            Op::Other(Box::new(move |outer: &DatabaseTransaction| {
                Box::pin(async move {
                    let out = in_savepoint(outer, async |sp| work(sp).await).await;
                    reply_after_commit(answer, out)
                })
            }))
        };
        submit(writer, op).await
    }

    /// Atomically leases the most urgent ready job to a worker.
    pub async fn claim(&self, worker_id: &WorkerId) -> Result<Option<Claimed>> {
        let now = now_ms();
        let backend = self.touch_worker(worker_id, now).await?;
        let claimant = lease::Claimant {
            worker_id: worker_id.clone(),
            backend,
        };
        match &self.hot {
            HotPath::Writer { ops: writer, .. } => {
                submit(writer, |answer| Op::Claim(claimant, answer)).await
            }
            HotPath::Batchers(b) => batched(&b.claims, claimant).await,
        }
    }

    /// Extends a lease; tells the worker if the job was cancelled. A reported
    /// `checkpoint` is kept beyond this attempt (see `jobs.checkpoint`).
    pub async fn heartbeat(
        &self,
        worker_id: &WorkerId,
        job_id: JobId,
        token: FencingToken,
        progress: Option<Json>,
        checkpoint: Option<String>,
    ) -> Result<HeartbeatOutcome> {
        let now = now_ms();
        let beat = lease::Beat {
            job_id,
            token,
            progress,
            checkpoint,
        };
        let out = match &self.hot {
            HotPath::Writer { ops, .. } => submit(ops, |answer| Op::Beat(beat, answer)).await,
            HotPath::Batchers(b) => batched(&b.beats, beat).await,
        }?;
        self.touch_worker(worker_id, now).await?;
        Ok(out)
    }

    /// Records a job's result, once. A call with a stale token is rejected and
    /// recorded nowhere; repeating an accepted call is harmless.
    pub async fn complete(
        &self,
        worker_id: &WorkerId,
        job_id: JobId,
        token: FencingToken,
        result: NewResult,
    ) -> Result<()> {
        let now = now_ms();
        let done = lease::Completion {
            worker_id: worker_id.clone(),
            job_id,
            token,
            result,
        };
        match &self.hot {
            HotPath::Writer { ops, .. } => {
                submit(ops, |answer| Op::Complete(Box::new(done), answer)).await
            }
            HotPath::Batchers(b) => batched(&b.dones, done).await,
        }?;
        self.touch_worker(worker_id, now).await?;
        Ok(())
    }

    /// Runs `work` in a transaction of its own, committed if it succeeds (dropped,
    /// hence rolled back, if not).
    async fn alone<T>(
        &self,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self.db.begin().await?;
        let out = work(&txn).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// Records a failed attempt: back to pending with backoff, or dead; with
    /// `release`, hands the lease back without counting the attempt.
    pub async fn fail(
        &self,
        worker_id: &WorkerId,
        job_id: JobId,
        token: FencingToken,
        error: &str,
        retryable: bool,
        release: bool,
    ) -> Result<JobState> {
        let now = now_ms();
        let error = clip(error, MAX_ERROR_BYTES);
        let this = self.clone();
        let state = self
            .write(move |txn| {
                Box::pin(async move {
                    let job = job::Entity::find_by_id(job_id).one(txn).await?;
                    let job = match job {
                        Some(j)
                            if judge_lease(j.state, j.lease_token, token)
                                == LeaseVerdict::Current =>
                        {
                            j
                        }
                        _ => return Err(lease_problem(txn, job_id, token).await?),
                    };
                    if release {
                        guarded_update(
                            txn,
                            job_id,
                            token,
                            Event::Release,
                            "attempts = attempts - 1, worker_id = NULL",
                            vec![],
                        )
                        .await?;
                        return Ok(Event::Release.target());
                    }
                    let error = format!("attempt {}/{}: {error}", job.attempts, job.max_attempts);
                    let outcome = after_failure(
                        job.attempts,
                        job.max_attempts,
                        retryable,
                        job.backoff_base_ms,
                        job.backoff_max_ms,
                    );
                    this.fail_attempt(txn, &job, &error, Event::Fail, outcome, now)
                        .await
                })
            })
            .await?;
        self.touch_worker(worker_id, now).await?;
        Ok(state)
    }

    /// Ends a failed (`Event::Fail`) or expired (`Event::Expire`) attempt as
    /// `outcome` says: back to pending after the backoff, or dead.
    async fn fail_attempt(
        &self,
        txn: &impl ConnectionTrait,
        job: &job::Model,
        error: &str,
        ended: fn(AfterFailure) -> Event,
        outcome: AfterFailure,
        now: i64,
    ) -> Result<JobState> {
        let event = ended(outcome);
        match outcome {
            AfterFailure::Retry { delay_ms } => {
                guarded_update(
                    txn,
                    job.id,
                    job.lease_token,
                    event,
                    "not_before_ms = $3, last_error = $4",
                    vec![(now + delay_ms).into(), error.into()],
                )
                .await?;
            }
            AfterFailure::Dead => {
                guarded_update(
                    txn,
                    job.id,
                    job.lease_token,
                    event,
                    "finished_at_ms = $3, last_error = $4",
                    vec![now.into(), error.into()],
                )
                .await?;
                self.kill_dependents(txn, job, error, now).await?;
            }
        }
        Ok(event.target())
    }

    /// Ends every job waiting (transitively) on a dead job, naming the cause.
    async fn kill_dependents(
        &self,
        txn: &impl ConnectionTrait,
        dead: &job::Model,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let reason = format!("dependency {} ended dead: {error}", dead.job_key);
        let mut frontier = vec![dead.id];
        while let Some(id) = frontier.pop() {
            let killed = IdRow::find_by_statement(self.stmt(
                &format!(
                    "UPDATE jobs SET state = {to}, finished_at_ms = $2, last_error = $3 \
                     WHERE {from} AND id IN (SELECT job_id FROM job_deps WHERE dep_id = $1) RETURNING id",
                    to = sql_target(Event::DependencyDead),
                    from = sql_sources(Event::DependencyDead),
                ),
                vec![id.into(), now.into(), reason.clone().into()],
            ))
            .all(txn)
            .await?;
            frontier.extend(killed.into_iter().map(|r| r.id));
        }
        Ok(())
    }

    /// Moves every blocked job whose dependencies have all succeeded to pending and returns
    /// how many it moved. A completion unblocks its dependents itself; this is the reaper's
    /// safety net for the one case that can miss: on Postgres, two completions committed at
    /// the same moment (two coordinators, or two batches) that finish the last two
    /// dependencies of one job each see the other dependency still leased, and neither
    /// unblocks it. (The study's grids give a job one dependency, so it does not arise there.)
    pub async fn unblock_ready(&self) -> Result<u64> {
        let statement = self.stmt(&unblock_sql(""), vec![]);
        self.write(move |txn| {
            Box::pin(async move { Ok(txn.execute_raw(statement).await?.rows_affected()) })
        })
        .await
    }

    /// Returns expired leases to the queue (or to `dead` when their attempts
    /// are spent) and names the jobs it returned. Safe to run from several
    /// coordinators at once.
    pub async fn reap_expired(&self) -> Result<Vec<JobId>> {
        let now = now_ms();
        let expired = job::Entity::find()
            .filter(job::Column::State.eq(JobState::Leased))
            .filter(job::Column::LeaseExpiresAtMs.lt(now))
            .all(&self.db)
            .await?;
        let mut reaped = Vec::new();
        for job in expired {
            let id = job.id;
            let error = format!(
                "attempt {}/{}: lease expired: worker {} stopped heartbeating",
                job.attempts,
                job.max_attempts,
                job.worker_id.as_ref().map_or("?", WorkerId::as_str)
            );
            let this = self.clone();
            let key = job.job_key.clone();
            let msg = error.clone();
            let outcome = after_expiry(
                job.attempts,
                job.max_attempts,
                job.backoff_base_ms,
                job.backoff_max_ms,
            );
            match self
                .write(move |txn| {
                    Box::pin(async move {
                        this.fail_attempt(txn, &job, &msg, Event::Expire, outcome, now)
                            .await
                    })
                })
                .await
            {
                Ok(_) => {
                    reaped.push(id);
                    tracing::info!(job = %key, "{error}");
                }
                // Completed or reaped by someone else in the meantime.
                Err(Error::StaleLease { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reaped)
    }

    /// Records an artifact's metadata; returns false if it was known.
    pub async fn record_artifact(&self, sha256: &str, size: u64, kind: &str) -> Result<bool> {
        let res = self
            .db
            .execute_raw(self.stmt(
                "INSERT INTO artifacts (sha256, size, kind, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                vec![sha256.into(), (size as i64).into(), kind.into(), now_ms().into()],
            ))
            .await?;
        Ok(res.rows_affected() == 1)
    }
}

/// Hands an operation to the SQLite writer and waits for its answer.
async fn submit<T>(
    writer: &tokio::sync::mpsc::UnboundedSender<Op>,
    op: impl FnOnce(Answer<T>) -> Op,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    writer
        .send(op(tx))
        .map_err(|_| Error::Db(DbErr::Custom("the database writer has stopped".into())))?;
    rx.await.map_err(|_| {
        Error::Db(DbErr::Custom(
            "the database writer dropped an operation".into(),
        ))
    })?
}

/// The one answer of a batch of one.
fn only<T>(mut answers: Vec<Result<T>>) -> Result<T> {
    answers.pop().unwrap_or_else(|| {
        Err(Error::Db(DbErr::Custom(
            "a batch of one gave no answer".into(),
        )))
    })
}

/// Builds a statement for the connection's backend (`$N` parameters work on both).
fn stmt(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(db.get_database_backend(), sql, values)
}

/// Explains why a token-guarded call matched no row.
async fn lease_problem(
    db: &impl ConnectionTrait,
    job_id: JobId,
    token: FencingToken,
) -> Result<Error> {
    let job = job::Entity::find_by_id(job_id).one(db).await?;
    Ok(match job {
        None => Error::NotFound {
            what: format!("job {job_id}"),
        },
        Some(j) if judge_lease(j.state, j.lease_token, token) == LeaseVerdict::Cancelled => {
            Error::Cancelled {
                job_id,
                job_key: j.job_key,
            }
        }
        Some(j) => Error::StaleLease {
            job_id,
            job_key: j.job_key,
            token,
            current: j.lease_token,
            state: j.state,
        },
    })
}

/// A job state as an SQL string literal (`'pending'`). State names are plain
/// lowercase words (see `queue`'s tests), so they need no escaping; a literal
/// rather than a bound parameter keeps each statement's text, and with it its
/// plan, fixed (the claim walks `idx_jobs_claim` for `state = 'pending'`).
fn sql_state(state: JobState) -> String {
    format!("'{state}'")
}

/// SQL condition: the row's `state` is one `event` moves a job out of
/// (`state = 'leased'`, `state IN ('blocked', 'pending', 'leased')`).
fn sql_sources(event: Event) -> String {
    let states: Vec<String> = event.sources().into_iter().map(sql_state).collect();
    match states.as_slice() {
        [] => "1 = 0".to_owned(),
        [one] => format!("state = {one}"),
        many => format!("state IN ({})", many.join(", ")),
    }
}

/// The state `event` moves a job into, as an SQL literal.
fn sql_target(event: Event) -> String {
    sql_state(event.target())
}

/// SQL: moves the blocked jobs whose dependencies have all succeeded to pending, among
/// those that `also` selects (an SQL condition on `jobs`; empty: all of them).
fn unblock_sql(also: &str) -> String {
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(" AND {also}")
    };
    format!(
        "UPDATE jobs SET state = {to} WHERE {from}{also} AND {deps_done}",
        to = sql_target(Event::Unblock),
        from = sql_sources(Event::Unblock),
        deps_done = deps_done(),
    )
}

/// SQL condition: every dependency of the row `jobs` has succeeded (what
/// [`Event::Unblock`] waits for).
fn deps_done() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.dep_id \
         WHERE d.job_id = jobs.id AND p.state <> {})",
        sql_state(JobState::Succeeded)
    )
}

/// Moves a leased job by `event` (one of the lease holder's: fail, expire,
/// release) only if its fencing token is still current. `set` names the other
/// columns to change and may use `$3`, `$4`, … for `extra` values.
async fn guarded_update(
    db: &impl ConnectionTrait,
    job_id: JobId,
    token: FencingToken,
    event: Event,
    set: &str,
    extra: Vec<Value>,
) -> Result<()> {
    let mut values: Vec<Value> = vec![job_id.into(), token.into()];
    values.extend(extra);
    let res = db
        .execute_raw(stmt(
            db,
            &format!(
                "UPDATE jobs SET state = {to}, {set}, lease_expires_at_ms = NULL \
                 WHERE id = $1 AND lease_token = $2 AND {from}",
                to = sql_target(event),
                from = sql_sources(event),
            ),
            values,
        ))
        .await?;
    if res.rows_affected() == 0 {
        return Err(lease_problem(db, job_id, token).await?);
    }
    Ok(())
}

/// Longest error text kept per job (a worker may send a whole log).
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Cuts text to at most `max` bytes on a character boundary, marking the cut.
/// `jobs.backends` as stored: the names comma-separated, NULL for any.
fn backend_list(backends: &[Backend]) -> Option<String> {
    (!backends.is_empty()).then(|| Backend::join(backends, ","))
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// Postgres schema names go into SQL text: allow only plain identifiers.
fn check_schema_name(schema: &str) -> Result<()> {
    if !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "schema \"{schema}\": allowed are 1-63 of A-Z a-z 0-9 _"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagnostic no-op job for the store's tests.
    pub(super) fn job(key: &str, depends_on: &[&str]) -> JobSpec {
        JobSpec {
            key: key.into(),
            kind: "noop".into(),
            stage: grid::Stage::Run,
            family: "f".into(),
            config: "c".into(),
            device: "d".into(),
            seed: 1,
            params: serde_json::json!({}),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            priority: 0,
            backends: vec![],
        }
    }

    /// A registered worker of the flex backend.
    async fn flex_worker(store: &Store, name: &str) -> WorkerId {
        store
            .register_worker(NewWorker {
                name: name.into(),
                backend: "flex".into(),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// A SQLite store in `dir` holding one sweep of `jobs`.
    pub(super) async fn sqlite_store_with(dir: &std::path::Path, jobs: &[JobSpec]) -> Store {
        let store = Store::open(
            &format!("sqlite://{}?mode=rwc", dir.join("q.db").display()),
            None,
        )
        .await
        .unwrap();
        let queue = QueueSpec::default();
        let new = NewSweep {
            name: "t",
            spec_hash: "h",
            sweep_key: "k",
            spec_toml: "",
            queue: &queue,
            jobs,
        };
        store.launch_jobs(new).await.unwrap();
        store
    }

    /// The rows in `dir/q.db` alone (its write-ahead log left behind), read from a copy.
    fn sweeps_in_the_file_alone(dir: &std::path::Path) -> Option<i64> {
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.join("q.db"), copy.path().join("q.db")).unwrap();
        let url = format!("sqlite://{}", copy.path().join("q.db").display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let db = Database::connect(url).await.ok()?;
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT COUNT(*) AS n FROM sweeps",
                ))
                .await
                .ok()??;
            row.try_get::<i64>("", "n").ok()
        })
    }

    #[tokio::test]
    async fn results_reach_the_database_file_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let _store = sqlite_store_with(dir.path(), &[job("a", &[])]).await;
        let started = std::time::Instant::now();
        // The background checkpointer copies the log back within a quarter second.
        let path = dir.path().to_owned();
        loop {
            let p = path.clone();
            let found = tokio::task::spawn_blocking(move || sweeps_in_the_file_alone(&p))
                .await
                .unwrap();
            if found == Some(1) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the sweep is still only in the write-ahead log after 10 s: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_constant_writes_the_log_starts_again_past_its_bound() {
        const JOBS: usize = 1_000;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let policy = CheckpointPolicy {
            every: Duration::from_millis(10),
            restart_pages: 64,
        };
        let store = Store::open_with(&url, None, policy).await.unwrap();
        let jobs: Vec<_> = (0..JOBS).map(|i| job(&format!("j{i}"), &[])).collect();
        let queue = QueueSpec::default();
        store
            .launch_jobs(NewSweep {
                name: "t",
                spec_hash: "h",
                sweep_key: "k",
                spec_toml: "",
                queue: &queue,
                jobs: &jobs,
            })
            .await
            .unwrap();
        let w = flex_worker(&store, "w").await;
        // One claim and one completion after the other, each a commit of its own that
        // appends at least one page to the log: with no restart the log would hold at
        // least 2,000 pages at the end (9,502 when this test ran with the restart turned
        // off); the background checkpoints alone never catch up with a writer that never
        // pauses. With it, a few hundred at most (574 seen with the other core busy).
        for _ in 0..JOBS {
            let job = store.claim(&w).await.unwrap().unwrap().job;
            store
                .complete(&w, job.id, job.lease_token, NewResult::default())
                .await
                .unwrap();
        }
        let frame = 4096 + 24;
        let wal = std::fs::metadata(dir.path().join("q.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal < JOBS as u64 * frame,
            "the log grew to {wal} bytes ({} pages) with a bound of 64 pages",
            wal / frame
        );
        store.close().await.unwrap();
        let path = dir.path().to_owned();
        let found = tokio::task::spawn_blocking(move || sweeps_in_the_file_alone(&path));
        assert_eq!(found.await.unwrap(), Some(1));
    }

    #[test]
    fn long_errors_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        let clipped = clip("ééééé", 3);
        assert!(clipped.starts_with("é…"), "{clipped}");
        assert!(clipped.ends_with("[8 bytes cut]"), "{clipped}");
    }

    #[tokio::test]
    async fn a_call_whose_statement_fails_fails_alone_and_its_batch_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            sqlite_store_with(dir.path(), &[job("a", &[]), job("b", &[]), job("c", &[])]).await;
        let (w1, w2, w3) = (
            flex_worker(&store, "w1").await,
            flex_worker(&store, "w2").await,
            flex_worker(&store, "w3").await,
        );
        let a = store.claim(&w1).await.unwrap().unwrap().job;
        let b = store.claim(&w2).await.unwrap().unwrap().job;
        // Recording b's result fails inside the database.
        let trigger = format!(
            "CREATE TRIGGER boom BEFORE INSERT ON results WHEN NEW.job_id = {} BEGIN SELECT RAISE(ABORT, 'boom'); END",
            b.id
        );
        store
            .connection()
            .execute_unprepared(&trigger)
            .await
            .unwrap();

        // On this single-threaded runtime the writer runs only once all three
        // calls wait, so they form one batch.
        let (done_a, done_b, claim_c) = tokio::join!(
            store.complete(&w1, a.id, a.lease_token, NewResult::default()),
            store.complete(&w2, b.id, b.lease_token, NewResult::default()),
            store.claim(&w3),
        );
        done_a.unwrap();
        assert!(
            done_b
                .as_ref()
                .is_err_and(|e| e.to_string().contains("boom")),
            "{done_b:?}"
        );
        assert_eq!(
            claim_c.unwrap().map(|c| c.job.job_key),
            Some("c".to_string())
        );
        let states: Vec<JobState> = job::Entity::find()
            .all(store.connection())
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.state)
            .collect();
        assert_eq!(
            states,
            [JobState::Succeeded, JobState::Leased, JobState::Leased]
        );
        assert_eq!(
            result::Entity::find()
                .all(store.connection())
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn the_safety_net_unblocks_a_job_whose_dependencies_all_succeeded_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = [
            job("a", &[]),
            job("b", &[]),
            job("e", &[]),
            job("c", &["a", "b"]),
            job("d", &["a", "e"]),
        ];
        let store = sqlite_store_with(dir.path(), &jobs).await;
        let w = flex_worker(&store, "w").await;
        for _ in 0..2 {
            let j = store.claim(&w).await.unwrap().unwrap().job;
            assert!(["a", "b"].contains(&j.job_key.as_str()), "{}", j.job_key);
            store
                .complete(&w, j.id, j.lease_token, NewResult::default())
                .await
                .unwrap();
        }
        // c's unblock missed, as two concurrent completions on Postgres can miss it.
        store
            .connection()
            .execute_unprepared("UPDATE jobs SET state = 'blocked' WHERE job_key = 'c'")
            .await
            .unwrap();
        let state = async |key: &str| {
            job::Entity::find()
                .filter(job::Column::JobKey.eq(key))
                .one(store.connection())
                .await
                .unwrap()
                .unwrap()
                .state
        };
        assert_eq!(store.unblock_ready().await.unwrap(), 1);
        assert_eq!(state("c").await, JobState::Pending);
        assert_eq!(state("d").await, JobState::Blocked, "e has not run");
        assert_eq!(store.unblock_ready().await.unwrap(), 0);
    }

    #[test]
    fn the_sql_of_each_move_names_the_states_of_its_rule() {
        assert_eq!(sql_sources(Event::Claim), "state = 'pending'");
        assert_eq!(sql_target(Event::Claim), "'leased'");
        assert_eq!(
            sql_sources(Event::Cancel),
            "state IN ('blocked', 'pending', 'leased')"
        );
        assert_eq!(
            sql_sources(Event::Retry { dead: false }),
            "state = 'cancelled'"
        );
        assert_eq!(
            sql_sources(Event::Retry { dead: true }),
            "state IN ('dead', 'cancelled')"
        );
        assert_eq!(sql_target(Event::Retry { dead: true }), "'blocked'");
        assert_eq!(
            sql_target(Event::Fail(AfterFailure::Retry { delay_ms: 1 })),
            "'pending'"
        );
        assert!(deps_done().ends_with("p.state <> 'succeeded')"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("bench_01").is_ok());
        assert!(check_schema_name("x\"; DROP TABLE jobs; --").is_err());
        assert!(check_schema_name("").is_err());
    }
}
