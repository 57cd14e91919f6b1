"""Study files: a study written as YAML (or as a Python file, for what needs code), read
into the same Study, Stage, Variant, Figure and Report as a study in the package.

    python -m orchestrator plan docs/examples/my_study.yaml
    python -m orchestrator sweep docs/examples/my_study.yaml --quick
    load_study("my_study.yaml", Path("my_study.yaml").read_text())   # -> Study

A YAML file (every key but `name` and `stages` optional; docs/examples/my_study.yaml):

    name: mynets
    description: three nets x three learning rates x three seeds
    recipe: tutorial            # a named base (search_spaces/recipes.py), or a list of them
    base: {optimizer: adam, epochs: 10}    # what differs from the defaults (and the recipe)
    repeats: 3
    quick: {repeats: 2, epochs: 1, train_subset: 2000}     # --quick's overrides (default: QUICK)
    stages:
      - name: train
        axes: {arch: [mlp_1, cnn_3], lr: [0.01, 0.001]}    # a grid, first key outermost
        fixed: {batch_size: 32}                            # this stage's own settings
        group_name: "{arch}_lr{lr}"                        # default: the values joined by _
        prefix: epochs                                     # shorter runs served by the longest
        repeats: 10                                        # this stage's own (default: the study's)
      - name: questions
        variants:                                          # named changes of the base instead
          - {name: base, note: the recipe itself}
          - {name: small_batch, changes: {batch_size: 4}}
    reference: mlp_1_lr0.01      # the group the report compares the others with (or key=value)
    select: val_acc              # what picks a group's best run (test_acc needs select_why)
    figures:                     # groups: [] draws every group
      - {name: curves, title: all groups, metrics: [train_loss, val_acc]}
    report: results.reports:variants_report    # default; or {function: ..., stages: [...], args: {...}}

`name` names the runs' folder (runs/NAME/): letters, digits, _ - ., not a built-in study's
name. A file without `quick` (a .py file: an empty Study.quick) gets QUICK, so that --quick is
minutes: 1 epoch on subsets, 2 repeats (at most the study's; a stage's own repeats stay), never
more than the study itself (its own smaller subsets stay; snapshots go with the length).
The reference, the figures' metrics and groups and the report's module are checked at load;
the report function itself when a sweep starts (it imports plotting code).
List-valued settings (`metrics`, `augment`, `spec`) may be YAML lists. A Python file
defines `STUDY` with the classes of search_spaces.study. Errors are one line naming
the file and the key. A sweep keeps the file's text (sweep.json, provenance.json):
--resume and `report` read the study from that text, so editing or moving the file
afterwards changes nothing of a run already started.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
import sys
import types
from dataclasses import replace
from pathlib import Path

import yaml

from search_spaces import BUILT_IN
from search_spaces.recipes import RECIPES
from search_spaces.study import Figure, Report, Stage, Study, Variant
from workloads import metrics as M
from workloads.config import FIELD_TYPES, FIELDS, LIST_FIELDS, ConfigError, coerce
from workloads.imported import importable_here

DEFAULT_REPORT = "results.reports:variants_report"

STUDY_KEYS = ("name", "description", "recipe", "base", "repeats", "quick", "stages", "reference", "select",
              "select_why", "figures", "report")
STAGE_KEYS = ("name", "axes", "fixed", "variants", "prefix", "repeats", "group_name")
VARIANT_KEYS = ("name", "changes", "note")
FIGURE_KEYS = ("name", "title", "groups", "metrics", "log", "overlay")
REPORT_KEYS = ("function", "stages", "args")
# --quick of a study file without `quick:`: one epoch on subsets, two repeats (at most the study's).
QUICK = (("repeats", 2), ("epochs", 1), ("train_subset", 2000), ("val_subset", 500), ("test_subset", 500),
         ("train_eval_size", 500))
MODULE_PREFIX = "study_file_"   # a Python study file's module: study_file_<its text's sha256>
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")   # a study file's name: one folder, runs/NAME/
STUDY_SCALARS = ("description", "repeats", "reference", "select", "select_why")   # int repeats, else str


@functools.lru_cache(maxsize=16)  # a request reads its study more than once (its name, then the plan)
def load_study(path: str, text: str, built_in: bool = False) -> Study:
    """The study a file's `text` defines; `path` names it in errors and in the record.
    `built_in`: one of search_spaces/studies/, whose name is its own."""
    try:
        study = _python_study(path, text) if str(path).endswith(".py") else _yaml_study(path, text)
        if not built_in:
            _check_name(study.name)
            if not study.quick:
                study = replace(study, quick=default_quick(study))
        _check_names(study.with_overrides({}))  # every planned trial built and checked: a bad value names the file
    except ConfigError as e:
        message = str(e)
        raise ConfigError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None
    return study.with_source(str(path), text)


def _check_name(name: str) -> None:
    """A file's study names its runs' folder (runs/NAME/): a plain name, and not a built-in's."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"name: {name!r}: a study's name names its folder runs/NAME/: letters, digits, "
                          f"_ - and . only, not starting with '.'")
    if name in BUILT_IN:
        raise ConfigError(f"name: {name!r} is a built-in study's (its runs are under runs/{name}/); "
                          f"choose another name")


