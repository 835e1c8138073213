"""Memorization scores: the estimator's design, what a score means, the content cache, the CSV
format `--memscores` reads, `prunectl memscore`, and base models shared through the cache."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_recipe
from torch import nn
from typer.testing import CliRunner

from gates.executor import shared_values, unit_threads
from gates.shadows import ShadowPlan
from prunectl import api, pipeline
from prunectl.cli import app
from prunectl.data import Dataset, load_dataset
from prunectl import memscores as memscore
from prunectl.memscores import MemscoreError, MemScores, read_csv, write_csv
from prunectl.models import fresh_model
from prunectl.pipeline import fit_like_base
from prunectl.recipe import Recipe
from prunectl.stages.shadow_work import ShadowPipeline

CPU = torch.device("cpu")
runner = CliRunner()

# Small enough that K=4 helper models train in well under a second, trained enough that the
# scores vary from member to member (so the split-half correlation is defined).
CACHE_RECIPE = make_tiny_recipe(data__members=100, train__epochs=10)
WEMEM_RECIPE = dataclasses.replace(CACHE_RECIPE, defense=dataclasses.replace(CACHE_RECIPE.defense, name="wemem", memscore_models=4))


def _entries(cache_dir: Path, kind: str, suffix: str) -> list[Path]:
    return sorted((cache_dir / kind).glob(f"*{suffix}"))


def _one_line(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare words, not line breaks."""
    return " ".join(text.split())


# -- the estimator's design ------------------------------------------------------------------


