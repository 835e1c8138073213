"""Settings declared once: a dataclass field carries its default, the values it accepts and its help.

The recipe's sections, the gate's policy and every extension (each defense, each attack)
declare their settings as frozen dataclasses whose fields are made with :func:`setting`.
Everything else reads them from there: validation (the accepted values, and the message that
names them), `prunectl init`'s commented template, the CLI's help and choices. Adding a
setting is therefore one field, and no list elsewhere can drift from it.

Torch-free and numpy-free, like everything a declaration imports: the CLI reads declarations
to print `--help` and to refuse a bad value, and both must be instant. Owned by `gates`, the
package at the bottom of the stack, so that `gates` and `prunectl` share one vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_METADATA_KEY = "prunectl.setting"

Choices = Callable[[], Sequence[str]]
"""The accepted names, asked for when needed (a registry's names change as extensions register)."""


@dataclass(frozen=True)
class Rule:
    """What a setting accepts: a predicate, and the words that say it in an error message.

    `text` is a string, or a function returning one for rules over a registry's names, which
    grow as extensions register."""

    text: str | Callable[[], str]
    accepts: Callable[[Any], bool]

    @property
    def allowed(self) -> str:
        return self.text if isinstance(self.text, str) else self.text()


@dataclass(frozen=True)
class _Meta:
    help: str
    rule: Rule | None
    choices: Choices | None
    example: Any


def setting(default: Any, *, help: str, rule: Rule | None = None, choices: Choices | Sequence[str] | None = None, example: Any = None) -> Any:
    """A dataclass field declaring one setting.

    `help` is one line for the template and the CLI; `{choices}` in it is replaced by the
    current choices. `rule` (or `choices`) says which values are accepted. `example` is what
    the template shows, commented out, for a setting that is unset (None) by default.
    """
    if isinstance(choices, (tuple, list)):
        fixed = tuple(choices)
        choices = lambda: fixed  # noqa: E731 - a constant list behaves like a registry's names
    if rule is None and choices is not None:
        rule = one_of(choices)
    return dataclasses.field(default=default, metadata={_METADATA_KEY: _Meta(help, rule, choices, example)})


@dataclass(frozen=True)
class Declared:
    """One declared setting as the rest of the code sees it: name, type, default, rule, help."""

    name: str
    annotation: Any
    default: Any
    help: str
    rule: Rule | None
    choices: Choices | None
    example: Any
    owners: tuple[str, ...] = ()
    """The extensions that read it (e.g. `("kl",)`); empty for a core setting."""

    @property
    def optional(self) -> bool:
        """Whether None (unset) is an accepted value."""
        return _is_optional(self.annotation)

    @property
    def note(self) -> str:
        """`help` with the current choices filled in."""
        if self.choices is None or "{choices}" not in self.help:
            return self.help
        return self.help.replace("{choices}", " | ".join(self.choices()))

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` (the `allowed` text), or None when it is accepted."""
        if value is None:
            return None if self.optional else (self.rule.allowed if self.rule else "a value")
        if self.rule is None or self.rule.accepts(value):
            return None
        return self.rule.allowed


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The settings a dataclass declares with :func:`setting`, in field order (read once per class)."""
    hints = typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        meta = item.metadata.get(_METADATA_KEY)
        if meta is None:
            continue
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]
        found.append(Declared(item.name, hints[item.name], default, meta.help, meta.rule, meta.choices, meta.example))
    return tuple(found)


def extension_settings(extensions: Iterable[tuple[str, Any]]) -> dict[str, Declared]:
    """The settings of every `(name, extension)`, by setting name, each with the extensions that read it.

    An extension declares its settings as a dataclass in its `Settings` attribute (or None).
    Extensions that share one settings class share its settings (the threshold attacks); a
    name that two different classes declare is an error, since both would be one recipe key.
    """
    found: dict[str, Declared] = {}
    sources: dict[str, type] = {}
    for name, extension in extensions:
        settings_class = getattr(extension, "Settings", None)
        if settings_class is None:
            continue
        for item in declared(settings_class):
            if item.name not in found:
                found[item.name] = dataclasses.replace(item, owners=(name,))
                sources[item.name] = settings_class
            elif sources[item.name] is settings_class:
                found[item.name] = dataclasses.replace(found[item.name], owners=(*found[item.name].owners, name))
            else:
                raise ValueError(f"setting {item.name!r} is declared by {found[item.name].owners[0]!r} and again by {name!r}")
    return found


def problems(instance: Any, settings: Iterable[Declared], prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """`(dotted name, value, allowed)` for every setting of `instance` whose value is not accepted."""
    for item in settings:
        value = getattr(instance, item.name)
        allowed = item.problem(value)
        if allowed is not None:
            yield f"{prefix}{item.name}", value, allowed


def invalid_message(name: str, value: Any, allowed: str) -> str:
    """The one message format for a refused setting, shared by the recipe and the gate."""
    shown = list(value) if isinstance(value, tuple) else value
    return f"{name} = {shown!r} is invalid; allowed: {allowed}"


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


# -- rules ------------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (True is an int to Python, not a number to a user)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _with(text: str, example: Any, note: str | None) -> str:
    if example is not None:
        text += f", e.g. {example}"
    if note:
        text += f" ({note})"
    return text


BOOLEAN = Rule("true or false", lambda value: isinstance(value, bool))


def at_least(low: int | float, *, integer: bool = True, note: str | None = None, example: Any = None) -> Rule:
    """`an integer >= low` (or `a number >= low`)."""
    kind, check = ("an integer", is_integer) if integer else ("a number", is_number)
    return Rule(_with(f"{kind} >= {low}", example, note), lambda v: check(v) and v >= low)


def above(low: float, *, note: str | None = None, example: Any = None) -> Rule:
    """`a number > low`."""
    return Rule(_with(f"a number > {low}", example, note), lambda v: is_number(v) and v > low)


def within(low: float, high: float, *, high_open: bool = False, integer: bool = False, note: str | None = None, example: Any = None) -> Rule:
    """`a number in [low, high]` (`[low, high)` with `high_open`); integers read `an integer from low to high`."""
    if integer:
        return Rule(_with(f"an integer from {low} to {high}", example, note), lambda v: is_integer(v) and low <= v <= high)
    bracket = ")" if high_open else "]"

    def accepts(value: Any) -> bool:
        return is_number(value) and low <= value and (value < high if high_open else value <= high)

    return Rule(_with(f"a number in [{low}, {high}{bracket}", example, note), accepts)


def one_of(choices: Choices) -> Rule:
    """One of the names `choices()` returns now (a registry's names, or a constant list)."""
    return Rule(lambda: " | ".join(choices()), lambda value: isinstance(value, str) and value in choices())


def distinct_names(choices: Choices) -> Rule:
    """One or more distinct names of `choices()`."""

    def accepts(value: Any) -> bool:
        known = set(choices())
        return bool(value) and all(isinstance(v, str) and v in known for v in value) and len(set(value)) == len(value)

    return Rule(lambda: "one or more distinct names of " + " | ".join(choices()), accepts)


class Options(Mapping[str, Any]):
    """The values of the extensions' settings in one recipe section (frozen, hashable).

    A section such as `[defense]` holds its own fields plus every registered extension's
    settings; those live here, keyed by the setting's name (`kl_weight`, `samia_lr`).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", dict(values or {}))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._values) == dict(other)

    def __repr__(self) -> str:
        return f"Options({self._values!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        # copy, deepcopy (dataclasses.asdict) and pickle rebuild through __init__, never setattr.
        return (Options, (dict(self._values),))


def build(cls: type, options: Mapping[str, Any]) -> Any:
    """An instance of an extension's settings dataclass from a section's options (defaults fill gaps)."""
    names = {item.name for item in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in options.items() if name in names})


OptionDeclarations = Callable[[], Mapping[str, Declared]]
"""Every registered extension's settings of one section, by name."""


def with_options(declarations: OptionDeclarations) -> Callable[[type], type]:
    """Give a frozen dataclass with an `options: Options` field an `__init__` that takes any
    extension setting as a keyword, and attribute access to them.

    `DefenseSpec(name="kl", kl_weight=8)` then works like a field, `spec.kl_weight` reads it,
    `dataclasses.replace(spec, kl_weight=4)` changes it, and an unknown keyword is a TypeError
    naming the known ones. Unset extension settings take their declared defaults.
    """

    def decorate(cls: type) -> type:
        fields = [item for item in dataclasses.fields(cls) if item.init]

        def __init__(self: Any, **values: Any) -> None:
            known = declarations()
            given = values.pop("options", None)
            merged = {name: item.default for name, item in known.items()}
            merged.update(given or {})
            for item in fields:
                if item.name == "options":
                    continue
                if item.name in values:
                    value = values.pop(item.name)
                elif item.default is not dataclasses.MISSING:
                    value = item.default
                else:
                    value = item.default_factory()  # type: ignore[misc]
                object.__setattr__(self, item.name, value)
            unknown = sorted(set(values) - set(known))
            if unknown:
                accepted = ", ".join([f.name for f in fields if f.name != "options"] + list(known))
                raise TypeError(f"{cls.__name__} has no setting {unknown[0]!r}; it accepts: {accepted}")
            merged.update(values)
            object.__setattr__(self, "options", Options(merged))

        def __getattr__(self: Any, name: str) -> Any:
            options = self.__dict__.get("options")
            if options is not None and name in options:
                return options[name]
            raise AttributeError(f"{cls.__name__} has no setting {name!r}")

        cls.__init__ = __init__  # type: ignore[misc]
        cls.__getattr__ = __getattr__  # type: ignore[attr-defined]
        return cls

    return decorate