def _check_names(study: Study) -> None:
    """What the report reads, checked now rather than after the training: the report function's
    module exists (imported when the sweep starts: plotting code), the figures' metrics are
    curves, and the reference and the figures' groups are groups of the plan (when every
    stage's groups are known before anything runs)."""
    module = study.report.function.partition(":")[0] if study.report else ""
    importable_here()
    try:
        found = importlib.util.find_spec(module) if module else True
    except Exception:  # a parent package that fails to import: the same one line
        found = None
    if not found:
        raise ConfigError(f"report.function: {study.report.function!r}: no module {module} "
                          f"(give 'package.module:function', importable from here)")
    for i, figure in enumerate(study.figures):
        for key in ("metrics", "log", "overlay"):
            unknown = [m for m in getattr(figure, key) if m not in M.CURVES]
            if unknown:
                raise ConfigError(f"figures[{i}].{key}: {unknown[0]!r} is no curve; choose from {', '.join(M.CURVES)}")
    if not all(p.known for p in study.plan.stages):
        return
    trials = [t for p in study.plan.stages for t in p.trials]
    groups = {t.group for t in trials}
    for i, figure in enumerate(study.figures):
        missing = [g for g in figure.groups if g not in groups]
        if missing:
            raise ConfigError(f"figures[{i}].groups: {missing[0]!r} is no group of the study's; "
                              f"its groups: {', '.join(sorted(groups))}")
    key, sep, value = study.reference.partition("=")
    if sep:
        if key not in FIELDS:
            raise ConfigError(f"reference: {study.reference!r}: unknown config key {key!r}")
        typed = coerce(f"reference {key}", value, FIELD_TYPES[key])
        if not any(t.config.to_flat()[key] == typed for t in trials):
            raise ConfigError(f"reference: {study.reference!r}: no group of the study has {key}={value}")
    elif study.reference and study.reference not in groups:
        raise ConfigError(f"reference: {study.reference!r} is no group of the study's; "
                          f"its groups: {', '.join(sorted(groups))}")


def default_quick(study: Study) -> tuple:
    """--quick of a file that says nothing of it: minutes, like the built-ins' (QUICK); never
    more than the study itself (a subset the base already cuts smaller stays), and snapshots
    of a longer run dropped with its length."""
    base = study.base_config().to_flat()
    out = []
    for key, value in QUICK:
        if key == "repeats":
            value = min(value, study.repeats)
        elif key != "epochs" and 0 < base[key] <= value:
            continue  # the study's own subset is already this small
        out.append((key, value))
    if base["snapshot_epochs"]:
        out.append(("snapshot_epochs", ""))
    return tuple(out)


