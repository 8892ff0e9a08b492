//! Mixtures for the separation family (issue 15), as the study makes them: a target clip
//! of the trained machine type plus an interferer clip of another type, cropped jointly
//! (same start) to a fixed length or zero-padded, the interferer scaled so that the
//! targets's level minus the interferer's is the drawn SNR (level in dB = 20·log10(rms) + 3,
//! rms floored at 1e-12), and all three divided by the mixture's peak when it exceeds 1.
//!
//! [`Draw`] makes the random choices of one training item from the job's seed, the epoch
//! and the item's index alone, so a resumed run draws the same mixtures.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The SNRs a training mixture is drawn from, in dB: −5, −4, …, 5.
pub const TRAINING_SNRS_DB: std::ops::RangeInclusive<i32> = -5..=5;

/// Training crop: 2 s at 16 kHz.
pub const TRAINING_SAMPLES: usize = 32_000;

/// A signal's level in dB as the study computes it: 20·log10(max(rms, 1e-12)) + 3.
pub fn level_db(x: &[f32]) -> f64 {
    let power = if x.is_empty() {
        0.0
    } else {
        x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64
    };
    20.0 * power.sqrt().max(1e-12).log10() + 3.0
}

/// A mixture with its sources, all of one length.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    /// Target + scaled interferer.
    pub mixture: Vec<f32>,
    /// The clean target (what a separator should give back).
    pub target: Vec<f32>,
    /// The scaled interferer.
    pub interferer: Vec<f32>,
}

/// `x[start..start + len]`, zero-padded where `x` ends first.
pub fn crop_or_pad(x: &[f32], start: usize, len: usize) -> Vec<f32> {
    let mut out: Vec<f32> = x.iter().skip(start).take(len).copied().collect();
    out.resize(len, 0.0);
    out
}

/// Mixes `target` and `interferer` (the same length) at `snr_db`: the interferer is scaled
/// by 10^((level(target) − level(interferer) − snr)/20); if the mixture's peak exceeds 1,
/// mixture, target and interferer are divided by it.
pub fn mix(target: &[f32], interferer: &[f32], snr_db: f64) -> Mixture {
    assert_eq!(
        target.len(),
        interferer.len(),
        "target and interferer are cropped to one length before mixing"
    );
    let gain = 10f64.powf((level_db(target) - level_db(interferer) - snr_db) / 20.0);
    let interferer: Vec<f32> = interferer
        .iter()
        .map(|&v| (f64::from(v) * gain) as f32)
        .collect();
    let mut mixture: Vec<f32> = target.iter().zip(&interferer).map(|(t, i)| t + i).collect();
    let mut target = target.to_vec();
    let mut interferer = interferer;
    let peak = mixture.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak > 1.0 {
        for x in [&mut mixture, &mut target, &mut interferer] {
            x.iter_mut().for_each(|v| *v /= peak);
        }
    }
    Mixture {
        mixture,
        target,
        interferer,
    }
}

/// The random choices of one training item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Index of the interferer's machine type among the other types.
    pub other_type: usize,
    /// Index of the interferer clip among that type's training normals.
    pub clip: usize,
    /// The SNR, in dB.
    pub snr_db: i32,
    /// Seed of the crop start (see [`Draw::crop_start`]).
    crop: u64,
}

impl Draw {
    /// The draws of item `item` in epoch `epoch` of a job seeded `seed`, choosing among
    /// `other_types` machine types, whose training normals are counted by `clips_of`.
    pub fn new(
        seed: u64,
        epoch: usize,
        item: usize,
        other_types: usize,
        clips_of: impl Fn(usize) -> usize,
    ) -> Draw {
        assert!(other_types > 0, "a mixture needs another machine type");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(((epoch as u64) << 32) | item as u64);
        let other_type = rng.random_range(0..other_types);
        let clip = rng.random_range(0..clips_of(other_type).max(1));
        let snr_db = rng.random_range(TRAINING_SNRS_DB);
        Draw {
            other_type,
            clip,
            snr_db,
            crop: rng.random(),
        }
    }

