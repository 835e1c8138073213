"""`prunectl.api.prune` writes a complete, honest run directory."""

import json

import pytest
import torch

from prunectl.api import load_run, prune
from prunectl.errors import RunDirError
from prunectl.models import load_state_dict_file


def test_a_finished_run_holds_every_artifact(tiny_run):
    _, out = tiny_run
    for name in ("recipe.toml", "splits.json", "base.pt", "pruned.pt", "masks.pt", "prune.json", "manifest.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round-1.pt", "round-2.pt"]
    assert not [p for p in out.rglob("*.tmp")]


def test_the_result_reports_the_measured_sparsity_and_holdout_accuracy(tiny_run, tiny_recipe):
    result, out = tiny_run
    assert result.sparsity["global_sparsity"] == pytest.approx(tiny_recipe.prune.target_sparsity, abs=0.005)
    assert len(result.sparsity["layers"]) == 2
    assert 0.8 < result.base_accuracy <= 1.0 and 0.6 < result.pruned_accuracy <= 1.0
    assert result.split_sizes == {"members": 200, "dev": 60, "holdout": 200, "shadow_pool": 700}
    assert json.loads((out / "prune.json").read_text())["pruned_accuracy"] == result.pruned_accuracy


def test_saved_checkpoints_are_plain_state_dicts_with_the_models_own_keys(tiny_run):
    _, out = tiny_run
    loaded = load_run(out)
    pruned = load_state_dict_file(out / "pruned.pt")
    assert list(pruned) == list(loaded.pruned_model.state_dict())
    assert not any("orig" in key or "mask" in key for key in pruned)
    checkpoint = torch.load(out / "checkpoints" / "round-2.pt", weights_only=True)
    assert {"model", "masks", "optimizer", "torch_rng", "shuffle_rng", "epoch_counter"} <= set(checkpoint)


def test_the_pruned_checkpoint_has_zeros_exactly_where_the_masks_say(tiny_run):
    _, out = tiny_run
    pruned = load_state_dict_file(out / "pruned.pt")
    masks = torch.load(out / "masks.pt", weights_only=True)
    for name, mask in masks.items():
        assert torch.all(pruned[name][~mask] == 0)


def test_the_splits_file_records_disjoint_index_lists(tiny_run):
    _, out = tiny_run
    splits = json.loads((out / "splits.json").read_text())
    indices = [i for name in ("members", "dev", "holdout", "shadow_pool") for i in splits[name]]
    assert len(indices) == len(set(indices)) == 200 + 60 + 200 + 700


def test_load_run_restores_the_models_of_the_run(tiny_run):
    result, out = tiny_run
    loaded = load_run(out)
    logits = loaded.pruned_model(loaded.data.x[loaded.splits.holdout])
    accuracy = (logits.argmax(1) == loaded.data.y[loaded.splits.holdout]).float().mean().item()
    assert accuracy == pytest.approx(result.pruned_accuracy)


def test_a_finished_run_is_never_overwritten_silently(tiny_run, tiny_recipe):
    _, out = tiny_run
    with pytest.raises(RunDirError, match="--overwrite"):
        prune(tiny_recipe, out=out)
    with pytest.raises(RunDirError, match="nothing to resume"):
        prune(tiny_recipe, out=out, resume=True)


def test_resume_refuses_a_different_recipe(tmp_path, tiny_recipe):
    import dataclasses

    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.toml").write_text("seed = 9\n")
    with pytest.raises(RunDirError, match="differs .*seed"):
        prune(dataclasses.replace(tiny_recipe, seed=1), out=out, resume=True)
