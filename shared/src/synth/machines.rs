//! How each of the nine machine types sounds, normally and with each of its faults.
//!
//! Every model is a sum of physically motivated parts: rotating-machine tones at the
//! shaft rate times a count (blades, vanes, gear teeth, rolling elements), broadband flow
//! or friction noise, and impacts that ring structural resonances. Faults change exactly
//! the part a real fault changes (an outer-race defect adds impacts at the ball-pass
//! frequency, an imbalance modulates at the shaft rate, a leak adds a narrowband hiss…),
//! scaled by a severity in (0, 1].

use std::f64::consts::TAU;

use super::dsp::{Biquad, Noise, Resonator, add_harmonics, add_impacts, periodic_hits};

/// The nine machine types of the reference study.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Machine {
    /// Rolling-element bearing on a shaft.
    #[serde(rename = "bearing")]
    Bearing,
    /// Industrial fan.
    #[serde(rename = "fan")]
    Fan,
    /// Gearbox.
    #[serde(rename = "gearbox")]
    Gearbox,
    /// Centrifugal pump.
    #[serde(rename = "pump")]
    Pump,
    /// Linear slide rail.
    #[serde(rename = "slider")]
    Slider,
    /// Toy car on a roller.
    ToyCar,
    /// Toy conveyor belt.
    ToyConveyor,
    /// Toy train on rails.
    ToyTrain,
    /// Solenoid valve.
    #[serde(rename = "valve")]
    Valve,
}

impl Machine {
    /// All nine, in the order of the reference study.
    pub const ALL: [Machine; 9] = [
        Machine::Bearing,
        Machine::Fan,
        Machine::Gearbox,
        Machine::Pump,
        Machine::Slider,
        Machine::ToyCar,
        Machine::ToyConveyor,
        Machine::ToyTrain,
        Machine::Valve,
    ];

    /// The folder name (as in the DCASE data sets).
    pub fn name(self) -> &'static str {
        match self {
            Machine::Bearing => "bearing",
            Machine::Fan => "fan",
            Machine::Gearbox => "gearbox",
            Machine::Pump => "pump",
            Machine::Slider => "slider",
            Machine::ToyCar => "ToyCar",
            Machine::ToyConveyor => "ToyConveyor",
            Machine::ToyTrain => "ToyTrain",
            Machine::Valve => "valve",
        }
    }

    /// The faults this machine can have, by name.
    pub fn faults(self) -> &'static [&'static str] {
        match self {
            Machine::Bearing => &["outer_race", "inner_race", "ball"],
            Machine::Fan => &["imbalance", "blade_damage", "rub"],
            Machine::Gearbox => &["cracked_tooth", "wear"],
            Machine::Pump => &["leak", "cavitation", "imbalance"],
            Machine::Slider => &["rail_damage", "loose_part"],
            Machine::ToyCar => &["bent_shaft", "gear_damage", "tire_damage"],
            Machine::ToyConveyor => &["belt_rub", "missing_roller"],
            Machine::ToyTrain => &["flat_wheel", "scraping"],
            Machine::Valve => &["leak", "sticking"],
        }
    }

    /// Range of the base rate (Hz) of the machine's main periodicity across sections.
    pub fn base_rate(self) -> (f64, f64) {
        match self {
            Machine::Bearing => (15.0, 40.0),
            Machine::Fan => (12.0, 25.0),
            Machine::Gearbox => (10.0, 30.0),
            Machine::Pump => (24.0, 48.0),
            Machine::Slider => (0.7, 1.6),
            Machine::ToyCar => (120.0, 260.0),
            Machine::ToyConveyor => (80.0, 160.0),
            Machine::ToyTrain => (150.0, 300.0),
            Machine::Valve => (1.5, 4.0),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Machine::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown machine type '{s}'; allowed: {}",
                    Machine::ALL.map(Machine::name).join(", ")
                )
            })
    }
}

