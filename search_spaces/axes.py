"""Overrides that reshape a stage's grid (search_spaces.study.Study.with_overrides): a
list of values restricts an axis, or on a key that is no axis adds one; `STAGE.key=value`
changes one stage alone.

    with_axis(stage, "lr", "0.01,0.001")   # every group of `stage` at both rates: cnn_3_lr0.01, ...
    is_value_list("augment", "flip,crop")   # False: one value, a list of augmentations
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from workloads.config import FIELD_TYPES, FIELDS, LIST_FIELDS, SEED, ConfigError, coerce

if TYPE_CHECKING:
    from search_spaces.study import Stage

AXIS_ALIASES = {"archs": "arch"}
# A seed axis would overlap the repeats (a repeat's seed is the group's seed + the repeat).
SEEDS_ARE_REPEATS = "seeds are repeats: use repeats=N (seed=S sets the first)"


def stage_override(stage: Stage, key: str, raw) -> Stage:
    """`STAGE.key=value`: restricts that stage's axis `key`, sets `key` in its fixed settings, or
    (`STAGE.repeats=N`) that stage's repeats."""
    if key == "repeats":
        n = coerce(f"{stage.name}.repeats", raw, int)
        if n < 1:
            raise ConfigError(f"{stage.name}.repeats must be >= 1, got {n}")
        return replace(stage, repeats=n)
    if key in dict(stage.axes):
        return restrict(stage, key, raw)
    if is_value_list(key, raw):
        return with_axis(stage, key, raw)
    if key not in FIELDS:
        raise ConfigError(f"unknown key {key!r} in {stage.name}.{key}; a stage takes config keys")
    value = coerce(key, raw, FIELD_TYPES[key])  # parsed here, once
    return replace(stage, fixed=tuple((k, v) for k, v in stage.fixed if k != key) + ((key, value),))


def restrict(stage: Stage, key: str, raw) -> Stage:
    """`key=a,b` on an axis of `stage`: that axis takes these values alone (a stage without it
    stays as it is)."""
    if key not in dict(stage.axes):
        return stage
    chosen = axis_values(key, raw)
    return replace(stage, axes=tuple((k, chosen if k == key else v) for k, v in stage.axes))


def axis_values(key: str, raw) -> tuple:
    """An axis's values parsed, each once (`lr=0.1,0.10` is one value: one group, not two of one name)."""
    if key == SEED:
        raise ConfigError(f"{key}={raw}: {SEEDS_ARE_REPEATS}")
    return tuple(dict.fromkeys(coerce(key, v, FIELD_TYPES[key]) for v in split_values(raw)))


def is_value_list(key: str, raw) -> bool:
    """`key=a,b`: values of an axis, for a key whose one value is not itself a list."""
    return (key in FIELDS and key not in LIST_FIELDS and FIELD_TYPES[key] is not tuple
            and isinstance(raw, str) and "," in raw)


@dataclass(frozen=True)
class AxisNames:
    """Group names of a stage the command line gave more axes (`keys`): the name the stage
    gives the rest of the point, then each added value (`cnn_3_lr0.001`, `cnn_3_adam`)."""
    inner: Callable | None
    keys: tuple

    def __call__(self, point: dict) -> str:
        rest = {k: v for k, v in point.items() if k not in self.keys}
        name = (self.inner(rest) if self.inner else "_".join(label(v) for v in rest.values())) if rest else ""
        added = [label(point[k]) if isinstance(point[k], str) else f"{k}{label(point[k])}"
                 for k in self.keys if k in point]
        return "_".join(filter(None, [name, *added]))


def with_axis(stage: Stage, key: str, raw: str) -> Stage:
    """`key=a,b` on a key that is no axis of `stage`: a new axis, innermost (the seeds stay inside it)."""
    if stage.search is not None:
        raise ConfigError(f"{key}={raw}: stage {stage.name} is a search, which has no grid to add {key} to; "
                          f"give {key} one value")
    values = axis_values(key, raw)
    names = stage.group_name
    names = (replace(names, keys=names.keys + (key,)) if isinstance(names, AxisNames)
             else AxisNames(names, (key,)))
    return replace(stage, axes=stage.axes + ((key, values),), group_name=names,
                   fixed=tuple((k, v) for k, v in stage.fixed if k != key))


def split_values(raw) -> list:
    return raw.split(",") if isinstance(raw, str) else list(raw)


def label(value) -> str:
    """A value as part of a group's name, which names folders and files: one's own model
    `pkg.mod:factory` as `mod.factory`."""
    text = str(value)
    if ":" in text and "=" not in text:  # arch=package.module:factory, not a component's parameters
        module, _, factory = text.partition(":")
        text = f"{module.rsplit('.', 1)[-1]}.{factory}"
    return text.replace("/", "-")
