"""A sweep's records in open formats, and reading them back: as the report's RunRecords, or
as pandas tables for a person or a notebook. Pure I/O and conversion; no Ray, no torch.

    from results.records import load_run
    run = load_run("runs/part3/20261123-141500")
    run.runs        # one row per result: stage, group, repeat, run, status, test_acc, ..., final.val_acc, config.lr
    run.curves      # long form: stage, group, repeat, run, metric, step, epoch, value
    run.groups      # one row per (stage, group): n, mean, sd and 95% t interval of test and final val accuracy

    write_records(out, {stage: [RunRecord]}, failed, search={stage: {"history": ..., "best": ..., "base": ...}})
    results, failed, search = read_records(out)    # the same RunRecords (no weights), the same decisions

Files (any pandas, pyarrow or numpy reads them; `SCHEMA_VERSION` in records.json and in
each Parquet file's metadata, under META_KEY):
  runs.parquet     one row per RunRecord: `record` (its row number, the join key), its dataclass
                   fields (a scalar field added to RunRecord is written and read back unchanged),
                   `seed`, `final.<metric>` (the metric at the run's last record), `config.<key>`
                   (the flat config), `curve_columns` (its curve table's columns, in order)
  curves.parquet   every cell of every run's curve table, long form: record, stage, group, repeat,
                   run, metric, step, epoch, value (NaN: not recorded at that point)
  first_layer.npz  first-layer weights, keyed by `record`
  records.json     written last: schema version, the stages in order, failed trials and each search
                   stage's decisions (history, best, base)
A column or JSON value that plain types cannot hold exactly is JSON text with tags: a tuple
is {"__tuple__": [...]}, a NaN or infinite float {"__float__": "nan"}; a config column whose
values are all tuples is plain JSON arrays (read back as tuples), named in the metadata.
"""
from __future__ import annotations

import json
import math
import typing
import uuid
import zipfile
from dataclasses import fields
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from results.aggregate import RunRecord
from results.io import atomic_path, write_json, write_npz
from results.stats import summarize
from workloads import metrics as M
from workloads.registry import ConfigError

SCHEMA_VERSION = 1
META_KEY = b"cifar_sweeps.records"
RUNS_FILE, CURVES_FILE, FIRST_LAYER_FILE = "runs.parquet", "curves.parquet", "first_layer.npz"
INDEX_FILE = "records.json"   # written last: the other three belong to the save it names
RECORD_FILES = (RUNS_FILE, CURVES_FILE, FIRST_LAYER_FILE, INDEX_FILE)
OLD_FILE = "records.pkl"      # what earlier code wrote: orchestrator/report.py converts it
CONFIG, FINAL = "config.", "final."
# RunRecord fields with a file or column layout of their own; weights are never saved.
SPECIAL = ("config", "curves", "first_layer", "weights")
CURVES = pa.schema([("record", pa.int64()), ("stage", pa.string()), ("group", pa.string()), ("repeat", pa.int64()),
                    ("run", pa.string()), ("metric", pa.string()), ("step", pa.int64()), ("epoch", pa.float64()),
                    ("value", pa.float64())])
ABSENT = object()             # a config key some runs do not have
ARROW = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


# --- JSON that keeps tuples and non-finite floats ------------------------------------------