/// The operating condition of one clip: rate, load and four section-specific shape numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operating {
    /// The machine's main rate in Hz (shaft, motor, stroke or cycle rate).
    pub rate: f64,
    /// Load in about [0.5, 1.5]: scales flow/friction noise.
    pub load: f64,
    /// Section-specific numbers in [0, 1) choosing counts and resonances.
    pub shape: [f64; 4],
    /// Slow speed wobble: (relative depth, frequency Hz, phase).
    pub wobble: (f64, f64, f64),
}

/// A fault: index into [`Machine::faults`] and severity in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Which fault.
    pub kind: usize,
    /// How severe.
    pub severity: f64,
}

fn poisson_hits(len: usize, sr: f64, rate: f64, noise: &mut Noise) -> Vec<usize> {
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(noise.uniform().max(1e-12)).ln() / rate * sr;
        if t as usize >= len || rate <= 0.0 {
            return out;
        }
        out.push(t as usize);
    }
}

fn filtered_noise(len: usize, mut f: Biquad, gain: f64, noise: &mut Noise) -> Vec<f64> {
    (0..len).map(|_| gain * f.step(noise.white())).collect()
}

fn hits_with(
    times: Vec<usize>,
    amp: impl Fn(usize, &mut Noise) -> f64,
    noise: &mut Noise,
) -> Vec<(usize, f64)> {
    times.into_iter().map(|t| (t, amp(t, noise))).collect()
}

