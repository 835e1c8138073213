"""`verify`: prove from the files that a run's shipped ONNX is the model that passed its privacy gate.

A release pipeline runs `prunectl verify runs/X` after `compress`, or on a run directory it
downloaded, before it publishes `export/model.onnx(.xz)`. Nothing is trusted that can be
recomputed; every claim of the manifest is checked against the bytes on disk:

1. `files`: every file the prune recorded (recipe, splits, checkpoints, masks, results) still
   has its recorded SHA-256;
2. `gate`: the run was gated and the verdict is a pass, on exactly the checkpoints that are here
   (their hashes equal the audited ones), and the gate's reports are unchanged;
3. `export`: every exported file has its recorded hash, and the ONNX file names the audited
   checkpoint (`x.pruned_sha256` in its metadata) and not a failed verdict (`x.privacy_gate`);
4. `xz`: `model.onnx.xz`, the file a fleet downloads, decompresses to exactly `model.onnx`;
   `int8` (when the gate audited an INT8 model, `export.quantize = "int8"`): `model.int8.onnx`,
   then the release artifact, has the audited INT8 graph and its `.xz` unpacks to it;
5. `release`: the manifest's release record (from `compress`) names this artifact and a pass;
6. `parity` (on by default): onnxruntime on `model.onnx` computes what torch computes with the
   audited checkpoint, on holdout samples, within the recipe's export tolerance;
7. `threshold` (with `max_advantage`): the gate ran at a threshold no looser than the caller's
   and the gated figure is within it, so a pass at `--max-advantage 1` is not mistaken for a release.

Verification never writes into the run directory. A failed check is a result (exit 1 in the
CLI), not an exception; only a directory that is not a finished run raises (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunectl.errors import PrunectlError, RunDirError
from prunectl.files import file_sha256
from prunectl.rundir.layout import EXPORT_DIR, GATE_DIR, MANIFEST, RECIPE
from prunectl.rundir.layout import ONNX_NAME as ONNX
from prunectl.rundir.layout import PRUNED_CHECKPOINT as PRUNED
from prunectl.rundir.layout import INT8_NAME as INT8
from prunectl.rundir.layout import INT8_XZ_NAME as INT8_XZ
from prunectl.rundir.layout import XZ_NAME as XZ
from prunectl.rundir.manifest import Section, Stage

PARITY_SAMPLES = 512


@dataclass(frozen=True)
class Check:
    """One claim of the manifest, checked: `passed`, and in `detail` what was found."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    """What `prunectl verify` reports; `passed` only when every check passed."""

    run_dir: str
    checks: tuple[Check, ...]
    artifact: str | None
    artifact_sha256: str | None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "passed": self.passed,
            "artifact": self.artifact,
            "artifact_sha256": self.artifact_sha256,
            "checks": [vars(check) for check in self.checks],
        }


def verify(run_dir: str | Path, *, parity: bool = True, max_advantage: float | None = None) -> VerifyResult:
    """Recompute every hash and link between the audited checkpoint and the exported ONNX."""
    path = Path(run_dir)
    if not path.is_dir() or not (path / RECIPE).is_file():
        raise RunDirError(f"{path} is not a prunectl run directory (no {RECIPE}); pass the --out of a compress run")
    if not (path / MANIFEST).is_file():
        raise RunDirError(f"{path} holds an unfinished run (no {MANIFEST}); there is nothing to verify until it finishes")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return VerifyResult(str(path), (Check("manifest", False, f"{MANIFEST} is unreadable ({error}): nothing can be verified"),), None, None)

    checks = [_files(path, manifest), _gate(path, manifest)]
    audited = (manifest.get(Section.GATE.value) or {}).get("checkpoints_sha256", {}).get(PRUNED)
    export_dir = _export_dir(path, manifest)
    onnx_sha = _sha256(export_dir / ONNX) if export_dir is not None else None
    checks.append(_export(export_dir, manifest, audited))
    checks.append(_xz(export_dir, onnx_sha))
    shipped, shipped_sha = ONNX, onnx_sha
    audited_int8 = (manifest.get(Section.GATE.value) or {}).get("int8_graph_sha256")
    if audited_int8:
        shipped, shipped_sha = INT8, _sha256(export_dir / INT8) if export_dir is not None else None
        checks.append(_int8(export_dir, audited_int8, shipped_sha))
    if Section.RELEASE.value in manifest:
        checks.append(_release(manifest, shipped_sha))
    if parity:
        checks.append(_parity(path, export_dir, audited))
    if max_advantage is not None:
        checks.append(_threshold(manifest, max_advantage))
    artifact = str(export_dir / shipped) if export_dir is not None and shipped_sha is not None else None
    return VerifyResult(str(path), tuple(checks), artifact, shipped_sha)


def _sha256(path: Path) -> str | None:
    """The file's SHA-256, or None when it is missing or unreadable (a failed check, never an exception)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _mismatches(directory: Path, recorded: dict[str, str]) -> list[str]:
    """Names of the recorded files that are missing or whose bytes changed."""
    problems = []
    for name, expected in sorted(recorded.items()):
        actual = _sha256(directory / name)
        if actual is None:
            problems.append(f"{name} is missing")
        elif actual != expected:
            problems.append(f"{name} changed (sha256 {actual[:12]}…, recorded {expected[:12]}…)")
    return problems


