"""The gate's renderers: what CI, a reviewer and a plot reader see of a GateResult.

Results are built by hand here (no shadows trained), so the whole module runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from gates.report import (
    ATTACK_CLASSNAME,
    FILENAMES,
    render_all,
    render_json,
    render_junit,
    render_roc_png,
    render_summary,
)
from gates.result import AttackMetrics, GateResult, ModelAudit, ShadowSummary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ATTACKS = ("samia", "loss", "confidence")
N = 200  # members and non-members per side


def make_metrics(attack: str, advantage: float, half_width: float = 0.05, **changes: float) -> AttackMetrics:
    """Plausible figures around one advantage; `changes` overrides any field."""
    fields = {
        "attack": attack,
        "threshold": 0.5,
        "accuracy": 0.5 + advantage / 2,
        "tpr": 0.5 + advantage / 2,
        "fpr": 0.5 - advantage / 2,
        "advantage": advantage,
        "advantage_low": advantage - half_width,
        "advantage_high": advantage + half_width,
        "best_advantage": advantage + 0.02,
        "auc": 0.5 + advantage / 2,
        "tpr_at_1pct_fpr": 0.02,
        "achieved_fpr_1pct": 0.01,
        "tpr_at_01pct_fpr": 0.0,
        "achieved_fpr_01pct": 0.0,
        "n_members": N,
        "n_nonmembers": N,
    }
    fields.update(changes)
    return AttackMetrics(**fields)


def make_audit(model: str, advantages: dict[str, float], seed: int = 0, **metric_changes: float) -> ModelAudit:
    """An audit whose per-sample scores separate members by roughly the given advantage."""
    rng = np.random.default_rng(seed)
    membership = np.r_[np.ones(N, dtype=np.int64), np.zeros(N, dtype=np.int64)]
    scores = {a: rng.normal(size=2 * N) + 2.5 * adv * membership for a, adv in advantages.items()}
    attacks = tuple(make_metrics(a, adv, **metric_changes) for a, adv in advantages.items())
    return ModelAudit(model=model, holdout_accuracy=0.9, attacks=attacks, scores=scores, membership=membership)


def make_result(
    pruned_adv: dict[str, float] | None = None,
    original_adv: dict[str, float] | None = None,
    *,
    verdict: str = "pass",
    strict: bool = False,
    max_advantage: float = 0.1,
    gated: tuple[str, ...] = ("samia", "loss"),
    **changes: object,
) -> GateResult:
    """A GateResult by hand: advantages per attack for each model; `changes` overrides any field (pruned=None...)."""
    pruned_audit = make_audit("pruned", pruned_adv if pruned_adv is not None else dict.fromkeys(ATTACKS, 0.04), seed=1)
    original_audit = make_audit("original", original_adv if original_adv is not None else dict.fromkeys(ATTACKS, 0.02), seed=2)
    measured = [pruned_audit.metrics(a) for a in gated if a in {m.attack for m in pruned_audit.attacks}]
    figure = max(measured, key=lambda m: m.advantage_high if strict else m.advantage)
    fields = {
        "verdict": verdict,
        "reason": "test result",
        "max_advantage": max_advantage,
        "strict": strict,
        "gated_attacks": gated,
        "deciding_attack": figure.attack,
        "gated_value": figure.advantage_high if strict else figure.advantage,
        "resolution": 0.098,
        "warnings": (),
        "pruned": pruned_audit,
        "original": original_audit,
        "shadows": (
            ShadowSummary(
                index=0, seed=11, n_members=100, n_dev=30, n_nonmembers=100, base_accuracy=0.91, pruned_accuracy=0.89, seconds=1.0
            ),
            ShadowSummary(
                index=1, seed=12, n_members=100, n_dev=30, n_nonmembers=100, base_accuracy=0.92, pruned_accuracy=0.88, seconds=1.1
            ),
        ),
        "n_members": N,
        "n_nonmembers": N,
        "seed": 0,
        "settings": {"attacks": list(ATTACKS), "shadows": 2},
        "seconds": {"total": 12.5, "shadows": 10.0},
    }
    fields.update(changes)
    return GateResult(**fields)


@pytest.fixture()
def passing() -> GateResult:
    return make_result()


@pytest.fixture()
def failing() -> GateResult:
    return make_result({"samia": 0.25, "loss": 0.04, "confidence": 0.3}, verdict="fail", reason="samia leaks")


@pytest.fixture()
def error_result() -> GateResult:
    return make_result(
        verdict="error",
        pruned=None,
        original=None,
        deciding_attack=None,
        gated_value=None,
        reason="shadow 1 failed",
        error="RuntimeError: shadow 1 diverged (loss nan)",
        shadows=(),
    )


def junit_cases(xml: str) -> tuple[ET.Element, list[ET.Element]]:
    suite = ET.fromstring(xml.encode("utf-8"))
    return suite, suite.findall("testcase")


# --------------------------------------------------------------------------------------------- JSON


def test_json_round_trips_every_attack_for_both_models_and_carries_context(passing: GateResult) -> None:
    extra = {"versions": {"torch": "2.13.0"}, "run": Path("runs/tiny"), "recipe_sha256": "ab12"}
    data = json.loads(render_json(passing, extra))
    assert data["schema"] == 1
    assert data["context"] == {"versions": {"torch": "2.13.0"}, "run": "runs/tiny", "recipe_sha256": "ab12"}
    assert data["verdict"] == "pass" and data["passed"] is True
    for model in ("original", "pruned"):
        audit = getattr(passing, model)
        by_name = {a["attack"]: a for a in data[model]["attacks"]}
        assert set(by_name) == set(ATTACKS)
        for metrics in audit.attacks:
            expected = {k: v for k, v in dataclasses.asdict(metrics).items() if k not in ("calibrated", "epsilon")}
            assert {k: by_name[metrics.attack][k] for k in expected} == pytest.approx(expected)


def test_json_without_extra_has_empty_context_and_is_stable(passing: GateResult) -> None:
    text = render_json(passing)
    assert json.loads(text)["context"] == {}
    assert text == render_json(passing)
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_json_has_null_never_nan_even_from_settings_and_extra() -> None:
    class Mode(str, Enum):
        FAST = "fast"

    result = make_result(
        {"samia": math.nan, "loss": 0.04, "confidence": 0.03},
        verdict="error",
        gated_value=math.nan,
        resolution=math.nan,
        settings={"eps": np.float32("nan"), "mode": Mode.FAST, "n": np.int64(3), "ratios": np.array([0.5, np.inf])},
        seconds={"total": math.inf},
    )
    text = render_json(result, {"mean": float("nan"), "where": Path("/tmp/x")})
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    samia = next(a for a in data["pruned"]["attacks"] if a["attack"] == "samia")
    assert samia["advantage"] is None and samia["auc"] is None
    assert data["gated_value"] is None and data["resolution"] is None
    assert data["settings"] == {"eps": None, "mode": "fast", "n": 3, "ratios": [0.5, None]}
    assert data["seconds"] == {"total": None}
    assert data["context"] == {"mean": None, "where": "/tmp/x"}


def test_json_of_error_result_has_no_audits_and_the_error(error_result: GateResult) -> None:
    data = json.loads(render_json(error_result))
    assert data["verdict"] == "error" and data["passed"] is False
    assert data["pruned"] is None and data["original"] is None
    assert "diverged" in data["error"]


# -------------------------------------------------------------------------------------------- JUnit


def test_junit_passing_has_one_green_case_per_gated_attack(passing: GateResult) -> None:
    suite, cases = junit_cases(render_junit(passing))
    assert suite.tag == "testsuite" and suite.get("name") == "prunectl privacy gate"
    assert [(c.get("classname"), c.get("name")) for c in cases] == [(ATTACK_CLASSNAME, "samia"), (ATTACK_CLASSNAME, "loss")]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert float(suite.get("time")) == pytest.approx(12.5)
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    assert "AUC" in cases[0].findtext("system-out")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["max_advantage"] == "0.1" and props["strict"] == "false"
    assert props["deciding_attack"] == "samia" and float(props["resolution"]) == pytest.approx(0.098)


def test_junit_failing_attack_fails_with_its_figures(failing: GateResult) -> None:
    suite, cases = junit_cases(render_junit(failing))
    assert len(cases) == 2  # confidence leaks more, but is not gated
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    samia, loss = cases
    failure = samia.find("failure")
    assert failure.get("type") == "LeakageAboveThreshold"
    assert "0.250" in failure.get("message") and "0.100" in failure.get("message")
    for words in ("advantage 0.250", "0.200 to 0.300", "AUC", "threshold 0.500"):
        assert words in failure.text
    assert loss.find("failure") is None


def test_junit_strict_mode_fails_on_the_upper_bound_even_when_the_point_estimate_passes() -> None:
    pruned = {"samia": 0.08, "loss": 0.02, "confidence": 0.01}  # samia: 0.08 point, 0.13 upper bound
    lenient = make_result(pruned, verdict="pass")
    strict = make_result(pruned, verdict="fail", strict=True)
    assert junit_cases(render_junit(lenient))[0].get("failures") == "0"
    suite, cases = junit_cases(render_junit(strict))
    assert suite.get("failures") == "1"
    failure = cases[0].find("failure")
    assert failure.get("type") == "LeakageAboveThreshold" and "upper 95% bound" in failure.get("message")
    assert "0.130" in failure.get("message")
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["strict"] == "true"


def test_junit_error_verdict_without_audits_is_one_gate_error(error_result: GateResult) -> None:
    suite, cases = junit_cases(render_junit(error_result))
    assert [c.get("name") for c in cases] == ["gate"]
    error = cases[0].find("error")
    assert error is not None and "diverged" in error.get("message")
    assert "shadow 1 failed" in error.text
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")


def test_junit_nan_or_missing_figure_fails_closed() -> None:
    result = make_result(
        {"samia": math.nan, "confidence": 0.01},
        verdict="error",
        gated=("samia", "loss"),
        deciding_attack="samia",
        gated_value=math.nan,
    )
    suite, cases = junit_cases(render_junit(result))
    by_name = {c.get("name"): c for c in cases}
    assert by_name["samia"].find("failure").get("type") == "GateError"
    assert by_name["loss"].find("failure").get("type") == "GateError"  # gated but never measured
    assert by_name["gate"].find("error") is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "1")


def test_junit_fail_verdict_is_never_green() -> None:
    """A "fail" the per-attack figures do not explain still shows as a failing case."""
    result = make_result(verdict="fail", reason="too few shadows converged")
    suite, cases = junit_cases(render_junit(result))
    assert suite.get("failures") == "1"
    assert cases[-1].get("name") == "gate" and "too few shadows" in cases[-1].find("failure").get("message")


def test_junit_escapes_markup_and_control_characters() -> None:
    """An ANSI colour code or NUL in an error message must not make junit.xml unparsable for CI."""
    result = make_result(
        verdict="error",
        pruned=None,
        original=None,
        deciding_attack=None,
        gated_value=None,
        reason='bad <input> & "quotes"',
        error="\x1b[31mboom\x1b[0m \x00 <tag>",
        seconds={},
    )
    suite, cases = junit_cases(render_junit(result))
    error = cases[0].find("error")
    assert "boom" in error.get("message") and "<tag>" in error.get("message") and "\x1b" not in error.get("message")
    assert 'bad <input> & "quotes"' in error.text
    assert suite.get("time") is None  # no total time: no made-up 0


# ----------------------------------------------------------------------------------------- Markdown


def test_summary_passing_heading_sentence_and_table(passing: GateResult) -> None:
    text = render_summary(passing)
    lines = text.splitlines()
    assert lines[0] == "## Privacy gate: PASSED"
    assert "`samia`" in lines[2] and "0.040 is within max_advantage 0.100" in lines[2]
    assert "200 members and 200 non-members" in lines[2] and "±0.098" in lines[2]
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == len(ATTACKS)
    assert "(gated, deciding)" in rows[0] and "(gated)" in rows[1] and "gated" not in rows[2]
    assert "0.020 [-0.030, 0.070]" in rows[0] and "0.040 [-0.010, 0.090]" in rows[0]
    assert "0.020 (0.010)" in rows[0] and "shadow data" in rows[0]
    assert "Holdout accuracy: 0.900 (original) → 0.900 (pruned)" in text
    assert "Shadows: 2" in text and "0.910 → 0.890" in text


def test_summary_failing_and_strict_wording(failing: GateResult) -> None:
    text = render_summary(failing)
    assert text.startswith("## Privacy gate: FAILED\n")
    assert "0.250 exceeds max_advantage 0.100" in text
    strict = render_summary(make_result({"samia": 0.08, "loss": 0.02, "confidence": 0.0}, verdict="fail", strict=True))
    assert "upper 95% bound" in strict and "0.130 exceeds" in strict and "strict mode" in strict


def test_summary_error_without_original_shows_dashes_na_warnings_and_error() -> None:
    result = make_result(
        {"samia": math.nan, "loss": 0.04, "confidence": 0.03},
        verdict="error",
        original=None,
        gated_value=math.nan,
        warnings=("only 2 shadows", "class 3 has 4 samples"),
        error="ValueError: scores are not finite",
    )
    text = render_summary(result)
    assert text.startswith("## Privacy gate: NOT PASSED (error)\n")
    assert "could not establish" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert all("| — |" in row for row in rows)
    assert "n/a [n/a, n/a]" in rows[0] and "nan" not in text.lower()
    assert "- only 2 shadows" in text and "- class 3 has 4 samples" in text
    assert "ValueError: scores are not finite" in text


def test_summary_error_without_any_audit(error_result: GateResult) -> None:
    text = render_summary(error_result)
    assert text.startswith("## Privacy gate: NOT PASSED (error)\n")
    assert "diverged" in text and "Shadows: none." in text


# ---------------------------------------------------------------------------------------------- ROC


def test_roc_png_for_normal_and_error_results(passing: GateResult, error_result: GateResult) -> None:
    for result in (passing, error_result, make_result(verdict="fail", original=None)):
        png = render_roc_png(result)
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1000


def test_roc_png_without_scores_says_why() -> None:
    from gates.report import _no_roc_reason

    audit = ModelAudit(model="pruned", holdout_accuracy=0.9, attacks=(make_metrics("samia", 0.04),))
    result = dataclasses.replace(make_result(), pruned=audit, original=None)
    assert render_roc_png(result).startswith(PNG_SIGNATURE)
    assert "no per-sample scores" in _no_roc_reason(result)
    assert "diverged" in _no_roc_reason(make_result(verdict="error", pruned=None, original=None, error="loss diverged"))


def test_roc_helper_steps_through_ties_and_ends_at_one() -> None:
    from gates.report import _roc

    scores = np.array([0.9, 0.8, 0.8, 0.1, np.nan])
    membership = np.array([1, 1, 0, 0, 1])
    fpr, tpr, n_neg, n_pos = _roc(scores, membership)
    assert (n_neg, n_pos) == (2, 2)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert _roc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_roc_leaves_pyplot_alone() -> None:
    """In a fresh process, rendering does not import pyplot (its global figure registry and backend).

    (Not checked through `matplotlib.get_backend()`: that call itself imports pyplot.)
    """
    code = (
        "import sys\n"
        "from tests.test_gate_report import make_result\n"
        "from gates.report import render_roc_png\n"
        "assert render_roc_png(make_result()).startswith(b'\\x89PNG')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_roc_does_not_touch_open_pyplot_figures(passing: GateResult) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    mine = plt.figure()
    try:
        before = plt.get_fignums()
        render_roc_png(passing)
        assert plt.get_fignums() == before and plt.gcf() is mine
    finally:
        plt.close(mine)


# ---------------------------------------------------------------------------------------------- all


def test_render_all_gives_every_file_as_bytes(failing: GateResult) -> None:
    files = render_all(failing, {"run": "runs/x"})
    assert tuple(files) == FILENAMES
    assert all(isinstance(v, bytes) for v in files.values())
    assert json.loads(files["report.json"])["context"] == {"run": "runs/x"}
    ET.fromstring(files["junit.xml"])
    assert files["summary.md"].decode("utf-8").startswith("## Privacy gate: FAILED")
    assert files["roc.png"].startswith(PNG_SIGNATURE)
