"""The gate's result, rendered for machines (JSON, JUnit XML), people (Markdown) and eyes (ROC plot).

Pure renderers: each takes a :class:`GateResult` and returns text or bytes. Nothing here writes a
file, because the caller writes the run directory atomically (temp file + rename) and decides
where. Nothing here decides either: the verdict is the gate's; the renderers only show it. Where
they re-read a figure (JUnit compares each gated attack with `max_advantage`), they fail closed:
a missing or NaN figure is never shown as a pass.

matplotlib is imported lazily, inside :func:`render_roc_png`, through its object API and the Agg
canvas: no pyplot, no global figure registry, no backend switching, headless.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np

from gates.result import CRITERIA, VERDICT_LABELS, AttackMetrics, Criterion, GateResult, ModelAudit

SCHEMA_VERSION = 1
SUITE_NAME = "prunectl privacy gate"
ATTACK_CLASSNAME = "prunectl.gate.pruned"
TPR_CLASSNAME = "prunectl.gate.pruned.tpr_at_fpr"
PER_CLASS_CLASSNAME = "prunectl.gate.pruned.per_class"
GATE_CLASSNAME = "prunectl.gate"
FILENAMES = ("report.json", "junit.xml", "summary.md", "roc.png")

# XML 1.0 cannot carry these at all, escaped or not: an ANSI colour code or a NUL byte in an
# error message would otherwise make the whole junit.xml unparsable for the CI.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# tab10, fixed here so a colour means the same attack in every plot, whatever the user's rcParams.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


# --------------------------------------------------------------------------------------------- JSON


def render_json(result: GateResult, extra: Mapping[str, Any] | None = None) -> str:
    """`report.json`: `result.to_dict()`, plus `"schema"` and the caller's `extra` under `"context"`.

    `extra` carries what only the caller knows (package versions, run path, recipe hash). Every
    value goes through :func:`_plain` once more, because `to_dict` covers the result's own fields
    but `settings` and `extra` can hold anything (a Path, an enum, a numpy scalar, a NaN): the file
    must be strict JSON (`allow_nan=False`), where a missing figure reads as `null`.
    """
    payload = result.to_dict()
    payload["schema"] = SCHEMA_VERSION
    payload["context"] = dict(extra) if extra is not None else {}
    return json.dumps(_plain(payload), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    """A JSON-ready copy: non-finite floats become None, anything JSON does not know becomes text."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return _plain(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


# -------------------------------------------------------------------------------------------- JUnit


