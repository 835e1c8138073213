"""The builtin CNN's weight layout on the CPU: channels-last (today's) against contiguous NCHW.

`builtin:cnn` stores its conv weights channels-last (`prunectl.models.to_channels_last`)
because oneDNN's CPU convolutions run faster in that layout. This measures, for the model
`builtin:cnn` builds for Fashion-MNIST (28×28×1) and for the embedded digits (8×8×1), at
torch threads 1 (what every gate unit runs at):

* `train`: images per second of `prunectl.training.train_epoch` (SGD, momentum 0.9, batch 128,
  cross-entropy), the loop every base training, prune round, shadow and helper model runs;
* `predict`: images per second of `prunectl.training.predict_logits` (chunks of 1024);
* `features`: images per second of `gates.features.compute_features` (10 perturbations per
  sample, chunk 256), the gate's sensitivity features;

each for the same initial weights stored both ways. Timings are interleaved round by round and
the order alternates, so a busy machine slows both alike; tables show medians. The two layouts
compute the same function: the largest logit difference of one forward pass over the same
weights is reported next to the speeds.

    .venv/bin/python benchmarks/layout.py            # about a minute
    .venv/bin/python benchmarks/layout.py --render-only
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402
from prune import run_meta  # noqa: E402

from gates.features import compute_features  # noqa: E402
from prunectl.data import Dataset  # noqa: E402
from prunectl.models import SmallCNN, is_channels_last, to_channels_last  # noqa: E402
from prunectl.training import make_generator, predict_logits, train_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "layout.json"
SHAPES = {"fashion-mnist-28": (1, 28, 28), "digits-8": (1, 8, 8)}
LAYOUTS = ("contiguous", "channels_last")
TASKS = ("train", "predict", "features")


def models(shape: tuple[int, int, int]) -> dict[str, torch.nn.Module]:
    """The same initial weights in both layouts."""
    torch.manual_seed(0)
    contiguous = SmallCNN(*shape, 10)
    fast = to_channels_last(copy.deepcopy(contiguous))
    assert is_channels_last(fast) and not is_channels_last(contiguous)
    return {"contiguous": contiguous, "channels_last": fast}


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    shape = SHAPES[name]
    generator = torch.Generator().manual_seed(1)
    data = Dataset(torch.randn(args.n, *shape, generator=generator), torch.randint(0, 10, (args.n,), generator=generator), tuple(map(str, range(10))), "random")
    indices = np.arange(args.n)
    features_rows = indices[: args.n // 4]
    nets = models(shape)
    # the same weights in both layouts: how far apart does the layouts' rounding take one forward pass?
    logits = {layout: predict_logits(model, data.x) for layout, model in nets.items()}
    optimizers = {layout: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) for layout, model in nets.items()}

    def train(layout: str) -> None:
        train_epoch(nets[layout], data, indices, optimizers[layout], batch_size=128, generator=make_generator(0), device=torch.device("cpu"))

    def predict(layout: str) -> None:
        predict_logits(nets[layout], data.x)

    def features(layout: str) -> None:
        compute_features(nets[layout], data.x, data.y, features_rows, num_classes=10, samples=10, eps=0.1, seed=0, chunk_size=256)

    runs: dict[str, Callable[[str], None]] = {"train": train, "predict": predict, "features": features}
    images = {"train": args.n, "predict": args.n, "features": len(features_rows) * 11}
    seconds: dict[str, dict[str, list[float]]] = {task: {layout: [] for layout in LAYOUTS} for task in TASKS}
    for layout in LAYOUTS:  # warm-up: kernels and allocator
        predict(layout)
    for round_ in range(args.rounds):
        order = LAYOUTS if round_ % 2 == 0 else LAYOUTS[::-1]
        for task in TASKS:
            for layout in order:
                started = time.perf_counter()
                runs[task](layout)
                seconds[task][layout].append(time.perf_counter() - started)
        print(json.dumps({"shape": name, "round": round_, **{t: {k: round(v[-1], 3) for k, v in s.items()} for t, s in seconds.items()}}), flush=True)
    rate = {task: {layout: images[task] / statistics.median(seconds[task][layout]) for layout in LAYOUTS} for task in TASKS}
    return {
        "shape": name,
        "input_shape": list(shape),
        "n": args.n,
        "rounds": args.rounds,
        "images": images,
        "seconds": seconds,
        "images_per_second": rate,
        "speedup": {task: rate[task]["channels_last"] / rate[task]["contiguous"] for task in TASKS},
        "max_logit_difference": float((logits["contiguous"] - logits["channels_last"]).abs().max()),
        "max_abs_logit": float(logits["contiguous"].abs().max()),
    }


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Layout: the builtin CNN channels-last against contiguous on the CPU (issue #17)",
        "",
        f"Measured {meta['date']} on {meta['machine']}: `{meta['command'].strip()}`. Raw figures: `benchmarks/results/layout.json`.",
        "The model `builtin:cnn` builds, the same initial weights stored contiguous (NCHW) and channels-last (today's), at one",
        "thread: `train` is `train_epoch` (SGD, batch 128), `predict` is `predict_logits`, `features` is the gate's",
        "`compute_features` (10 perturbations per sample). Images per second, medians of interleaved rounds; the last column is",
        "the largest logit difference between the two layouts' forward passes over the same initial weights (of the largest logit).",
        "",
        "| input | n | rounds | train img/s contiguous → channels-last | predict img/s | features img/s | logit difference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rate, speedup = row["images_per_second"], row["speedup"]
        cells = [f"{rate[t]['contiguous']:,.0f} → {rate[t]['channels_last']:,.0f} ({speedup[t]:.2f}×)" for t in TASKS]
        lines.append(
            f"| {row['shape']} | {row['n']:,} | {row['rounds']} | {' | '.join(cells)} "
            f"| {row['max_logit_difference']:.1e} (of {row['max_abs_logit']:.1f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--n", type=int, default=4096, help="random images per pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from the last results")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section("layout", render(saved["meta"], saved["rows"]))
        return
    torch.set_num_threads(args.threads)
    meta = run_meta(n=args.n, rounds=args.rounds)
    rows = [measure(name, args) for name in args.shapes.split(",")]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    update_section("layout", render(meta, rows))


if __name__ == "__main__":
    main()
