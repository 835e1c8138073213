"""The iterative pruning engine: rounds × fine-tune epochs, defense hooks, checkpoints, resume.

Round k prunes the model to the schedule's sparsity s_k (single weights by magnitude, or with
`prune.structure = "channel"` whole channels, `prunectl.pruning.channels`), then fine-tunes
for `epochs_per_round` epochs with the masks enforced after every optimizer step (and on the
gradients, so optimizer state never revives a pruned weight). The round keeps the epoch with
the best dev accuracy: model selection never looks at holdout. A checkpoint after each round
holds everything needed to continue bit-identically: weights, masks, optimizer state, the
epoch counter and every random state (as tensors, so `weights_only=True` loads it).

Channel pruning changes the parameters' shapes, so it has no masks and starts each round with
a fresh optimizer (momentum restarts after every pruning step); its checkpoints add the
channel plan so far, which a resumed run replays on the dense model before loading weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gates.seeds import derive_seed
from prunectl.data import Dataset
from prunectl.defenses.base import Defense
from prunectl.faults import fault_point
from prunectl.progress import Progress, SilentProgress
from prunectl.pruning.channels import ChannelPlan, ChannelPruner, channel_counts, conv_linear_weights, replay
from prunectl.pruning.masks import Masks, apply_masks, compute_masks, mask_gradients, prunable_weight_names
from prunectl.pruning.schedule import SCHEDULES
from prunectl.recipe import PruneSpec, TrainSpec
from prunectl.optimizers import OptimizerSettings, make_optimizer
from prunectl.training import evaluate, make_generator, train_epoch

@dataclass(frozen=True)
class RoundRecord:
    round: int
    target_sparsity: float
    achieved_sparsity: float
    best_epoch: int
    dev_accuracy: float
    train_loss: float
    seconds: float


@dataclass(frozen=True)
class PruneOutcome:
    masks: Masks
    rounds: tuple[RoundRecord, ...]
    prunable: tuple[str, ...]
    resumed_from_round: int
    plan: ChannelPlan | None = None
    """Channel pruning only: every channel removed, replayable on the recipe's architecture."""


