"""Masks prune exact counts by magnitude; measured sparsity states its denominator."""

import pytest
import torch
from torch import nn

from prunectl.errors import ModelError, SparsityCheckError
from prunectl.models import MLP, SmallCNN
from prunectl.pruning.masks import (
    apply_masks,
    check_sparsity,
    compute_masks,
    measure_sparsity,
    prunable_weight_names,
)


def _weights(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n] for n in names}


def test_prunable_weights_are_conv_and_linear_weights_in_module_order():
    model = SmallCNN(1, 8, 8, 10)
    assert prunable_weight_names(model) == [
        "features.0.weight",
        "features.3.weight",
        "classifier.1.weight",
        "classifier.3.weight",
    ]
    assert prunable_weight_names(model, keep_first_dense=True, keep_last_dense=True) == [
        "features.3.weight",
        "classifier.1.weight",
    ]


def test_a_model_without_prunable_layers_is_a_clear_error():
    with pytest.raises(ModelError, match="no prunable"):
        prunable_weight_names(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95])
def test_global_masks_prune_exactly_the_requested_count(sparsity):
    torch.manual_seed(0)
    model = MLP(64, (48, 32), 10)
    names = prunable_weight_names(model)
    weights = _weights(model, names)
    masks = compute_masks(weights, sparsity, "global")
    total = sum(w.numel() for w in weights.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == round(sparsity * total)


def test_global_masks_remove_the_smallest_magnitudes_across_layers():
    weights = {"a": torch.tensor([[0.1, -5.0]]), "b": torch.tensor([[-0.2, 3.0, 0.05]])}
    masks = compute_masks(weights, 0.6, "global")
    assert masks["a"].tolist() == [[False, True]]
    assert masks["b"].tolist() == [[False, True, False]]


def test_layerwise_masks_hit_the_target_in_every_layer():
    torch.manual_seed(0)
    model = SmallCNN(1, 8, 8, 10)
    names = prunable_weight_names(model)
    masks = compute_masks(_weights(model, names), 0.7, "layerwise")
    for name in names:
        assert int((~masks[name]).sum()) == round(0.7 * masks[name].numel())


def test_weights_pruned_earlier_stay_pruned_even_if_they_would_rank_high():
    weights = {"w": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}
    first = compute_masks(weights, 0.25, "global")
    assert first["w"].tolist() == [[False, True, True, True]]
    revived = {"w": torch.tensor([[100.0, 2.0, 3.0, 4.0]])}
    second = compute_masks(revived, 0.5, "global", previous=first)
    assert second["w"].tolist() == [[False, False, True, True]]


def test_apply_masks_zeroes_exactly_the_masked_weights():
    model = MLP(8, (4,), 2)
    names = prunable_weight_names(model)
    params = dict(model.named_parameters())
    masks = compute_masks(_weights(model, names), 0.5, "global")
    apply_masks(params, masks)
    for name in names:
        assert torch.all(params[name][~masks[name]] == 0)
        assert torch.all(params[name][masks[name]] != 0)


def test_measured_sparsity_counts_zeros_over_the_named_weights_only():
    state = {"a.weight": torch.tensor([[0.0, 1.0], [0.0, 0.0]]), "a.bias": torch.zeros(2), "b.weight": torch.ones(4)}
    report = measure_sparsity(state, ["a.weight", "b.weight"])
    assert report.zeros == 3 and report.numel == 8
    assert report.global_sparsity == pytest.approx(3 / 8)
    assert "no biases" in report.to_dict()["denominator"]


def test_sparsity_check_fails_outside_half_a_point():
    state = {"w": torch.cat([torch.zeros(880), torch.ones(120)])}
    report = measure_sparsity(state, ["w"])
    check_sparsity(report, 0.884, "global")
    with pytest.raises(SparsityCheckError, match="misses the target"):
        check_sparsity(report, 0.9, "global")


def _zeros_then_ones(zeros: int, total: int) -> torch.Tensor:
    return torch.cat([torch.zeros(zeros), torch.ones(total - zeros)])


def test_layerwise_check_allows_one_weight_of_rounding_in_tiny_layers():
    state = {"small": torch.tensor([0.0, 1.0, 1.0]), "big": _zeros_then_ones(450, 1000)}
    check_sparsity(measure_sparsity(state, ["small", "big"]), 0.45, "layerwise")


def test_layerwise_check_fails_on_a_layer_off_target_even_when_the_global_figure_is_right():
    state = {"a": _zeros_then_ones(460, 1000), "b": _zeros_then_ones(440, 1000)}
    report = measure_sparsity(state, ["a", "b"])
    check_sparsity(report, 0.45, "global")
    with pytest.raises(SparsityCheckError, match="layer a"):
        check_sparsity(report, 0.45, "layerwise")