def _files(path: Path, manifest: dict[str, Any]) -> Check:
    recorded = manifest.get(Section.FILES.value) or {}
    if not recorded:
        return Check("files", False, "the manifest records no file hashes")
    problems = _mismatches(path, recorded)
    if problems:
        return Check("files", False, "; ".join(problems))
    return Check("files", True, f"{len(recorded)} files match their recorded SHA-256")


def _gate(path: Path, manifest: dict[str, Any]) -> Check:
    gate = manifest.get(Section.GATE.value)
    if not gate:
        return Check("gate", False, "the run was never gated; run prunectl compress (or prunectl gate) first")
    if not gate.get("passed") or gate.get("verdict") != "pass":
        return Check("gate", False, f"the gate did not pass: {gate.get('reason', 'no reason recorded')}")
    audited = gate.get("checkpoints_sha256") or {}
    if PRUNED not in audited:
        return Check("gate", False, f"the gate record names no audited {PRUNED}")
    problems = _mismatches(path, audited) + _mismatches(path / GATE_DIR, gate.get("reports_sha256") or {})
    if problems:
        return Check("gate", False, "; ".join(problems) + ": what is here is not what the gate audited")
    return Check("gate", True, f"passed ({gate.get('reason')}) on {PRUNED} sha256 {audited[PRUNED][:12]}…, reports unchanged")


def _export_dir(path: Path, manifest: dict[str, Any]) -> Path | None:
    section = manifest.get(Section.EXPORT.value)
    if not section:
        return None
    recorded = Path(section.get("dir", EXPORT_DIR))
    return recorded if recorded.is_absolute() else path / recorded


def _export(export_dir: Path | None, manifest: dict[str, Any], audited: str | None) -> Check:
    if export_dir is None:
        quarantined = Section.QUARANTINE.value in manifest
        why = "the model is quarantined (the gate failed; --export-on-fail)" if quarantined else "nothing was exported"
        return Check("export", False, f"{why}: there is no release artifact")
    recorded = manifest[Section.EXPORT.value].get("files") or {}
    problems = _mismatches(export_dir, recorded)
    if ONNX not in recorded:
        problems.append(f"the manifest records no {ONNX}")
    if problems:
        return Check("export", False, "; ".join(problems))
    from exporters import read_metadata
    from exporters.errors import ExporterInputError

    try:
        extra = read_metadata(export_dir / ONNX).extra
    except ExporterInputError as error:
        return Check("export", False, str(error))
    source = extra.get("pruned_sha256")
    if source is None:
        return Check("export", False, f"{ONNX} does not name the checkpoint it was exported from (x.pruned_sha256); export it again")
    if source != audited:
        return Check("export", False, f"{ONNX} was exported from {PRUNED} sha256 {source[:12]}…, not the audited one")
    verdict = extra.get("privacy_gate")
    if verdict is not None and not verdict.startswith("passed"):
        return Check("export", False, f"{ONNX} says its gate did not pass: {verdict}")
    return Check("export", True, f"files match; {ONNX} was exported from the audited {PRUNED}")


def _xz(export_dir: Path | None, onnx_sha: str | None) -> Check:
    if export_dir is None or onnx_sha is None:
        return Check("xz", False, f"no {ONNX} to compare {XZ} with")
    problem = _unpacking_problem(export_dir, XZ, ONNX, onnx_sha)
    if problem:
        return Check("xz", False, problem)
    return Check("xz", True, f"{XZ} decompresses to exactly {ONNX}")


