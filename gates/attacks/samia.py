"""SAMIA: the self-attention membership inference attack on pruned models.

Yuan & Zhang, "Membership Inference Attacks and Defenses in Neural Network Pruning" (USENIX
Security 2022). Each class c is a token of three features (posterior p_c, sensitivity s_c,
one-hot label y_c); a small transformer encoder lets each class attend to the others, so the
network can learn patterns like "the true class is confident *and* flat" that a single threshold
cannot express.

Network: BatchNorm1d over the 3C flat features → tokens (batch, C, 3) → Linear(3→64) + GELU
(as in the authors' code) → TransformerEncoder (3 layers, 4 heads, feed-forward 128, GELU,
dropout 0.2) → flatten (64C) → Linear(64C→64) → ReLU → Linear(64→2).

Training uses shadow features only: a stratified validation split of them is held out, Adam
minimises cross-entropy on the rest, and the weights with the best validation AUC are kept
(early stopping). The decision threshold is the advantage-maximising threshold on that same
validation split, never a fixed 0.5: the network's output is not calibrated to the victim (a
prototype found 0.5 labelled 82–94 % of samples "member").
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gates import metrics
from gates.attacks.base import AttackConfig, EpochCallback, check_training_data
from gates.errors import GateInputError
from gates.features import AttackFeatures

_SCORE_BATCH = 4096


class SamiaNetwork(nn.Module):
    """The attack network; input (batch, 3C) = [posteriors | sensitivities | one-hot labels]."""

    def __init__(self, num_classes: int, hidden: int = 64, layers: int = 3, heads: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(3 * num_classes)
        self.embed = nn.Linear(3, hidden)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden, nhead=heads, dim_feedforward=128, dropout=dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(hidden * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        # (batch, 3, C) → (batch, C, 3): token c holds (p_c, s_c, y_c)
        tokens = x.view(x.shape[0], 3, self.num_classes).transpose(1, 2)
        hidden = self.encoder(F.gelu(self.embed(tokens)))
        return self.head(hidden.flatten(1))


class SamiaAttack:
    """SAMIA with early stopping and a threshold chosen on a held-out shadow split.

    After `fit`: `threshold` (on the member-probability scale), `epochs_run`, `best_epoch`,
    `validation_auc` (of the kept weights), `validation_history` (per epoch) and
    `validation_positions` (the held-out rows of the shadow features, after the `samia_max_samples`
    cap) and `trained_rows` describe the training.
    """

    name = "samia"
    threshold_source = "shadow validation split"

    def __init__(self, config: AttackConfig) -> None:
        self.config = config
        self.threshold = float("nan")
        self.network: SamiaNetwork | None = None
        self.epochs_run = 0
        self.best_epoch = 0
        self.validation_auc = float("nan")
        self.validation_history: list[float] = []
        self.validation_positions = np.zeros(0, dtype=np.int64)  # rows of the shadow features held out
        self.trained_rows = 0  # shadow rows used (after the samia_max_samples cap)
        self._unusable = False  # fitted on non-finite features: scores are NaN (fail closed)

    def fit(self, features: AttackFeatures, membership: np.ndarray, on_epoch: EpochCallback | None = None) -> None:
        cfg = self.config
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
            kept = _subsample(features.labels, m, cfg.samia_max_samples, cfg.seed)
            features, m = features.subset(kept), m[kept]
        else:
            kept = np.arange(len(m))
        self.trained_rows = len(m)
        train, val = _stratified_split(m, cfg.validation_fraction, cfg.seed)
        self.validation_positions = kept[val]
        device = torch.device(cfg.device)
        x = torch.from_numpy(_inputs(features)).to(device)
        y = torch.from_numpy(m).to(device)
        x_val, y_val = x[torch.from_numpy(val)], m[val]
        rng = np.random.default_rng([cfg.seed, 1])
        # a private RNG stream: seeding must neither disturb the caller's torch RNG nor depend on it
        cuda_devices = (
            [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        )
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(cfg.seed)
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

    def score(self, features: AttackFeatures) -> np.ndarray:
        """Probability of "member" (softmax class 1), float64; compare with `threshold`."""
        if self._unusable:
            return np.full(len(features), np.nan)
        if self.network is None:
            raise RuntimeError("samia: call fit() on shadow features before score()")
        if features.num_classes != self.network.num_classes:
            raise GateInputError(f"samia: fitted on {self.network.num_classes} classes, asked to score {features.num_classes}")
        device = next(self.network.parameters()).device
        return _member_probability(self.network, torch.from_numpy(_inputs(features)).to(device))


def _inputs(features: AttackFeatures) -> np.ndarray:
    """(n, 3C) float32: posteriors, then sensitivities, then the one-hot labels."""
    return np.concatenate([features.posteriors, features.sensitivity, features.one_hot()], axis=1).astype(np.float32)


def _member_probability(network: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Softmax of float64 logits: in float32 many confident samples would tie at exactly 1.0,
    which flattens the low-FPR end of the ROC curve."""
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], _SCORE_BATCH):
            logits = network(x[start : start + _SCORE_BATCH]).to(torch.float64)
            out.append(F.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


def _stratified_split(membership: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def _subsample(labels: np.ndarray, membership: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted positions of at most `limit` rows, drawn in proportion within each (class, membership) cell."""
    rng = np.random.default_rng([seed, 2])
    cells = labels.astype(np.int64) * 2 + membership
    kept = []
    for cell in np.unique(cells):
        positions = np.flatnonzero(cells == cell)
        kept.append(rng.permutation(positions)[: int(len(positions) * limit / len(cells))])
    return np.sort(np.concatenate(kept))


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Mini-batches of `order`; a last batch of one sample joins the previous one (batch norm needs two)."""
    batches = [order[start : start + batch_size] for start in range(0, order.size, batch_size)]
    if len(batches) > 1 and batches[-1].size == 1:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return [torch.from_numpy(b) for b in batches]
