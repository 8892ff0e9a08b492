#!/usr/bin/env python3
"""Draws log-mel spectrograms of synthetic clips (normal vs. strongest anomaly per machine type).

Usage:  asdsweep synth --out /tmp/syn --sections 1 --train 1 --test 3 --seconds 4
        python3 scripts/synth_spectrograms.py /tmp/syn docs/synth_spectrograms.png
Needs librosa and matplotlib (tests/fixtures/gen/requirements.txt plus matplotlib).
"""
import json
import sys
from pathlib import Path

import librosa
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def logmel(path):
    y, sr = librosa.load(path, sr=None, mono=True)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0, fmin=0.0)
    return 10 * np.log10(np.maximum(mel, sys.float_info.epsilon)), len(y) / sr


def main(root, out):
    root = Path(root)
    clips = json.loads((root / "synth.json").read_text())["clips"]
    machines = list(dict.fromkeys(c["machine"] for c in clips))
    fig, axes = plt.subplots(len(machines), 2, figsize=(9, 1.5 * len(machines)), squeeze=False)
    for row, m in enumerate(machines):
        src = [c for c in clips if c["machine"] == m and c["split"] == "test" and c["domain"] == "source"]
        normal = next(c for c in src if c["label"] == "normal")
        anomaly = max((c for c in src if c["label"] == "anomaly"), key=lambda c: c["severity"])
        for col, c in enumerate([normal, anomaly]):
            db, dur = logmel(root / c["path"])
            ax = axes[row][col]
            ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                      extent=[0, dur, 0, 128])
            title = f"{m}: normal" if c["label"] == "normal" else f"{m}: {c['fault']} (severity {c['severity']})"
            ax.set_title(f"{title}, SNR {c['snr_db']:+d} dB", fontsize=8)
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel("mel band", fontsize=7)
            if row == len(machines) - 1:
                ax.set_xlabel("s", fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    # A 64-colour palette keeps the picture small enough to commit.
    from PIL import Image

    Image.open(out).convert("RGB").quantize(colors=64).save(out, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
