//! The lease hot path: claim, heartbeat and complete, written for batches.
//!
//! Each function takes many calls of one kind and answers them with a fixed
//! number of statements (one `SELECT` and one `UPDATE … RETURNING` for any
//! number of claims; one `UPDATE … RETURNING` for any number of heartbeats; an
//! `UPDATE`, one multi-row `INSERT` and at most one unblocking `UPDATE` for any
//! number of completions, plus a `SELECT` and an `INSERT` of their further metrics
//! when they have any). On SQLite the group-commit writer hands them every
//! call of a kind that is waiting (and when a batch fails its calls are retried
//! one by one). Postgres has no single writer: there a batcher per kind of call
//! hands them the calls of that kind waiting in this coordinator, each batch one
//! statement outside any transaction (claims, heartbeats, a lone completion:
//! [`complete_one`]) or, for several completions, one transaction. Parameters
//! are bound with their types, so `CASE id WHEN $a THEN $b … END` types like
//! its values.

use super::{
    Claimed, HeartbeatOutcome, NewResult, lease_problem, sql_sources, sql_state, sql_target, stmt,
    unblock_sql,
};
use crate::entity::{job, result, result_metric};
use crate::error::{Error, Result};
use crate::ids::{FencingToken, JobId, SweepId, WorkerId};
use crate::queue::{Event, JobState, LeaseVerdict, judge_lease};
use asdsweep_shared::grid;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Value};
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};

/// One worker's heartbeat.
#[derive(Debug, Clone)]
pub(super) struct Beat {
    pub job_id: JobId,
    pub token: FencingToken,
    pub progress: Option<Json>,
    /// The latest checkpoint's sha256, if the beat reports one (kept until replaced).
    pub checkpoint: Option<String>,
}

