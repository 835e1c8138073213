"""Config resolution in one place: CLI flag > `PRUNECTL_*` environment > file > default.

Every recipe field has a dotted name (`prune.target_sparsity`, `seed`) that is also its key in
the TOML file (`[prune] target_sparsity = 0.9`) and, upper-cased with dots as underscores,
its environment variable (`PRUNECTL_PRUNE_TARGET_SPARSITY`). :func:`resolve` returns the
validated recipe together with where each value came from, so a summary can show it.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunectl.errors import RecipeError
from prunectl.faults import FAULT_ENV
from prunectl.recipe import SECTIONS, TOP_LEVEL, Recipe, RecipeField, fields, validate

ENV_PREFIX = "PRUNECTL_"
ORIGINS = ("default", "file", "env", "flag")


def env_var(dotted: str) -> str:
    """The environment variable of a recipe field: `prune.target_sparsity` → `PRUNECTL_PRUNE_TARGET_SPARSITY`."""
    return ENV_PREFIX + dotted.upper().replace(".", "_")


def recipe_fields() -> dict[str, RecipeField]:
    """Every recipe field by dotted name, extensions' settings included (asked anew: they can register late)."""
    return {item.dotted: item for item in fields()}


@dataclass(frozen=True)
class ResolvedRecipe:
    """The validated recipe and, for every dotted field, where its value came from."""

    recipe: Recipe
    origins: dict[str, str]
    config_file: str | None = None

    def origin(self, dotted: str) -> str:
        return self.origins.get(dotted, "default")


CONFIG_ENV = "PRUNECTL_CONFIG"

# Where the gate's units run (read by `prunectl.executors`): never part of a recipe, since where
# work runs never changes a figure.
WORKERS_ENV = "PRUNECTL_WORKERS"
EXECUTOR_ENV = "PRUNECTL_EXECUTOR"
RAY_ADDRESS_ENV = "PRUNECTL_RAY_ADDRESS"

CONFIG_NAME = "prunectl.toml"


def discover_config(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The recipe file a command uses when `--config` is not given: `$PRUNECTL_CONFIG`, else
    `./prunectl.toml`, else `./pyproject.toml` if it has a `[tool.prunectl]` table, else none."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    cwd = cwd or Path.cwd()
    if (cwd / CONFIG_NAME).is_file():
        return cwd / CONFIG_NAME
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            if "prunectl" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}):
                return pyproject
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
    return None


