"""Attack features at the model's batched speed (issue #17): old noise vs new vs a plain forward.

`gates.features.compute_features` runs every sample once clean and `samples` times perturbed.
This measures, for prunectl's builtin CNN (`SmallCNN(1, 28, 28, 10)`, what `builtin:cnn` builds
for 28×28×1 images) and an MLP 784-256-256-10 (`MLP(784, (256, 256), 10)`, `builtin:mlp` with
`model.widths = [256, 256]`), random weights, on n random 28×28×1 inputs with 10 classes, at
torch threads 1:

* `plain`: the model's forward alone on the same number of images, n × (samples + 1), built
  beforehand, in batches of `chunk_size` (the ceiling: what any feature code must also run);
* `old`: `compute_features` of gates/features.py at commit BEFORE (read with `git show`: a
  torch.Generator reseeded per sample from numpy's SeedSequence in a Python loop);
* `new`: today's `gates.features.compute_features` (counter-based noise, one vectorised call per
  pass);
* `old noise` and `new noise`: only the noise of the same n × samples directions, drawn the way
  each implementation draws it (per sample, resp. per pass of `chunk_size` rows).

The timings are interleaved round by round (the order rotates each round), so a busy machine
slows all alike; tables show medians. Old and new features are also compared: the posteriors
must be equal (the same clean passes), the sensitivities are other draws of the same estimator.
Results go to `benchmarks/results/features_speed.json` and the `features-speed` section of
BENCHMARKS.md.

    .venv/bin/python benchmarks/features_speed.py                 # a few minutes on 2 busy cores
    .venv/bin/python benchmarks/features_speed.py --render-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402
from prune import run_meta  # noqa: E402

from gates.features import AttackFeatures, _GaussianNoise, compute_features  # noqa: E402
from prunectl.models import MLP, SmallCNN  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "features_speed.json"
MODELS: dict[str, Callable[[], nn.Module]] = {
    "builtin-cnn-28": lambda: SmallCNN(1, 28, 28, 10),
    "mlp-784-256-256-10": lambda: MLP(784, (256, 256), 10),
}
TIMINGS = ("plain", "old", "new", "old_noise", "new_noise")


BEFORE = "1d2e2c1"
"""The commit before issue #17: its gates/features.py is the `old` side."""