CheckpointSaver = Callable[[int, dict[str, Any]], None]


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def prune_iteratively(
    model: nn.Module,
    data: Dataset,
    members: np.ndarray,
    dev: np.ndarray,
    *,
    spec: PruneSpec,
    train: TrainSpec,
    defense: Defense,
    seed: int,
    device: torch.device,
    save_checkpoint: CheckpointSaver | None = None,
    resume_state: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> PruneOutcome:
    """Prune `model` in place to `spec.target_sparsity`; returns the masks and per-round records."""
    progress = progress or SilentProgress()
    model.to(device)
    channel = spec.structure == "channel"
    example = torch.zeros(1, *data.input_shape, device=device)
    dense_weights = conv_linear_weights(model)
    dense_channels = channel_counts(model)
    plan = ChannelPlan(spec.round_to, dense_weights) if channel else None
    names = (
        prunable_weight_names(model)
        if channel
        else prunable_weight_names(model, keep_first_dense=spec.keep_first_dense, keep_last_dense=spec.keep_last_dense)
    )
    schedule = SCHEDULES.get(spec.schedule)
    settings = OptimizerSettings(train.optimizer, spec.lr, train.momentum, train.weight_decay)
    # Seed the global RNG here, not earlier, so a run resumed from its base checkpoint draws
    # the same numbers as one that trained the base model in the same process.
    torch.manual_seed(derive_seed(seed, "prune"))
    shuffle = make_generator(derive_seed(seed, "prune-shuffle"))

    masks: Masks = {}
    records: list[RoundRecord] = []
    epoch_counter = 0
    first_round = 1
    if resume_state is not None and channel:
        plan = ChannelPlan.from_dict(resume_state["plan"], "the checkpoint's channel plan")
        replay(model, plan, example)
    optimizer = make_optimizer(model.parameters(), settings)
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        masks = {k: v.bool() for k, v in resume_state["masks"].items()}
        if not channel:
            optimizer.load_state_dict(resume_state["optimizer"])
        epoch_counter = int(resume_state["epoch_counter"])
        first_round = int(resume_state["round"]) + 1
        torch.set_rng_state(resume_state["torch_rng"])
        shuffle.set_state(resume_state["shuffle_rng"])
        records = [RoundRecord(**record) for record in resume_state["records"]]
    parameters = dict(model.named_parameters())

    def after_backward() -> None:
        mask_gradients(parameters, masks)

    def after_step() -> None:
        apply_masks(parameters, masks)

    with progress.task("pruning rounds", total=spec.rounds) as round_bar:
        round_bar.advance(first_round - 1)
        for round_k in range(first_round, spec.rounds + 1):
            started = time.perf_counter()
            target = schedule(round_k, spec.rounds, spec.target_sparsity)
            if channel:
                assert plan is not None
                pruner = ChannelPruner(model, example, round_to=spec.round_to, importance=spec.importance, keep_first=spec.keep_first_dense)
                keep = pruner.plan_round(target, dense_weights, {g.root: dense_channels[g.root] for g in pruner.groups}, spec.scope)
                plan = plan.extended(pruner.prune(keep, round_k))
                optimizer = make_optimizer(model.parameters(), settings)
                parameters = dict(model.named_parameters())
            else:
                weights = {name: parameters[name] for name in names}
                masks = compute_masks(weights, target, spec.scope, previous=masks or None)
                apply_masks(parameters, masks)
            best_state, best_accuracy, best_epoch, last_loss = None, -1.0, -1, float("nan")
            description = f"round {round_k}/{spec.rounds} → {target:.1%}"
            with progress.task(f"  {description} fine-tune", total=spec.epochs_per_round) as epoch_bar:
                for epoch_in_round in range(spec.epochs_per_round):
                    indices = np.asarray(defense.epoch_indices(epoch_counter, members), dtype=np.int64)
                    last_loss = train_epoch(
                        model,
                        data,
                        indices,
                        optimizer,
                        batch_size=train.batch_size,
                        generator=shuffle,
                        device=device,
                        loss_fn=defense.batch_loss,
                        overrides=defense.optimizer_overrides,
                        groups=defense.batch_groups,
                        after_backward=after_backward,
                        after_step=after_step,
                    )
                    epoch_counter += 1
                    accuracy = evaluate(model, data, dev, device=device).accuracy
                    if accuracy > best_accuracy:
                        best_state, best_accuracy, best_epoch = _state_copy(model), accuracy, epoch_in_round
                    epoch_bar.advance()
                    fault_point(f"round-{round_k}-epoch-{epoch_in_round + 1}")
            assert best_state is not None
            model.load_state_dict(best_state)
            if channel:
                kept, total = conv_linear_weights(model), dense_weights
            else:
                kept = sum(int(masks[n].sum()) for n in names)
                total = sum(masks[n].numel() for n in names)
            records.append(
                RoundRecord(
                    round=round_k,
                    target_sparsity=target,
                    achieved_sparsity=1.0 - kept / total,
                    best_epoch=best_epoch,
                    dev_accuracy=best_accuracy,
                    train_loss=last_loss,
                    seconds=time.perf_counter() - started,
                )
            )
            if save_checkpoint is not None:
                save_checkpoint(
                    round_k,
                    {
                        "round": round_k,
                        "model": _state_copy(model),
                        "masks": {k: v.clone() for k, v in masks.items()},
                        "optimizer": copy.deepcopy(optimizer.state_dict()),
                        "epoch_counter": epoch_counter,
                        "torch_rng": torch.get_rng_state(),
                        "shuffle_rng": shuffle.get_state(),
                        "records": [asdict(r) for r in records],
                        **({"plan": plan.to_dict()} if plan is not None else {}),
                    },
                )
                fault_point(f"round-{round_k}")
            round_bar.advance()
    model.eval()
    return PruneOutcome(masks, tuple(records), tuple(names), first_round - 1, plan)
