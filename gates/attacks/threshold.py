"""Threshold attacks: one number per sample from the posterior, compared with a shadow-chosen threshold.

Signals (higher = member), the metric-based family of Song & Mittal, "Systematic Evaluation of
Privacy Risks of Machine Learning Models" (USENIX Security 2021), with p the posterior and y
the label:

- confidence:       p_y
- loss:             log p_y  (= −cross-entropy)
- entropy:          −H(p) = Σ_i p_i log p_i
- modified_entropy: −Mentr(p, y), Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)
- top1:             max_i p_i  (needs no label)

Logs are taken of max(·, 1e-30), so a posterior of exactly 0 or 1 gives a large finite value,
never −inf (which the metrics would treat as a failed measurement).

Thresholds come from the shadow features via `metrics.best_threshold`, one per ground-truth
class as Song & Mittal do when every class has `threshold_min_per_class` members and
non-members in the shadow data, else one global threshold (`per_class` records which). `score` returns
signal − threshold of the sample's class, so `threshold` is 0.0 and threshold-free metrics (AUC,
ROC) rank samples of different classes on one comparable scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from gates.attacks.base import AttackContext, EpochCallback, check_training_data
from gates.errors import GateInputError
from gates.lazy import numpy as np
from gates.settings import at_least, setting

if TYPE_CHECKING:
    from gates.features import AttackFeatures

_TINY = 1e-30

Signal = Callable[[Any, Any], Any]
"""`(posteriors (n, C), labels (n,)) -> (n,) float64`, higher = member."""


@dataclass(frozen=True)
class ThresholdSettings:
    """The threshold family's one setting, shared by its five attacks."""

    threshold_min_per_class: int = setting(
        20,
        help="threshold attacks: shadow members and non-members a class needs for a threshold of its own (else one global)",
        rule=at_least(1),
    )


def _log(values: Any) -> Any:
    return np.log(np.maximum(values, _TINY))


def _true_class(posteriors: Any, labels: Any) -> Any:
    return posteriors[np.arange(labels.size), labels]


def confidence_signal(posteriors: Any, labels: Any) -> Any:
    return _true_class(posteriors, labels)


def loss_signal(posteriors: Any, labels: Any) -> Any:
    return _log(_true_class(posteriors, labels))


def entropy_signal(posteriors: Any, labels: Any) -> Any:
    return np.sum(posteriors * _log(posteriors), axis=1)


def modified_entropy_signal(posteriors: Any, labels: Any) -> Any:
    """−Mentr: unlike entropy it is low for a confident *wrong* prediction, which non-members make more often."""
    rows = np.arange(labels.size)
    p_y = posteriors[rows, labels]
    others = posteriors * _log(1.0 - posteriors)
    others[rows, labels] = 0.0
    mentr = -(1.0 - p_y) * _log(p_y) - others.sum(axis=1)
    return -mentr


def top1_signal(posteriors: Any, labels: Any) -> Any:
    return posteriors.max(axis=1)


class ThresholdAttack:
    """A signal of the posterior with thresholds chosen on shadow data, per class when the data allow it.

    Each attack of the family below is a subclass with its own `name` and `signal`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    signal: ClassVar[Signal]
    Settings: ClassVar[type] = ThresholdSettings

    def __init__(self, settings: ThresholdSettings | None = None, context: AttackContext | None = None) -> None:
        settings = settings if settings is not None else ThresholdSettings()
        self.min_per_class = settings.threshold_min_per_class
        self.threshold = 0.0
        self.per_class = False
        self.class_thresholds: Any = None  # (C,), the same value everywhere in global mode

    @property
    def threshold_source(self) -> str:
        if self.per_class:
            return "per class, shadow data (score shifted: 0 = threshold)"
        return "one global threshold, shadow data"

    def raw_score(self, features: AttackFeatures) -> Any:
        """The signal itself, before the class threshold is subtracted."""
        return np.asarray(type(self).signal(features.posteriors, features.labels), dtype=np.float64)

    def fit(self, features: AttackFeatures, membership: Any, on_epoch: EpochCallback | None = None) -> None:
        from gates import metrics

        m = check_training_data(self.name, features, membership)
        raw = self.raw_score(features)
        classes = features.num_classes
        members = np.bincount(features.labels[m == 1], minlength=classes)
        nonmembers = np.bincount(features.labels[m == 0], minlength=classes)
        self.per_class = bool(min(members.min(), nonmembers.min()) >= self.min_per_class)
        if not np.all(np.isfinite(raw)):
            # fail closed: a broken shadow measurement poisons every class, not just its own
            thresholds = np.full(classes, np.nan)
        elif self.per_class:
            thresholds = np.array(
                [metrics.best_threshold(raw[features.labels == c], m[features.labels == c]) for c in range(classes)]
            )
        else:
            thresholds = np.full(classes, metrics.best_threshold(raw, m))
        self.class_thresholds = thresholds

    def score(self, features: AttackFeatures) -> Any:
        """Signal minus its class's shadow threshold: >= 0 means "member" at `threshold` = 0."""
        if self.class_thresholds is None:
            raise RuntimeError(f"{self.name}: call fit() on shadow features before score()")
        if features.num_classes != self.class_thresholds.size:
            raise GateInputError(
                f"{self.name}: fitted on {self.class_thresholds.size} classes, asked to score {features.num_classes}"
            )
        return self.raw_score(features) - self.class_thresholds[features.labels]


def _threshold_attack(name: str, summary: str, signal: Signal) -> type[ThresholdAttack]:
    """One registered attack of the family: its name, a line saying what it reads, its signal."""
    class_name = "".join(part.title() for part in name.split("_")) + "Attack"
    return type(class_name, (ThresholdAttack,), {"name": name, "summary": summary, "signal": staticmethod(signal), "__module__": __name__})


ConfidenceAttack = _threshold_attack("confidence", "the true class's posterior p_y", confidence_signal)
LossAttack = _threshold_attack("loss", "log p_y, minus the cross-entropy loss", loss_signal)
EntropyAttack = _threshold_attack("entropy", "minus the posterior's entropy", entropy_signal)
ModifiedEntropyAttack = _threshold_attack("modified_entropy", "minus Song & Mittal's modified entropy, which uses the label", modified_entropy_signal)
Top1Attack = _threshold_attack("top1", "the largest posterior (needs no label)", top1_signal)


SIGNALS: dict[str, Signal] = {
    attack.name: attack.signal for attack in (ConfidenceAttack, LossAttack, EntropyAttack, ModifiedEntropyAttack, Top1Attack)
}