def to_jsonable(x):
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return {"__float__": str(x)}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, tuple):
        return {"__tuple__": [to_jsonable(v) for v in x]}
    if isinstance(x, (list, np.ndarray)):
        return [to_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    return str(x)  # nothing the project saves; written as text rather than failing a sweep's save


def _tagged(d: dict):
    if len(d) == 1 and "__tuple__" in d:
        return tuple(d["__tuple__"])
    if len(d) == 1 and "__float__" in d:
        return float(d["__float__"])
    return d


def from_json(text: str):
    return json.loads(text, object_hook=_tagged)


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def _plain_tuple(x) -> bool:
    """A tuple of tuples and JSON scalars (finite floats): plain JSON arrays hold it."""
    if isinstance(x, tuple):
        return all(_plain_tuple(v) for v in x)
    return x is None or type(x) in (bool, int, str) or (type(x) is float and math.isfinite(x))


# --- columns ---------------------------------------------------------------------------------

def _column(values: list, hint=None) -> tuple[pa.Array, str]:
    """(array, kind) of one column: "native" where Parquet keeps the values' type (a null is
    ABSENT where the column has absent values, else None), "tuples" or "json" text otherwise.
    `hint`: the Python type of a column that may hold only None (RunRecord.diverged_at)."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    present = [v for v in values if v is not ABSENT]
    types = {type(v) for v in present if v is not None} or {hint} & set(ARROW)
    sparse = len(present) < len(values)
    if len(types) <= 1 and types <= set(ARROW) and not (sparse and None in present):
        return pa.array([None if v is ABSENT else v for v in values], ARROW[next(iter(types))] if types else None,
                        from_pandas=False), "native"
    if present and all(isinstance(v, tuple) and _plain_tuple(v) for v in present):
        return pa.array([None if v is ABSENT else json.dumps(v) for v in values], pa.string()), "tuples"
    return pa.array([None if v is ABSENT else json.dumps(to_jsonable(v), allow_nan=False) for v in values],
                    pa.string()), "json"


def _values(array: pa.ChunkedArray, kind: str, sparse: bool) -> list:
    """The column's values as _column got them (a null: ABSENT in a sparse column)."""
    decode = {"native": lambda v: v, "tuples": lambda v: _tuples(json.loads(v)), "json": from_json}[kind]
    return [(ABSENT if sparse else None) if v is None else decode(v) for v in array.to_pylist()]


def _scalar_fields() -> list[str]:
    return [f.name for f in fields(RunRecord) if f.name not in SPECIAL]


def _hint(name: str):
    """int for `int | None`: the type a field's values have when they are not None."""
    hint = typing.get_type_hints(RunRecord).get(name)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


# --- writing -----------------------------------------------------------------------------------

def write_records(folder: Path, results: dict, failed=(), search: dict | None = None) -> None:
    """Every stage's RunRecords ({stage: [RunRecord]}, weights left out), the failed trials
    (JSON-able dicts) and each search stage's decisions ({stage: {history, best, base}})."""
    folder = Path(folder)
    written = uuid.uuid4().hex
    rows = [r for recs in results.values() for r in recs]
    _write_parquet(folder / RUNS_FILE, runs_table(rows), written)
    _write_parquet(folder / CURVES_FILE, curves_table(rows), written)
    write_npz(folder / FIRST_LAYER_FILE, {str(i): np.asarray(r.first_layer) for i, r in enumerate(rows)
                                          if r.first_layer is not None})
    write_json(folder / INDEX_FILE, {
        "schema_version": SCHEMA_VERSION, "written": written, "files": list(RECORD_FILES[:3]),
        "stages": [[stage, len(recs)] for stage, recs in results.items()],
        "failed": to_jsonable(list(failed)), "search": to_jsonable(dict(search or {}))})


def runs_table(rows: list[RunRecord]) -> pa.Table:
    columns, kinds, sparse = {"record": pa.array(range(len(rows)), pa.int64())}, {}, []
    finals = list(dict.fromkeys(c for r in rows for c in r.curves.columns if c != M.STEP))
    keys = list(dict.fromkeys(k for r in rows for k in r.config))
    named = ([(name, [getattr(r, name) for r in rows], _hint(name)) for name in _scalar_fields()]
             + [(M.SEED, [r.config.get(M.SEED) for r in rows], int)]
             + [(FINAL + m, [r.final(m) for r in rows], float) for m in finals]
             + [(CONFIG + k, [r.config.get(k, ABSENT) for r in rows], None) for k in keys])
    for name, values, hint in named:
        columns[name], kind = _column(values, hint)
        kinds.update({name: kind} if kind != "native" else {})
        sparse += [name] if any(v is ABSENT for v in values) else []
    columns["curve_columns"] = pa.array([[str(c) for c in r.curves.columns] for r in rows], pa.list_(pa.string()))
    table = pa.table(columns)
    return table.replace_schema_metadata({META_KEY: json.dumps({"kinds": kinds, "sparse": sparse})})


def curves_table(rows: list[RunRecord]) -> pa.Table:
    parts = []
    for i, r in enumerate(rows):
        c = r.curves
        step = c[M.STEP].to_numpy() if M.STEP in c else np.full(len(c), np.nan)
        epoch = c[M.EPOCH].to_numpy(dtype=float) if M.EPOCH in c else np.full(len(c), np.nan)
        for metric in (m for m in c.columns if m not in (M.STEP, M.EPOCH)):
            parts.append(pd.DataFrame({"record": i, "stage": r.stage, "group": r.group, "repeat": r.repeat,
                                       "run": r.run, "metric": str(metric), "step": step, "epoch": epoch,
                                       "value": c[metric].to_numpy(dtype=float)}))
    return pa.Table.from_pandas(pd.concat(parts, ignore_index=True), preserve_index=False) if parts \
        else CURVES.empty_table()


def _write_parquet(path: Path, table: pa.Table, written: str) -> None:
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    table = table.replace_schema_metadata({
        **{k: v for k, v in (table.schema.metadata or {}).items() if k != META_KEY},
        META_KEY: json.dumps({"schema_version": SCHEMA_VERSION, "written": written, **meta})})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# --- reading ---------------------------------------------------------------------------------

def _refuse_version(path: Path, version) -> None:
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: records schema version {version}, this code reads version {SCHEMA_VERSION}: "
                          f"read it with the code that wrote it")


