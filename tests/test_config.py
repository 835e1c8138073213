"""Recipes resolve in one place (flag > env > file > default) and invalid values fail early."""

import copy
import dataclasses
import pickle
import unicodedata
from pathlib import Path

import pytest

from prunectl.config import env_var, load_file, recipe_fields, resolve, to_toml
from prunectl.errors import RecipeError
from prunectl.recipe import Recipe


def test_defaults_resolve_to_the_default_recipe():
    resolved = resolve(env={})
    assert resolved.recipe == Recipe()
    assert resolved.origin("prune.target_sparsity") == "default"


def test_precedence_is_flag_over_env_over_file_over_default(tmp_path):
    (tmp_path / "p.toml").write_text("seed = 3\n[prune]\nrounds = 2\ntarget_sparsity = 0.5\nschedule = 'oneshot'\n")
    env = {"PRUNECTL_PRUNE_TARGET_SPARSITY": "0.6", "PRUNECTL_PRUNE_ROUNDS": "4"}
    resolved = resolve(config=tmp_path / "p.toml", env=env, flags={"prune.target_sparsity": 0.7, "seed": None})
    recipe = resolved.recipe
    assert recipe.prune.target_sparsity == 0.7 and resolved.origin("prune.target_sparsity") == "flag"
    assert recipe.prune.rounds == 4 and resolved.origin("prune.rounds") == "env"
    assert recipe.prune.schedule == "oneshot" and resolved.origin("prune.schedule") == "file"
    assert recipe.seed == 3 and resolved.origin("seed") == "file"
    assert recipe.prune.epochs_per_round == Recipe().prune.epochs_per_round
    assert resolved.origin("prune.epochs_per_round") == "default"


def test_every_field_has_an_environment_variable():
    assert env_var("prune.target_sparsity") == "PRUNECTL_PRUNE_TARGET_SPARSITY"
    assert env_var("seed") == "PRUNECTL_SEED"
    assert env_var("gate.samia_lr") == "PRUNECTL_GATE_SAMIA_LR"
    assert resolve(env={"PRUNECTL_MODEL_WIDTHS": "64,32"}).recipe.model.widths == (64, 32)
    assert resolve(env={"PRUNECTL_PRUNE_KEEP_LAST_DENSE": "true"}).recipe.prune.keep_last_dense is True


def test_pyproject_tool_table_is_a_recipe_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n[tool.prunectl.prune]\nrounds = 7\n")
    assert resolve(config=tmp_path / "pyproject.toml", env={}).recipe.prune.rounds == 7


def test_written_recipe_reads_back_identically(tmp_path):
    recipe = resolve(env={}, flags={"model.widths": (8, 4), "name": 'quo"te', "data.members": 50}).recipe
    (tmp_path / "r.toml").write_text(to_toml(recipe))
    assert resolve(config=tmp_path / "r.toml", env={}).recipe == recipe


def test_a_recipe_copies_pickles_and_converts_to_dicts_with_its_extension_settings():
    """Benchmarks record `dataclasses.asdict(recipe.defense)`; worker processes receive pickled recipes."""
    recipe = resolve(env={}, flags={"defense.name": "kl", "defense.kl_weight": 8.0}).recipe
    assert copy.deepcopy(recipe) == recipe and pickle.loads(pickle.dumps(recipe)) == recipe
    assert dataclasses.asdict(recipe.defense)["options"]["kl_weight"] == 8.0


@pytest.mark.parametrize(
    "text",
    ["two\nlines", "tab\there", 'quote " and back\\slash', "nul \x00, escape \x1b, delete \x7f, bell \x07", "crlf\r\n", "ünïcødé ✓"],
)
def test_strings_with_control_characters_round_trip_through_recipe_toml(tmp_path, text):
    """recipe.toml is the run's identity: a path or factory with a newline must not make it invalid TOML."""
    recipe = resolve(env={}, flags={"data.source": f"npz:{text}.npz", "model.factory": f"nets:{text}"}).recipe
    written = to_toml(recipe)
    assert not any(unicodedata.category(c) == "Cc" for c in written.replace("\n", "")), "only line breaks may be raw"
    (tmp_path / "r.toml").write_text(written)
    assert resolve(config=tmp_path / "r.toml", env={}).recipe == recipe


