#!/usr/bin/env python3
"""Times librosa on the clips that `asdsweep bench features --write-clips DIR` wrote (one process).

Usage:  asdsweep bench features --clips 200 --write-clips /tmp/clips
        python3 scripts/bench_librosa.py /tmp/clips
Prints JSON: clips/s for log-mel from samples in memory, and for load + log-mel,
computed exactly as the reference pipeline (see tests/fixtures/gen/logmel_fixtures.py).
"""
import json
import os
import sys
import time
from pathlib import Path

import librosa
import numpy as np


def logmel(y, sr):
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0, fmin=0.0)
    return (10 * np.log10(np.maximum(mel, sys.float_info.epsilon))).astype(np.float32)


def main(clip_dir):
    paths = sorted(Path(clip_dir).glob("*.wav"))
    if not paths:
        sys.exit(f"{clip_dir}: no .wav files")
    # Warm-up (imports, filterbank cache).
    y, sr = librosa.load(paths[0], sr=None, mono=True)
    logmel(y, sr)
    t = time.perf_counter()
    loaded = [librosa.load(p, sr=None, mono=True) for p in paths]
    for y, sr in loaded:
        logmel(y, sr)
    load_and_logmel = len(paths) / (time.perf_counter() - t)
    t = time.perf_counter()
    for y, sr in loaded:
        logmel(y, sr)
    logmel_only = len(paths) / (time.perf_counter() - t)
    print(json.dumps({
        "clips": len(paths),
        "seconds_per_clip": len(loaded[0][0]) / loaded[0][1],
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "logmel_single_process_clips_per_s": round(logmel_only, 1),
        "load_logmel_single_process_clips_per_s": round(load_and_logmel, 1),
    }, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
