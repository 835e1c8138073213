"""The pruning engine: masks hold through fine-tuning, every defense hook is called, resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import make_tiny_recipe
from prunectl.data import load_dataset, make_splits
from prunectl.defenses.base import Defense, DefenseContext
from prunectl.pipeline import run_pipeline
from prunectl.pruning.masks import measure_sparsity
from prunectl.rundir.directory import RunDirectory


class RecordingDefense(Defense):
    """Exercises every hook: trains a helper model, drops half the members, adds a loss term,
    and asks for a strong weight decay on batches holding odd indices."""

    name = "recording"

    def __init__(self) -> None:
        self.setup_calls: list[DefenseContext] = []
        self.epochs: list[int] = []
        self.batches: list[torch.Tensor] = []
        self.override_calls = 0
        self.helper_accuracy: float | None = None

    def setup(self, context: DefenseContext) -> None:
        self.setup_calls.append(context)
        helper = context.fit(context.build_model(123), context.members[:50], 123)
        self.helper_accuracy = float((helper(context.data.x[:50]).argmax(1) == context.data.y[:50]).float().mean())

    def epoch_indices(self, epoch: int, members: np.ndarray) -> np.ndarray:
        self.epochs.append(epoch)
        return members[epoch % 2 :: 2]

    def batch_loss(self, logits, labels, indices):
        self.batches.append(indices.clone())
        return F.cross_entropy(logits, labels) + 0.01 * logits.pow(2).mean()

    def optimizer_overrides(self, indices):
        self.override_calls += 1
        return {"weight_decay": 0.5} if bool((indices % 2 == 1).any()) else None


def _splits(recipe):
    return make_splits(load_dataset(recipe.data).y, recipe.data, recipe.seed)


def test_every_defense_hook_is_called_with_what_the_protocol_promises():
    recipe = make_tiny_recipe(prune__rounds=2, prune__epochs_per_round=2)
    splits = _splits(recipe)
    defense = RecordingDefense()
    run_pipeline(recipe, splits.members, splits.dev, seed=0, defense=defense)
    assert len(defense.setup_calls) == 1
    context = defense.setup_calls[0]
    assert np.array_equal(context.members, splits.members) and context.total_epochs == 4
    assert defense.helper_accuracy is not None
    assert defense.epochs == [0, 1, 2, 3]  # the epoch counter runs on across rounds
    seen = torch.cat(defense.batches[: len(defense.batches) // 4]).numpy()
    assert set(seen) == set(splits.members[0::2])  # epoch 0 trained on exactly the chosen indices
    assert defense.override_calls == len(defense.batches)


def test_per_batch_optimizer_overrides_take_effect():
    recipe = make_tiny_recipe(train__optimizer="sgd", train__weight_decay=0.0)
    splits = _splits(recipe)
    plain = run_pipeline(recipe, splits.members, splits.dev, seed=0)
    decayed = run_pipeline(recipe, splits.members, splits.dev, seed=0, defense=RecordingDefense())
    norm = lambda model: sum(float(p.detach().norm()) for p in model.parameters())  # noqa: E731
    assert norm(decayed.pruned_model) < norm(plain.pruned_model)


def test_pruned_weights_stay_exactly_zero_through_fine_tuning():
    recipe = make_tiny_recipe(prune__rounds=3, prune__epochs_per_round=2, train__optimizer="sgd")
    splits = _splits(recipe)
    output = run_pipeline(recipe, splits.members, splits.dev, seed=0)
    params = dict(output.pruned_model.named_parameters())
    for name, mask in output.outcome.masks.items():
        assert torch.all(params[name][~mask] == 0), name
    report = measure_sparsity(output.pruned_model.state_dict(), list(output.outcome.prunable))
    assert report.global_sparsity == pytest.approx(recipe.prune.target_sparsity, abs=0.005)


def test_the_base_model_is_left_dense_and_keys_are_unchanged():
    recipe = make_tiny_recipe()
    splits = _splits(recipe)
    output = run_pipeline(recipe, splits.members, splits.dev, seed=0)
    assert list(output.pruned_model.state_dict()) == list(output.base_model.state_dict())
    assert all(float((p == 0).float().mean()) < 0.01 for p in output.base_model.parameters())


def test_rounds_follow_the_schedule_and_record_dev_selection():
    recipe = make_tiny_recipe(prune__rounds=3, prune__schedule="geometric", prune__target_sparsity=0.875)
    splits = _splits(recipe)
    rounds = run_pipeline(recipe, splits.members, splits.dev, seed=0).outcome.rounds
    assert [r.round for r in rounds] == [1, 2, 3]
    assert [r.achieved_sparsity for r in rounds] == pytest.approx([0.5, 0.75, 0.875], abs=1e-3)
    assert all(0.0 <= r.dev_accuracy <= 1.0 for r in rounds)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_same_seed_same_weights(scope):
    recipe = make_tiny_recipe(prune__scope=scope)
    splits = _splits(recipe)
    a = run_pipeline(recipe, splits.members, splits.dev, seed=5).pruned_model.state_dict()
    b = run_pipeline(recipe, splits.members, splits.dev, seed=5).pruned_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Crash(Exception):
    pass


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    recipe = make_tiny_recipe(prune__rounds=3, prune__epochs_per_round=2)
    splits = _splits(recipe)
    straight = run_pipeline(recipe, splits.members, splits.dev, seed=0, run=RunDirectory.prepare(tmp_path / "a", overwrite=False, resume=False))

    run = RunDirectory.prepare(tmp_path / "b", overwrite=False, resume=False)
    original_save = run.save_checkpoint

    def save_then_crash(round_k, state):
        original_save(round_k, state)
        if round_k == 2:
            raise _Crash

    monkeypatch.setattr(run, "save_checkpoint", save_then_crash)
    with pytest.raises(_Crash):
        run_pipeline(recipe, splits.members, splits.dev, seed=0, run=run)
    monkeypatch.undo()
    resumed = run_pipeline(recipe, splits.members, splits.dev, seed=0, run=RunDirectory(tmp_path / "b"))
    assert resumed.outcome.resumed_from_round == 2
    assert not resumed.base_trained  # the base model came from base.pt
    a, b = straight.pruned_model.state_dict(), resumed.pruned_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.dev_accuracy for r in straight.outcome.rounds] == [r.dev_accuracy for r in resumed.outcome.rounds]


def test_a_torchscript_base_model_is_pruned_from_its_own_weights(tmp_path):
    from prunectl.models import MLP

    scripted = torch.jit.script(MLP(64, (32,), 10))
    torch.jit.save(scripted, tmp_path / "m.pt")
    recipe = make_tiny_recipe(model__source=f"torchscript:{tmp_path / 'm.pt'}")
    splits = _splits(recipe)
    output = run_pipeline(recipe, splits.members, splits.dev, seed=0, victim=True)
    assert not output.base_trained
    base = output.base_model.state_dict()
    assert all(torch.equal(base[k], v) for k, v in scripted.state_dict().items())
    report = measure_sparsity(output.pruned_model.state_dict(), list(output.outcome.prunable))
    assert report.global_sparsity == pytest.approx(recipe.prune.target_sparsity, abs=0.005)