class FormatName:
    """A grid point's group name from a format string ("{arch}_lr{lr}"); a class (not a
    lambda) so that a study can be pickled."""

    def __init__(self, fmt: str):
        self.fmt = fmt

    def __call__(self, point: dict) -> str:
        try:
            return self.fmt.format(**point)
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"group_name {self.fmt!r}: {e!r} is not one of the axes {sorted(point)}") from None


def _yaml_study(path: str, text: str) -> Study:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    doc = _mapping(doc, "", STUDY_KEYS)
    for key in ("name", "stages"):
        if key not in doc:
            raise ConfigError(f"{key}: missing (a study needs a name and its stages)")
    base = []
    recipes = doc.get("recipe", [])
    for name in [recipes] if isinstance(recipes, str) else _list(recipes, "recipe"):
        if name not in RECIPES:
            raise ConfigError(f"recipe: {name!r} is unknown; choose from {', '.join(RECIPES)}")
        base += RECIPES[name]
    base += _settings(doc.get("base", {}), "base")
    stages = tuple(_stage(s, f"stages[{i}]") for i, s in enumerate(_list(doc["stages"], "stages")))
    report = doc.get("report", DEFAULT_REPORT)
    report = Report(report) if isinstance(report, str) else _report(report)
    kwargs = {k: _scalar(doc, k, int if k == "repeats" else str) for k in STUDY_SCALARS if k in doc}
    return Study(name=_scalar(doc, "name", str), description=kwargs.pop("description", ""), stages=stages,
                 base=tuple(base),
                 quick=_quick(doc.get("quick", {})), report=report,
                 figures=tuple(_figure(f, f"figures[{i}]") for i, f in enumerate(_list(doc.get("figures", []),
                                                                                       "figures"))),
                 **kwargs)


def _stage(doc, where: str) -> Stage:
    doc = _mapping(doc, where, STAGE_KEYS)
    if "name" not in doc:
        raise ConfigError(f"{where}.name: missing")
    name = _scalar(doc, "name", str, f"{where}.")
    where = f"stages.{name}"
    axes = tuple((_known(key, f"{where}.axes"), tuple(dict.fromkeys(_value(key, v, f"{where}.axes.{key}")
                                                                    for v in _list(values, f"{where}.axes.{key}"))))
                 for key, values in _mapping(doc.get("axes", {}), f"{where}.axes").items())
    variants = tuple(_variant(v, f"{where}.variants[{i}]") for i, v in enumerate(_list(doc.get("variants", []),
                                                                                      f"{where}.variants")))
    group_name = _scalar(doc, "group_name", str, f"{where}.", "")
    return Stage(name, axes=axes, fixed=_settings(doc.get("fixed", {}), f"{where}.fixed"), variants=variants,
                 prefix=_scalar(doc, "prefix", str, f"{where}.", ""),
                 repeats=_scalar(doc, "repeats", int, f"{where}.", 0),
                 group_name=FormatName(group_name) if group_name else None)


def _variant(doc, where: str) -> Variant:
    doc = _mapping(doc, where, VARIANT_KEYS)
    if "name" not in doc:
        raise ConfigError(f"{where}.name: missing")
    return Variant(_scalar(doc, "name", str, f"{where}."), _settings(doc.get("changes", {}), f"{where}.changes"),
                   _scalar(doc, "note", str, f"{where}.", ""))


def _figure(doc, where: str) -> Figure:
    doc = _mapping(doc, where, FIGURE_KEYS)
    for key in ("name", "title"):
        if key not in doc:
            raise ConfigError(f"{where}.{key}: missing")
    lists = {k: tuple(str(v) for v in _list(doc[k], f"{where}.{k}")) for k in FIGURE_KEYS[2:] if k in doc}
    return Figure(_scalar(doc, "name", str, f"{where}."), _scalar(doc, "title", str, f"{where}."),
                  **{"groups": (), **lists})


