"""The gate stage: audit a finished run's pruned model (and its original) for membership leakage.

`gates` knows nothing of recipes or run directories; this stage hands it the victim's data,
models and pipeline function (with the recipe bound, so every shadow runs the victim's code
path), writes what it returns into `runs/<name>/gate/`, and records the verdict in the manifest.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates.errors import GateInputError
from gates.gate import GateInputs, check_feasible, run_gate
from gates.policy import GatePolicy
from gates.report import render_all
from gates.result import GateResult
from prunectl.cache import resolve_cache_dir
from prunectl.config import recipe_sha256
from prunectl.data import Dataset, Splits
from prunectl.defenses import defense_label
from prunectl.errors import PrunectlError
from prunectl.files import atomic_write_bytes, check_writable, file_sha256, make_directory, replace_directory
from prunectl.executors import Execution, check_execution, make_executor
from prunectl.progress import Progress, SilentProgress
from prunectl.quantized import graph_sha256, int8_model, int8_sensitivity_eps, quantizes
from prunectl.recipe import GateSpec, Recipe
from prunectl.rundir.layout import GATE_DIR, GATE_REPORTS
from prunectl.rundir.load import LoadedRun, load_run
from prunectl.rundir.manifest import Manifest, Section, library_versions
from prunectl.stages.shadow_work import ShadowPipeline
from prunectl.training import resolve_device


class GateDataError(PrunectlError):
    """The run's data cannot support a meaningful gate (exit 2)."""


@dataclass(frozen=True, eq=False)
class GateOutcome:
    """What `prunectl gate` reports: the verdict with its evidence, and where the reports are."""

    run_dir: str
    gate_dir: str
    result: GateResult
    checkpoints_sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of the checkpoint bytes the gate audited, by file name (`base.pt`, `pruned.pt`, `plan.json`)."""
    int8_graph_sha256: str | None = None
    """With `export.quantize = "int8"`: the audited INT8 model's graph (`prunectl.quantized.graph_sha256`)."""

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "gate_dir": self.gate_dir, "checkpoints_sha256": self.checkpoints_sha256, **self.result.to_dict()}


def gate(
    run_dir: str | Path,
    *,
    settings: GateSpec | None = None,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
    execution: Execution | None = None,
) -> GateOutcome:
    """Audit a finished run's pruned model (and its original) for membership leakage.

    Shadows re-run the run's stored recipe on the shadow pool; `settings` (default: the
    recipe's `[gate]`) decide what is measured and where the threshold lies. Writes
    `gate/report.json`, `junit.xml`, `summary.md` and `roc.png`, records the verdict and the
    audited checkpoints' hashes in the manifest, and returns the verdict: check `.passed`.
    Data too small for a meaningful verdict raises a `PrunectlError` before any training.
    Shadows reuse base models and memorization scores from `cache_dir` (default: the user cache)
    and run where `execution` says (default: a local pool on every core; the figures do not
    depend on it).
    """
    check_execution(execution)
    loaded = load_run(run_dir)
    audited = loaded.checkpoints_sha256
    check_gate_feasible(loaded.recipe, loaded.data, loaded.splits, settings)  # bad settings lose nothing
    gate_dir = loaded.path / GATE_DIR
    check_writable(loaded.path, "run directory", "copy the run somewhere writable and gate the copy")
    manifest = Manifest.read(loaded.path)
    # A new audit supersedes the last verdict at once: a gate that crashes, is killed or is
    # interrupted must not leave an earlier pass on record for these checkpoints.
    manifest.forget(Section.GATE)
    inputs = gate_inputs(loaded, resolve_cache_dir(cache_dir), execution)
    result = audit(loaded, settings, progress, inputs=inputs)
    int8_graph = graph_sha256(inputs.pruned_model.onnx_bytes) if quantizes(loaded.recipe) else None
    context = {"versions": library_versions(), "run_dir": str(loaded.path), "checkpoints_sha256": audited}
    reports = write_reports(result, gate_dir, context)
    pruned = result.pruned
    headline = pruned.metrics(result.deciding_attack).to_dict() if pruned and result.deciding_attack else None
    manifest.record(
        Section.GATE,
        {
            "verdict": result.verdict,
            "passed": result.passed,
            "reason": result.reason,
            "max_advantage": result.max_advantage,
            "strict": result.strict,
            "deciding_attack": result.deciding_attack,
            "gated_value": result.to_dict()["gated_value"],
            "deciding_metrics": headline,
            "checkpoints_sha256": audited,
            "int8_graph_sha256": int8_graph,
            "execution": inputs.extra_settings["execution"],
            "reports_sha256": {name: file_sha256(path) for name, path in reports.items()},
        },
    )
    return GateOutcome(str(loaded.path), str(gate_dir), result, dict(audited), int8_graph)