class Oracle(nn.Module):
    """A stand-in model that reads each sample's dataset index from its input and answers right
    exactly on the indices `fit` marked: no training, so the estimator's bookkeeping is visible."""

    def __init__(self, labels: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.labels, self.classes = labels, classes
        self.right = torch.zeros(len(labels), dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x[:, 0].long()
        answer = torch.where(self.right[index], self.labels[index], (self.labels[index] + 1) % self.classes)
        return F.one_hot(answer, self.classes).float()


class SpyFit:
    """Records the indices of every `fit` call; the model is then right on 80% of its half and 40% of the rest."""

    def __init__(self) -> None:
        self.halves: list[np.ndarray] = []

    def __call__(self, model: Oracle, indices: np.ndarray, seed: int) -> Oracle:
        self.halves.append(np.sort(np.asarray(indices)))
        rng = np.random.default_rng(seed)
        inside = np.zeros(len(model.labels), dtype=bool)
        inside[indices] = True
        draw = rng.random(len(model.labels))
        model.right = torch.from_numpy(np.where(inside, draw < 0.8, draw < 0.4))
        return model


def _indexed_dataset(size: int = 80, classes: int = 3) -> Dataset:
    return Dataset(
        x=torch.arange(size, dtype=torch.float32)[:, None],
        y=torch.arange(size) % classes,
        classes=tuple("abc"[:classes]),
        source="indexed",
    )


def _estimate_with_spy(models: int, seed: int = 0, members: np.ndarray | None = None) -> tuple[MemScores, SpyFit, np.ndarray]:
    data = _indexed_dataset()
    if members is None:
        members = np.random.default_rng(1).choice(len(data), 31, replace=False)  # unsorted, odd count
    spy = SpyFit()
    scores = memscore.estimate(memscore.train_helpers(data, members, models=models, seed=seed, build_model=lambda s: Oracle(data.y, data.num_classes), fit=spy, device=CPU))
    return scores, spy, np.sort(members)


@pytest.mark.parametrize("models", [2, 4, 6])
def test_with_k_models_every_member_is_in_exactly_k_over_2_training_halves_and_out_of_the_rest(models):
    scores, spy, members = _estimate_with_spy(models)
    assert len(spy.halves) == models
    inside = np.stack([np.isin(members, half) for half in spy.halves])
    assert (inside.sum(axis=0) == models // 2).all()
    for first, second in zip(spy.halves[0::2], spy.halves[1::2]):
        assert len(np.intersect1d(first, second)) == 0, "a pair's halves overlap"
        assert np.array_equal(np.union1d(first, second), members), "a pair's halves do not cover the members"
        assert abs(len(first) - len(second)) <= 1
    assert np.array_equal(scores.indices, members)


@pytest.mark.parametrize("models", [2, 4, 6])
def test_scores_lie_in_minus_1_to_1_in_steps_of_2_over_k(models):
    scores, _, _ = _estimate_with_spy(models)
    assert scores.values.min() >= -1 and scores.values.max() <= 1
    steps = scores.values * models / 2
    assert np.allclose(steps, np.round(steps), atol=1e-9)
    assert len(np.unique(scores.values)) > 1


@pytest.mark.parametrize("models", [-2, 0, 1, 3, 7])
def test_an_odd_number_of_models_or_fewer_than_2_is_refused(models):
    with pytest.raises(ValueError, match="even number of models"):
        _estimate_with_spy(models)


def test_a_split_half_correlation_is_reported_from_4_models_on():
    assert _estimate_with_spy(2)[0].split_half_spearman is None
    correlation = _estimate_with_spy(8)[0].split_half_spearman
    assert correlation is not None and -1 <= correlation <= 1


# -- what a score means -----------------------------------------------------------------------


def test_mislabelled_members_score_clearly_higher_than_the_rest_on_average():
    """A model is right on a mislabelled sample (by its wrong label) only when it trained on it."""
    recipe = make_tiny_recipe(train__epochs=30, train__lr=1e-2)
    data = load_dataset(recipe.data)
    members = np.arange(100)
    rng = np.random.default_rng(0)
    flipped = rng.choice(members, 10, replace=False)
    labels = data.y.clone()
    labels[flipped] = (labels[flipped] + torch.as_tensor(rng.integers(1, data.num_classes, len(flipped)))) % data.num_classes
    noisy = dataclasses.replace(data, y=labels)
    assert (noisy.y[flipped] != data.y[flipped]).all()

    outcomes = memscore.train_helpers(
        noisy,
        members,
        models=4,
        seed=0,
        build_model=lambda s: fresh_model(recipe, noisy, s),
        fit=lambda model, indices, s: fit_like_base(model, recipe, noisy, indices, s),
        device=CPU,
    )
    scores = memscore.estimate(outcomes)
    is_flipped = np.isin(scores.indices, flipped)
    mislabelled, clean = scores.values[is_flipped].mean(), scores.values[~is_flipped].mean()
    # Across seeds 0-14: mislabelled 0.8-1.0, clean 0.12-0.26.
    assert mislabelled >= 0.6, (mislabelled, clean)
    assert mislabelled - clean >= 0.3, (mislabelled, clean)


# -- determinism --------------------------------------------------------------------------------


def _trained_estimate(seed: int) -> tuple[MemScores, list[np.ndarray]]:
    recipe = make_tiny_recipe(train__epochs=5)
    data = load_dataset(recipe.data)
    halves: list[np.ndarray] = []

    def fit(model, indices, s):
        halves.append(np.sort(indices))
        return fit_like_base(model, recipe, data, indices, s)

    scores = memscore.estimate(memscore.train_helpers(data, np.arange(100), models=4, seed=seed, build_model=lambda s: fresh_model(recipe, data, s), fit=fit, device=CPU))
    return scores, halves


def test_the_same_seed_gives_identical_scores_and_a_different_seed_a_different_estimate():
    first, first_halves = _trained_estimate(seed=0)
    again, again_halves = _trained_estimate(seed=0)
    other, other_halves = _trained_estimate(seed=1)
    assert np.array_equal(first.values, again.values)
    assert all(np.array_equal(a, b) for a, b in zip(first_halves, again_halves))
    assert not np.array_equal(first_halves[0], other_halves[0]), "a different seed should draw different halves"
    assert not np.array_equal(first.values, other.values)


# -- the content cache ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, api.MemscoreResult]:
    """`api.memscore` of CACHE_RECIPE with 4 models, computed once into a fresh cache."""
    cache_dir = tmp_path_factory.mktemp("memscore-cache")
    return cache_dir, api.memscore(CACHE_RECIPE, models=4, cache_dir=cache_dir)


@pytest.fixture()
def cache_copy(scored_cache, tmp_path) -> Path:
    """A private copy of the scored cache, for tests that add entries."""
    target = tmp_path / "cache-copy"
    shutil.copytree(scored_cache[0], target)
    return target


def _forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("trained helper models although the scores were cached")

    monkeypatch.setattr(pipeline, "fit_like_base", refuse)
    monkeypatch.setattr(memscore, "estimate", refuse)


def test_the_first_call_computes_and_stores_one_entry_with_a_sidecar_naming_its_inputs(scored_cache):
    cache_dir, result = scored_cache
    assert result.cached is False and result.scores.source == "computed"
    entries = _entries(cache_dir, "memscores", ".npz")
    assert len(entries) == 1
    assert result.cache_entry["path"] == str(entries[0])
    sidecar = json.loads(entries[0].with_name(entries[0].name + ".json").read_text())
    assert sidecar["kind"] == "memscores" and sidecar["key"] == result.cache_entry["key"] == entries[0].stem
    inputs = sidecar["inputs"]
    assert inputs["members"] == 100 and inputs["models"] == 4
    assert inputs["train"]["epochs"] == CACHE_RECIPE.train.epochs
    assert {"samples_sha256", "model", "seed", "device"} <= set(inputs)
    assert result.members == 100 and result.models == 4 and len(result.scores.values) == 100


def test_a_second_call_reads_the_entry_without_training(scored_cache, monkeypatch):
    cache_dir, first = scored_cache
    _forbid_training(monkeypatch)
    again = api.memscore(CACHE_RECIPE, models=4, cache_dir=cache_dir)
    assert again.cached is True and again.scores.source == "cache"
    assert again.cache_entry == first.cache_entry
    assert np.array_equal(again.scores.indices, first.scores.indices)
    assert np.array_equal(again.scores.values, first.scores.values)
    assert again.split_half_spearman == first.split_half_spearman
    assert len(_entries(cache_dir, "memscores", ".npz")) == 1


@pytest.mark.parametrize(
    ("change", "recipe", "arguments"),
    [
        ("the number of models", CACHE_RECIPE, {"models": 6}),
        ("the seed", CACHE_RECIPE, {"models": 4, "seed": 1}),
        ("the members split size", make_tiny_recipe(data__members=120, train__epochs=10), {"models": 4}),
        ("the training epochs", make_tiny_recipe(data__members=100, train__epochs=11), {"models": 4}),
    ],
)
def test_changing_an_input_misses_the_cache_and_adds_a_new_entry(cache_copy, scored_cache, change, recipe, arguments):
    result = api.memscore(recipe, cache_dir=cache_copy, **arguments)
    assert result.cached is False, change
    assert result.cache_entry["key"] != scored_cache[1].cache_entry["key"], change
    assert len(_entries(cache_copy, "memscores", ".npz")) == 2, change


def test_prune_with_wemem_reuses_the_entry_memscore_wrote(cache_copy, scored_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(memscore, "estimate", lambda *a, **k: pytest.fail("prune recomputed cached memorization scores"))
    result = api.prune(WEMEM_RECIPE, out=tmp_path / "run", cache_dir=cache_copy)
    cache = result.defense["memscores"]["cache"]
    assert cache["hit"] is True
    assert cache["key"] == scored_cache[1].cache_entry["key"]
    assert result.defense["memscores"]["source"] == "cache"
    on_disk = json.loads((tmp_path / "run" / "defense.json").read_text())
    assert on_disk["memscores"]["cache"] == cache


# -- the CSV format -----------------------------------------------------------------------------


def test_write_csv_then_read_csv_gives_back_the_indices_and_scores(tmp_path):
    scores = MemScores(np.array([3, 7, 12, 40]), np.array([-1.0, 0.25, 2 / 3, 1.0]), 6, 0.4, "computed")
    path = tmp_path / "scores.csv"
    write_csv(path, scores)
    assert path.read_text().splitlines()[0] == "index,score"
    back = read_csv(path)
    assert np.array_equal(back.indices, scores.indices)
    assert np.allclose(back.values, scores.values, rtol=0, atol=1e-6)  # the file keeps 6 significant digits
    assert back.source == "file" and back.origin == str(path)


def test_read_csv_accepts_rows_in_any_order_and_sorts_them(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("index,score\n9,0.5\n2,-0.25\n5,0\n")
    scores = read_csv(path)
    assert scores.indices.tolist() == [2, 5, 9]
    assert scores.values.tolist() == [-0.25, 0.0, 0.5]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "header"),
        ("idx,score\n1,0.5\n", "header"),
        ("index,score\n", "holds no scores"),
        ("index,score\n1,0.5\n2,high\n", "line 3"),
        ("index,score\n1.5,0.5\n", "line 2"),
        ("index,score\n1,0.5,9\n", "line 2"),
        ("index,score\n1,0.5\n2,1.5\n", "line 3"),
        ("index,score\n1,-1.01\n", "line 2"),
        ("index,score\n1,nan\n", "line 2"),
        ("index,score\n1,inf\n", "line 2"),
        ("index,score\n-1,0.5\n", "line 2"),
        ("index,score\n4,0.5\n1,0\n4,0.25\n", "dataset index 4"),
    ],
    ids=[
        "empty",
        "bad-header",
        "header-only",
        "non-numeric-score",
        "non-integer-index",
        "extra-column",
        "score-above-1",
        "score-below-minus-1",
        "nan",
        "infinite",
        "negative-index",
        "duplicate-index",
    ],
)
def test_a_malformed_csv_raises_a_one_line_error_naming_the_file_and_the_line(tmp_path, content, says):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    with pytest.raises(MemscoreError) as raised:
        read_csv(path)
    message = str(raised.value)
    assert str(path) in message and says in message
    assert "\n" not in message


def test_a_missing_csv_raises_an_error_naming_the_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(MemscoreError, match="does not exist") as raised:
        read_csv(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("missing", [0, 4, 99])
def test_looking_up_an_index_without_a_score_raises_an_error_naming_it_never_a_silent_zero(missing):
    scores = MemScores(np.array([1, 3, 5]), np.array([0.5, -0.5, 1.0]), None, None, "file", "scores.csv")
    assert scores.lookup(np.array([5, 1])).tolist() == [1.0, 0.5]
    with pytest.raises(MemscoreError, match=f"dataset index {missing}\\b") as raised:
        scores.lookup(np.array([1, missing, 5]))
    assert "scores.csv" in str(raised.value)


def test_looking_up_anything_in_an_empty_set_of_scores_raises():
    empty = MemScores(np.zeros(0, dtype=np.int64), np.zeros(0), None, None, "file")
    with pytest.raises(MemscoreError, match="dataset index 2"):
        empty.lookup(np.array([2]))


# -- the CLI ------------------------------------------------------------------------------------


def _write_config(path: Path, recipe: Recipe) -> Path:
    data, train = recipe.data, recipe.train
    path.write_text(
        'name = "memscored"\n'
        f'[data]\nsource = "digits"\nmembers = {data.members}\ndev = {data.dev}\nholdout = {data.holdout}\nshadow_pool = {data.shadow_pool}\n'
        '[model]\nsource = "builtin:mlp"\nwidths = [32]\n'
        f"[train]\nepochs = {train.epochs}\nbatch_size = {train.batch_size}\nlr = {train.lr}\n"
        "[prune]\ntarget_sparsity = 0.8\nrounds = 2\nepochs_per_round = 1\n"
        "[defense]\nmemscore_models = 4\n"
    )
    return path


@pytest.fixture(scope="module")
def cli_scores(tmp_path_factory: pytest.TempPathFactory):
    """One `prunectl memscore --out scores.csv` run: (result, csv, cache dir, config)."""
    root = tmp_path_factory.mktemp("memscore-cli")
    config = _write_config(root / "prunectl.toml", CACHE_RECIPE)
    csv_path, cache_dir = root / "scores.csv", root / "cache"
    result = runner.invoke(app, ["memscore", "--config", str(config), "--cache-dir", str(cache_dir), "--out", str(csv_path)])
    return result, csv_path, cache_dir, config


def test_memscore_writes_one_csv_row_per_member_and_reports_the_split_half_correlation(cli_scores):
    result, csv_path, cache_dir, _ = cli_scores
    assert result.exit_code == 0, result.output
    scores = read_csv(csv_path)
    assert len(scores.indices) == CACHE_RECIPE.data.members
    assert len(csv_path.read_text().splitlines()) == CACHE_RECIPE.data.members + 1
    output = _one_line(result.output)
    assert "split-half rank correlation" in output
    assert "from 4 helper models, computed in" in output
    assert len(_entries(cache_dir, "memscores", ".npz")) == 1


def test_memscore_run_again_says_the_scores_were_read_from_the_cache(cli_scores, tmp_path, monkeypatch):
    _, csv_path, cache_dir, config = cli_scores
    _forbid_training(monkeypatch)
    again = tmp_path / "again.csv"
    result = runner.invoke(app, ["memscore", "--config", str(config), "--cache-dir", str(cache_dir), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert "read from the cache" in _one_line(result.output)
    assert again.read_text() == csv_path.read_text()


def test_prune_with_a_missing_memscores_file_exits_2_with_one_line_and_leaves_no_finished_run(cli_scores, tmp_path):
    config = cli_scores[3]
    missing, out = tmp_path / "missing.csv", tmp_path / "run"
    result = runner.invoke(
        app,
        ["prune", "--config", str(config), "--defense", "wemem", "--memscores", str(missing), "--out", str(out), "--cache-dir", str(tmp_path / "c")],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], result.output
    assert not (out / "manifest.json").exists()


def test_prune_with_the_csv_from_memscore_uses_the_file(cli_scores, tmp_path):
    _, csv_path, _, config = cli_scores
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["prune", "--config", str(config), "--defense", "wemem", "--memscores", str(csv_path), "--out", str(out), "--cache-dir", str(tmp_path / "c")],
    )
    assert result.exit_code == 0, result.output
    defense = json.loads((out / "defense.json").read_text())
    assert defense["name"] == "wemem"
    assert defense["memscores"]["source"] == "file" and defense["memscores"]["origin"] == str(csv_path)
    assert (out / "manifest.json").is_file()


# -- base models shared through the cache ------------------------------------------------------


def test_a_second_run_with_another_defense_reuses_the_cached_base_model_and_a_new_seed_trains_one(tmp_path):
    cache_dir = tmp_path / "cache"
    undefended = make_tiny_recipe(data__members=100)
    with_kl = dataclasses.replace(undefended, defense=dataclasses.replace(undefended.defense, name="kl"))

    first = api.prune(undefended, out=tmp_path / "none", cache_dir=cache_dir)
    second = api.prune(with_kl, out=tmp_path / "kl", cache_dir=cache_dir)
    assert first.base_source == "trained"
    assert second.base_source.startswith("cache:")
    assert second.base_source == f"cache:{_entries(cache_dir, 'base-models', '.pt')[0]}"
    first_base = torch.load(tmp_path / "none" / "base.pt", weights_only=True)
    second_base = torch.load(tmp_path / "kl" / "base.pt", weights_only=True)
    assert first_base.keys() == second_base.keys()
    assert all(torch.equal(first_base[name], second_base[name]) for name in first_base)

    reseeded = api.prune(dataclasses.replace(undefended, seed=1), out=tmp_path / "seed1", cache_dir=cache_dir)
    assert reseeded.base_source == "trained"
    assert len(_entries(cache_dir, "base-models", ".pt")) == 2


# -- a gate's WeMem shadows: helper models as units of their own --------------------------------


def _shadow_plan(seed: int = 123) -> ShadowPlan:
    return ShadowPlan(index=2, seed=seed, members=np.arange(399, 299, -1), dev=np.arange(400, 420), nonmembers=np.arange(420, 500))


def test_a_shadows_helper_models_split_into_units_store_the_scores_its_own_pipeline_computes(tmp_path, monkeypatch):
    """The gate spreads a WeMem shadow's K helpers over its workers (`ShadowPipeline.preparation`):
    each unit trains one helper from its own plan, in any order, after a pickle round trip, and
    the scores stored for the shadow are bit for bit those its pipeline computes in one piece;
    the pipeline then finds them in the cache and trains no helper."""
    data, plan = load_dataset(WEMEM_RECIPE.data), _shadow_plan()
    trainer = ShadowPipeline(WEMEM_RECIPE, cache_dir=tmp_path / "split")
    helpers = {**pipeline.helper_trainers(WEMEM_RECIPE, data), "device": CPU}
    with shared_values({"dataset": data}), unit_threads():
        units = trainer.preparation([plan])
        assert sorted(unit.plan.row for unit in units) == [0, 1, 2, 3] and {unit.shadow for unit in units} == {2}
        results = [pickle.loads(pickle.dumps(unit)).run() for unit in reversed(units)][::-1]
        trainer.prepared(units, results)
        assert trainer.preparation([plan]) == [], "stored: nothing is left to prepare"
        whole, _, _ = memscore.cached_estimate(WEMEM_RECIPE, data, plan.members, seed=plan.seed, **helpers, cache_dir=tmp_path / "whole")
        _forbid_training(monkeypatch)
        split, _, hit = memscore.cached_estimate(WEMEM_RECIPE, data, plan.members, seed=plan.seed, **helpers, cache_dir=tmp_path / "split")
    assert hit
    assert np.array_equal(split.indices, whole.indices) and np.array_equal(split.values, whole.values)
    assert split.split_half_spearman == whole.split_half_spearman


@pytest.mark.parametrize(
    ("recipe", "cache"), [(CACHE_RECIPE, True), (WEMEM_RECIPE, False)], ids=["a defense without memorization scores", "no content cache"]
)
def test_shadows_prepare_nothing_without_a_memorization_defense_or_a_cache(recipe, cache, tmp_path):
    trainer = ShadowPipeline(recipe, cache_dir=tmp_path / "cache" if cache else None)
    with shared_values({"dataset": load_dataset(recipe.data)}):
        assert trainer.preparation([_shadow_plan()]) == []


def test_a_wemem_gate_trains_its_shadows_helpers_as_units_before_the_shadows(tmp_path):
    """In a real gate: the preparation stage ran, and every shadow's scores are in the cache beside the victim's."""
    recipe = make_tiny_recipe(defense__name="wemem", defense__memscore_models=4, gate__shadows=2, gate__bootstrap=200)
    cache_dir = tmp_path / "cache"
    api.prune(recipe, out=tmp_path / "run", cache_dir=cache_dir)
    result = api.gate(tmp_path / "run", cache_dir=cache_dir, execution=api.Execution(workers=1)).result
    assert result.seconds["preparation_wall"] > 0
    assert len(_entries(cache_dir, "memscores", ".npz")) == 3, "the victim's and one per shadow"
