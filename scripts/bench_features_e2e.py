#!/usr/bin/env python3
"""`asdsweep features DIR --out OUT` end to end (the command as a user runs it: process start,
listing, decode, log-mel, writing every .npy) against librosa's single-process load + log-mel
on the same clips (scripts/bench_librosa.py, which writes nothing), alternating, ROUNDS times;
prints one JSON object per run and a summary line with the medians.

Usage:  asdsweep bench features --clips 300 --write-clips /tmp/clips
        python3 scripts/bench_features_e2e.py BIN[=LABEL][,BIN2=LABEL2…] /tmp/clips [ROUNDS]
BIN is an asdsweep binary (a release build), LABEL its name in the output (two builds, e.g.
before and after a change, run in turn within each round).
"""
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def asdsweep_run(binary, clips, n):
    out = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        t = time.perf_counter()
        subprocess.run([binary, "features", str(clips), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
        written = sum(1 for _ in out.rglob("*.npy"))
        if written != n:
            sys.exit(f"asdsweep features wrote {written} of {n} files")
        return n / seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def librosa_run(clips):
    script = Path(__file__).with_name("bench_librosa.py")
    out = subprocess.run([sys.executable, str(script), str(clips)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    builds = [(b.split("=", 1) + ["asdsweep"])[:2] for b in sys.argv[1].split(",")]
    clips = Path(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = len(list(clips.glob("*.wav")))
    ours = {label: [] for _, label in builds}
    theirs = []
    for r in range(rounds):
        for binary, label in builds:
            a = asdsweep_run(binary, clips, n)
            ours[label].append(a)
            print(json.dumps({"bench": "features_e2e", "run": label, "round": r, "clips": n,
                              "clips_per_s": round(a, 1)}), flush=True)
        b = librosa_run(clips)["load_logmel_single_process_clips_per_s"]
        theirs.append(b)
        print(json.dumps({"bench": "features_e2e", "run": "librosa", "round": r, "clips": n,
                          "clips_per_s": round(b, 1)}), flush=True)
    b = statistics.median(theirs)
    for label, runs in ours.items():
        a = statistics.median(runs)
        print(json.dumps({"bench": "features_e2e", "summary": True, "run": label, "clips": n,
                          "median_clips_per_s": round(a, 1), "librosa_median_clips_per_s": round(b, 1),
                          "ratio": round(a / b, 2)}), flush=True)


if __name__ == "__main__":
    main()