def read_index(folder: Path) -> dict:
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        old = " (records.pkl from earlier code: `python -m orchestrator report RUN` converts it)" \
            if (Path(folder) / OLD_FILE).is_file() else ""
        raise ConfigError(f"{Path(folder)}: no {INDEX_FILE}{old}")
    try:
        index = from_json(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}: {e})") from e
    _refuse_version(path, index.get("schema_version") if isinstance(index, dict) else None)
    missing = [k for k in ("written", "stages") if k not in index]
    if missing:
        raise ConfigError(f"{path}: damaged (no {', '.join(missing)}); `sweep STUDY --resume --out {Path(folder)}` "
                          f"writes the records again")
    return index


def read_table(folder: Path, name: str, written: str | None = None) -> tuple[pa.Table, dict]:
    """A Parquet file of the save `written` (records.json's), with its metadata."""
    path = Path(folder) / name
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}: {e})") from e
    _refuse_version(path, meta.get("schema_version"))
    if written and meta.get("written") != written:
        raise ConfigError(f"{path}: from another save than {INDEX_FILE} (a save cut short between files); "
                          f"`sweep STUDY --resume --out {folder}` writes them again")
    return table, meta


def read_records(folder: Path) -> tuple[dict, list, dict]:
    """({stage: [RunRecord]}, failed, {stage: {history, best, base}}) as write_records got them
    (weights None); ConfigError in one line, naming the file, if they cannot be read."""
    folder = Path(folder)
    index = read_index(folder)
    runs, meta = read_table(folder, RUNS_FILE, index["written"])
    curves, _ = read_table(folder, CURVES_FILE, index["written"])
    kinds, sparse = meta.get("kinds", {}), set(meta.get("sparse", ()))
    columns = {name: _values(runs.column(name), kinds.get(name, "native"), name in sparse)
               for name in runs.column_names}
    keys = [name for name in runs.column_names if name.startswith(CONFIG)]
    names = [name for name in _scalar_fields() if name in columns]  # a field added since: its default
    layers = first_layers(folder)
    tables = _curve_frames(curves.to_pandas(), columns["curve_columns"])
    rows = [RunRecord(**{name: columns[name][i] for name in names},
                      config={k[len(CONFIG):]: columns[k][i] for k in keys if columns[k][i] is not ABSENT},
                      curves=tables[i], first_layer=layers.get(i)) for i in range(runs.num_rows)]
    results, start = {}, 0
    for stage, n in index["stages"]:
        results[stage], start = rows[start:start + n], start + n
    return results, index.get("failed", []), index.get("search", {})