def test_a_name_with_a_control_character_is_refused_because_it_names_the_run_directory():
    with pytest.raises(RecipeError, match=r"name = 'a\\nb' is invalid; allowed: .*without '/' or control characters"):
        resolve(env={}, flags={"name": "a\nb"})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"prune.target_sparsity": 1.0}, r"prune.target_sparsity = 1.0 is invalid; allowed: a number in \[0, 1\)"),
        ({"prune.target_sparsity": -0.1}, r"prune.target_sparsity = -0.1 is invalid"),
        ({"prune.target_sparsity": float("nan")}, r"prune.target_sparsity = nan is invalid; expected a number"),
        ({"prune.rounds": 0}, r"prune.rounds = 0 is invalid; allowed: an integer >= 1"),
        ({"prune.epochs_per_round": 0}, r"prune.epochs_per_round = 0 is invalid"),
        ({"prune.schedule": "linear"}, r"prune.schedule = 'linear' is invalid; allowed: geometric \| cubic \| oneshot"),
        ({"prune.scope": "row"}, r"prune.scope = 'row' is invalid; allowed: global \| layerwise"),
        ({"prune.lr": 0.0}, r"prune.lr = 0.0 is invalid"),
        ({"train.epochs": 0}, r"train.epochs = 0 is invalid"),
        ({"train.batch_size": 0}, r"train.batch_size = 0 is invalid"),
        ({"train.optimizer": "lion"}, r"train.optimizer = 'lion' is invalid; allowed: adam \| sgd"),
        ({"train.lr": -1.0}, r"train.lr = -1.0 is invalid"),
        ({"train.momentum": 1.0}, r"train.momentum = 1.0 is invalid"),
        ({"train.weight_decay": -1.0}, r"train.weight_decay = -1.0 is invalid"),
        ({"seed": -1}, r"seed = -1 is invalid"),
        ({"device": "tpu"}, r"device = 'tpu' is invalid; allowed: cpu \| cuda \| auto"),
        ({"name": "a/b"}, r"name = 'a/b' is invalid"),
        ({"data.members": 0}, r"data.members = 0 is invalid"),
        ({"data.image_size": 2}, r"data.image_size = 2 is invalid"),
        ({"model.widths": ()}, r"model.widths = \[\] is invalid"),
        ({"defense.name": "magic"}, r"defense.name = 'magic' is invalid; allowed: none \| kl \| wemem"),
        ({"defense.kl_weight": -1.0}, r"defense.kl_weight = -1.0 is invalid; allowed: a number in \[0, 1000\]"),
        ({"defense.wemem_variant": "both"}, r"defense.wemem_variant = 'both' is invalid; allowed: rsw \| rmr \| swmr"),
        ({"defense.rsw_order": "random"}, r"defense.rsw_order = 'random' is invalid; allowed: h2l \| l2h"),
        ({"defense.rsw_width": -3}, r"defense.rsw_width = -3 is invalid"),
        ({"defense.rmr_threshold": 2.0}, r"defense.rmr_threshold = 2.0 is invalid"),
        ({"defense.rmr_weight_decay": float("nan")}, r"defense.rmr_weight_decay = nan is invalid"),
        ({"defense.memscore_models": 7}, r"defense.memscore_models = 7 is invalid; allowed: an even integer >= 4"),
        ({"defense.name": "kl", "defense.memscores": "s.csv"}, r"defense.memscores = 's.csv' is invalid; allowed: unset: only .*wemem"),
        ({"prune.rounds": 2.5}, r"prune.rounds = 2.5 is invalid; expected an integer"),
        ({"prune.rounds": True}, r"prune.rounds = True is invalid; expected an integer"),
        ({"data.source": 5}, r"data.source = 5 is invalid; expected a string"),
        ({"gate.attacks": ("samia", "lirra")}, r"gate.attacks = \['samia', 'lirra'\] is invalid; allowed: one or more distinct names"),
        ({"gate.attacks": ()}, r"gate.attacks = \[\] is invalid"),
        ({"gate.attacks": [1, 2]}, r"gate.attacks = \[1, 2\] is invalid; expected a list of strings"),
        ({"gate.max_advantage": 1.5}, r"gate.max_advantage = 1.5 is invalid; allowed: a number in \[0, 1\]"),
        ({"gate.shadows": 0}, r"gate.shadows = 0 is invalid"),
        ({"gate.eval_size": -1}, r"gate.eval_size = -1 is invalid"),
        ({"gate.bootstrap": 10}, r"gate.bootstrap = 10 is invalid"),
        ({"gate.sensitivity_eps": 0.0}, r"gate.sensitivity_eps = 0.0 is invalid"),
    ],
)
def test_every_invalid_value_names_the_field_and_what_is_allowed(flags, message):
    with pytest.raises(RecipeError, match=message):
        resolve(env={}, flags=flags)


