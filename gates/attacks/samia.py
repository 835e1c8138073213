"""SAMIA: the self-attention membership inference attack on pruned models.

Yuan & Zhang, "Membership Inference Attacks and Defenses in Neural Network Pruning" (USENIX
Security 2022). Each class c is a token of three features (posterior p_c, sensitivity s_c,
one-hot label y_c); a small transformer encoder lets each class attend to the others, so the
network can learn patterns like "the true class is confident *and* flat" that a single threshold
cannot express.

The network is in `gates.attacks.samia_network`.

Training uses shadow features only: a stratified validation split of them is held out, Adam
minimises cross-entropy on the rest, and the weights with the best validation AUC are kept
(early stopping). The decision threshold is the advantage-maximising threshold on that same
validation split, never a fixed 0.5: the network's output is not calibrated to the victim (a
prototype found 0.5 labelled 82–94 % of samples "member").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.attacks.base import AttackContext, EpochCallback, check_training_data
from gates.errors import GateInputError
from gates.lazy import functional as F
from gates.lazy import numpy as np
from gates.lazy import torch
from gates.settings import above, at_least, setting, within

if TYPE_CHECKING:
    from gates.attacks.samia_network import SamiaNetwork
    from gates.features import AttackFeatures

_SCORE_BATCH = 4096


@dataclass(frozen=True)
class SamiaSettings:
    """How SAMIA's network is trained on the shadow features.

    Patience 2 and at most 6 epochs (issue #17; before: 5 and 40): the best epoch lay within the
    first 6 on the leaky MLP and the CNN of benchmarks/gate.py, at the same evaluation AUC and
    advantage within their seed spread, for 0.42x and 0.45x of the training time
    (BENCHMARKS.md, "samia cost"). A signal SAMIA finds only after flat epochs needs both raised.
    """

    samia_max_epochs: int = setting(6, help="samia: the most training epochs (early stopping on validation AUC may end sooner)", rule=at_least(1))
    samia_patience: int = setting(2, help="samia: epochs without a better validation AUC before training stops", rule=at_least(1))
    samia_max_samples: int = setting(
        12000, help="samia: shadow rows it trains on; a class-balanced subsample beyond this", rule=at_least(10)
    )
    samia_batch_size: int = setting(128, help="samia: training batch size", rule=at_least(2, note="batch norm needs 2"))
    samia_lr: float = setting(1e-3, help="samia: Adam learning rate", rule=above(0))
    samia_validation_fraction: float = setting(
        0.2,
        help="samia: share of the shadow rows held out to choose the epoch and the threshold",
        rule=within(0, 1, high_open=True, example=0.2),
    )


class SamiaAttack:
    """SAMIA with early stopping and a threshold chosen on a held-out shadow split.

    After `fit`: `threshold` (on the member-probability scale), `epochs_run`, `best_epoch`,
    `validation_auc` (of the kept weights), `validation_history` (per epoch) and
    `validation_positions` (the held-out rows of the shadow features, after the `samia_max_samples`
    cap) and `trained_rows` describe the training.
    """

    name = "samia"
    summary = "self-attention over per-class posteriors, sensitivities and labels (Yuan & Zhang 2022)"
    Settings = SamiaSettings
    threshold_source = "shadow validation split"

    def __init__(self, settings: SamiaSettings | None = None, context: AttackContext | None = None) -> None:
        self.settings = settings if settings is not None else SamiaSettings()
        self.context = context if context is not None else AttackContext()
        self.threshold = float("nan")
        self.network: SamiaNetwork | None = None
        self.epochs_run = 0
        self.best_epoch = 0
        self.validation_auc = float("nan")
        self.validation_history: list[float] = []
        self.validation_positions = np.zeros(0, dtype=np.int64)  # rows of the shadow features held out
        self.trained_rows = 0  # shadow rows used (after the samia_max_samples cap)
        self._unusable = False  # fitted on non-finite features: scores are NaN (fail closed)

    def fit(self, features: AttackFeatures, membership: Any, on_epoch: EpochCallback | None = None) -> None:
        from gates import metrics
        from gates.attacks.samia_network import SamiaNetwork

        cfg, seed = self.settings, self.context.seed
        self.validation_history = []
        m = check_training_data(self.name, features, membership)
        self.network = None
        if not (np.all(np.isfinite(features.posteriors)) and np.all(np.isfinite(features.sensitivity))):
            # Fail closed. Trained on NaN, the network would never reach a finite validation AUC and
            # would be left at its random initial weights with a finite threshold: an "advantage ≈ 0"
            # that looks like a pass. NaN threshold and scores make every figure NaN instead.
            self.threshold = float("nan")
            self._unusable = True
            return
        self._unusable = False
        if len(m) > cfg.samia_max_samples:
            # Training costs ~0.6 ms per row and epoch on a 2-core CPU: cap the rows, keeping
            # members and non-members of every class in their proportions.
            kept = _subsample(features.labels, m, cfg.samia_max_samples, seed)
            features, m = features.subset(kept), m[kept]
        else:
            kept = np.arange(len(m))
        self.trained_rows = len(m)
        train, val = _stratified_split(m, cfg.samia_validation_fraction, seed)
        self.validation_positions = kept[val]
        device = torch.device(self.context.device)
        x = torch.from_numpy(_inputs(features)).to(device)
        y = torch.from_numpy(m).to(device)
        x_val, y_val = x[torch.from_numpy(val)], m[val]
        rng = np.random.default_rng([seed, 1])
        # a private RNG stream: seeding must neither disturb the caller's torch RNG nor depend on it
        cuda_devices = (
            [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        )
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            network = SamiaNetwork(features.num_classes).to(device)
            # the fused kernel saves ~10% of a CPU step; same update rule
            optimizer = torch.optim.Adam(network.parameters(), lr=cfg.samia_lr, fused=device.type in ("cpu", "cuda") or None)
            best_auc, best_state, stale = -math.inf, copy.deepcopy(network.state_dict()), 0
            for epoch in range(1, cfg.samia_max_epochs + 1):
                network.train()
                for batch in _batches(rng.permutation(train), cfg.samia_batch_size):
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(network(x[batch]), y[batch]).backward()
                    optimizer.step()
                self.epochs_run = epoch
                val_auc = metrics.auc(_member_probability(network, x_val), y_val)
                self.validation_history.append(val_auc)
                if val_auc > best_auc:  # NaN never improves: a diverged network is not kept
                    best_auc, best_state, stale, self.best_epoch = val_auc, copy.deepcopy(network.state_dict()), 0, epoch
                else:
                    stale += 1
                if on_epoch is not None:
                    on_epoch(epoch, cfg.samia_max_epochs)
                if stale >= cfg.samia_patience:
                    break
            network.load_state_dict(best_state)
        self.network = network
        if not math.isfinite(best_auc):  # every epoch diverged: the kept weights are the untrained ones
            self.validation_auc = self.threshold = float("nan")
            return
        self.validation_auc = float(best_auc)
        self.threshold = metrics.best_threshold(_member_probability(network, x_val), y_val)

    def score(self, features: AttackFeatures) -> Any:
        """Probability of "member" (softmax class 1), float64; compare with `threshold`."""
        if self._unusable:
            return np.full(len(features), np.nan)
        if self.network is None:
            raise RuntimeError("samia: call fit() on shadow features before score()")
        if features.num_classes != self.network.num_classes:
            raise GateInputError(f"samia: fitted on {self.network.num_classes} classes, asked to score {features.num_classes}")
        device = next(self.network.parameters()).device
        return _member_probability(self.network, torch.from_numpy(_inputs(features)).to(device))


def _inputs(features: AttackFeatures) -> Any:
    """(n, 3C) float32: posteriors, then sensitivities, then the one-hot labels."""
    return np.concatenate([features.posteriors, features.sensitivity, features.one_hot()], axis=1).astype(np.float32)


def _member_probability(network: SamiaNetwork, x: Any) -> Any:
    """Softmax of float64 logits: in float32 many confident samples would tie at exactly 1.0,
    which flattens the low-FPR end of the ROC curve."""
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], _SCORE_BATCH):
            logits = network(x[start : start + _SCORE_BATCH]).to(torch.float64)
            out.append(F.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


def _stratified_split(membership: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(train positions, validation positions): `fraction` of the members and of the non-members, at least one each."""
    rng = np.random.default_rng([seed, 0])
    train, val = [], []
    for side in (0, 1):
        positions = rng.permutation(np.flatnonzero(membership == side))
        if positions.size < 2:
            raise GateInputError(
                f"samia: needs at least 2 shadow {'members' if side else 'non-members'} (one to train, one to validate), "
                f"got {positions.size}; use more shadow data"
            )
        n_val = min(max(1, round(fraction * positions.size)), positions.size - 1)
        val.append(positions[:n_val])
        train.append(positions[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _subsample(labels: Any, membership: Any, limit: int, seed: int) -> Any:
    """Sorted positions of at most `limit` rows, drawn in proportion within each (class, membership) cell."""
    rng = np.random.default_rng([seed, 2])
    cells = labels.astype(np.int64) * 2 + membership
    kept = []
    for cell in np.unique(cells):
        positions = np.flatnonzero(cells == cell)
        kept.append(rng.permutation(positions)[: int(len(positions) * limit / len(cells))])
    return np.sort(np.concatenate(kept))


def _batches(order: Any, batch_size: int) -> list[Any]:
    """Mini-batches of `order`; a last batch of one sample joins the previous one (batch norm needs two)."""
    batches = [order[start : start + batch_size] for start in range(0, order.size, batch_size)]
    if len(batches) > 1 and batches[-1].size == 1:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return [torch.from_numpy(b) for b in batches]
