"""The defense contract: every defense is deterministic, keeps the sparsity guarantee, and does
exactly what it claims to the samples it names (KL weight 0 is no defense; RSW trains on the
specified windows; RMR's strong decay touches only risky batches)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from conftest import make_tiny_recipe
from torch import nn

import prunectl.pruning.engine as engine
from prunectl.data import load_dataset, make_splits
from prunectl.defenses.kl import KLDefense, KLSettings, pair_kl
from prunectl.defenses.wemem import DefenseSetupError, class_orders, derive_window
from prunectl.pipeline import run_pipeline
from prunectl.pruning.masks import measure_sparsity
from prunectl.training import grouped_batches, make_generator, train_epoch

QUICK = {"prune__rounds": 2, "prune__epochs_per_round": 2, "defense__memscore_models": 4, "defense__rmr_threshold": 0.25}
DEFENSES = {
    "none": {},
    "kl": {"defense__name": "kl"},
    "wemem-rsw": {"defense__name": "wemem", "defense__wemem_variant": "rsw"},
    "wemem-rmr": {"defense__name": "wemem", "defense__wemem_variant": "rmr"},
    "wemem-swmr": {"defense__name": "wemem", "defense__wemem_variant": "swmr"},
}


def recipe_for(defense: str, **changes: object):
    return make_tiny_recipe(**{**QUICK, **DEFENSES[defense], **changes})


def pipeline(recipe, tmp_path=None):
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    output = run_pipeline(recipe, splits.members, splits.dev, recipe.seed, cache_dir=tmp_path)
    return output, splits, data


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class Recorder:
    """What the engine handed the fit loop: each epoch's indices, each batch, its weight decay at the step."""

    epochs: list[np.ndarray] = field(default_factory=list)
    batches: list[np.ndarray] = field(default_factory=list)
    decay_at_step: list[float] = field(default_factory=list)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    record = Recorder()
    real_train_epoch = engine.train_epoch

    def spying_train_epoch(model, data, indices, optimizer, *, loss_fn, **kwargs):
        record.epochs.append(np.asarray(indices).copy())
        real_step = optimizer.step

        def step(*args, **kw):
            record.decay_at_step.append(optimizer.param_groups[0]["weight_decay"])
            return real_step(*args, **kw)

        optimizer.step = step

        def loss(logits, labels, batch_indices):
            record.batches.append(batch_indices.numpy().copy())
            return loss_fn(logits, labels, batch_indices)

        try:
            return real_train_epoch(model, data, indices, optimizer, loss_fn=loss, **kwargs)
        finally:
            del optimizer.step

    monkeypatch.setattr(engine, "train_epoch", spying_train_epoch)
    return record


# --- the shared contract -------------------------------------------------------------------


@pytest.mark.parametrize("defense", list(DEFENSES))
def test_every_defense_is_deterministic_under_a_seed(defense, tmp_path):
    first, _, _ = pipeline(recipe_for(defense), tmp_path / "a")
    second, _, _ = pipeline(recipe_for(defense), tmp_path / "b")
    for name, tensor in weights(first.pruned_model).items():
        assert torch.equal(tensor, weights(second.pruned_model)[name]), name


@pytest.mark.parametrize("defense", list(DEFENSES))
def test_every_defense_keeps_the_engines_sparsity_guarantee(defense, tmp_path):
    recipe = recipe_for(defense)
    output, _, _ = pipeline(recipe, tmp_path)
    state = weights(output.pruned_model)
    sparsity = measure_sparsity(state, list(output.outcome.prunable))
    assert sparsity.global_sparsity >= recipe.prune.target_sparsity - 0.005
    for name, mask in output.outcome.masks.items():
        assert torch.all(state[name][~mask] == 0), f"{name}: a pruned weight came back"


def test_kl_with_weight_zero_reproduces_the_undefended_run_exactly(tmp_path):
    none, _, _ = pipeline(recipe_for("none"), tmp_path)
    kl0, _, _ = pipeline(recipe_for("kl", defense__kl_weight=0.0), tmp_path)
    kl4, _, _ = pipeline(recipe_for("kl", defense__kl_weight=4.0), tmp_path)
    reference = weights(none.pruned_model)
    assert all(torch.equal(t, reference[n]) for n, t in weights(kl0.pruned_model).items())
    assert not all(torch.equal(t, reference[n]) for n, t in weights(kl4.pruned_model).items()), "λ=4 should change training"