/// Renders `len` samples of `machine` at `sr` Hz under `op`, with an optional `fault`.
pub fn render(
    machine: Machine,
    op: &Operating,
    fault: Option<Fault>,
    len: usize,
    sr: f64,
    noise: &mut Noise,
) -> Vec<f64> {
    let mut out = vec![0.0f64; len];
    let (wd, wf, wp) = op.wobble;
    let wob = move |n: usize| 1.0 + wd * (TAU * wf * n as f64 / sr + wp).sin();
    let sev = |name: &str| -> f64 {
        match fault {
            Some(f) if machine.faults().get(f.kind) == Some(&name) => f.severity,
            _ => 0.0,
        }
    };
    let ph = |noise: &mut Noise, k: usize| -> Vec<f64> {
        (0..k).map(|_| TAU * noise.uniform()).collect()
    };
    let s = op.shape;
    let fr = op.rate;
    let add = |out: &mut Vec<f64>, v: Vec<f64>| {
        for (o, x) in out.iter_mut().zip(v) {
            *o += x;
        }
    };
    match machine {
        Machine::Fan => {
            let blades = 5.0 + (s[0] * 5.0).floor();
            let imb = 0.03 + 1.2 * sev("imbalance");
            let amps: Vec<f64> = [1.0, 0.45, 0.2, 0.1]
                .iter()
                .map(|a| a * (0.8 + 0.4 * op.load))
                .collect();
            let p = ph(noise, 4);
            add_harmonics(
                &mut out,
                sr,
                |n| blades * fr * wob(n),
                &amps,
                &p,
                |_, phi| 1.0 + imb * (phi / blades).sin(),
            );
            let shaft = [0.03 + 0.8 * sev("imbalance"), 0.01];
            let p = ph(noise, 2);
            add_harmonics(&mut out, sr, |n| fr * wob(n), &shaft, &p, |_, _| 1.0);
            let bd = sev("blade_damage");
            if bd > 0.0 {
                let k = (2.0 * blades) as usize;
                let amps: Vec<f64> = (0..k).map(|i| 0.4 * bd / (1.0 + 0.2 * i as f64)).collect();
                let p = ph(noise, k);
                add_harmonics(&mut out, sr, |n| fr * wob(n), &amps, &p, |_, _| 1.0);
            }
            add(
                &mut out,
                filtered_noise(
                    len,
                    Biquad::lowpass(600.0 + 1500.0 * s[1], 0.7, sr),
                    0.5 * op.load,
                    noise,
                ),
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::highpass(3000.0, 0.7, sr), 0.04, noise),
            );
            let rub = sev("rub");
            if rub > 0.0 {
                let hiss = filtered_noise(
                    len,
                    Biquad::bandpass(4000.0 + 1500.0 * s[2], 2.0, sr),
                    1.2 * rub,
                    noise,
                );
                for (n, (o, h)) in out.iter_mut().zip(hiss).enumerate() {
                    let e = (TAU * fr * n as f64 / sr).sin().max(0.0).powi(8);
                    *o += e * h;
                }
            }
        }
        Machine::Pump => {
            let vanes = 5.0 + (s[0] * 3.0).floor();
            let imb = 0.02 + 0.6 * sev("imbalance");
            let p = ph(noise, 3);
            add_harmonics(
                &mut out,
                sr,
                |n| vanes * fr * wob(n),
                &[0.8, 0.35, 0.15],
                &p,
                |_, phi| 1.0 + imb * (phi / vanes).sin(),
            );
            let p = ph(noise, 2);
            add_harmonics(
                &mut out,
                sr,
                |n| fr * wob(n),
                &[0.12 + 0.3 * sev("imbalance"), 0.08],
                &p,
                |_, _| 1.0,
            );
            let p = ph(noise, 1);
            add_harmonics(&mut out, sr, |_| 100.0, &[0.05], &p, |_, _| 1.0);
            add(
                &mut out,
                filtered_noise(len, Biquad::lowpass(800.0, 0.7, sr), 0.6 * op.load, noise),
            );
            let cav = sev("cavitation");
            let rate = 30.0 * op.load * (1.0 + 8.0 * cav);
            let hits = hits_with(
                poisson_hits(len, sr, rate, noise),
                |_, n| 0.3 * (1.0 + cav) * n.gauss().abs(),
                noise,
            );
            add_impacts(
                &mut out,
                &hits,
                &[Resonator::new(3500.0 + 1500.0 * s[1], 0.004, sr)],
            );
            add(
                &mut out,
                filtered_noise(
                    len,
                    Biquad::highpass(3000.0, 0.7, sr),
                    0.05 * (1.0 + 3.0 * cav),
                    noise,
                ),
            );
            let leak = sev("leak");
            if leak > 0.0 {
                add(
                    &mut out,
                    filtered_noise(
                        len,
                        Biquad::bandpass(2500.0 + 2000.0 * s[2], 3.0, sr),
                        0.8 * leak,
                        noise,
                    ),
                );
            }
        }
        Machine::Bearing => {
            let fres = 2500.0 + 2500.0 * s[0];
            let t60 = 0.004 + 0.006 * s[1];
            let p = ph(noise, 3);
            add_harmonics(
                &mut out,
                sr,
                |n| fr * wob(n),
                &[0.3, 0.1, 0.05],
                &p,
                |_, _| 1.0,
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::bandpass(fres, 1.0, sr), 0.15, noise),
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::lowpass(500.0, 0.7, sr), 0.3 * op.load, noise),
            );
            let mut hits = hits_with(
                poisson_hits(len, sr, 80.0, noise),
                |_, n| 0.2 * n.gauss().abs(),
                noise,
            );
            let (o, i, b) = (sev("outer_race"), sev("inner_race"), sev("ball"));
            if o > 0.0 {
                let t = periodic_hits(len, sr, 3.58 * fr, 0.01, noise.uniform(), noise);
                hits.extend(hits_with(t, |_, _| 0.7 * o, noise));
            }
            if i > 0.0 {
                let t = periodic_hits(len, sr, 5.42 * fr, 0.01, noise.uniform(), noise);
                hits.extend(hits_with(
                    t,
                    |t, _| 0.9 * i * (0.5 + 0.5 * (TAU * fr * t as f64 / sr).cos()),
                    noise,
                ));
            }
            if b > 0.0 {
                let t = periodic_hits(len, sr, 2.37 * fr, 0.02, noise.uniform(), noise);
                hits.extend(hits_with(t, |_, n| 0.6 * b * (0.5 + n.uniform()), noise));
            }
            add_impacts(
                &mut out,
                &hits,
                &[
                    Resonator::new(fres, t60, sr),
                    Resonator::new(fres * 1.7, t60 * 0.6, sr),
                ],
            );
        }
        Machine::Gearbox => {
            let teeth = 17.0 + (s[0] * 20.0).floor();
            let crack = sev("cracked_tooth");
            let wear = sev("wear");
            let depth = 0.05 + 0.5 * crack;
            let amps = [1.0, 0.4 * (1.0 + 2.0 * wear), 0.15 * (1.0 + 3.0 * wear)];
            let p = ph(noise, 3);
            add_harmonics(
                &mut out,
                sr,
                |n| teeth * fr * wob(n),
                &amps,
                &p,
                |_, phi| 1.0 + depth * (phi / teeth).sin(),
            );
            let p = ph(noise, 1);
            add_harmonics(&mut out, sr, |n| fr * wob(n), &[0.1], &p, |_, _| 1.0);
            add(
                &mut out,
                filtered_noise(
                    len,
                    Biquad::lowpass(1500.0, 0.7, sr),
                    0.25 * op.load * (1.0 + wear),
                    noise,
                ),
            );
            if crack > 0.0 {
                let t = periodic_hits(len, sr, fr, 0.005, noise.uniform(), noise);
                let hits = hits_with(t, |_, _| 1.5 * crack, noise);
                add_impacts(
                    &mut out,
                    &hits,
                    &[Resonator::new(1800.0 + 1500.0 * s[1], 0.01, sr)],
                );
            }
        }
        Machine::Valve => {
            let period = sr / fr;
            let duty = 0.3 + 0.3 * s[2];
            let stick = sev("sticking");
            let mut hits = Vec::new();
            let mut t0 = noise.uniform() * period;
            while (t0 as usize) < len {
                hits.push((t0 as usize, 1.0));
                let tc = t0 + duty * period * (1.0 + 0.3 * stick * noise.gauss());
                hits.push((tc as usize, 0.8));
                if stick > 0.0 {
                    let echo = tc + sr * (0.015 + 0.025 * noise.uniform());
                    hits.push((echo as usize, 0.9 * stick));
                }
                t0 += period * (1.0 + 0.01 * noise.gauss());
            }
            hits.retain(|h| h.0 < len);
            add_impacts(
                &mut out,
                &hits,
                &[
                    Resonator::new(1200.0 + 800.0 * s[0], 0.02, sr),
                    Resonator::new(4000.0 + 1500.0 * s[1], 0.008, sr),
                ],
            );
            let flow = filtered_noise(len, Biquad::bandpass(900.0, 0.8, sr), 0.15 * op.load, noise);
            let leak = sev("leak");
            let hiss = filtered_noise(
                len,
                Biquad::bandpass(3000.0 + 1500.0 * s[3], 2.0, sr),
                0.35 * leak,
                noise,
            );
            for (n, o) in out.iter_mut().enumerate() {
                let phase =
                    ((n as f64 - hits.first().map_or(0, |h| h.0) as f64) / period).rem_euclid(1.0);
                let open = phase < duty;
                *o += if open { flow[n] } else { hiss[n] };
            }
            let p = ph(noise, 2);
            add_harmonics(&mut out, sr, |_| 50.0, &[0.03, 0.02], &p, |_, _| 1.0);
        }
        Machine::Slider => {
            let period = sr / (fr * wob(0));
            let env: Vec<f64> = (0..len)
                .map(|n| (TAU * 0.5 * n as f64 / period).sin().powi(2))
                .collect();
            let fric = filtered_noise(
                len,
                Biquad::bandpass(1200.0 + 800.0 * s[0], 0.7, sr),
                0.4 * op.load,
                noise,
            );
            for ((o, e), f) in out.iter_mut().zip(&env).zip(fric) {
                *o += e * f;
            }
            let p = ph(noise, 3);
            let env2 = env.clone();
            add_harmonics(
                &mut out,
                sr,
                |_| 40.0 + 30.0 * s[1],
                &[0.1, 0.05, 0.03],
                &p,
                move |n, _| env2[n],
            );
            let ends = periodic_hits(len, sr, 2.0 * fr, 0.005, 0.0, noise);
            let mut hits = hits_with(ends, |_, _| 1.0, noise);
            let damage = sev("rail_damage");
            if damage > 0.0 {
                let pos = periodic_hits(len, sr, fr, 0.005, 0.3 + 0.4 * s[2], noise);
                hits.extend(hits_with(pos, |_, _| 0.9 * damage, noise));
                let grit =
                    filtered_noise(len, Biquad::highpass(4000.0, 0.7, sr), 0.25 * damage, noise);
                for ((o, e), g) in out.iter_mut().zip(&env).zip(grit) {
                    *o += e * g;
                }
            }
            add_impacts(
                &mut out,
                &hits,
                &[
                    Resonator::new(700.0, 0.03, sr),
                    Resonator::new(2600.0, 0.02, sr),
                ],
            );
            let loose = sev("loose_part");
            if loose > 0.0 {
                let rattle: Vec<(usize, f64)> = poisson_hits(len, sr, 40.0, noise)
                    .into_iter()
                    .map(|t| (t, 0.6 * loose * env[t] * (0.5 + noise.uniform())))
                    .collect();
                add_impacts(
                    &mut out,
                    &rattle,
                    &[Resonator::new(3500.0 + 1000.0 * s[3], 0.003, sr)],
                );
            }
        }
        Machine::ToyCar => {
            let ratio = 4.0 + 2.0 * s[0];
            let wheel = fr / (ratio * 3.0);
            let bent = sev("bent_shaft");
            let p = ph(noise, 6);
            add_harmonics(
                &mut out,
                sr,
                |n| fr * wob(n),
                &[0.5, 0.3, 0.25, 0.15, 0.1, 0.08],
                &p,
                move |n, _| 1.0 + 0.9 * bent * (TAU * wheel * n as f64 / sr).sin(),
            );
            let p = ph(noise, 2);
            add_harmonics(
                &mut out,
                sr,
                |n| 6.0 * fr * wob(n),
                &[0.15, 0.05],
                &p,
                |_, _| 1.0,
            );
            let p = ph(noise, 1);
            add_harmonics(
                &mut out,
                sr,
                |n| ratio * fr * wob(n),
                &[0.2],
                &p,
                |_, _| 1.0,
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::lowpass(1000.0, 0.7, sr), 0.3 * op.load, noise),
            );
            let gear = sev("gear_damage");
            if gear > 0.0 {
                let t = periodic_hits(len, sr, fr / ratio, 0.01, noise.uniform(), noise);
                add_impacts(
                    &mut out,
                    &hits_with(t, |_, _| 1.2 * gear, noise),
                    &[Resonator::new(2500.0 + 1000.0 * s[1], 0.006, sr)],
                );
            }
            let tire = sev("tire_damage");
            if tire > 0.0 {
                let t = periodic_hits(len, sr, wheel, 0.01, noise.uniform(), noise);
                add_impacts(
                    &mut out,
                    &hits_with(t, |_, _| 2.5 * tire, noise),
                    &[Resonator::new(180.0, 0.03, sr)],
                );
            }
        }
        Machine::ToyConveyor => {
            let click_rate = 6.0 + 8.0 * s[0];
            let p = ph(noise, 4);
            add_harmonics(
                &mut out,
                sr,
                |n| fr * wob(n),
                &[0.4, 0.2, 0.1, 0.05],
                &p,
                |_, _| 1.0,
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::bandpass(600.0, 0.5, sr), 0.3 * op.load, noise),
            );
            let clicks = periodic_hits(len, sr, click_rate, 0.01, noise.uniform(), noise);
            let mut hits = hits_with(clicks, |_, _| 0.3, noise);
            let missing = sev("missing_roller");
            if missing > 0.0 {
                let extra = poisson_hits(len, sr, click_rate / 2.0, noise);
                hits.extend(hits_with(
                    extra,
                    |_, n| 1.0 * missing * (0.5 + n.uniform()),
                    noise,
                ));
            }
            add_impacts(
                &mut out,
                &hits,
                &[Resonator::new(3000.0 + 800.0 * s[1], 0.004, sr)],
            );
            let rub = sev("belt_rub");
            if rub > 0.0 {
                let burst = filtered_noise(
                    len,
                    Biquad::bandpass(1500.0 + 500.0 * s[2], 1.5, sr),
                    1.2 * rub,
                    noise,
                );
                let belt = click_rate / 8.0;
                for (n, (o, b)) in out.iter_mut().zip(burst).enumerate() {
                    *o += (TAU * belt * n as f64 / sr).sin().max(0.0).powi(4) * b;
                }
            }
        }
        Machine::ToyTrain => {
            let joint_rate = fr / 80.0;
            let p = ph(noise, 4);
            add_harmonics(
                &mut out,
                sr,
                |n| fr * wob(n),
                &[0.4, 0.25, 0.15, 0.1],
                &p,
                |_, _| 1.0,
            );
            add(
                &mut out,
                filtered_noise(len, Biquad::lowpass(1200.0, 0.7, sr), 0.25 * op.load, noise),
            );
            let joints = periodic_hits(len, sr, joint_rate, 0.01, noise.uniform(), noise);
            let gap = (sr * (0.06 + 0.04 * s[0])) as usize;
            let mut hits: Vec<(usize, f64)> = joints
                .iter()
                .flat_map(|&t| [(t, 0.8), (t + gap, 0.7)])
                .filter(|h| h.0 < len)
                .collect();
            let flat = sev("flat_wheel");
            if flat > 0.0 {
                let t = periodic_hits(len, sr, joint_rate * 6.0, 0.01, noise.uniform(), noise);
                hits.extend(hits_with(t, |_, _| 0.9 * flat, noise));
            }
            add_impacts(
                &mut out,
                &hits,
                &[
                    Resonator::new(400.0 + 200.0 * s[1], 0.03, sr),
                    Resonator::new(1800.0, 0.015, sr),
                ],
            );
            let scrape = sev("scraping");
            if scrape > 0.0 {
                let hiss =
                    filtered_noise(len, Biquad::highpass(3000.0, 0.7, sr), 0.5 * scrape, noise);
                let f = 0.3 + 0.5 * noise.uniform();
                for (n, (o, h)) in out.iter_mut().zip(hiss).enumerate() {
                    *o += (0.5 + 0.5 * (TAU * f * n as f64 / sr).sin()) * h;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operating {
        Operating {
            rate: 20.0,
            load: 1.0,
            shape: [0.5; 4],
            wobble: (0.0, 0.2, 0.0),
        }
    }

    #[test]
    fn every_machine_renders_finite_nonsilent_audio_with_and_without_each_fault() {
        for m in Machine::ALL {
            let mut o = op();
            o.rate = m.base_rate().0;
            let clean = render(m, &o, None, 32000, 16000.0, &mut Noise::new(1));
            assert!(
                clean.iter().all(|v| v.is_finite()) && super::super::dsp::rms(&clean) > 0.01,
                "{m}"
            );
            for k in 0..m.faults().len() {
                let f = Some(Fault {
                    kind: k,
                    severity: 1.0,
                });
                let bad = render(m, &o, f, 32000, 16000.0, &mut Noise::new(1));
                assert!(bad.iter().all(|v| v.is_finite()), "{m} {}", m.faults()[k]);
                assert!(bad != clean, "{m} fault {} changes nothing", m.faults()[k]);
            }
        }
    }

    #[test]
    fn a_fan_blade_pass_tone_sits_at_blades_times_shaft_rate() {
        // shape 0.5 → 7 blades; 20 Hz shaft → 140 Hz blade pass: strong correlation with that tone.
        let x = render(
            Machine::Fan,
            &op(),
            None,
            16000,
            16000.0,
            &mut Noise::new(3),
        );
        let corr = |f: f64| {
            let (mut c, mut s) = (0.0, 0.0);
            for (n, v) in x.iter().enumerate() {
                let w = TAU * f * n as f64 / 16000.0;
                c += v * w.cos();
                s += v * w.sin();
            }
            (c * c + s * s).sqrt() / x.len() as f64
        };
        assert!(corr(140.0) > 0.3, "{}", corr(140.0));
        assert!(corr(140.0) > 10.0 * corr(157.0));
    }

    #[test]
    fn machine_names_parse_case_insensitively() {
        assert_eq!("toycar".parse::<Machine>().unwrap(), Machine::ToyCar);
        assert!(
            "blender"
                .parse::<Machine>()
                .unwrap_err()
                .contains("ToyConveyor")
        );
    }
}