def test_bad_environment_values_name_the_variable():
    with pytest.raises(RecipeError, match="PRUNECTL_PRUNE_ROUNDS = 'many' is invalid; expected an integer"):
        resolve(env={"PRUNECTL_PRUNE_ROUNDS": "many"})


def test_unknown_environment_variables_are_refused():
    with pytest.raises(RecipeError, match="unknown environment variable PRUNECTL_TARGET_SPARSITY"):
        resolve(env={"PRUNECTL_TARGET_SPARSITY": "0.9"})


@pytest.mark.parametrize("variable", ["PRUNECTL_WORKERS", "PRUNECTL_EXECUTOR", "PRUNECTL_RAY_ADDRESS", "PRUNECTL_CACHE_DIR"])
def test_variables_that_configure_prunectl_itself_are_not_mistaken_for_recipe_fields(variable):
    assert resolve(env={variable: "1"}).recipe == resolve(env={}).recipe


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prune]\ntarget = 0.9\n", r"unknown key 'prune.target'; \[prune\] accepts: target_sparsity"),
        ("sparsity = 0.9\n", r"unknown key 'sparsity'; top-level keys are: name, seed, device"),
        ("[prune]\nrounds = 'five'\n", r"prune.rounds = 'five' is invalid; expected an integer"),
        ("prune = 3\n", r"\[prune\] must be a table"),
        ("[prune\n", r"is not valid TOML"),
    ],
)
def test_config_file_problems_are_named(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(RecipeError, match=message):
        resolve(config=tmp_path / "bad.toml", env={})


def test_a_missing_config_file_is_named():
    with pytest.raises(RecipeError, match="does not exist"):
        load_file(Path("/no/such/prunectl.toml"))


def test_the_example_recipe_is_valid_and_documents_every_field():
    example = Path(__file__).resolve().parent.parent / "examples" / "digits.toml"
    recipe = resolve(config=example, env={}).recipe
    assert recipe.name == "digits" and recipe.data.members == 340
    text = example.read_text()
    for dotted in recipe_fields():
        assert dotted.rsplit(".", 1)[-1] in text, f"examples/digits.toml does not mention {dotted}"


def test_gate_attacks_are_a_comma_separated_list_in_the_environment():
    recipe = resolve(env={"PRUNECTL_GATE_ATTACKS": "confidence, loss", "PRUNECTL_GATE_STRICT": "true"}).recipe
    assert recipe.gate.attacks == ("confidence", "loss") and recipe.gate.strict is True


def test_the_config_file_is_found_by_flag_then_environment_then_prunectl_toml_then_pyproject(tmp_path):
    from prunectl.config import discover_config

    assert discover_config(tmp_path, env={}) is None
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert discover_config(tmp_path, env={}) is None, "a pyproject.toml without [tool.prunectl] is not a recipe"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.prunectl.prune]\nrounds = 7\n")
    assert discover_config(tmp_path, env={}) == tmp_path / "pyproject.toml"
    (tmp_path / "prunectl.toml").write_text("seed = 1\n")
    assert discover_config(tmp_path, env={}) == tmp_path / "prunectl.toml"
    assert discover_config(tmp_path, env={"PRUNECTL_CONFIG": "elsewhere.toml"}) == Path("elsewhere.toml")
