"""Typed, range-checked settings for the configuration dataclasses: one validation path for flags, for
configs built in Python and for configs read back from a checkpoint."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field

import numpy as np

from airscene.errors import AirsceneError


LARGEST_WHOLE = 2**53  # a whole-number setting with no bound of its own stays below this (a float holds it exactly)


def setting(default, help: str = "", *, minimum=None, maximum=None, above=None, below=None, choices=None,
            length=None, added: str | None = None, earlier=None):
    """A dataclass field with its constraints: minimum <= v <= maximum, above < v < below, v in choices;
    tuples have `length` elements (a number, or a tuple of the numbers allowed), each under the same bounds.
    `added`: the version that introduced it, so that earlier versions' checkpoints (which lack it) still load;
    they get `earlier`, what those versions did, where the default does something else."""
    limits = dict(minimum=minimum, maximum=maximum, above=above, below=below, choices=choices, length=length)
    history = {**({"added": added} if added else {}), **({"earlier": earlier} if earlier is not None else {})}
    return field(default=default, metadata={"help": help, **history,
                                            **{k: v for k, v in limits.items() if v is not None}})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def shown(value, width: int = 60) -> str:
    """A value as an error message quotes it: its repr cut to `width` characters (an integer too long for a
    repr, as pickles and Python may hold, by its length)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a container holding such an integer, or nested too deep
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= width else text[:width - 3] + "..."


def _requirement(kind: type, limits: dict) -> str:
    """What a valid value is, in words."""
    if "choices" in limits:
        return "one of " + ", ".join(str(choice) for choice in limits["choices"])
    words = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text"}[kind]
    bounds = [f">= {limits['minimum']}" if "minimum" in limits else "", f"> {limits['above']}" if "above" in limits else "",
              f"<= {limits['maximum']}" if "maximum" in limits else "", f"< {limits['below']}" if "below" in limits else ""]
    return " ".join([words, " and ".join(bound for bound in bounds if bound)]).strip()


def _within(value, limits: dict) -> bool:
    if "choices" in limits:
        return value in limits["choices"]
    return (value >= limits.get("minimum", value) and value <= limits.get("maximum", value)
            and ("above" not in limits or value > limits["above"]) and ("below" not in limits or value < limits["below"]))


def _check_scalar(value, kind: type, limits: dict):
    """The value as `kind` if it has that type (an int may stand for a float, a whole float for an int) and
    satisfies the limits, else None."""
    if kind is bool or kind is str:
        return value if isinstance(value, kind) and _within(value, limits) else None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            return None
        value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            return None
        if not math.isfinite(value):
            return None
    return value if _within(value, limits) else None