def _report(doc) -> Report:
    doc = _mapping(doc, "report", REPORT_KEYS)
    if "function" not in doc:
        raise ConfigError("report.function: missing ('package.module:function')")
    return Report(_scalar(doc, "function", str, "report."), tuple(_list(doc.get("stages", []), "report.stages")),
                  tuple(_mapping(doc.get("args", {}), "report.args").items()))


def _quick(doc) -> tuple:
    """--quick's overrides, as the command line would give them (a list: comma-separated)."""
    return tuple((str(k), ",".join(map(str, v)) if isinstance(v, list) else v)
                 for k, v in _mapping(doc, "quick").items())


def _scalar(doc: dict, key: str, typ, where: str = "", *default):
    """doc[key] as `typ` (a string from YAML parsed as the command line would: `repeats: "3"`),
    or `default` when absent; ConfigError naming `where` + key otherwise (`repeats: 2.5`)."""
    if key not in doc and default:
        return default[0]
    return coerce(f"{where}{key}", doc[key], typ)


def _settings(doc, where: str) -> tuple:
    return tuple((key, _value(_known(key, where), raw, f"{where}.{key}"))
                 for key, raw in _mapping(doc, where).items())


def _value(key: str, raw, where: str):
    """A setting typed now (so that a bad one names its place in the file): lists of
    list-valued settings joined, schedules as tuples."""
    if isinstance(raw, list):
        if key in LIST_FIELDS:
            raw = ",".join(map(str, raw))
        elif FIELD_TYPES[key] is tuple:
            raw = tuple(tuple(v) if isinstance(v, list) else v for v in raw)
        else:
            raise ConfigError(f"{where}: a list; a list of values is a grid axis (a stage's axes)")
    try:
        return coerce(key, raw, FIELD_TYPES[key])
    except ConfigError as e:
        raise ConfigError(f"{where}: {str(e).removeprefix(f'{key}: ')}") from None


def _known(key, where: str) -> str:
    if key not in FIELDS:
        raise ConfigError(f"{where}: unknown config key {key!r} (workloads/config.py names them)")
    return key


def _mapping(doc, where: str, keys: tuple = ()) -> dict:
    if doc is None:
        return {}
    at = f"{where}: " if where else ""
    if not isinstance(doc, dict):
        raise ConfigError(f"{at}expected a mapping (key: value), got {type(doc).__name__}")
    unknown = [k for k in doc if keys and k not in keys]
    if unknown:
        raise ConfigError(f"{at}unknown key {unknown[0]!r}; known: {', '.join(keys)}")
    return doc


def _list(doc, where: str) -> list:
    if not isinstance(doc, list):
        raise ConfigError(f"{where}: expected a list, got {type(doc).__name__}")
    return doc


def _python_study(path: str, text: str) -> Study:
    """A Python study file run as a module of its own (named for its content, so that two
    versions of one file are two modules), which the driver has Ray pickle by value
    (`loaded_modules`): Ray's workers cannot import it."""
    name = MODULE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module
        try:
            exec(compile(text, str(path), "exec"), module.__dict__)
        except ConfigError:
            del sys.modules[name]
            raise
        except Exception as e:
            del sys.modules[name]
            line = getattr(e, "lineno", None)
            raise ConfigError(f"{type(e).__name__}{f' at line {line}' if line else ''}: {e}") from None
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ConfigError("STUDY: missing; a Python study file defines STUDY = Study(...) "
                          "(from search_spaces.study import Stage, Study, ...)")
    return study


def loaded_modules() -> list:
    """The Python study files this process has loaded, each a module of its own."""
    return [m for name, m in sys.modules.items() if name.startswith(MODULE_PREFIX)]


def read_study(path: str) -> Study:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: no such study file")
    return load_study(str(path), file.read_text())
