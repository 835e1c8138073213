"""A new defense and a new attack are one class each plus one registry line, and nothing else.

Both are declared here, in a test module, with settings of their own; each is registered with
one line and then driven through the real CLI from a recipe file: the defense through
`prunectl prune`, the attack through `prunectl gate`. No prunectl file knows their names, yet
the recipe accepts and validates their settings, `prunectl init` documents them, and the run
uses them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import make_tiny_recipe
from torch.nn import functional as F
from typer.testing import CliRunner

from gates import metrics
from gates.attacks import ATTACKS
from gates.attacks.base import AttackContext, check_training_data
from gates.settings import at_least, setting, within
from prunectl.cli import app
from prunectl.config import to_toml
from prunectl.defenses import DEFENSES
from prunectl.defenses.base import Defense

runner = CliRunner()


# -- a defense: label smoothing ---------------------------------------------------------------------


@dataclass(frozen=True)
class SmoothingSettings:
    smoothing_epsilon: float = setting(
        0.1, help="label-smoothing: share of each target spread over the other classes, in [0, 1)", rule=within(0, 1, high_open=True)
    )


class LabelSmoothing(Defense):
    """Cross-entropy against softened targets: a confident fit on members costs more."""

    name = "label-smoothing"
    summary = "cross-entropy with label smoothing"
    Settings = SmoothingSettings
    seen: ClassVar[list[float]] = []

    @classmethod
    def label(cls, settings: SmoothingSettings) -> str:
        return f"label smoothing {settings.smoothing_epsilon:g}"

    def batch_loss(self, logits: Any, labels: Any, indices: Any) -> Any:
        LabelSmoothing.seen.append(self.settings.smoothing_epsilon)
        return F.cross_entropy(logits, labels, label_smoothing=self.settings.smoothing_epsilon)


# -- an attack: the log-odds margin of the true class -------------------------------------------------


@dataclass(frozen=True)
class MarginSettings:
    margin_floor: float = setting(1e-6, help="margin: added to posteriors before the log (> 0)", rule=within(1e-12, 1))
    margin_min_shadow: int = setting(10, help="margin: shadow samples it needs per side (>= 1)", rule=at_least(1))


class MarginAttack:
    """log(p_y + floor) - log(max other p + floor), with one threshold chosen on shadow data."""

    name = "margin"
    summary = "log-odds margin of the true class over the runner-up"
    Settings = MarginSettings
    threshold_source = "one global threshold, shadow data"
    floors_seen: ClassVar[list[float]] = []

    def __init__(self, settings: MarginSettings, context: AttackContext) -> None:
        self.settings = settings
        self.threshold = float("nan")

    def _margin(self, features: Any) -> np.ndarray:
        floor = self.settings.margin_floor
        MarginAttack.floors_seen.append(floor)
        p = features.posteriors
        rows = np.arange(len(features))
        true = p[rows, features.labels]
        others = p.copy()
        others[rows, features.labels] = -np.inf
        return np.log(true + floor) - np.log(others.max(axis=1) + floor)

    def fit(self, features: Any, membership: Any, on_epoch: Any = None) -> None:
        m = check_training_data(self.name, features, membership)
        assert min(m.sum(), (1 - m).sum()) >= self.settings.margin_min_shadow
        self.threshold = metrics.best_threshold(self._margin(features), m)

    def score(self, features: Any) -> np.ndarray:
        return self._margin(features)


# -- registration: one line each, undone afterwards so no other test sees them -------------------------


@pytest.fixture
def label_smoothing() -> Iterator[type[LabelSmoothing]]:
    DEFENSES.register(LabelSmoothing)
    LabelSmoothing.seen.clear()
    yield LabelSmoothing
    DEFENSES.unregister(LabelSmoothing.name)


@pytest.fixture
def margin_attack() -> Iterator[type[MarginAttack]]:
    ATTACKS.register(MarginAttack)
    MarginAttack.floors_seen.clear()
    yield MarginAttack
    ATTACKS.unregister(MarginAttack.name)


def test_a_new_defense_runs_end_to_end_through_prune_from_a_recipe_file(label_smoothing, tmp_path):
    recipe = make_tiny_recipe(defense__name="label-smoothing", defense__smoothing_epsilon=0.2)
    config = tmp_path / "smoothing.toml"
    config.write_text(to_toml(recipe))
    assert 'name = "label-smoothing"' in config.read_text() and "smoothing_epsilon = 0.2" in config.read_text()

    out = tmp_path / "run"
    result = runner.invoke(app, ["prune", "--config", str(config), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 0, result.output
    assert set(label_smoothing.seen) == {0.2}, "every fine-tuning batch used the defense's loss with the file's setting"
    assert json.loads((out / "defense.json").read_text()) == {"name": "label-smoothing"}
    assert "defense label-smoothing" in result.output


def test_a_new_defenses_setting_is_validated_and_documented(label_smoothing, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[defense]\nname = "label-smoothing"\nsmoothing_epsilon = 1.5\n')
    refused = runner.invoke(app, ["prune", "--config", str(config), "--out", str(tmp_path / "run")])
    assert refused.exit_code == 2
    assert "defense.smoothing_epsilon = 1.5 is invalid; allowed: a number in [0, 1)" in refused.output
    assert not (tmp_path / "run").exists()

    template = runner.invoke(app, ["init", "-"])
    assert template.exit_code == 0
    assert "none | kl | wemem | label-smoothing" in template.output
    assert "smoothing_epsilon = 0.1" in template.output and "label-smoothing: share of each target" in template.output


def test_a_new_attack_runs_end_to_end_through_the_gate_from_a_recipe_file(margin_attack, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[1], run)
    config = tmp_path / "margin.toml"
    config.write_text(
        '[gate]\nattacks = ["margin"]\nmargin_floor = 0.0001\nshadows = 2\nbootstrap = 200\nmax_advantage = 1.0\naudit_original = false\n'
    )
    result = runner.invoke(app, ["gate", str(run), "--config", str(config), "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 0, result.output
    assert set(margin_attack.floors_seen) == {0.0001}, "the attack was built with the file's setting"
    report = json.loads((run / "gate" / "report.json").read_text())
    assert [m["attack"] for m in report["pruned"]["attacks"]] == ["margin"]
    assert report["deciding_attack"] == "margin"
    assert report["settings"]["margin_floor"] == 0.0001

    template = runner.invoke(app, ["init", "-"])
    assert "margin_floor = 1e-06" in template.output and "margin: added to posteriors before the log" in template.output
    assert "margin_min_shadow = 10" in template.output


def test_a_new_attacks_setting_is_refused_in_one_line(margin_attack, tiny_run, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[gate]\nattacks = ["margin"]\nmargin_min_shadow = 0\n')
    refused = runner.invoke(app, ["gate", str(tiny_run[1]), "--config", str(config)])
    assert refused.exit_code == 2
    assert "gate.margin_min_shadow = 0 is invalid; allowed: an integer >= 1" in refused.output


def test_once_unregistered_they_are_gone_again(tmp_path):
    """The fixtures leave the registries as they found them: no other test sees the extensions."""
    assert "label-smoothing" not in DEFENSES and "margin" not in ATTACKS
    config = tmp_path / "stale.toml"
    config.write_text("[defense]\nsmoothing_epsilon = 0.2\n")
    refused = runner.invoke(app, ["prune", "--config", str(config)])
    assert refused.exit_code == 2 and "unknown key 'defense.smoothing_epsilon'" in refused.output