def _type_name(annotation: Any) -> str:
    base, optional = unwrap_optional(annotation)
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(base)
    if name is None:
        name = "a list of strings" if typing.get_args(base)[:1] == (str,) else "a list of integers"
    return name + (" (or unset)" if optional else "")


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """`int | None` → `(int, True)`; `int` → `(int, False)`."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        return non_none[0], True
    return annotation, False


def coerce(info: RecipeField, value: Any, *, from_text: bool = False) -> Any:
    """Convert a file, environment or flag value to the field's type, or say what is expected."""
    annotation = info.declaration.annotation
    base, optional = unwrap_optional(annotation)
    where = env_var(info.dotted) if from_text else info.dotted
    if from_text and isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("", "none", "null"):
            return None
        value = text
    try:
        if value is None:
            if optional:
                return None
            raise ValueError
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if math.isnan(number):
                raise ValueError
            return number
        if base is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        # tuple[int, ...] or tuple[str, ...]
        item_type = typing.get_args(base)[0]
        items = [i.strip() for i in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or any(isinstance(i, bool) for i in items):
            raise ValueError
        if item_type is str:
            if not all(isinstance(i, str) and i for i in items):
                raise ValueError
            return tuple(items)
        return tuple(int(i) for i in items)
    except (TypeError, ValueError):
        raise RecipeError(f"{where} = {value!r} is invalid; expected {_type_name(annotation)}") from None


def load_file(path: Path) -> dict[str, Any]:
    """Read a recipe file: `prunectl.toml`, or `[tool.prunectl]` of a pyproject.toml."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"config file {path} does not exist; pass an existing --config file") from None
    except IsADirectoryError:
        raise RecipeError(f"config file {path} is a directory; pass a TOML file such as prunectl.toml") from None
    except UnicodeDecodeError as error:
        raise RecipeError(f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise RecipeError(f"cannot read config file {path} ({error.strerror or error}); check the path and its permissions") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"config file {path} is not valid TOML: {error}; fix the syntax there") from None
    if path.name == "pyproject.toml":
        raw = raw.get("tool", {}).get("prunectl")
        if raw is None:
            raise RecipeError(f"{path} has no [tool.prunectl] table; add one or pass a prunectl.toml")
    return flatten_file(raw, str(path))


def flatten_file(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Nested TOML tables → dotted keys; unknown keys are errors that list the known ones."""
    known_fields = recipe_fields()
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise RecipeError(f"{where}: [{key}] must be a table")
            for sub_key, sub_value in value.items():
                dotted = f"{key}.{sub_key}"
                if dotted not in known_fields:
                    known = ", ".join(f.name for f in known_fields.values() if f.section == key)
                    raise RecipeError(f"{where}: unknown key {dotted!r}; [{key}] accepts: {known}")
                flat[dotted] = sub_value
        elif key in TOP_LEVEL:
            flat[key] = value
        else:
            known = ", ".join(list(TOP_LEVEL) + [f"[{s}]" for s in SECTIONS])
            raise RecipeError(f"{where}: unknown key {key!r}; top-level keys are: {known}")
    return flat


def _build(values: Mapping[str, Any]) -> Recipe:
    top = {k: v for k, v in values.items() if "." not in k}
    by_section: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        if name:
            by_section[section][name] = value
    return Recipe(**top, **{section: cls(**by_section[section]) for section, cls in SECTIONS.items()})


def resolve(
    *,
    config: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    base: Recipe | None = None,
) -> ResolvedRecipe:
    """Merge defaults (or `base`) < file < environment < flags, coerce, validate.

    `flags` maps dotted field names to values; `None` means "flag not given".
    """
    env = os.environ if env is None else env
    known = recipe_fields()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if base is not None:
        for dotted, info in known.items():
            values[dotted] = info.get(base)
    if config is not None:
        for dotted, value in load_file(config).items():
            values[dotted] = coerce(known[dotted], value)
            origins[dotted] = "file"
    variables = {env_var(dotted): info for dotted, info in known.items()}
    for variable, info in variables.items():
        if variable in env:
            values[info.dotted] = coerce(info, env[variable], from_text=True)
            origins[info.dotted] = "env"
    unknown_env = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in variables and k not in NON_RECIPE_ENV)
    if unknown_env:
        raise RecipeError(f"unknown environment variable {unknown_env[0]}; recipe variables look like PRUNECTL_PRUNE_TARGET_SPARSITY")
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        values[dotted] = coerce(known[dotted], value)
        origins[dotted] = "flag"
    recipe = validate(_build(values))
    return ResolvedRecipe(recipe, origins, str(config) if config is not None else None)


# Environment variables that configure prunectl itself rather than a recipe field.
NON_RECIPE_ENV = frozenset({"PRUNECTL_CACHE_DIR", FAULT_ENV, CONFIG_ENV, WORKERS_ENV, EXECUTOR_ENV, RAY_ADDRESS_ENV})


def recipe_sha256(recipe: Recipe) -> str:
    """The recipe's identity: SHA-256 of its canonical TOML (the `recipe.toml` a run stores)."""
    return hashlib.sha256(to_toml(recipe).encode()).hexdigest()


def to_toml(recipe: Recipe) -> str:
    """Write a recipe as TOML that :func:`load_file` reads back to the same recipe."""
    lines: list[str] = []
    section: str | None = None
    for item in fields():
        if item.section != section:
            section = item.section
            lines += ["", f"[{section}]"]
        value = item.get(recipe)
        if value is not None:
            lines.append(f"{item.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


# TOML basic strings (toml.io, "String"): backslash, quote and every control character but tab
# must be escaped; tab is escaped too so a written recipe.toml never holds an invisible character.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_char(char: str) -> str:
    if char in _TOML_ESCAPES:
        return _TOML_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04X}"
    return char
