#!/usr/bin/env python3
"""`asdsweep features DIR --out OUT` end to end (the command as a user runs it: process start,
listing, decode, log-mel, writing every .npy) against librosa's single-process load + log-mel
on the same clips (scripts/bench_librosa.py, which writes nothing), alternating, ROUNDS times;
prints one JSON object per run and a summary line with the medians.

Usage:  asdsweep bench features --clips 300 --write-clips /tmp/clips
        python3 scripts/bench_features_e2e.py BIN /tmp/clips [ROUNDS] [LABEL]
BIN is the asdsweep binary (a release build); LABEL names the build in the output.
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
    binary, clips = sys.argv[1], Path(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    label = sys.argv[4] if len(sys.argv) > 4 else "asdsweep"
    n = len(list(clips.glob("*.wav")))
    ours, theirs = [], []
    for r in range(rounds):
        a = asdsweep_run(binary, clips, n)
        ours.append(a)
        print(json.dumps({"bench": "features_e2e", "run": label, "round": r, "clips": n,
                          "clips_per_s": round(a, 1)}), flush=True)
        b = librosa_run(clips)
        theirs.append(b["load_logmel_single_process_clips_per_s"])
        print(json.dumps({"bench": "features_e2e", "run": "librosa", "round": r, "clips": n,
                          "clips_per_s": round(b["load_logmel_single_process_clips_per_s"], 1)}), flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(json.dumps({"bench": "features_e2e", "summary": True, "run": label, "clips": n,
                      "median_clips_per_s": round(a, 1), "librosa_median_clips_per_s": round(b, 1),
                      "ratio": round(a / b, 2)}), flush=True)


if __name__ == "__main__":
    main()