@pytest.mark.parametrize("defense", ["wemem-rsw", "wemem-swmr"])
def test_rsw_trains_each_epoch_on_exactly_the_window_of_every_class(defense, tmp_path, recorder):
    recipe = recipe_for(defense)
    output, splits, data = pipeline(recipe, tmp_path)
    wemem = output.defense
    scores = wemem.scores.lookup(splits.members)
    labels = data.y[torch.as_tensor(splits.members)].numpy()
    orders = class_orders(splits.members, labels, scores, recipe.defense.rsw_order)
    window = derive_window(max(len(o) for o in orders), 4)
    assert (wemem.window.width, wemem.window.stride) == (window.width, window.stride)
    assert len(recorder.epochs) == 4
    for epoch, trained in enumerate(recorder.epochs):
        start = window.stride * epoch
        expected = np.concatenate([order[start : start + window.width] for order in orders])
        assert sorted(trained.tolist()) == sorted(expected.tolist()), f"epoch {epoch}"
    used = np.concatenate(recorder.epochs)
    assert set(used.tolist()) == set(splits.members.tolist()), "every member is trained on at least once"
    in_every_epoch = set.intersection(*(set(e.tolist()) for e in recorder.epochs))
    assert not in_every_epoch, "no member is reused in every epoch"


def test_rsw_order_h2l_starts_with_the_most_memorized_members_of_each_class():
    members = np.array([10, 11, 12, 13, 20, 21])
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.0, 0.75, 0.25, 0.75, 0.5, 1.0])
    h2l = class_orders(members, labels, scores, "h2l")
    l2h = class_orders(members, labels, scores, "l2h")
    assert [o.tolist() for o in h2l] == [[11, 13, 12, 10], [21, 20]]  # ties by dataset index
    assert [o.tolist() for o in l2h] == [[10, 12, 11, 13], [20, 21]]


def test_the_derived_window_covers_every_member_and_a_bad_one_is_refused():
    for largest, epochs in [(1, 1), (7, 1), (100, 15), (1000, 15), (13, 4), (5, 30)]:
        window = derive_window(largest, epochs)
        assert window.stride * (epochs - 1) + window.width >= largest
        assert window.stride <= window.width
    with pytest.raises(DefenseSetupError, match="would never be trained on"):
        derive_window(100, 3, width=10, stride=5)
    with pytest.raises(DefenseSetupError, match="larger than defense.rsw_width"):
        derive_window(100, 3, width=10, stride=50)


@pytest.mark.parametrize("defense", ["wemem-rmr", "wemem-swmr"])
def test_rmr_applies_the_strong_decay_to_risky_batches_and_only_to_them(defense, tmp_path, recorder):
    recipe = recipe_for(defense)
    output, splits, _ = pipeline(recipe, tmp_path)
    risky = set(output.defense.risky.tolist())
    scores = output.defense.scores.lookup(splits.members)
    assert risky == set(splits.members[scores >= recipe.defense.rmr_threshold].tolist())
    assert 0 < len(risky) < len(splits.members), "the tiny recipe should have some risky members"
    assert len(recorder.batches) == len(recorder.decay_at_step)
    seen_risky = set()
    for batch, decay in zip(recorder.batches, recorder.decay_at_step):
        flags = {int(i) in risky for i in batch}
        assert len(flags) == 1, "a batch mixed risky and ordinary members"
        if flags == {True}:
            assert decay == recipe.defense.rmr_weight_decay
            seen_risky |= set(batch.tolist())
        else:
            assert decay == recipe.train.weight_decay
    trained = set(np.concatenate(recorder.epochs).tolist())
    assert seen_risky == risky & trained


def test_the_defense_description_records_what_was_actually_used(tmp_path):
    output, _, _ = pipeline(recipe_for("wemem-swmr"), tmp_path)
    described = output.defense.describe()
    assert described["variant"] == "swmr"
    assert described["rsw"]["width"] >= 1 and described["rmr"]["risky_members"] == len(output.defense.risky)
    assert described["memscores"]["cache"]["path"].startswith(str(tmp_path))


# --- KL posterior balancing -----------------------------------------------------------------


