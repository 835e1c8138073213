"""`prunectl init`: the commented recipe file, generated from the Recipe defaults so it cannot drift."""

from __future__ import annotations

import dataclasses
import tomllib
import typing

import pytest
from typer.testing import CliRunner

from prunectl import config
from prunectl.cli import app
from prunectl.recipe import SECTIONS, DataSpec, DefenseSpec, GateSpec, ModelSpec, PruneSpec, Recipe
from prunectl.template import render_template, section_note

runner = CliRunner()


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert fragment in lines[0]


def _optional_fields() -> set[str]:
    return {dotted for dotted, info in config.recipe_fields().items() if type(None) in typing.get_args(info.declaration.annotation)}


def _notes() -> dict[str, str]:
    return {dotted: info.declaration.note for dotted, info in config.recipe_fields().items()}


def _non_default_recipe() -> Recipe:
    return Recipe(
        name="edge-run",
        seed=7,
        device="auto",
        data=DataSpec(source="csv:data/train.csv", label_column="y", members=120, dev=30, holdout=120, shadow_pool=270),
        model=ModelSpec(source="builtin:mlp", widths=(64, 32, 16), checkpoint="base.pt"),
        prune=PruneSpec(target_sparsity=0.75, rounds=3, schedule="cubic", scope="layerwise", keep_last_dense=True, lr=5e-5),
        defense=DefenseSpec(name="wemem", wemem_variant="rsw", rsw_order="l2h", memscores="scores.csv"),
        gate=GateSpec(attacks=("samia", "loss"), max_advantage=0.05, strict=True, audit_original=False),
    )


def test_every_recipe_field_and_section_has_a_one_line_note():
    assert all(note.strip() and "\n" not in note for note in _notes().values())
    assert all(section_note(section).strip() for section in SECTIONS)


def test_every_field_that_can_be_unset_has_an_example_for_its_commented_out_line():
    examples = {dotted for dotted, info in config.recipe_fields().items() if info.declaration.example is not None}
    assert examples >= _optional_fields()


def test_the_written_file_loads_to_exactly_the_defaults_with_every_set_field_from_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "prunectl.toml"
    resolved = config.resolve(config=path, env={})
    assert resolved.recipe == Recipe()
    for dotted, info in config.recipe_fields().items():
        expected = "default" if info.get(Recipe()) is None else "file"
        assert resolved.origin(dotted) == expected, dotted


def test_the_file_explains_precedence_how_to_run_it_and_every_field():
    text = render_template()
    assert "command-line flag > PRUNECTL_* environment variable (e.g. PRUNECTL_PRUNE_TARGET_SPARSITY) > this file > default" in text
    assert "prunectl compress --config prunectl.toml" in text
    for note in _notes().values():
        assert note in text
    assert '# members = 400' in text and '# name = "my-model"' in text


def test_a_non_default_recipe_round_trips_through_its_template(tmp_path):
    recipe = _non_default_recipe()
    path = tmp_path / "custom.toml"
    path.write_text(render_template(recipe), encoding="utf-8")
    assert config.resolve(config=path, env={}).recipe == recipe


def test_the_pyproject_rendering_pasted_into_a_pyproject_toml_round_trips(tmp_path):
    recipe = _non_default_recipe()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "mine"\nversion = "0.1"\n\n' + render_template(recipe, pyproject=True), encoding="utf-8")
    assert tomllib.loads(pyproject.read_text())["project"]["name"] == "mine"
    assert config.resolve(config=pyproject, env={}).recipe == recipe


def test_the_pyproject_rendering_of_the_defaults_loads_to_the_defaults(tmp_path):
    result = runner.invoke(app, ["init", "-", "--pyproject"])
    assert result.exit_code == 0, result.output
    assert "[tool.prunectl.gate]" in result.stdout
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(result.stdout, encoding="utf-8")
    assert config.resolve(config=pyproject, env={}).recipe == Recipe()


def test_an_existing_file_is_refused_and_left_byte_identical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "prunectl.toml"
    original = b"seed = 3\n# mine, do not touch\n"
    path.write_bytes(original)
    result = runner.invoke(app, ["init"])
    _assert_one_line_error(result, "--overwrite")
    assert "prunectl.toml" in result.output
    assert path.read_bytes() == original


def test_overwrite_replaces_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "prunectl.toml"
    path.write_text("seed = 3\n", encoding="utf-8")
    result = runner.invoke(app, ["init", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert path.read_text(encoding="utf-8") == render_template()


def test_success_prints_one_line_on_stderr_naming_the_file_and_the_next_command(tmp_path):
    path = tmp_path / "recipes" / "edge.toml"
    path.parent.mkdir()
    result = runner.invoke(app, ["init", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"prunectl compress --config {path}" in lines[0]
    assert f"prunectl compress --config {path}" in path.read_text(encoding="utf-8")


def test_dash_prints_the_template_on_stdout_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_template()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_parent_directory_exits_2_with_one_line_and_creates_nothing(tmp_path):
    path = tmp_path / "no" / "such" / "prunectl.toml"
    result = runner.invoke(app, ["init", str(path)])
    _assert_one_line_error(result, "does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["pyproject.toml"], "prunectl init - --pyproject"),
        (["prunectl.toml", "--pyproject"], "prunectl init - --pyproject"),
        (["."], "is a directory"),
    ],
    ids=["pyproject-toml-is-never-edited", "pyproject-rendering-only-on-stdout", "a-directory-is-not-a-file"],
)
def test_targets_that_init_must_not_write_are_refused_with_the_fix(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    result = runner.invoke(app, ["init", *args])
    _assert_one_line_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]
    assert (tmp_path / "pyproject.toml").read_text(encoding="utf-8") == "[project]\n"


def test_the_template_takes_its_values_from_the_recipe_not_from_copies_of_the_defaults():
    changed = dataclasses.replace(Recipe(), prune=dataclasses.replace(Recipe().prune, rounds=11))
    assert "rounds = 11 " in render_template(changed)
    assert "rounds = 11 " not in render_template()