    /// The joint crop start for clips of `target_len` and `interferer_len` samples cut to
    /// `len`: uniform over the starts both clips reach in full, 0 when either is shorter.
    pub fn crop_start(&self, target_len: usize, interferer_len: usize, len: usize) -> usize {
        let room = target_len.min(interferer_len).saturating_sub(len);
        (self.crop % (room as u64 + 1)) as usize
    }

    /// The training mixture of `target` and `interferer` under these draws.
    pub fn mixture(&self, target: &[f32], interferer: &[f32]) -> Mixture {
        let start = self.crop_start(target.len(), interferer.len(), TRAINING_SAMPLES);
        mix(
            &crop_or_pad(target, start, TRAINING_SAMPLES),
            &crop_or_pad(interferer, start, TRAINING_SAMPLES),
            f64::from(self.snr_db),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tone(n: usize, f: f32, a: f32) -> Vec<f32> {
        (0..n).map(|i| a * (i as f32 * f).sin()).collect()
    }

    #[test]
    fn the_level_is_twenty_log_rms_plus_three_with_a_floor() {
        assert!((level_db(&[0.5; 100]) - (20.0 * 0.5f64.log10() + 3.0)).abs() < 1e-12);
        assert_eq!(level_db(&[0.0; 10]), 20.0 * (1e-12f64).log10() + 3.0);
    }

    proptest! {
        #[test]
        fn the_level_difference_is_the_snr_and_the_peak_at_most_one(
            snr in -5i32..=5, a in 0.01f32..2.0, b in 0.01f32..2.0,
        ) {
            let m = mix(&tone(4000, 0.03, a), &tone(4000, 0.11, b), f64::from(snr));
            let diff = level_db(&m.target) - level_db(&m.interferer);
            prop_assert!((diff - f64::from(snr)).abs() < 1e-3, "{diff} vs {snr}");
            prop_assert!(m.mixture.iter().all(|v| v.abs() <= 1.0 + 1e-6));
            for ((x, t), i) in m.mixture.iter().zip(&m.target).zip(&m.interferer) {
                prop_assert!((x - (t + i)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn a_loud_mixture_is_divided_by_its_peak_and_a_quiet_one_left_alone() {
        let loud = mix(&tone(1000, 0.05, 0.9), &tone(1000, 0.05, 0.9), 0.0);
        let peak = loud.mixture.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 1.0).abs() < 1e-6, "{peak}");
        let quiet = mix(&tone(1000, 0.05, 0.1), &tone(1000, 0.07, 0.1), 0.0);
        assert_eq!(quiet.target, tone(1000, 0.05, 0.1));
    }

    #[test]
    fn draws_depend_on_seed_epoch_and_item_only_and_crops_stay_inside_both_clips() {
        let clips = |t: usize| 3 + t;
        let a = Draw::new(7, 2, 5, 8, clips);
        assert_eq!(a, Draw::new(7, 2, 5, 8, clips), "reproducible");
        let others: Vec<Draw> = (0..20).map(|i| Draw::new(7, 3, i, 8, clips)).collect();
        assert!(
            others.iter().any(|d| *d != a),
            "other epochs and items draw otherwise"
        );
        for d in &others {
            assert!(d.other_type < 8 && d.clip < clips(d.other_type));
            assert!(TRAINING_SNRS_DB.contains(&d.snr_db));
            let start = d.crop_start(50_000, 40_000, TRAINING_SAMPLES);
            assert!(start + TRAINING_SAMPLES <= 40_000, "{start}");
            assert_eq!(d.crop_start(10_000, 40_000, TRAINING_SAMPLES), 0);
        }
        let m = a.mixture(&tone(10_000, 0.02, 0.3), &tone(50_000, 0.2, 0.3));
        assert_eq!(m.mixture.len(), TRAINING_SAMPLES);
        assert!(m.target[10_000..].iter().all(|&v| v == 0.0), "zero-padded");
    }
}