def test_pair_kl_is_zero_for_identical_confidence_profiles_whatever_the_class():
    a = torch.tensor([[5.0, 1.0, 0.0], [0.0, 1.0, 5.0]])  # same sorted logits, different classes
    assert pair_kl(a).item() == pytest.approx(0.0, abs=1e-7)
    b = torch.tensor([[5.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert pair_kl(b).item() > 0.1


def test_pair_kl_pairs_the_two_halves_and_leaves_an_odd_sample_out():
    logits = torch.randn(7, 10, generator=torch.Generator().manual_seed(0))
    assert pair_kl(logits).item() == pytest.approx(pair_kl(logits[:6]).item())
    assert pair_kl(logits[:1]).item() == 0.0


def test_kl_stays_finite_and_bounded_on_saturated_logits():
    torch.manual_seed(0)
    model = nn.Linear(8, 10)
    with torch.no_grad():
        model.weight.mul_(1e4)  # softmax underflows to exact zeros for most classes
    x, y = torch.randn(32, 8), torch.randint(0, 10, (32,))
    probabilities = torch.softmax(model(x), dim=1)
    assert (probabilities == 0).any(), "the test needs a softmax that underflows"
    defense = KLDefense(KLSettings(kl_weight=16.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(20):
        optimizer.zero_grad()
        loss = defense.batch_loss(model(x), y, torch.arange(32))
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    kl_only = pair_kl(torch.full((4, 10), -1e30).index_fill_(1, torch.tensor([0]), 1e30).requires_grad_())
    kl_only.backward()
    assert torch.isfinite(kl_only)


def test_kl_weight_scales_the_term_on_top_of_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert KLDefense(KLSettings(kl_weight=0.0)).batch_loss(logits, labels, torch.arange(6)).item() == ce.item()
    assert KLDefense(KLSettings(kl_weight=4.0)).batch_loss(logits, labels, torch.arange(6)).item() == pytest.approx(ce.item() + 4 * pair_kl(logits).item())


# --- the fit loop's grouping, which RMR relies on ---------------------------------------------


def test_grouped_batches_never_mix_groups_and_cover_every_index_once():
    groups = [np.arange(0, 70), np.arange(100, 113)]
    batches = grouped_batches(groups, 16, make_generator(0))
    flat = np.concatenate([b.numpy() for b in batches])
    assert sorted(flat.tolist()) == sorted(np.concatenate(groups).tolist())
    assert all(((b < 100).all() or (b >= 100).all()) for b in batches)
    assert sorted(len(b) for b in batches) == [6, 13, 16, 16, 16, 16]


def test_one_group_batches_exactly_like_an_ungrouped_epoch():
    recipe = make_tiny_recipe()
    data = load_dataset(recipe.data)
    members = make_splits(data.y, recipe.data, recipe.seed).members

    def batches_of(groups):
        seen: list[list[int]] = []
        model = nn.Sequential(nn.Flatten(), nn.Linear(data.x[0].numel(), data.num_classes))

        def loss(logits, labels, indices):
            seen.append(indices.tolist())
            return torch.nn.functional.cross_entropy(logits, labels)

        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        cpu = torch.device("cpu")
        train_epoch(model, data, members, optimizer, batch_size=32, generator=make_generator(3), device=cpu, loss_fn=loss, groups=groups)
        return seen

    assert batches_of(lambda indices: [indices]) == batches_of(None)


# --- shadows run the victim's defense -------------------------------------------------------


def test_the_gates_shadows_run_the_same_defense_with_their_own_memorization_scores(tmp_path, monkeypatch):
    import prunectl.pipeline as pipeline_module
    from prunectl.api import gate, prune

    scored: list[set[int]] = []
    real = pipeline_module.cached_estimate

    def recording(recipe, data, members, **kwargs):
        scored.append(set(np.asarray(members).tolist()))
        return real(recipe, data, members, **kwargs)

    monkeypatch.setattr(pipeline_module, "cached_estimate", recording)
    recipe = recipe_for(
        "wemem-swmr",
        gate__shadows=2,
        gate__attacks=("confidence",),
        gate__max_advantage=1.0,
        gate__max_shadow_accuracy_drop=1.0,
        gate__audit_original=False,
    )
    prune(recipe, out=tmp_path / "run", cache_dir=tmp_path / "cache")
    victim_members = scored[0]
    outcome = gate(tmp_path / "run", cache_dir=tmp_path / "cache")
    assert outcome.result.verdict == "pass", outcome.result.reason
    shadow_sets = scored[1:]
    assert len(shadow_sets) == 2, "each shadow computes memorization scores on its own members"
    assert all(not (s & victim_members) for s in shadow_sets), "shadows never see the victim's members"
    assert shadow_sets[0] != shadow_sets[1]
    summary = (tmp_path / "run" / "gate" / "summary.md").read_text()
    assert "re-running the victim's recipe with wemem swmr" in summary


def test_a_memscore_file_applies_to_the_victim_and_shadows_compute_their_own(tmp_path):
    from prunectl.memscores import MemscoreError

    unrelated = tmp_path / "other.csv"
    unrelated.write_text("index,score\n0,0.5\n")  # scores for some other member set
    recipe = recipe_for("wemem-rmr", defense__memscores=str(unrelated))
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    with pytest.raises(MemscoreError, match="no memorization score in .*other.csv"):
        run_pipeline(recipe, splits.members, splits.dev, recipe.seed, victim=True, cache_dir=tmp_path)
    shadow = run_pipeline(recipe, splits.shadow_pool[:200], splits.dev, 7, victim=False, cache_dir=tmp_path)
    assert shadow.defense.scores.source == "computed"


def test_a_bad_memscores_file_is_refused_before_any_training_and_leaves_no_run(tmp_path, monkeypatch):
    import prunectl.pipeline
    from prunectl.api import prune
    from prunectl.memscores import MemscoreError

    monkeypatch.setattr(prunectl.pipeline, "train_base", lambda *a, **k: pytest.fail("trained before checking the scores"))
    partial = tmp_path / "partial.csv"
    partial.write_text("index,score\n0,0.5\n")
    for path in (tmp_path / "missing.csv", partial):
        with pytest.raises(MemscoreError, match=path.name):
            prune(recipe_for("wemem-rmr", defense__memscores=str(path)), out=tmp_path / "run", cache_dir=tmp_path / "cache")
        assert not (tmp_path / "run").exists()