def first_layers(folder: Path) -> dict[int, np.ndarray]:
    """{record: first-layer weights} of the runs that have them."""
    path = Path(folder) / FIRST_LAYER_FILE
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {int(k): npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}: {e})") from e


def _curve_frames(long: pd.DataFrame, columns: list) -> list[pd.DataFrame]:
    """Each run's curve table (columns in its order) from the long form."""
    blocks = dict(tuple(long.groupby("record", sort=False))) if len(long) else {}
    out = []
    for i, names in enumerate(columns):
        block = blocks.get(i)
        if block is None:
            out.append(pd.DataFrame(columns=names) if names else pd.DataFrame())
            continue
        by_metric = {m: b for m, b in block.groupby("metric", sort=False)}
        first = next(iter(by_metric.values()))
        table = {M.STEP: first["step"].to_numpy(), M.EPOCH: first["epoch"].to_numpy()}
        table.update({m: b["value"].to_numpy() for m, b in by_metric.items()})
        out.append(pd.DataFrame({c: table[c] for c in names}))
    return out


# --- a run folder as pandas tables -----------------------------------------------------------

class RunFolder:
    """A run folder's records as pandas DataFrames: `runs`, `curves`, `groups`; `sweep` and
    `provenance` (sweep.json and provenance.json, None where absent: an unfinished sweep), `failed`
    and `search` (records.json's), `first_layers()` ({record: np.ndarray})."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = read_index(self.folder)
        self.failed, self.search = index.get("failed", []), index.get("search", {})
        self.runs = read_table(self.folder, RUNS_FILE, index["written"])[0].to_pandas()
        self.curves = read_table(self.folder, CURVES_FILE, index["written"])[0].to_pandas()
        self.sweep, self.provenance = (_json_or_none(self.folder / name) for name in ("sweep.json", "provenance.json"))

    def first_layers(self) -> dict[int, np.ndarray]:
        return first_layers(self.folder)

    @cached_property
    def groups(self) -> pd.DataFrame:
        """Per (stage, group): runs, finished runs (n), and of the finished runs the n, mean, sd and
        95% t interval (results.stats.summarize) of test accuracy and of final validation accuracy."""
        rows = []
        for (stage, group), g in self.runs.groupby(["stage", "group"], sort=False):
            done = g[g["status"] == M.FINISHED]
            row = {"stage": stage, "group": group, "runs": len(g), "n": len(done)}
            for name, column in (("test_acc", "test_acc"), ("val_acc", FINAL + M.VAL_ACC)):
                values = done[column].dropna().to_numpy(float) if column in done else np.array([])
                s = summarize(values) if len(values) else None
                row.update({f"{name}_n": len(values), f"{name}_mean": s.mean if s else None,
                            f"{name}_sd": s.std if s else None, f"{name}_ci_low": s.ci_low if s else None,
                            f"{name}_ci_high": s.ci_high if s else None})
            rows.append(row)
        return pd.DataFrame(rows)


def _json_or_none(path: Path):
    """A JSON file's content; None where absent (an unfinished sweep has no provenance.json)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: cannot be read ({e})") from e


def load_run(folder) -> RunFolder:
    """A run folder's records as pandas tables (RunFolder), without Ray; ConfigError in one line
    if its records are missing, of another schema version, or damaged."""
    return RunFolder(Path(folder))