def check_value(name: str, value, hint, limits: dict):
    """The value converted to the field's type, or an AirsceneError naming the setting, its flag and what
    it must be."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if int in (hint, *typing.get_args(hint)):
        limits = {"maximum": LARGEST_WHOLE, **limits}
    if typing.get_origin(hint) is tuple:
        kind = typing.get_args(hint)[0]
        lengths = limits.get("length")
        lengths = (lengths,) if isinstance(lengths, int) else lengths
        checked = ([_check_scalar(v, kind, limits) for v in value]
                   if isinstance(value, (list, tuple)) and (lengths is None or len(value) in lengths) else None)
        if checked is None or any(v is None for v in checked):
            count = " or ".join(str(length) for length in lengths) + " " if lengths else ""
            raise AirsceneError(f"setting {name} = {shown(value)} is invalid ({flag(name)}): give {count}comma-separated "
                                f"values, each {_requirement(kind, limits)}")
        return tuple(checked)
    checked = _check_scalar(value, hint, limits)
    if checked is None:
        extra = " or none" if optional else ""
        raise AirsceneError(f"setting {name} = {shown(value)} is invalid ({flag(name)}): use {_requirement(hint, limits)}{extra}")
    return checked


def validate_fields(settings) -> None:
    """Check (and normalise in place: 3 -> 3.0, lists -> tuples) every field of a settings dataclass,
    recursing into nested ones."""
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(hints[item.name]):
            if not isinstance(value, hints[item.name]):
                raise AirsceneError(f"setting {item.name} must be a {hints[item.name].__name__}")
            validate_fields(value)
            continue
        setattr(settings, item.name, check_value(item.name, value, hints[item.name], dict(item.metadata)))


def from_dict(cls, values, what: str = "configuration", partial: bool = False):
    """A settings dataclass from a dict such as config.json's, validated; unknown keys, wrong types and
    (unless `partial`, where the defaults fill in) missing keys are one-line errors."""
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise AirsceneError(f"{what} is a {type(values).__name__}, not a mapping of settings by name: retrain, or "
                            "use the airscene version that wrote it")
    hints = typing.get_type_hints(cls)
    names = [item.name for item in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    missing = [item.name for item in dataclasses.fields(cls) if item.name not in values and "added" not in item.metadata]
    if unknown or (missing and not partial):
        problem = (f"has settings this airscene does not know ({', '.join(unknown)})" if unknown
                   else f"lacks the settings {', '.join(missing)}")
        raise AirsceneError(f"{what} {problem}: retrain, or use the airscene version that wrote it")
    # A saved config from before a setting existed ran as `earlier` says; a partial one a user wrote takes the default.
    arguments = {item.name: item.metadata["earlier"] for item in dataclasses.fields(cls)
                 if not partial and item.name not in values and "earlier" in item.metadata}
    for name, value in values.items():
        nested = hints[name]
        arguments[name] = (from_dict(nested, value, f"{what}'s {name}", partial) if dataclasses.is_dataclass(nested)
                           else value)
    settings = cls(**arguments)
    validate_fields(settings)
    return settings


def holds_every_setting(cls, values) -> bool:
    """Whether a dict names every setting of cls, nested ones too (but those added since): a config that
    airscene saved, such as a run's config.json, rather than one a user wrote."""
    hints = typing.get_type_hints(cls)
    return isinstance(values, dict) and all(
        (item.name in values or "added" in item.metadata)
        and (not dataclasses.is_dataclass(hints[item.name]) or item.name not in values
             or holds_every_setting(hints[item.name], values[item.name]))
        for item in dataclasses.fields(cls))


def differences(old, new, prefix: str = "") -> list[str]:
    """'name: old -> new' for every field (nested ones by dotted name) where two settings objects differ."""
    changed = []
    for item in dataclasses.fields(old):
        a, b = getattr(old, item.name), getattr(new, item.name)
        if dataclasses.is_dataclass(a):
            changed += differences(a, b, f"{prefix}{item.name}.")
        elif a != b:
            changed.append(f"{prefix}{item.name}: {a!r} -> {b!r}")
    return changed


class Settings:
    """Base of a top-level config (AIR's, inverse graphics'): to_dict, a validated from_dict, and validate,
    which checks every field and then the config's own `consistency` rules."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, partial: bool = False):
        """A checkpoint's config must be whole; a config file a user wrote (`partial`) may leave defaults out.
        A whole config was saved by airscene, whose defaults may have changed since: the settings it does not
        read are set to today's defaults (they were never read; a partial one is still refused for them)."""
        config = from_dict(cls, values, partial=partial)
        if not partial:
            defaults = type(config)()
            for path, takes_part, _when in config.used():
                if not takes_part:
                    _set(config, path, _get(defaults, path))
        return config.validate()

    def consistency(self) -> list[tuple[bool, str]]:
        """(holds, what to do otherwise) for each rule that relates several fields."""
        return []

    def used(self) -> list[tuple[str, bool, str]]:
        """(dotted setting, whether it takes part, when it does) for settings that only some configurations
        read: one given for nothing is refused rather than silently ignored."""
        return []

    def reads(self, path: str) -> bool:
        """Whether this configuration reads the dotted setting (`used` lists none that it does not)."""
        return all(takes_part for used, takes_part, _when in self.used() if used == path)

    def validate(self):
        validate_fields(self)
        for holds, message in self.consistency():
            if not holds:
                raise AirsceneError(f"setting rejected: {message}")
        defaults = type(self)()
        for path, takes_part, when in self.used():
            value, default = _get(self, path), _get(defaults, path)
            if not takes_part and value != default:
                name = path.split(".")[-1]
                raise AirsceneError(f"setting {name} = {value!r} is only read {when}: drop {flag(name)}")
        return self


def _get(settings, path: str):
    for part in path.split("."):
        settings = getattr(settings, part)
    return settings


def _set(settings, path: str, value) -> None:
    *parents, name = path.split(".")
    setattr(_get(settings, ".".join(parents)) if parents else settings, name, value)
