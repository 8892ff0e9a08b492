//! The lease hot path: claim, heartbeat and complete, written for batches.
//!
//! Each function takes many calls of one kind and answers them with a fixed
//! number of statements (one `SELECT` and one `UPDATE … RETURNING` for any
//! number of claims; one `UPDATE … RETURNING` for any number of heartbeats; an
//! `UPDATE`, one multi-row `INSERT` and at most one unblocking `UPDATE` for any
//! number of completions, plus a `SELECT` and an `INSERT` of their further metrics
//! when they have any). On SQLite the group-commit writer hands them every
//! call of a kind that is waiting; elsewhere (and when a batch fails and its
//! calls are retried one by one) they get batches of one. The SQL is the same
//! on SQLite and Postgres: parameters are bound with their types, so
//! `CASE id WHEN $a THEN $b … END` types like its values.

use super::{
    ArtifactsRow, Claimed, HeartbeatOutcome, NewResult, deps_done, lease_problem, sql_sources,
    sql_state, sql_target, stmt,
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
    let lock = if db.get_database_backend() == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let ids: Vec<JobId> = super::IdRow::find_by_statement(stmt(
        db,
        &format!("{} {lock}", ready_jobs_sql()),
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
        "UPDATE jobs {by_id} SET state = {to}, attempts = attempts + 1, lease_token = lease_token + 1, \
         lease_expires_at_ms = $1 + lease_ttl_ms, started_at_ms = $1, progress = NULL, worker_id = {case} \
         WHERE {from} AND id IN ({ids}) RETURNING *",
        by_id = by_id(db),
        to = sql_target(Event::Claim),
        from = sql_sources(Event::Claim),
        case = case_by_id(2, ids.len()),
        ids = (0..ids.len())
            .map(|i| format!("${}", 2 + 2 * i))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let slot: HashMap<JobId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for job in job::Entity::find()
        .from_raw_sql(stmt(db, &sql, values))
        .all(db)
        .await?
    {
        if let Some(&i) = slot.get(&job.id) {
            out[i] = Some(with_inputs(db, job).await?);
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

/// A leased job with the artifacts of the jobs it depends on (an evaluation job's
/// checkpoint).
async fn with_inputs(db: &impl ConnectionTrait, job: job::Model) -> Result<Claimed> {
    let input_artifacts = if job.stage == grid::Stage::Eval.as_str() {
        ArtifactsRow::find_by_statement(stmt(
            db,
            "SELECT r.artifacts AS artifacts FROM results r JOIN job_deps d ON d.dep_id = r.job_id WHERE d.job_id = $1",
            vec![job.id.into()],
        ))
        .all(db)
        .await?
        .into_iter()
        .flat_map(|r| serde_json::from_value::<Vec<String>>(r.artifacts).unwrap_or_default())
        .collect()
    } else {
        Vec::new()
    };
    Ok(Claimed {
        job,
        input_artifacts,
    })
}

/// Postgres: leases one ready job to one worker in a single statement (the pick locks its
/// row with `FOR UPDATE SKIP LOCKED`, so concurrent claims take different jobs), run
/// outside any transaction: one round trip instead of the four of BEGIN, SELECT, UPDATE
/// and COMMIT.
pub(super) async fn claim_one(
    db: &impl ConnectionTrait,
    claimant: &Claimant,
    now: i64,
) -> Result<Option<Claimed>> {
    let sql = format!(
        "UPDATE jobs SET state = {to}, attempts = attempts + 1, lease_token = lease_token + 1, \
         lease_expires_at_ms = $1 + lease_ttl_ms, started_at_ms = $1, progress = NULL, worker_id = $4 \
         WHERE {from} AND id IN ({pick} FOR UPDATE SKIP LOCKED) RETURNING *",
        to = sql_target(Event::Claim),
        from = sql_sources(Event::Claim),
        pick = ready_jobs_sql(),
    );
    let values: Vec<Value> = vec![
        now.into(),
        1i64.into(),
        backend_pattern(&claimant.backend).into(),
        claimant.worker_id.clone().into(),
    ];
    match job::Entity::find()
        .from_raw_sql(stmt(db, &sql, values))
        .one(db)
        .await?
    {
        Some(job) => Ok(Some(with_inputs(db, job).await?)),
        None => Ok(None),
    }
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
            out.push(match lease_problem(db, c.job_id, c.token).await? {
                // The same lease completing again (a retried call whose answer was lost).
                Error::StaleLease { state, current, .. }
                    if judge_lease(state, current, c.token) == LeaseVerdict::AlreadyCompleted =>
                {
                    Ok(())
                }
                other => Err(other),
            });
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
        let sql = format!(
            "UPDATE jobs SET state = {to} WHERE {from} \
             AND id IN (SELECT job_id FROM job_deps WHERE dep_id IN ({ids})) AND {deps_done}",
            to = sql_target(Event::Unblock),
            from = sql_sources(Event::Unblock),
            ids = placeholders(1, unblock.len()),
            deps_done = deps_done(),
        );
        db.execute_raw(stmt(
            db,
            &sql,
            unblock.into_iter().map(Value::from).collect(),
        ))
        .await?;
    }
    Ok(out)
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
