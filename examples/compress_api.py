"""The release step from Python: everything `prunectl compress` does, as one function call.

    .venv/bin/python examples/compress_api.py [RUN_DIR]        # default runs/api-release

The recipe resolves exactly as on the command line (flags here > PRUNECTL_* environment >
./prunectl.toml > defaults), and every result is a frozen dataclass; `to_dict()` gives JSON.
Exit code: 0 when the gate passed and the model was exported, 1 when it did not.
"""

from __future__ import annotations

import sys

from prunectl.api import compress, load_run, resolve_recipe
from prunectl.config import discover_config


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/api-release"
    resolved = resolve_recipe(config=discover_config(), flags={"prune.target_sparsity": 0.9})
    result = compress(resolved.recipe, out=out, overwrite=True)

    print(f"holdout accuracy {result.base_accuracy:.2%} -> {result.pruned_accuracy:.2%} at {result.sparsity:.1%} sparsity")
    gate = result.gate
    print(f"gate {gate.verdict}: {gate.reason}")
    if not result.passed:
        print(f"no release artifact; evidence in {gate.report_dir}")
        return 1
    print(f"artifact {result.artifact.path}: {result.artifact.size_ratio:.2f}x the dense ONNX, "
          f"latency {result.latency.latency_ratio:.2f}x, sha256 {result.artifact.sha256[:12]}")

    run = load_run(out)              # the recipe, data, splits and both models, for further checks
    print(f"recipe {run.recipe.run_name!r}, {len(run.splits.members)} members, seed {run.recipe.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
