#!/usr/bin/env python3
"""Times librosa making the contrastive family's 33 views (the study's procedure, one
process) on the clips that `asdsweep bench augment --write-clips DIR` wrote, for the
README's side-by-side figures.

Usage:  asdsweep bench augment --clips 8 --threads 1 --write-clips /tmp/aug-clips
        python3 scripts/bench_augment_librosa.py /tmp/aug-clips
Prints JSON: views per second made in memory, and loaded + made + written as 16-bit WAVs
(soundfile's default for .wav, as the study stored them). Written here from the study's
description in FAMILIES.md: 12 pitch shifts (24 bins per octave), 5 noise levels, 4 time
stretches, 6 mask iterations on one shared STFT (512/128) with two inverse STFTs each.
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

SR = 16000
STEPS = [3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
SNRS = [15, 12, 9, 6, 3]
RATES = [0.8, 0.85, 0.9, 0.95]
GAINS = [0.5, 0.4, 0.3, 0.4, 0.5]


def views(y, rng):
    out = []
    for s in STEPS:
        out.append(librosa.effects.pitch_shift(y, sr=SR, n_steps=-s, bins_per_octave=24))
        out.append(librosa.effects.pitch_shift(y, sr=SR, n_steps=s, bins_per_octave=24))
    level = max(float(np.mean(np.abs(y))), np.finfo(np.float32).tiny)
    for snr in SNRS:
        noisy = y + rng.normal(0.0, np.sqrt(level / 10 ** (snr / 10)), len(y))
        out.append(librosa.util.normalize(noisy) if noisy.max() > 1.0 else noisy)
    for r in RATES:
        out.append(librosa.effects.time_stretch(y, rate=r))
    spec = librosa.stft(y, n_fft=512, hop_length=128)
    bins, frames = spec.shape
    for _ in range(6):
        for t in rng.integers(3, frames - 3, size=10):
            for d, g in enumerate(GAINS):
                spec[:, t + d - 2] *= g
        for f in rng.integers(2, bins - 2, size=7):
            spec[f - 1] *= 0.5
            spec[f] *= 0.3
            spec[f + 1:] = spec[f + 1] * 0.5
        out.append(librosa.istft(spec, n_fft=512, hop_length=128))
        out.append(librosa.istft(spec, n_fft=512, hop_length=128))
    return out


def main(clip_dir):
    paths = sorted(Path(clip_dir).glob("*.wav"))
    if not paths:
        sys.exit(f"{clip_dir}: no .wav files")
    rng = np.random.default_rng(42)
    clips = [librosa.load(p, sr=SR, mono=True)[0] for p in paths]
    views(clips[0], rng)  # warm-up (imports, FFT plans, numba)
    t = time.perf_counter()
    n = sum(len(views(y, rng)) for y in clips)
    in_memory = n / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        n = 0
        for p in paths:
            y, _ = librosa.load(p, sr=SR, mono=True)
            for k, v in enumerate(views(y, rng)):
                sf.write(os.path.join(out, f"{k}_{p.name}"), v, SR)
                n += 1
        stored = n / (time.perf_counter() - t)
    print(json.dumps({
        "clips": len(paths),
        "seconds_per_clip": len(clips[0]) / SR,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "views_single_process_per_s": round(in_memory, 2),
        "load_views_write_single_process_per_s": round(stored, 2),
    }, indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__))
