#!/usr/bin/env python3
"""PyTorch counterpart of `asdsweep bench train`: training steps/s of the same models,
timed the same way, so burn-flex can be compared with PyTorch on the same CPU and threads,
and (`--device cuda`) burn's GPU backends with PyTorch CUDA on the same GPU.

- ae: the study's autoencoder (the DCASE baseline `AENet` of `ae_baseline_utils.py`), hidden
  128, latent 8, 640-dim input, batch 512, MSE reconstruction loss, AdamW lr 5e-4;
- resnet18: the study's classifier network (`models/resnet_oth.py`): a full-width
  torchvision-layout ResNet-18 with a 1-channel 7x7/2 stem and `fc` to 7 classes, batch 32 on
  1x128x313 inputs, cross-entropy on its logits, AdamW lr 1e-5;
- simclr: the study's SimCLR (`train_contrastive.py`, `models/resnet_oth.py`): the same
  ResNet-18's pooled features through the projector MLP 512 -> 512 -> 128 (Linear-BN-ReLU,
  Linear-BN-ReLU, Linear), NT-Xent at tau 0.1 over two views of batch 96 on 1x128x313 inputs,
  AdamW lr 5e-4 (the loss from tests/fixtures/gen/contrastive_fixtures.py);
- separator: the study's separator (`TSCNet_Cont`) at C 64 with 2 two-stage conformer blocks,
  batch 12 on 2-s mixtures (STFT 201 bins x 161 frames), the separation loss against a random
  target, AdamW lr 5e-4 (training mode: dropout 0.2 and batch statistics, as in training).

Both are this project's own PyTorch implementations of those architectures, imported from
tests/fixtures/gen/model_fixtures.py (the modules the model parity fixtures are made with;
its docstring lists the facts they follow; its ResNet is checked there against torchvision's)
and tests/fixtures/gen/separation_fixtures.py (the separator's parity-fixture modules).

A step: zero the gradients, forward, loss, backward, AdamW step, `loss.item()` (as the Rust
side reads its loss back). One fixed random batch (seeded). WARMUP untimed steps, then REPEATS
timed runs of STEPS steps; the figure is the median run. Prints one JSON object per model.
On a GPU the weights and the batch are made on the CPU exactly as there (same seed, same
values) and then moved; `loss.item()` waits for the GPU each step, so a step is timed whole.

Usage (torch 2.9.0 and safetensors 0.8.0 in a venv; see tests/fixtures/gen/model_fixtures.py):
    python scripts/bench_train_torch.py --threads 2 [--model ae|resnet18|separator|simclr|all] [--steps N]
        [--warmup N] [--repeats 3] [--batch N] [--device cpu|cuda|cuda:N]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "gen"))
from model_fixtures import AENet, ResNet  # noqa: E402  (our modules, the study's layouts)
from separation_fixtures import Separator, loss_terms  # noqa: E402
from contrastive_fixtures import nt_xent  # noqa: E402

CLASSES = 7  # machine types of DCASE 2022 Task 2
DEFAULTS = {"ae": (100, 10), "resnet18": (3, 1), "separator": (3, 1), "simclr": (3, 1)}  # (steps, warmup), as `asdsweep bench train`


def workload(name, gen, batch=None, device="cpu"):
    if name == "ae":
        model = AENet(input_dim=640, hidden=128, latent=8).to(device)
        x = (torch.rand(batch or 512, 640, generator=gen) * 2 - 1).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, eps=1e-8)

        def loss_fn():
            recon, _ = model(x)
            return F.mse_loss(recon, x)

        return model, x, opt, loss_fn
    if name == "resnet18":
        model = ResNet(CLASSES, depth=18).to(device)
        b = batch or 32
        x = (torch.rand(b, 1, 128, 313, generator=gen) * 2 - 1).to(device)
        y = torch.randint(0, CLASSES, (b,), generator=gen).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, eps=1e-8)

        def loss_fn():
            logits, _ = model(x)
            return F.cross_entropy(logits, y)

        return model, x, opt, loss_fn
    if name == "simclr":
        backbone = ResNet(CLASSES, depth=18)
        d = 512
        projector = torch.nn.Sequential(
            torch.nn.Linear(d, d), torch.nn.BatchNorm1d(d), torch.nn.ReLU(),
            torch.nn.Linear(d, d), torch.nn.BatchNorm1d(d), torch.nn.ReLU(),
            torch.nn.Linear(d, 128))
        model = torch.nn.ModuleDict({"backbone": backbone, "projector": projector}).to(device)
        b = batch or 96
        x = (torch.rand(2, b, 1, 128, 313, generator=gen) * 2 - 1).to(device)
        # Only the backbone's pooled features and the projector take part, as in SimCLR.
        params = list(projector.parameters()) + [p for n, p in backbone.named_parameters() if not n.startswith("fc.")]
        opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01, eps=1e-8)

        def loss_fn():
            _, fa = backbone(x[0])
            _, fb = backbone(x[1])
            return nt_xent(projector(fa), projector(fb), 0.1)

        return model, x, opt, loss_fn
    if name == "separator":
        model = Separator(64, 2).to(device)
        b = batch or 12
        x = (torch.rand(b, 2, 201, 161, generator=gen) * 2 - 1).to(device)
        y = (torch.rand(b, 2, 201, 161, generator=gen) * 2 - 1).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, eps=1e-8)

        def loss_fn():
            estimate, _ = model(x)
            log_mag, pow_mag, smooth_l1 = loss_terms(estimate, y)
            return log_mag + pow_mag + 0.05 * smooth_l1

        return model, x, opt, loss_fn
    raise ValueError(name)


def bench(name, steps, warmup, repeats, threads, seed, batch=None, device=torch.device("cpu")):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model, x, opt, loss_fn = workload(name, gen, batch, device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        # Tensors the losses make themselves (NT-Xent's mask and targets) on the same device.
        with device:
            loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.item()

    load = list(os.getloadavg())
    last = float("nan")
    for _ in range(warmup):
        last = step()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            last = step()
        runs.append(steps / (time.perf_counter() - start))
    sps = statistics.median(runs)
    samples = x.shape[1] if name == "simclr" else x.shape[0]  # simclr: [views, batch, ...]
    return {
        "model": name,
        "framework": f"pytorch-{torch.__version__}",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": threads,
        "batch": samples,
        "input_shape": list(x.shape),
        "warmup": warmup,
        "steps": steps,
        "runs_steps_per_s": runs,
        "steps_per_s": sps,
        "samples_per_s": sps * samples,
        "last_loss": last,
        "load_average": load,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["ae", "resnet18", "separator", "simclr", "all"], default="all")
    p.add_argument("--steps", type=int, help="timed steps per run (default: 100 ae, 3 resnet18 and separator)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default: 10 ae, 1 the others)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the figure is their median")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torch.set_num_threads (default: all cores)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, help="samples per step instead of the study's batch")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), or cuda / cuda:N: PyTorch CUDA on that GPU")
    a = p.parse_args()
    try:
        device = torch.device(a.device)
    except RuntimeError as e:
        p.error(f"--device {a.device!r}: {e}")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {a.device!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            p.error(f"--device {a.device}: this torch ({torch.__version__}) sees no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            p.error(f"--device {a.device}: only {torch.cuda.device_count()} CUDA device(s) here")
    for key in ("steps", "repeats", "threads", "batch"):
        value = getattr(a, key)
        if value is not None and value < 1:
            p.error(f"--{key} must be at least 1")
    torch.set_num_threads(a.threads)
    names = ["ae", "resnet18"] if a.model == "all" else [a.model]
    for name in names:
        steps, warmup = DEFAULTS[name]
        report = bench(name, a.steps or steps, a.warmup if a.warmup is not None else warmup,
                       a.repeats, a.threads, a.seed, a.batch, device)
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
