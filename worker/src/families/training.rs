//! Training with checkpoints: resuming from the last checkpoint an earlier attempt
//! reported, uploading checkpoints as they are taken (each one heartbeated at once, so a
//! next attempt resumes from it), and stopping on cancellation.

use super::checkpoint::{Checkpoint, EpochStats, TrainingConfig};
use super::inputs::blocking;
use crate::registry::{JobContext, JobError};
use std::ops::ControlFlow;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The last checkpoint an earlier attempt reported, if it can be used; else `None` (start over).
pub async fn resume_point<C: TrainingConfig>(
    ctx: &JobContext,
    cfg: &C,
) -> Option<(Checkpoint<C>, String)> {
    let sha = ctx.job.resume_checkpoint.clone()?;
    let key = &ctx.job.job_key;
    let cp = match ctx.artifacts.get(&sha).await {
        Ok(bytes) => Checkpoint::<C>::decode(&bytes),
        Err(e) => {
            tracing::warn!(job = %key, error = %e, "cannot fetch the checkpoint of the last attempt; training from epoch 0");
            return None;
        }
    };
    match cp {
        Ok(cp) if cp.config == *cfg => Some((cp, sha)),
        Ok(_) => {
            tracing::warn!(job = %key, checkpoint = %sha, "the last attempt's checkpoint has other settings; training from epoch 0");
            None
        }
        Err(e) => {
            tracing::warn!(job = %key, checkpoint = %sha, error = %e, "unusable checkpoint; training from epoch 0");
            None
        }
    }
}

/// The training loop's side of checkpointing: reports progress after each epoch, hands
/// due checkpoints to the uploader, and says whether to go on (not after a cancel or a
/// failed hand-over).
pub struct EpochReporter {
    tx: mpsc::Sender<(usize, Vec<u8>)>,
    progress: watch::Sender<asdsweep_shared::proto::Progress>,
    cancel: CancellationToken,
    drain: CancellationToken,
    every: usize,
    epochs: usize,
    failure: Option<String>,
}