def old_features_module(revision: str = BEFORE) -> types.ModuleType:
    """gates/features.py as it was at `revision`, read from git and loaded as a module of its own
    (it imports only numpy and torch), so the old side is that commit's code, not a copy."""
    source = subprocess.run(
        ["git", "show", f"{revision}:gates/features.py"], cwd=ROOT.parent, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("features_before_issue_17")
    module.__file__ = f"{revision}:gates/features.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up while being defined
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module



def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    before = old_features_module()
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(args.n, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (args.n,), generator=generator)
    indices = np.arange(args.n)
    images = args.n * (args.samples + 1)
    pool = torch.cat([inputs, inputs.repeat_interleave(args.samples, 0) + args.eps * torch.randn(args.n * args.samples, 1, 28, 28, generator=generator)])
    options = {"num_classes": 10, "samples": args.samples, "eps": args.eps, "seed": 0, "chunk_size": args.chunk_size}
    outputs: dict[str, AttackFeatures] = {}

    def plain() -> None:
        with torch.no_grad():
            for start in range(0, images, args.chunk_size):
                model(pool[start : start + args.chunk_size])

    def old() -> None:
        outputs["old"] = before.compute_features(model, inputs, labels, indices, **options)

    def new() -> None:
        outputs["new"] = compute_features(model, inputs, labels, indices, **options)

    def old_noise() -> None:
        source, x = torch.Generator(), inputs[:1]
        for index in indices:
            before._noise(source, 0, int(index), args.samples, x)

    def new_noise() -> None:
        noise = _GaussianNoise(0, args.samples, (1, 28, 28), torch.float32, torch.device("cpu"))
        keys = noise.keys(indices)
        for start in range(0, args.n * args.samples, args.chunk_size):
            rows = torch.arange(start, min(start + args.chunk_size, args.n * args.samples))
            noise.rows(keys[rows // args.samples], rows % args.samples)

    runs = {"plain": plain, "old": old, "new": new, "old_noise": old_noise, "new_noise": new_noise}
    seconds: dict[str, list[float]] = {key: [] for key in TIMINGS}
    plain()  # warm up the allocator and the kernels
    for round_ in range(args.rounds):
        order = TIMINGS[round_ % len(TIMINGS) :] + TIMINGS[: round_ % len(TIMINGS)]
        for key in order:
            started = time.perf_counter()
            runs[key]()
            seconds[key].append(time.perf_counter() - started)
        print(json.dumps({"model": name, "round": round_, **{k: round(v[-1], 3) for k, v in seconds.items()}}), flush=True)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    first, second = outputs["old"], outputs["new"]
    np.testing.assert_array_equal(first.posteriors, second.posteriors)
    reseeded = compute_features(model, inputs, labels, indices, **{**options, "seed": 1})
    old_total, new_total, reseeded_total = (f.sensitivity.sum(axis=1) for f in (first, second, reseeded))
    return {
        "model": name,
        "n": args.n,
        "samples": args.samples,
        "images": images,
        "seconds": seconds,
        "median_seconds": median,
        "images_per_second": {key: images / median[key] for key in ("plain", "old", "new")},
        "noise_ns_per_element": {
            key: median[key] / (args.n * args.samples * 784) * 1e9 for key in ("old_noise", "new_noise")
        },
        "new_over_plain": median["plain"] / median["new"],
        "old_over_plain": median["plain"] / median["old"],
        "new_over_old": median["old"] / median["new"],
        "posteriors_equal": True,
        "sensitivity_mean_ratio_new_over_old": float(second.sensitivity.mean() / first.sensitivity.mean()),
        # how much a sample's summed sensitivity agrees between old and new noise, next to how much it
        # agrees between two seeds of the new noise (the estimator's own spread with `samples` draws)
        "sensitivity_correlation_old_new": float(np.corrcoef(old_total, new_total)[0, 1]),
        "sensitivity_correlation_new_two_seeds": float(np.corrcoef(new_total, reseeded_total)[0, 1]),
    }


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Features speed: attack features vs a plain batched forward (issue #17)",
        "",
        f"Measured {meta['date']} on {meta['machine']}: `{meta['command'].strip()}`. Raw figures: `benchmarks/results/features_speed.json`.",
        "n random 28×28×1 inputs, 10 classes, random weights, `samples` perturbations each, chunk 256; images = n × (samples + 1).",
        "`plain` is the model's forward alone on as many prepared images in batches of 256; `old` is `compute_features` before",
        "issue #17 (per-sample reseeded torch generator in a Python loop, read from commit 1d2e2c1 with `git show`), `new` today's (counter-based",
        "splitmix64 + Box–Muller noise, one vectorised call per pass). Medians of interleaved rounds. Noise columns: the noise",
        "of the same directions alone, ns per element. Last column: mean sensitivity new / old, and the correlation of a",
        "sample's summed sensitivity between old and new noise next to that between two seeds of the new noise.",
        "",
        "| model | n × (samples+1) | rounds | plain img/s | old img/s (× plain) | new img/s (× plain) | new × old | noise ns/elt old → new | sensitivity: new/old mean; r old–new (r two seeds) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        speed = row["images_per_second"]
        noise = row["noise_ns_per_element"]
        lines.append(
            f"| {row['model']} | {row['n']:,} × {row['samples'] + 1} | {len(row['seconds']['plain'])} | {speed['plain']:,.0f} "
            f"| {speed['old']:,.0f} ({row['old_over_plain']:.2f}×) | {speed['new']:,.0f} ({row['new_over_plain']:.2f}×) "
            f"| {row['new_over_old']:.2f}× | {noise['old_noise']:.1f} → {noise['new_noise']:.1f} "
            f"| {row['sensitivity_mean_ratio_new_over_old']:.3f}; {row['sensitivity_correlation_old_new']:.3f} "
            f"({row['sensitivity_correlation_new_two_seeds']:.3f}) |"
        )
    shares = ", ".join(
        f"{row['model']} {row['median_seconds']['new_noise'] / row['median_seconds']['new']:.0%}" for row in rows
    )
    lines += [
        "",
        f"Share of the new features' time spent drawing noise: {shares}. Reading: the builtin CNN's features already ran at",
        "its plain forward's speed before issue #17 (profiled, conv2d and max_pool2d are ~85% of the time and the per-sample",
        "reseeding loop ~2%). Drawn alone, the old per-sample noise and the vectorised generator cost about the same per",
        "element on one CPU thread (a few ns: torch's mt19937 randn vs int64 hashing and Box–Muller's transcendentals), so",
        "what remains of the MLP's gap is drawing the noise itself. The MLP's gain comes from the pass around it: no",
        "per-sample loop copying each sample's directions into the pass, and the pass's clean inputs gathered with",
        "`index_select` into one reused buffer instead of `x[owners]` (advanced indexing and a fresh allocation per pass).",
        "The vectorised generator's other gain is on an accelerator, not measured here: it runs on the model's device, with",
        "no per-sample Python loop and no host-to-device copy of the noise. The machine was shared with another long",
        "benchmark: absolute rates move by ±20% between runs; the ratios within one run are what to read.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--n", type=int, default=2048, help="samples whose features are computed")
    parser.add_argument("--samples", type=int, default=10, help="perturbations per sample")
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section("features-speed", render(saved["meta"], saved["rows"]))
        return
    torch.set_num_threads(args.threads)
    meta = run_meta()
    rows = [measure(name, args) for name in args.models.split(",")]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    update_section("features-speed", render(meta, rows))
    print(render(meta, rows))


if __name__ == "__main__":
    main()