def render_junit(result: GateResult) -> str:
    """`junit.xml`: one test case per criterion and gated attack on the pruned model, so CI shows which attack leaks how.

    The advantage criterion's cases (classname `prunectl.gate.pruned`) fail
    (`LeakageAboveThreshold`) when the gated figure — the advantage, or the upper end of its 95%
    interval in strict mode — exceeds `max_advantage`, and fail (`GateError`) when that figure is
    NaN or the attack was not measured: fail closed. The low-FPR criterion's cases
    (`prunectl.gate.pruned.tpr_at_fpr`) do the same with the TPR at the calibration threshold; a
    criterion the data cannot resolve is one skipped case saying why, never a green one. The
    per-class criterion is one case. An "error" verdict adds a case `gate` carrying an `<error>`
    with the gate's error; a "fail" verdict that no case explains adds a failing `gate` case, so a
    suite is never green when the gate did not pass.
    """
    suite = ET.Element("testsuite", {"name": SUITE_NAME})
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", result.verdict),
        ("max_advantage", _num(result.max_advantage, digits=None)),
        ("strict", str(bool(result.strict)).lower()),
        ("deciding_attack", result.deciding_attack or ""),
        ("resolution", _num(result.resolution, digits=None)),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": _xml_text(value)})

    failures = errors = skipped = 0
    if result.pruned is not None or result.verdict != "error":
        for attack in result.gated_attacks:
            failed = _attack_case(suite, result, attack)
            failures += failed
        for criterion in result.criteria:
            if criterion.name == "advantage" or criterion.status == "off":
                continue
            if criterion.status == "not resolvable":
                case = ET.SubElement(suite, "testcase", {"classname": _criterion_classname(criterion), "name": criterion.name})
                ET.SubElement(case, "skipped", {"message": _xml_text(_one_line(criterion.reason))})
                skipped += 1
            elif criterion.name == "tpr_at_fpr":
                failures += sum(_tpr_case(suite, result, criterion, attack) for attack in result.gated_attacks)
            else:
                failures += _per_class_case(suite, result, criterion)

    tests = len(suite.findall("testcase"))
    if result.verdict not in ("pass", "fail"):
        case = ET.SubElement(suite, "testcase", {"classname": GATE_CLASSNAME, "name": "gate"})
        message = result.error or result.reason or f"gate verdict {result.verdict!r}"
        error = ET.SubElement(case, "error", {"message": _xml_text(_one_line(message)), "type": "GateError"})
        error.text = _xml_text("\n".join(part for part in (result.reason, result.error) if part) or message)
        tests, errors = tests + 1, errors + 1
    elif result.verdict == "fail" and failures == 0:
        case = ET.SubElement(suite, "testcase", {"classname": GATE_CLASSNAME, "name": "gate"})
        message = result.reason or "the gate failed"
        failure = ET.SubElement(case, "failure", {"message": _xml_text(_one_line(message)), "type": "GateFailed"})
        failure.text = _xml_text(message)
        tests, failures = tests + 1, failures + 1

    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    total = _finite(result.seconds.get("total")) if result.seconds else None
    if total is not None:
        suite.set("time", f"{total:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _attack_case(suite: ET.Element, result: GateResult, attack: str) -> int:
    """Append one attack's test case; return 1 when it failed, else 0."""
    case = ET.SubElement(suite, "testcase", {"classname": ATTACK_CLASSNAME, "name": _xml_text(attack)})
    metrics = _metrics(result.pruned, attack)
    if metrics is None:
        message = f"{attack}: no figures for the pruned model, so its leakage is not established (fail closed)"
        failure = ET.SubElement(case, "failure", {"message": _xml_text(message), "type": "GateError"})
        failure.text = _xml_text(message)
        return 1
    details = _attack_details(metrics, result)
    figure_name = "upper 95% bound of the advantage" if result.strict else "advantage"
    value = _finite(metrics.advantage_high if result.strict else metrics.advantage)
    limit = _finite(result.max_advantage)
    if value is None or limit is None:
        message = f"{attack}: {figure_name} is {_num(value)} against max_advantage {_num(limit)}: not established (fail closed)"
        kind = "GateError"
    elif value > limit:
        message = f"{attack}: {figure_name} {_num(value)} exceeds max_advantage {_num(limit)}"
        kind = "LeakageAboveThreshold"
    else:
        ET.SubElement(case, "system-out").text = _xml_text(details)
        return 0
    failure = ET.SubElement(case, "failure", {"message": _xml_text(message), "type": kind})
    failure.text = _xml_text(f"{message}\n{details}")
    return 1


def _criterion_classname(criterion: Criterion) -> str:
    return TPR_CLASSNAME if criterion.name == "tpr_at_fpr" else PER_CLASS_CLASSNAME


def _tpr_case(suite: ET.Element, result: GateResult, criterion: Criterion, attack: str) -> int:
    """One attack's low-FPR case; 1 when it failed."""
    case = ET.SubElement(suite, "testcase", {"classname": TPR_CLASSNAME, "name": _xml_text(attack)})
    metrics = _metrics(result.pruned, attack)
    rate = metrics.rate(result.target_fpr) if metrics else None
    what = "upper 95% bound of the TPR" if result.strict else "TPR"
    value = _finite(None if rate is None else rate.tpr_high if result.strict else rate.tpr)
    limit = _finite(criterion.limit)
    if rate is None or value is None or limit is None:
        message = f"{attack}: {what} at FPR {result.target_fpr:g} is {_num(value)}: not established (fail closed)"
        kind = "GateError"
    elif value > limit:
        message = f"{attack}: {what} {_num(value)} at FPR {result.target_fpr:g} exceeds max_tpr_at_fpr {_num(limit)}"
        kind = "LeakageAboveThreshold"
    else:
        ET.SubElement(case, "system-out").text = _xml_text(_rate_details(rate))
        return 0
    failure = ET.SubElement(case, "failure", {"message": _xml_text(message), "type": kind})
    failure.text = _xml_text(message if rate is None else f"{message}\n{_rate_details(rate)}")
    return 1


def _rate_details(rate: Any) -> str:
    return (
        f"TPR {_num(rate.tpr)} [95% CI {_num(rate.tpr_low)} to {_num(rate.tpr_high)}] ({rate.true_positives}/{rate.n_members} members) "
        f"at the calibration threshold {_num(rate.threshold)}; FPR achieved {_num(rate.fpr, 4)} "
        f"({rate.false_positives}/{rate.n_nonmembers} non-members; {_num(rate.calibration_fpr, 4)} on the calibration set); "
        f"epsilon estimate {_num(rate.epsilon, 2)}"
    )


def _per_class_case(suite: ET.Element, result: GateResult, criterion: Criterion) -> int:
    case = ET.SubElement(suite, "testcase", {"classname": PER_CLASS_CLASSNAME, "name": "per_class"})
    if criterion.status == "pass":
        ET.SubElement(case, "system-out").text = _xml_text(criterion.reason)
        return 0
    kind = "LeakageAboveThreshold" if criterion.status == "fail" else "GateError"
    failure = ET.SubElement(case, "failure", {"message": _xml_text(_one_line(criterion.reason)), "type": kind})
    failure.text = _xml_text(criterion.reason)
    return 1


def _attack_details(metrics: AttackMetrics, result: GateResult) -> str:
    """The figures a reader of a CI test case needs to judge it without opening report.json."""
    return "\n".join(
        (
            (
                f"advantage {_num(metrics.advantage)} (95% CI {_num(metrics.advantage_low)} to {_num(metrics.advantage_high)},"
                f" ±{_num(_half_width(metrics))}) at the threshold {_num(metrics.threshold)} ({metrics.threshold_source})"
            ),
            (
                f"AUC {_num(metrics.auc)}; best advantage over all thresholds (optimistic) {_num(metrics.best_advantage)};"
                f" TPR@1%FPR {_num(metrics.tpr_at_1pct_fpr)} (achieved FPR {_num(metrics.achieved_fpr_1pct)})"
            ),
            (
                f"max_advantage {_num(result.max_advantage)}{' (strict: upper bound gated)' if result.strict else ''};"
                f" evaluated on {metrics.n_members} members + {metrics.n_nonmembers} non-members"
            ),
        )
    )


def _xml_text(value: str) -> str:
    """Text XML 1.0 can carry: ElementTree escapes <, & and quotes, but not control characters."""
    return _XML_INVALID.sub("\ufffd", str(value))


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------------------- Markdown


def render_summary(result: GateResult) -> str:
    """`summary.md`: what a person reads in ten seconds in a CI log or a PR comment.

    The heading carries the verdict, the next sentence what decided it and how finely this
    evaluation size can tell leakage apart (the resolution); the table puts the original and the
    pruned model side by side so the reader sees what pruning did to leakage.
    """
    lines = [f"## Privacy gate: {_heading(result.verdict)}", "", _decision_sentence(result)]
    if result.reason:
        lines += ["", f"Reason: {_md_inline(result.reason)}"]
    if result.criteria:
        lines += ["", *_criteria_table(result)]
    lines += ["", *_attack_table(result), ""]
    if result.pruned is not None and any(m.calibrated for m in result.pruned.attacks):
        lines += [_epsilon_line(result), ""]
    if result.per_class:
        lines += [*_class_lines(result), ""]
    lines.append(
        f"Holdout accuracy: {_num(result.original.holdout_accuracy) if result.original else 'n/a'} (original)"
        f" → {_num(result.pruned.holdout_accuracy) if result.pruned else 'n/a'} (pruned)."
    )
    lines.append(_shadow_line(result))
    if result.warnings:
        lines += ["", "Warnings:", *(f"- {_md_inline(w)}" for w in result.warnings)]
    if result.error:
        fence = "````" if "```" in result.error else "```"
        lines += ["", "Error:", "", fence, result.error.rstrip(), fence]
    return "\n".join(lines) + "\n"


def _heading(verdict: str) -> str:
    return VERDICT_LABELS.get(verdict, VERDICT_LABELS["error"])


def _decision_sentence(result: GateResult) -> str:
    """One sentence: which attack decided, its gated figure against the limit, the evaluation size."""
    size = (
        f"evaluated on {result.n_members} members and {result.n_nonmembers} non-members"
        f" (resolution ±{_num(result.resolution)}: smaller differences are noise)"
    )
    limit = _num(result.max_advantage)
    value = _finite(result.gated_value)
    if result.deciding_attack is None or value is None:
        if result.verdict == "pass":
            return f"No gated figure to compare with max_advantage {limit}; {size}."
        return f"The gate could not establish that leakage is below max_advantage {limit}, so it did not pass; {size}."
    figure = "upper 95% bound of the advantage" if result.strict else "advantage at its threshold"
    bound = _finite(result.max_advantage)
    relation = "cannot be compared with" if bound is None else "exceeds" if value > bound else "is within"
    strict = " (strict mode)" if result.strict else ""
    return f"Deciding attack `{result.deciding_attack}`: {figure} {_num(value)} {relation} max_advantage {limit}{strict}; {size}."


def _criteria_table(result: GateResult) -> list[str]:
    rows = ["| criterion | status | deciding attack | gated figure | limit |", "|---|---|---|---|---|"]
    for criterion in result.criteria:
        title = CRITERIA.get(criterion.name, criterion.name)
        status = f"**{criterion.status}**" if criterion.status in ("fail", "error") else criterion.status
        attack = f"`{_md_cell(criterion.deciding_attack)}`" if criterion.deciding_attack else "—"
        value = _num(criterion.value) if criterion.value is not None else "—"
        limit = _num(criterion.limit) if criterion.limit is not None else "—"
        rows.append(f"| {_md_cell(title)} | {status} | {attack} | {value} | {limit} |")
    notes = [c for c in result.criteria if c.status in ("not resolvable", "off") and c.name != "per_class"]
    rows += [f"\n{c.name}: {_md_inline(c.reason)}" for c in notes]
    return rows


def _epsilon_line(result: GateResult) -> str:
    assert result.pruned is not None
    tests = sum(len(m.calibrated) for m in result.pruned.attacks)
    best = max(
        ((m.attack, r) for m in result.pruned.attacks if m.attack in result.gated_attacks for r in m.calibrated if _finite(r.epsilon) is not None),
        key=lambda item: item[1].epsilon,
        default=None,
    )
    where = f" ({best[0]} at FPR {best[1].target_fpr:g})" if best and best[1].epsilon > 0 else ""
    delta = result.settings.get("epsilon_delta", 1e-5)
    return (
        f"Empirical ε estimate (pruned model): {_num(result.epsilon, 2)}{where}, from ε ≥ ln((TPR_low − δ) / FPR_high) with "
        f"δ = {delta:g} and one-sided 95% Clopper–Pearson bounds, Bonferroni-corrected over {tests} attack × threshold pairs. "
        "An estimate, not a guarantee: it treats membership as random, while members and holdout come from one "
        "fixed-size split of one training run."
    )


def _class_lines(result: GateResult) -> list[str]:
    """The most exposed classes first, for the deciding attack and RMIA."""
    exposures = sorted(result.per_class, key=lambda e: (-(_finite(e.advantage) or 0.0), e.attack, e.label))
    names = ", ".join(f"class {e.label} ({e.attack} {_num(e.advantage)})" for e in exposures[:3])
    lines = [
        f"Per-class exposure (most exposed first: {names}); TPR at FPR {result.target_fpr:g} uses the calibration threshold:",
        "",
        "| class | attack | members / non-members | adv [95% CI] | TPR [95% CI] (FPR) | judged | exceeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in exposures:
        lines.append(
            f"| {e.label} | `{_md_cell(e.attack)}` | {e.n_members} / {e.n_nonmembers} | {_num(e.advantage)} "
            f"[{_num(e.advantage_low)}, {_num(e.advantage_high)}] | {_num(e.tpr)} [{_num(e.tpr_low)}, {_num(e.tpr_high)}] "
            f"({_num(e.fpr)}) | {'yes' if e.judged else 'no'} | {', '.join(e.exceeds) or '—'} |"
        )
    return lines


def _attack_table(result: GateResult) -> list[str]:
    header = (
        "| attack | original: adv [95% CI] | pruned: adv [95% CI] | pruned AUC | pruned best adv (optimistic)"
        " | TPR@1%FPR (achieved FPR) | TPR@0.1%FPR (achieved FPR) | ε | threshold source |"
    )
    rows = [header, "|" + "---|" * 9]
    for attack in _attack_names(result):
        marks = [m for m, on in (("gated", attack in result.gated_attacks), ("deciding", attack == result.deciding_attack)) if on]
        name = f"`{_md_cell(attack)}`" + (f" **({', '.join(marks)})**" if marks else "")
        original = _metrics(result.original, attack)
        pruned = _metrics(result.pruned, attack)
        cells = [
            name,
            "—" if result.original is None else _adv_ci(original),
            _adv_ci(pruned),
            _num(pruned.auc) if pruned else "n/a",
            _num(pruned.best_advantage) if pruned else "n/a",
            _rate_cell(pruned, 0.01),
            _rate_cell(pruned, 0.001),
            _num(pruned.epsilon, 2) if pruned else "n/a",
            f"{pruned.threshold_source}, t={_num(pruned.threshold)}" if pruned else "n/a",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    if len(rows) == 2:
        rows.append("| n/a | — | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
    if any(m.calibrated for audit in (result.pruned, result.original) if audit for m in audit.attacks):
        rows.append(
            "\nTPR@FPR: at the threshold the calibration set (known non-members) sets for that FPR, with its 95% "
            "Clopper–Pearson interval; \"*\": not resolvable here (under 10 expected false positives), reported only."
        )
    return rows


def _rate_cell(metrics: AttackMetrics | None, fpr: float) -> str:
    """TPR [CI] (achieved FPR) at the calibration threshold; the evaluation's best otherwise (older results)."""
    if metrics is None:
        return "n/a"
    rate = metrics.rate(fpr)
    if rate is None:
        tpr, achieved = (metrics.tpr_at_1pct_fpr, metrics.achieved_fpr_1pct) if fpr == 0.01 else (metrics.tpr_at_01pct_fpr, metrics.achieved_fpr_01pct)
        return f"{_num(tpr)} ({_num(achieved)})"
    mark = "" if rate.resolvable else "*"
    return f"{_num(rate.tpr)}{mark} [{_num(rate.tpr_low)}, {_num(rate.tpr_high)}] ({_num(rate.fpr, 4)})"


def _adv_ci(metrics: AttackMetrics | None) -> str:
    if metrics is None:
        return "n/a"
    return f"{_num(metrics.advantage)} [{_num(metrics.advantage_low)}, {_num(metrics.advantage_high)}]"


def _shadow_line(result: GateResult) -> str:
    """Shadow count, what they re-ran, and their accuracies: a shadow far less accurate than the victim weakens the attack."""
    if not result.shadows:
        return "Shadows: none."
    training = result.settings.get("victim_training")
    ran = f" re-running {_md_inline(str(training))}" if training else ""
    accs = [f"{_num(s.base_accuracy)} → {_num(s.pruned_accuracy)}" for s in result.shadows]
    if len(accs) <= 8:
        return f"Shadows: {len(accs)}{ran}, accuracy base → pruned: " + "; ".join(accs) + "."
    pruned = np.array([_finite(s.pruned_accuracy) for s in result.shadows], dtype=float)
    pruned = pruned[np.isfinite(pruned)]
    if pruned.size == 0:
        return f"Shadows: {len(accs)}{ran}, pruned accuracy n/a."
    return (
        f"Shadows: {len(accs)}{ran}, pruned accuracy mean {_num(float(pruned.mean()))}"
        f" (min {_num(float(pruned.min()))}, max {_num(float(pruned.max()))})."
    )


def _md_inline(text: str) -> str:
    return " ".join(str(text).split())


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|").replace("`", "'")


# ---------------------------------------------------------------------------------------------- ROC


def render_roc_png(result: GateResult) -> bytes:
    """`roc.png`: log-log ROC of every attack, original (dashed) against pruned (solid).

    Log axes show the low-FPR region where membership inference matters (a few confidently
    identified members); a zero rate cannot be drawn there, so zeros are clipped to 1/(2n) of their
    side and the axis labels say so. With nothing to plot the image says why, so the run directory
    always holds a readable roc.png.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    curves = _roc_curves(result)
    if not curves:
        ax = fig.add_subplot()
        ax.set_axis_off()
        message = textwrap.fill(f"no ROC: {_no_roc_reason(result)}", width=60)
        ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True)
        ax.set_title(f"Privacy gate: {_heading(result.verdict)}")
        return _png(fig)

    n_neg = min(c[3] for c in curves)
    n_pos = min(c[4] for c in curves)
    x_floor, y_floor = 1.0 / (2 * n_neg), 1.0 / (2 * n_pos)
    # Fixed margins rather than tight_layout, which measures every tick label twice (half the time).
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.15)
    ax = fig.add_subplot()
    order = {attack: i for i, attack in enumerate(dict.fromkeys(c[0] for c in curves))}
    curves.sort(key=lambda c: (order[c[0]], c[1] != "original"))
    for attack, model, (fpr, tpr), _, _, auc in curves:
        gated = " [gated]" if attack in result.gated_attacks else ""
        ax.plot(
            np.maximum(fpr, x_floor),
            np.maximum(tpr, y_floor),
            color=_COLOURS[order[attack] % len(_COLOURS)],
            linestyle="-" if model == "pruned" else "--",
            linewidth=1.6 if model == "pruned" else 1.2,
            drawstyle="steps-post",
            label=f"{attack}{gated} ({model}, AUC {_num(auc)})",
        )
    low = min(x_floor, y_floor)
    ax.plot([low, 1.0], [low, 1.0], color="0.5", linestyle=":", linewidth=1.0, label="chance")
    if result.criteria and result.target_fpr >= x_floor:
        ax.axvline(result.target_fpr, color="0.3", linestyle="-.", linewidth=0.8, label=f"target FPR {result.target_fpr:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_floor, 1.0)
    ax.set_ylim(y_floor, 1.0)
    ax.set_xlabel(f"false positive rate (log; 0 drawn at 1/(2n) = {x_floor:.2g})")
    ax.set_ylabel(f"true positive rate (log; 0 drawn at 1/(2n) = {y_floor:.2g})")
    strict = ", strict" if result.strict else ""
    ax.set_title(f"Privacy gate: {_heading(result.verdict)} (max advantage {_num(result.max_advantage)}{strict})")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.01, 0.01, "solid: pruned, dashed: original; dotted: chance", fontsize=8, color="0.35")
    return _png(fig)


def _roc_curves(result: GateResult) -> list[tuple[str, str, tuple[np.ndarray, np.ndarray], int, int, float]]:
    """(attack, model, (fpr, tpr), n_nonmembers, n_members, auc) for every curve that can be drawn."""
    curves = []
    for audit in (result.original, result.pruned):
        if audit is None:
            continue
        membership = np.asarray(audit.membership).reshape(-1)
        for attack, scores in audit.scores.items():
            roc = _roc(np.asarray(scores, dtype=float).reshape(-1), membership)
            if roc is None:
                continue
            metrics = _metrics(audit, attack)
            curves.append((str(attack), audit.model, roc[:2], roc[2], roc[3], metrics.auc if metrics else math.nan))
    return curves


def _roc(scores: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """ROC points (fpr, tpr) from "higher = member" scores, with the class counts; None if undrawable.

    Scores are sorted descending and TPR/FPR accumulated; tied scores form one step (one point per
    distinct threshold), so the curve does not depend on the order of tied samples. NaN scores are
    dropped: they rank nowhere. The curve starts at (0, 0) and ends at (1, 1).
    """
    if scores.shape != membership.shape or scores.size == 0:
        return None
    keep = ~np.isnan(scores)
    scores, members = scores[keep], membership[keep] == 1
    n_pos, n_neg = int(members.sum()), int((~members).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, members = scores[order], members[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(members)[last_of_tie]
    fp = np.cumsum(~members)[last_of_tie]
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return fpr, tpr, n_neg, n_pos


def _no_roc_reason(result: GateResult) -> str:
    if result.verdict == "error":
        detail = _one_line(result.error or result.reason or "")
        return f"the gate stopped with an error{': ' + detail if detail else ''}"
    if result.pruned is None and result.original is None:
        return "no model was audited"
    return "no per-sample scores with both members and non-members were kept"


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- all


def render_all(result: GateResult, extra: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of `gate/` in the run directory, as bytes, for the caller to write atomically."""
    return {
        "report.json": render_json(result, extra).encode("utf-8"),
        "junit.xml": render_junit(result).encode("utf-8"),
        "summary.md": render_summary(result).encode("utf-8"),
        "roc.png": render_roc_png(result),
    }


# ------------------------------------------------------------------------------------------ helpers


def _metrics(audit: ModelAudit | None, attack: str) -> AttackMetrics | None:
    if audit is None:
        return None
    try:
        return audit.metrics(attack)
    except KeyError:
        return None


def _attack_names(result: GateResult) -> list[str]:
    """Gated attacks first (they decide), then every other attack either model was audited with."""
    names = list(result.gated_attacks)
    for audit in (result.pruned, result.original):
        if audit is not None:
            names += [m.attack for m in audit.attacks]
    return list(dict.fromkeys(names))


def _finite(value: Any) -> float | None:
    """The value as a float, or None when it is missing or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _num(value: Any, digits: int | None = 3) -> str:
    """3 decimals by default; NaN and None read "n/a". `digits=None` keeps full precision (XML properties)."""
    number = _finite(value)
    if number is None:
        return "n/a"
    return repr(number) if digits is None else f"{number:.{digits}f}"


def _half_width(metrics: AttackMetrics) -> float | None:
    low, high = _finite(metrics.advantage_low), _finite(metrics.advantage_high)
    return None if low is None or high is None else (high - low) / 2