def gate_policy(recipe: Recipe, settings: GateSpec | None = None) -> GatePolicy:
    """The gate's policy: the recipe's `[gate]` settings (or `settings`), its seed and device."""
    spec = settings or recipe.gate
    values = {item.name: getattr(spec, item.name) for item in dataclasses.fields(spec) if item.name != "options"}
    return GatePolicy(**values, options=spec.options, seed=recipe.seed, device=str(resolve_device(recipe.device)))


def gate_inputs(loaded: LoadedRun, cache_dir: Path | None = None, execution: Execution | None = None) -> GateInputs:
    """A loaded run as the gate sees it; shadows share `cache_dir` and run on the executor
    `execution` describes (default: the local pool on every core). With `export.quantize = "int8"`
    the audited model is the INT8 model that ships, and each shadow's pruned model is quantised
    the same way on its own members (`prunectl.quantized`)."""
    recipe = loaded.recipe
    splits = loaded.splits
    quantized = quantizes(recipe)
    executor = make_executor(execution, str(resolve_device(recipe.device)))

    victim = int8_model(loaded.pruned_model, recipe, loaded.data, splits.members) if quantized else loaded.pruned_model
    return GateInputs(
        inputs=loaded.data.x,
        labels=loaded.data.y.numpy(),
        num_classes=loaded.data.num_classes,
        members=splits.members,
        holdout=splits.holdout,
        shadow_pool=splits.shadow_pool,
        dev_fraction=len(splits.dev) / (len(splits.members) + len(splits.dev)),
        pruned_model=victim,
        original_model=loaded.base_model,
        train_shadow=ShadowPipeline(recipe, cache_dir),
        executor=executor,
        shared={"dataset": loaded.data},
        extra_settings={
            "execution": executor.describe(),
            "recipe_sha256": recipe_sha256(recipe),
            "run": recipe.run_name,
            "victim_training": f"the victim's recipe with {defense_label(recipe.defense)}",
            "audited_model": (
                "the INT8 onnxruntime model that ships (export.quantize = int8), shadows quantised the same way"
                if quantized
                else "the fp32 pruned model that ships"
            ),
            **({"int8_sha256": victim.sha256} if quantized else {}),
        },
    )


def audit_policy(loaded: LoadedRun, inputs: GateInputs, settings: GateSpec | None = None) -> GatePolicy:
    """The gate's policy for these inputs: an INT8 model is attacked on the CPU (onnxruntime) with
    the sensitivity perturbation scaled above its input quantisation step."""
    policy = gate_policy(loaded.recipe, settings)
    if not quantizes(loaded.recipe):
        return policy
    eps = int8_sensitivity_eps(policy.sensitivity_eps, getattr(inputs.pruned_model, "input_scale", None))
    return dataclasses.replace(policy, sensitivity_eps=eps, device="cpu")


def check_gate_feasible(recipe: Recipe, data: Dataset, splits: Splits, settings: GateSpec | None = None) -> None:
    """Refuse data too small for a meaningful gate before anything trains (`compress` calls it
    before pruning, so the refusal costs nothing and leaves no run behind)."""
    try:
        check_feasible(
            labels=data.y.numpy(),
            num_classes=data.num_classes,
            members=splits.members,
            holdout=splits.holdout,
            shadow_pool=splits.shadow_pool,
            policy=gate_policy(recipe, settings),
        )
    except GateInputError as error:
        raise GateDataError(str(error)) from None


def audit(
    loaded: LoadedRun,
    settings: GateSpec | None = None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    *,
    inputs: GateInputs | None = None,
) -> GateResult:
    """Run the gate on a loaded run; bad input becomes a `PrunectlError` (exit 2)."""
    inputs = inputs or gate_inputs(loaded, cache_dir)
    try:
        return run_gate(inputs, audit_policy(loaded, inputs, settings), progress or SilentProgress())
    except GateInputError as error:
        raise GateDataError(str(error)) from None


def write_reports(result: GateResult, gate_dir: Path, context: dict[str, Any]) -> dict[str, Path]:
    """All four reports into `gate_dir`, replacing the previous set only once all are written."""
    staging = gate_dir.with_name(f".{gate_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    make_directory(staging, "gate report directory")
    for name, payload in render_all(result, context).items():
        atomic_write_bytes(staging / name, payload)
    replace_directory(staging, gate_dir)
    return {name: gate_dir / name for name in GATE_REPORTS}