def _unpacking_problem(export_dir: Path, xz_name: str, name: str, sha: str) -> str | None:
    """Why `xz_name` does not decompress to the file `name` with hash `sha`; None when it does."""
    try:
        unpacked = lzma.decompress((export_dir / xz_name).read_bytes())
    except (OSError, lzma.LZMAError) as error:
        return f"{xz_name} cannot be decompressed ({error})"
    if hashlib.sha256(unpacked).hexdigest() != sha:
        return f"{xz_name} does not decompress to {name}"
    return None


def _int8(export_dir: Path | None, audited: str, int8_sha: str | None) -> Check:
    """The INT8 release file is the model the gate audited (its graph, metadata aside), and its .xz unpacks to it."""
    if export_dir is None or int8_sha is None:
        return Check("int8", False, f"the gate audited an INT8 model but there is no {INT8}")
    from prunectl.quantized import graph_sha256

    if graph_sha256((export_dir / INT8).read_bytes()) != audited:
        return Check("int8", False, f"{INT8} is not the INT8 model the gate audited (graph sha256 differs)")
    problem = _unpacking_problem(export_dir, INT8_XZ, INT8, int8_sha)
    if problem:
        return Check("int8", False, problem)
    return Check("int8", True, f"{INT8} is the INT8 model the gate audited (graph sha256 {audited[:12]}…); {INT8_XZ} unpacks to it")


def _release(manifest: dict[str, Any], onnx_sha: str | None) -> Check:
    release = manifest[Section.RELEASE.value]
    artifact = release.get("artifact") or {}
    stage = manifest.get(Section.STAGE.value)
    if stage != Stage.RELEASED.value or not release.get("released"):
        return Check("release", False, f"the run's stage is {stage!r}, not {Stage.RELEASED.value!r}")
    if artifact.get("sha256") != onnx_sha:
        return Check("release", False, f"the release record names another artifact (sha256 {str(artifact.get('sha256'))[:12]}…)")
    return Check("release", True, f"released artifact sha256 {str(onnx_sha)[:12]}…")


def _parity(path: Path, export_dir: Path | None, audited: str | None) -> Check:
    """The ONNX file against torch on the audited weights: the strongest link, it needs no manifest."""
    if export_dir is None or not (export_dir / ONNX).is_file():
        return Check("parity", False, f"no {ONNX} to run")
    import torch

    from exporters.errors import ExporterInputError
    from exporters.parity import compare_logits, run_session
    from exporters.runtime import open_session
    from prunectl.rundir.load import load_run

    try:
        loaded = load_run(path)
    except PrunectlError as error:
        return Check("parity", False, f"the run cannot be loaded: {error}")
    if loaded.checkpoints_sha256.get(PRUNED) != audited:
        return Check("parity", False, f"the {PRUNED} loaded is not the audited one")
    rows = torch.as_tensor(loaded.splits.holdout[:PARITY_SAMPLES])
    inputs = loaded.data.x[rows].numpy()
    with torch.no_grad():
        reference = torch.cat([loaded.pruned_model(torch.from_numpy(inputs[i : i + 256])) for i in range(0, len(inputs), 256)]).numpy()
    try:
        candidate = run_session(open_session(export_dir / ONNX), inputs)
    except ExporterInputError as error:
        return Check("parity", False, str(error))
    report = compare_logits(reference, candidate, loaded.recipe.export.tolerance)
    if not report.passed:
        return Check("parity", False, f"{ONNX} does not compute what the audited checkpoint computes: {report.describe()}")
    return Check("parity", True, f"max |Δlogit| {report.max_abs_diff:.2e} on {report.samples} holdout samples (tolerance {report.tolerance:g})")


def _threshold(manifest: dict[str, Any], required: float) -> Check:
    gate = manifest.get(Section.GATE.value) or {}
    used, gated = gate.get("max_advantage"), gate.get("gated_value")
    if used is None or gated is None:
        return Check("threshold", False, "the gate record holds no threshold or gated figure")
    if used > required:
        return Check("threshold", False, f"the gate ran at max_advantage {used:g}, looser than the required {required:g}")
    if gated > required:
        return Check("threshold", False, f"the gated figure {gated:.3f} exceeds the required {required:g}")
    return Check("threshold", True, f"gated figure {gated:.3f} within {required:g} (gate ran at {used:g})")