/// One worker's completion.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    pub worker_id: WorkerId,
    pub job_id: JobId,
    pub token: FencingToken,
    pub result: NewResult,
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CASE id WHEN $k THEN $k+1 … END` over `pairs` values starting at `$first`
/// (the values vector holds id, value, id, value, …).
fn case_by_id(first: usize, pairs: usize) -> String {
    let arms: String = (0..pairs)
        .map(|i| format!(" WHEN ${} THEN ${}", first + 2 * i, first + 2 * i + 1))
        .collect();
    format!("CASE id{arms} END")
}

/// What follows `UPDATE jobs` in the batched updates below, which name their
/// rows by id: on SQLite `NOT INDEXED`, which leaves it the rowid lookup only.
/// Without it SQLite may answer `state = '…' AND id IN (…)` by walking every
/// job in that state through an index on `state` (seen with EXPLAIN QUERY PLAN
/// for the claim: each batch of leases scanned all pending jobs).
fn by_id(db: &impl ConnectionTrait) -> &'static str {
    if db.get_database_backend() == DbBackend::Sqlite {
        "NOT INDEXED"
    } else {
        ""
    }
}

/// One worker asking for a job.
#[derive(Debug, Clone)]
pub(super) struct Claimant {
    pub worker_id: WorkerId,
    /// The backend it registered with: it is leased only jobs that allow it.
    pub backend: String,
}

/// Leases up to one ready job to each of `claimants`, most urgent first, each
/// a job its backend may run. Claimants beyond the ready jobs get `None`.
pub(super) async fn claim_many(
    db: &impl ConnectionTrait,
    claimants: &[Claimant],
    now: i64,
) -> Result<Vec<Option<Claimed>>> {
    let mut out: Vec<Option<Claimed>> = claimants.iter().map(|_| None).collect();
    // One SELECT and UPDATE per backend in the batch (almost always one): a job
    // leased for one group is no longer pending when the next group looks.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, c) in claimants.iter().enumerate() {
        match groups.iter_mut().find(|(b, _)| *b == c.backend) {
            Some((_, slots)) => slots.push(i),
            None => groups.push((&c.backend, vec![i])),
        }
    }
    for (backend, slots) in groups {
        let workers: Vec<&WorkerId> = slots.iter().map(|&i| &claimants[i].worker_id).collect();
        for (slot, claimed) in slots
            .iter()
            .zip(claim_for_backend(db, backend, &workers, now).await?)
        {
            out[*slot] = claimed;
        }
    }
    Ok(out)
}

/// [`claim_many`] for workers that share one backend.
async fn claim_for_backend(
    db: &impl ConnectionTrait,
    backend: &str,
    workers: &[&WorkerId],
    now: i64,
) -> Result<Vec<Option<Claimed>>> {
    if db.get_database_backend() == DbBackend::Postgres {
        return claim_in_one_statement(db, backend, workers, now).await;
    }
    let ids: Vec<JobId> = super::IdRow::find_by_statement(stmt(
        db,
        &ready_jobs_sql(),
        vec![
            now.into(),
            (workers.len() as i64).into(),
            backend_pattern(backend).into(),
        ],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(|r| r.id)
    .collect();
    let mut out: Vec<Option<Claimed>> = workers.iter().map(|_| None).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut values: Vec<Value> = vec![now.into()];
    for (id, worker) in ids.iter().zip(workers) {
        values.push((*id).into());
        values.push((*worker).clone().into());
    }
    let sql = format!(
        "UPDATE jobs {by_id} SET {lease}, worker_id = {case} WHERE {from} AND id IN ({ids}) RETURNING *",
        by_id = by_id(db),
        lease = lease_set(),
        from = sql_sources(Event::Claim),
        case = case_by_id(2, ids.len()),
        ids = (0..ids.len())
            .map(|i| format!("${}", 2 + 2 * i))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let slot: HashMap<JobId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let leased = job::Entity::find()
        .from_raw_sql(stmt(db, &sql, values))
        .all(db)
        .await?;
    for claimed in with_inputs(db, leased).await? {
        if let Some(&i) = slot.get(&claimed.job.id) {
            out[i] = Some(claimed);
        }
    }
    Ok(out)
}

/// What a claim sets besides the worker (`$1` is now).
fn lease_set() -> String {
    format!(
        "state = {}, attempts = attempts + 1, lease_token = lease_token + 1, \
         lease_expires_at_ms = $1 + lease_ttl_ms, started_at_ms = $1, progress = NULL",
        sql_target(Event::Claim)
    )
}

/// Postgres: leases up to one ready job to each of `workers` in a single statement run
/// outside any transaction (one round trip for any number of claims, instead of BEGIN,
/// SELECT, UPDATE and COMMIT). The pick locks its rows with `FOR UPDATE SKIP LOCKED`, so
/// concurrent claims, from this coordinator or another, take different jobs; the picked jobs
/// are numbered and job n goes to the n-th worker.
async fn claim_in_one_statement(
    db: &impl ConnectionTrait,
    backend: &str,
    workers: &[&WorkerId],
    now: i64,
) -> Result<Vec<Option<Claimed>>> {
    let arms: String = (0..workers.len())
        .map(|i| format!(" WHEN {} THEN ${}", i + 1, i + 4))
        .collect();
    let sql = format!(
        "WITH picked AS ({pick} FOR UPDATE SKIP LOCKED), \
         numbered AS (SELECT id AS pick, row_number() OVER (ORDER BY id) AS n FROM picked) \
         UPDATE jobs SET {lease}, worker_id = CASE n{arms} END \
         FROM numbered WHERE jobs.id = numbered.pick AND {from} RETURNING jobs.*",
        pick = ready_jobs_sql(),
        lease = lease_set(),
        from = sql_sources(Event::Claim),
    );
    let mut values: Vec<Value> = vec![
        now.into(),
        (workers.len() as i64).into(),
        backend_pattern(backend).into(),
    ];
    values.extend(workers.iter().map(|w| Value::from((*w).clone())));
    let mut out: Vec<Option<Claimed>> = workers.iter().map(|_| None).collect();
    let leased = job::Entity::find()
        .from_raw_sql(stmt(db, &sql, values))
        .all(db)
        .await?;
    for claimed in with_inputs(db, leased).await? {
        // The first of this worker's calls still without a job (a worker may claim twice at once).
        let slot = workers
            .iter()
            .zip(&out)
            .position(|(w, o)| o.is_none() && Some(*w) == claimed.job.worker_id.as_ref());
        if let Some(i) = slot {
            out[i] = Some(claimed);
        }
    }
    Ok(out)
}

/// The ready jobs a backend may run, most urgent first: `$1` now, `$2` how many, `$3`
/// [`backend_pattern`]. (`backends` lists names between commas, so matching `,name,`
/// inside `,list,` is exact.)
fn ready_jobs_sql() -> String {
    format!(
        "SELECT id FROM jobs WHERE {ready} AND not_before_ms <= $1 \
         AND (backends IS NULL OR ',' || backends || ',' LIKE $3) \
         ORDER BY priority DESC, id LIMIT $2",
        ready = sql_sources(Event::Claim),
    )
}

fn backend_pattern(backend: &str) -> String {
    format!("%,{backend},%")
}

/// Leased jobs with the artifacts of the jobs each depends on (an evaluation job's
/// checkpoint), read for the whole batch in one query, each job's in dependency order.
async fn with_inputs(db: &impl ConnectionTrait, jobs: Vec<job::Model>) -> Result<Vec<Claimed>> {
    let evals: Vec<Value> = jobs
        .iter()
        .filter(|j| j.stage == grid::Stage::Eval.as_str())
        .map(|j| j.id.into())
        .collect();
    let mut inputs: HashMap<JobId, Vec<String>> = HashMap::new();
    if !evals.is_empty() {
        let sql = format!(
            "SELECT d.job_id AS job_id, r.artifacts AS artifacts FROM results r \
             JOIN job_deps d ON d.dep_id = r.job_id WHERE d.job_id IN ({}) \
             ORDER BY d.job_id, d.dep_id",
            placeholders(1, evals.len())
        );
        for row in InputsRow::find_by_statement(stmt(db, &sql, evals))
            .all(db)
            .await?
        {
            let artifacts =
                serde_json::from_value::<Vec<String>>(row.artifacts).unwrap_or_default();
            inputs.entry(row.job_id).or_default().extend(artifacts);
        }
    }
    Ok(jobs
        .into_iter()
        .map(|job| Claimed {
            input_artifacts: inputs.remove(&job.id).unwrap_or_default(),
            job,
        })
        .collect())
}

#[derive(Debug, FromQueryResult)]
struct InputsRow {
    job_id: JobId,
    artifacts: Json,
}

#[derive(Debug, FromQueryResult)]
struct Extended {
    id: JobId,
    n: i64,
}

/// Extends the leases of `beats` (each job at most once per call) and stores
/// their progress; a beat whose token is stale gets its lease problem, a
/// cancelled job [`HeartbeatOutcome::Cancelled`].
pub(super) async fn heartbeat_many(
    db: &impl ConnectionTrait,
    beats: &[Beat],
    now: i64,
) -> Result<Vec<Result<HeartbeatOutcome>>> {
    let mut values: Vec<Value> = vec![now.into()];
    for b in beats {
        values.push(b.job_id.into());
        values.push(b.token.into());
    }
    for b in beats {
        values.push(b.job_id.into());
        values.push(b.progress.clone().into());
    }
    for b in beats {
        values.push(b.job_id.into());
        values.push(b.checkpoint.clone().into());
    }
    let sql = format!(
        "UPDATE jobs {by_id} SET lease_expires_at_ms = $1 + lease_ttl_ms, progress = {progress}, \
         checkpoint = COALESCE({checkpoint}, checkpoint) \
         WHERE state = {leased} AND id IN ({ids}) AND lease_token = {tokens} \
         RETURNING id, lease_expires_at_ms AS n",
        by_id = by_id(db),
        leased = sql_state(JobState::Leased),
        tokens = case_by_id(2, beats.len()),
        progress = case_by_id(2 + 2 * beats.len(), beats.len()),
        checkpoint = case_by_id(2 + 4 * beats.len(), beats.len()),
        ids = (0..beats.len())
            .map(|i| format!("${}", 2 + 2 * i))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let extended: HashMap<JobId, i64> = Extended::find_by_statement(stmt(db, &sql, values))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.id, r.n))
        .collect();
    let mut out = Vec::with_capacity(beats.len());
    for b in beats {
        out.push(match extended.get(&b.job_id) {
            Some(&until) => Ok(HeartbeatOutcome::Extended(until)),
            None => match lease_problem(db, b.job_id, b.token).await? {
                Error::Cancelled { .. } => Ok(HeartbeatOutcome::Cancelled),
                other => Err(other),
            },
        });
    }
    Ok(out)
}

#[derive(Debug, FromQueryResult)]
struct ResultId {
    id: i64,
    job_id: i64,
}

#[derive(Debug, FromQueryResult)]
struct Finished {
    id: JobId,
    sweep_id: SweepId,
    dependents: i32,
}

/// Records the results of `done` (each job at most once per call): the jobs
/// whose token is current end `succeeded` with their result and its further
/// metrics inserted, and their dependents whose dependencies are now all done
/// become pending; all in `db`'s transaction, which a failed statement undoes
/// as a whole (the writer then retries each call alone). A completion
/// repeated after it was accepted is answered `Ok`; any other stale one gets its
/// lease problem and is recorded nowhere.
pub(super) async fn complete_many(
    db: &impl ConnectionTrait,
    done: &[Completion],
    now: i64,
) -> Result<Vec<Result<()>>> {
    let mut values: Vec<Value> = vec![now.into()];
    for c in done {
        values.push(c.job_id.into());
        values.push(c.token.into());
    }
    let sql = format!(
        "UPDATE jobs {by_id} SET state = {to}, finished_at_ms = $1, lease_expires_at_ms = NULL, last_error = NULL \
         WHERE {from} AND id IN ({ids}) AND lease_token = {tokens} RETURNING id, sweep_id, dependents",
        by_id = by_id(db),
        to = sql_target(Event::Complete),
        from = sql_sources(Event::Complete),
        tokens = case_by_id(2, done.len()),
        ids = (0..done.len())
            .map(|i| format!("${}", 2 + 2 * i))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let finished: HashMap<JobId, Finished> = Finished::find_by_statement(stmt(db, &sql, values))
        .all(db)
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let mut out = Vec::with_capacity(done.len());
    let mut rows = Vec::with_capacity(finished.len());
    let mut unblock = Vec::new();
    for c in done {
        let Some(f) = finished.get(&c.job_id) else {
            out.push(not_recorded(db, c).await?);
            continue;
        };
        if f.dependents > 0 {
            unblock.push(f.id);
        }
        let r = &c.result;
        rows.push(result::ActiveModel {
            job_id: Set(c.job_id.0),
            sweep_id: Set(f.sweep_id.0),
            proxy_metric: Set(r.proxy_metric.clone()),
            proxy_value: Set(r.proxy_value),
            proxy_direction: Set(r.proxy_direction.map(|d| d.as_str().to_owned())),
            lp_in_auc: Set(r.lp_in_auc),
            lp_in_pauc: Set(r.lp_in_pauc),
            lp_out_auc: Set(r.lp_out_auc),
            lp_out_pauc: Set(r.lp_out_pauc),
            md_auc: Set(r.md_auc),
            md_pauc: Set(r.md_pauc),
            extra: Set(r.extra.clone()),
            provenance: Set(r.provenance.clone()),
            artifacts: Set(serde_json::json!(r.artifacts)),
            worker_id: Set(c.worker_id.0.clone()),
            lease_token: Set(c.token.0),
            created_at_ms: Set(now),
            ..Default::default()
        });
        out.push(Ok(()));
    }
    // Results have 17 columns: stay well under SQLite's bound-parameter limit.
    for chunk in rows.chunks(super::INSERT_CHUNK / 2) {
        result::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    insert_metrics(db, done, &finished).await?;
    if !unblock.is_empty() {
        let sql = unblock_sql(&format!(
            "id IN (SELECT job_id FROM job_deps WHERE dep_id IN ({}))",
            placeholders(1, unblock.len())
        ));
        db.execute_raw(stmt(
            db,
            &sql,
            unblock.into_iter().map(Value::from).collect(),
        ))
        .await?;
    }
    Ok(out)
}

/// Postgres: records one completion in a single statement, run outside any transaction
/// (one statement is atomic): the guarded `UPDATE` of the job, the result's `INSERT`, its
/// further metrics' `INSERT` and the unblocking of dependents are data-modifying CTEs fed by
/// the `UPDATE`'s `RETURNING`, so nothing is written unless the token is current. One round
/// trip instead of the four of BEGIN, UPDATE, INSERT and COMMIT (six with metrics). Answers
/// as [`complete_many`] does for one call.
///
/// Every part of the statement reads one snapshot, in which the job just completed is still
/// leased, so the dependents' check counts the jobs of `done` as succeeded.
pub(super) async fn complete_one(
    db: &impl ConnectionTrait,
    c: &Completion,
    now: i64,
) -> Result<()> {
    let r = &c.result;
    let mut values: Vec<Value> = vec![
        now.into(),
        c.job_id.into(),
        c.token.into(),
        r.proxy_metric.clone().into(),
        r.proxy_value.into(),
        r.proxy_direction.map(|d| d.as_str().to_owned()).into(),
        r.lp_in_auc.into(),
        r.lp_in_pauc.into(),
        r.lp_out_auc.into(),
        r.lp_out_pauc.into(),
        r.md_auc.into(),
        r.md_pauc.into(),
        r.extra.clone().into(),
        r.provenance.clone().into(),
        serde_json::json!(r.artifacts).into(),
        c.worker_id.clone().into(),
    ];
    let metrics = if r.metrics.is_empty() {
        String::new()
    } else {
        let rows: Vec<String> = r
            .metrics
            .iter()
            .map(|m| {
                let n = values.len();
                values.push(m.name.clone().into());
                values.push(m.value.into());
                values.push(m.direction.map(|d| d.as_str().to_owned()).into());
                format!("(${}, ${}, ${})", n + 1, n + 2, n + 3)
            })
            .collect();
        format!(
            ", metrics AS (INSERT INTO result_metrics (result_id, name, value, direction) \
             SELECT res.id, m.name, m.value, m.direction FROM res \
             CROSS JOIN (VALUES {}) AS m(name, value, direction))",
            rows.join(", ")
        )
    };
    let sql = format!(
        "WITH done AS (UPDATE jobs SET state = {to}, finished_at_ms = $1, lease_expires_at_ms = NULL, \
         last_error = NULL WHERE {from} AND id = $2 AND lease_token = $3 RETURNING id, sweep_id, dependents), \
         res AS (INSERT INTO results (job_id, sweep_id, proxy_metric, proxy_value, proxy_direction, \
         lp_in_auc, lp_in_pauc, lp_out_auc, lp_out_pauc, md_auc, md_pauc, extra, provenance, artifacts, \
         worker_id, lease_token, created_at_ms) \
         SELECT id, sweep_id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $3, $1 FROM done \
         RETURNING id){metrics}, \
         unblocked AS (UPDATE jobs SET state = {unblock_to} WHERE {unblock_from} \
         AND id IN (SELECT d.job_id FROM job_deps d JOIN done ON d.dep_id = done.id WHERE done.dependents > 0) \
         AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.dep_id \
         WHERE d.job_id = jobs.id AND p.state <> {succeeded} AND p.id NOT IN (SELECT id FROM done))) \
         SELECT id FROM done",
        to = sql_target(Event::Complete),
        from = sql_sources(Event::Complete),
        unblock_to = sql_target(Event::Unblock),
        unblock_from = sql_sources(Event::Unblock),
        succeeded = sql_state(JobState::Succeeded),
    );
    if super::IdRow::find_by_statement(stmt(db, &sql, values))
        .one(db)
        .await?
        .is_some()
    {
        return Ok(());
    }
    not_recorded(db, c).await?
}

/// The answer to a completion whose guarded `UPDATE` matched no row: `Ok` when the same
/// lease already completed (a retried call whose answer was lost), else its lease problem.
async fn not_recorded(db: &impl ConnectionTrait, c: &Completion) -> Result<Result<()>> {
    Ok(match lease_problem(db, c.job_id, c.token).await? {
        Error::StaleLease { state, current, .. }
            if judge_lease(state, current, c.token) == LeaseVerdict::AlreadyCompleted =>
        {
            Ok(())
        }
        other => Err(other),
    })
}

/// Inserts the further metrics of the completions in `done` that just finished,
/// under the ids their results were given.
async fn insert_metrics(
    db: &impl ConnectionTrait,
    done: &[Completion],
    finished: &HashMap<JobId, Finished>,
) -> Result<()> {
    let with_metrics: Vec<&Completion> = done
        .iter()
        .filter(|c| finished.contains_key(&c.job_id) && !c.result.metrics.is_empty())
        .collect();
    if with_metrics.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT id, job_id FROM results WHERE job_id IN ({})",
        placeholders(1, with_metrics.len())
    );
    let ids: HashMap<i64, i64> = ResultId::find_by_statement(stmt(
        db,
        &sql,
        with_metrics
            .iter()
            .map(|c| Value::from(c.job_id.0))
            .collect(),
    ))
    .all(db)
    .await?
    .into_iter()
    .map(|r| (r.job_id, r.id))
    .collect();
    let mut rows = Vec::new();
    for c in with_metrics {
        let result_id = *ids.get(&c.job_id.0).ok_or_else(|| {
            Error::Db(sea_orm::DbErr::Custom(format!(
                "the result of job {} just inserted is missing",
                c.job_id
            )))
        })?;
        rows.extend(c.result.metrics.iter().map(|m| result_metric::ActiveModel {
            result_id: Set(result_id),
            name: Set(m.name.clone()),
            value: Set(m.value),
            direction: Set(m.direction.map(|d| d.as_str().to_owned())),
        }));
    }
    for chunk in rows.chunks(super::INSERT_CHUNK) {
        result_metric::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Splits calls into rounds in which every job appears at most once, keeping
/// each job's calls in their order.
pub(super) fn rounds<T>(calls: Vec<T>, job_id: impl Fn(&T) -> JobId) -> Vec<Vec<T>> {
    let mut rounds: Vec<(HashSet<JobId>, Vec<T>)> = Vec::new();
    for call in calls {
        let id = job_id(&call);
        // The first round after the last one holding this job.
        let after = rounds
            .iter()
            .rposition(|(ids, _)| ids.contains(&id))
            .map_or(0, |i| i + 1);
        if after == rounds.len() {
            rounds.push((HashSet::new(), Vec::new()));
        }
        rounds[after].0.insert(id);
        rounds[after].1.push(call);
    }
    rounds.into_iter().map(|(_, calls)| calls).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{job, sqlite_store_with};
    use sea_orm::TransactionTrait;

    fn done(c: &Claimed, worker: &str) -> Completion {
        Completion {
            worker_id: worker.into(),
            job_id: c.job.id,
            token: c.job.lease_token,
            result: NewResult::default(),
        }
    }

    #[tokio::test]
    async fn one_batch_answers_each_call_as_if_it_ran_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store_with(
            dir.path(),
            &[job("a", &[]), job("b", &[]), job("c", &["a"])],
        )
        .await;
        let db = store.connection();
        let txn = db.begin().await.unwrap();

        // Three workers, two ready jobs (c waits for a): two leases, one "nothing yet".
        let workers = ["w1", "w2", "w3"].map(|w| Claimant {
            worker_id: w.into(),
            backend: "flex".into(),
        });
        let claimed = claim_many(&txn, &workers, 1_000).await.unwrap();
        let (a, b) = (claimed[0].clone().unwrap(), claimed[1].clone().unwrap());
        assert!(claimed[2].is_none());
        assert_eq!(
            (
                a.job.job_key.as_str(),
                a.job.worker_id.as_ref().map(WorkerId::as_str)
            ),
            ("a", Some("w1"))
        );
        assert_eq!(
            (
                b.job.job_key.as_str(),
                b.job.worker_id.as_ref().map(WorkerId::as_str)
            ),
            ("b", Some("w2"))
        );
        assert_eq!(a.job.state, JobState::Leased);

        // A stale token fails only its own heartbeat.
        let beats = [
            Beat {
                job_id: a.job.id,
                token: a.job.lease_token,
                progress: Some(serde_json::json!({"epoch": 1})),
                checkpoint: Some("ab".repeat(32)),
            },
            Beat {
                job_id: b.job.id,
                token: FencingToken(b.job.lease_token.0 + 7),
                progress: None,
                checkpoint: None,
            },
        ];
        let out = heartbeat_many(&txn, &beats, 2_000).await.unwrap();
        assert_eq!(
            out[0].as_ref().unwrap(),
            &HeartbeatOutcome::Extended(2_000 + a.job.lease_ttl_ms)
        );
        assert!(
            matches!(out[1], Err(Error::StaleLease { .. })),
            "{:?}",
            out[1]
        );

        // Both complete in one batch; a's dependent becomes ready.
        let out = complete_many(&txn, &[done(&a, "w1"), done(&b, "w2")], 3_000)
            .await
            .unwrap();
        assert!(out.iter().all(|o| o.is_ok()), "{out:?}");
        // Repeating an accepted completion is harmless and records nothing more.
        let out = complete_many(&txn, &[done(&a, "w1")], 3_001).await.unwrap();
        assert!(out[0].is_ok());
        let results = result::Entity::find().all(&txn).await.unwrap();
        assert_eq!(results.len(), 2);
        let next = claim_many(&txn, &workers[..1], 4_000).await.unwrap();
        assert_eq!(next[0].as_ref().map(|c| c.job.job_key.as_str()), Some("c"));
        txn.commit().await.unwrap();
    }

    #[test]
    fn rounds_put_each_job_once_per_round_in_call_order() {
        let calls = vec![(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (1, 'e'), (2, 'f')];
        let r = rounds(calls, |c| JobId(c.0));
        assert_eq!(
            r,
            vec![
                vec![(1, 'a'), (2, 'b'), (3, 'd')],
                vec![(1, 'c'), (2, 'f')],
                vec![(1, 'e')]
            ]
        );
    }

    #[test]
    fn case_by_id_numbers_id_value_pairs() {
        assert_eq!(
            case_by_id(2, 2),
            "CASE id WHEN $2 THEN $3 WHEN $4 THEN $5 END"
        );
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }
}