impl EpochReporter {
    /// After an epoch: updates progress (epoch, loss, steps/s) and, every
    /// `checkpoint_every` epochs, at the last, and when the worker is being drained, uploads
    /// the blob `checkpoint` makes.
    pub fn epoch_end(
        &mut self,
        stats: EpochStats,
        checkpoint: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> ControlFlow<()> {
        let epoch = stats.epoch;
        self.progress.send_modify(|pr| {
            pr.epoch = epoch as u32;
            pr.epochs = self.epochs as u32;
            pr.loss = Some(stats.loss as f64);
            pr.steps_per_s = stats.steps_per_s;
        });
        let draining = self.drain.is_cancelled();
        if epoch.is_multiple_of(self.every) || epoch == self.epochs || draining {
            if draining {
                tracing::info!(
                    epoch,
                    "draining: saving this epoch's checkpoint before stopping"
                );
            }
            let sent = checkpoint().and_then(|blob| {
                self.tx
                    .blocking_send((epoch, blob))
                    .map_err(|_| "the checkpoint uploader stopped".to_owned())
            });
            if let Err(e) = sent {
                self.failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        if self.cancel.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// How a training run ended, as [`train_uploading`]'s `work` reports it.
pub struct Ran<T> {
    /// What the family keeps of the run.
    pub out: T,
    /// Epochs of the loss curve (including a resumed checkpoint's).
    pub epochs_run: usize,
    /// False when the run stopped before its last epoch.
    pub finished: bool,
}

/// Runs `work` (the training loop, on a blocking thread, calling
/// [`EpochReporter::epoch_end`] after each epoch) of a job of `epochs` epochs that saves
/// every `every` epochs, uploading checkpoints as they come and reporting each one (the
/// worker loop heartbeats it at once, so a next attempt resumes from it). `resumed` is the
/// (epoch, sha) of the checkpoint the run goes on from. Returns what `work` kept and the
/// sha of the final checkpoint, which a killed attempt may have uploaded already.
pub async fn train_uploading<T: Send + 'static>(
    ctx: &JobContext,
    epochs: usize,
    every: usize,
    resumed: Option<(usize, String)>,
    work: impl FnOnce(&mut EpochReporter) -> Result<Ran<T>, JobError> + Send + 'static,
) -> Result<(T, String), JobError> {
    let key = ctx.job.job_key.clone();
    if let Some((epoch, sha)) = &resumed {
        tracing::info!("resuming {key} from epoch {epoch} (checkpoint {sha})");
        ctx.progress
            .send_modify(|pr| pr.checkpoint = Some(sha.clone()));
    }
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1);
    let artifacts = ctx.artifacts.clone();
    let progress = ctx.progress.clone();
    let uploader = async move {
        let mut last: Option<(usize, String)> = None;
        while let Some((epoch, blob)) = rx.recv().await {
            let sha = artifacts.put(blob, "checkpoint").await?;
            tracing::info!(epoch, checkpoint = %sha, "checkpoint uploaded");
            progress.send_modify(|pr| pr.checkpoint = Some(sha.clone()));
            last = Some((epoch, sha));
        }
        Ok::<_, crate::artifacts::ArtifactError>(last)
    };
    let mut reporter = EpochReporter {
        tx,
        progress: ctx.progress.clone(),
        cancel: ctx.cancel.clone(),
        drain: ctx.drain.clone(),
        every: every.max(1),
        epochs,
        failure: None,
    };
    let training = blocking(&key, move || {
        let ran = work(&mut reporter)?;
        Ok((ran, reporter.failure))
    });
    let (training, uploaded) = tokio::join!(training, uploader);
    let (ran, failure) = training?;
    let uploaded = uploaded
        .map_err(|e| JobError::retryable(format!("job {key}: uploading a checkpoint: {e}")))?;
    if let Some(why) = failure {
        return Err(JobError::retryable(format!(
            "job {key}: checkpoint at epoch {}: {why}",
            ran.epochs_run
        )));
    }
    if !ran.finished {
        return Err(JobError::retryable(format!(
            "job {key}: stopped at epoch {} of {epochs}",
            ran.epochs_run
        )));
    }
    let sha = match (uploaded, resumed) {
        (Some((epoch, sha)), _) if epoch == epochs => sha,
        (None, Some((epoch, sha))) if epoch == epochs => sha,
        _ => {
            return Err(JobError::retryable(format!(
                "job {key}: the final checkpoint was not uploaded"
            )));
        }
    };
    Ok((ran.out, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reporter for a 10-epoch run that saves every 5 epochs, and what it hands over.
    fn reporter() -> (EpochReporter, mpsc::Receiver<(usize, Vec<u8>)>) {
        let (tx, rx) = mpsc::channel(4);
        let reporter = EpochReporter {
            tx,
            progress: watch::channel(asdsweep_shared::proto::Progress::default()).0,
            cancel: CancellationToken::new(),
            drain: CancellationToken::new(),
            every: 5,
            epochs: 10,
            failure: None,
        };
        (reporter, rx)
    }

    #[test]
    fn a_drained_run_saves_the_epoch_it_finished_and_a_cancelled_one_only_stops() {
        let blob = |epoch: usize| move || Ok(vec![epoch as u8]);
        let at = |epoch: usize, loss: f32| EpochStats {
            epoch,
            loss,
            steps_per_s: 2.5,
        };
        let (mut r, mut rx) = reporter();
        assert_eq!(r.epoch_end(at(1, 0.5), blob(1)), ControlFlow::Continue(()));
        assert!(rx.try_recv().is_err(), "epoch 1 is not due");
        assert_eq!(r.epoch_end(at(5, 0.4), blob(5)), ControlFlow::Continue(()));
        assert_eq!(rx.try_recv().unwrap(), (5, vec![5]));
        // SIGTERM: drain, then cancel. Epoch 7 is not due, but it is saved before stopping.
        r.drain.cancel();
        r.cancel.cancel();
        assert_eq!(r.epoch_end(at(7, 0.3), blob(7)), ControlFlow::Break(()));
        assert_eq!(rx.try_recv().unwrap(), (7, vec![7]));
        assert_eq!(r.progress.borrow().epoch, 7);
        assert_eq!(r.progress.borrow().steps_per_s, 2.5);

        // A cancelled sweep or a lost lease stops without saving an undue epoch.
        let (mut r, mut rx) = reporter();
        r.cancel.cancel();
        assert_eq!(r.epoch_end(at(3, 0.3), blob(3)), ControlFlow::Break(()));
        assert!(rx.try_recv().is_err());
    }
}
