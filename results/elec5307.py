"""elec5307's outputs: pure tables and the part2 choice, then the report that writes
them with the figures (results/grid_plots.py) beside the sweep.

    report(results, out, study, families) -> {"summary": DataFrame (one row per finding, also in
        "tables"), "figures": [(png, caption)], "folded": [(heading, part3's figures)], "notes": [part2's choice]}

Files, for the parts that ran:
  summary.csv, curves.csv      every group: means, spread and n (results.aggregate)
  part1.csv, part1.png         the tutorial run: loss and accuracy, training and validation,
                               every epoch; test accuracy at each length (the result: the
                               notebook's length, part1_epochs; the longer ones its curve)
  part2.csv                    one row per (batch, lr, epochs): validation and test accuracy
                               (mean, std, n), training seconds per epoch and in total
  part2_choice.json            the chosen setting and the rule that chose it (choose())
  part2_heatmaps.png           batch x lr per epoch count, validation and test accuracy
  part2_losses.png             training and validation loss of every (batch, lr), 16 epochs
  part3.csv, part3_<family>.csv/.png   each family's values against the baseline
  baseline.pt, modified.pt     the baseline's best run and the best variant's (on validation
                               accuracy), each with the .json config `evaluate` rebuilds it from

Choices are made on validation accuracy; test accuracy is reported beside it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups, curves_table, summary_table
from results.cells import mean_sd_column
from results.grid_plots import plot_heatmaps, plot_pairs
from results.io import save_weights, write_csv, write_json
from results.plots import BAND, plot_comparison
from workloads import metrics as M

GRID = ("batch_size", "lr", "epochs")


def _mean_std(values) -> tuple:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return (float(v.mean()) if len(v) else math.nan, float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v))


def group_row(a) -> dict:
    """A group's final numbers over its finished runs: validation and test accuracy (mean,
    std, n) and training seconds (evaluation excluded) per epoch and in total."""
    runs = [r for r in a.runs if r.finished]
    val_mean, val_std, n = _mean_std([r.final(M.VAL_ACC) for r in runs])
    test_mean, test_std, _ = _mean_std([r.test_acc for r in runs])
    seconds = np.array([r.train_seconds for r in runs], dtype=float)
    epochs = int(a.runs[0].config["epochs"])
    return {"group": a.group, "changes": a.runs[0].changes, "n": n, "diverged": a.n_diverged,
            "val_acc_mean": val_mean, "val_acc_std": val_std, "test_acc_mean": test_mean, "test_acc_std": test_std,
            "train_s_per_epoch": float(seconds.mean() / epochs) if n else math.nan,
            "train_s_total": float(seconds.mean()) if n else math.nan}


def grid_table(aggs: dict) -> pd.DataFrame:
    """part2: one row per (batch, lr, epochs), in the grid's order."""
    rows = [{k: a.runs[0].config[k] for k in GRID} | group_row(a) for a in aggs.values()]
    return pd.DataFrame(rows)


def validation_images(config: dict) -> int:
    whole = 10 * int(config["val_per_class"])
    return min(int(config["val_subset"]), whole) if int(config["val_subset"]) else whole


def choose(table: pd.DataFrame, val_images: int) -> dict:
    """The project's choice: the highest mean validation accuracy, then, among the settings
    within noise of it, the shortest training time. Noise is one standard error: of the best
    setting's mean over its repeats when it has two or more, else the binomial standard error
    sqrt(p (1 - p) / N) of one run's accuracy p on the N validation images."""
    ok = table[np.isfinite(table["val_acc_mean"])]
    if not len(ok):
        return {"rule": "no setting finished", "chosen": None}
    best = ok.sort_values(["val_acc_mean", "train_s_total"], ascending=[False, True]).iloc[0]
    p, n = float(best["val_acc_mean"]), int(best["n"])
    if n >= 2 and np.isfinite(best["val_acc_std"]):
        noise, how = float(best["val_acc_std"]) / math.sqrt(n), f"one standard error of its mean over {n} repeats"
    else:
        noise = math.sqrt(p * (1 - p) / val_images)
        how = f"the binomial standard error of one run's accuracy on {val_images} validation images"
    near = ok[ok["val_acc_mean"] >= p - noise]
    chosen = near.sort_values(["train_s_total", "val_acc_mean"], ascending=[True, False]).iloc[0]
    return {"rule": f"highest validation accuracy ({best['group']}: {p:.4f}); among the "
                    f"{len(near)} settings within {noise:.4f} of it ({how}), the shortest training time",
            "noise": noise, "within_noise": near["group"].tolist(),
            "best": _plain(best), "chosen": _plain(chosen)}


def _plain(row: pd.Series) -> dict:
    """A table row as JSON can hold it: Python numbers, None for NaN."""
    values = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def family_table(aggs: dict, groups: list) -> pd.DataFrame:
    """A part3 family: the baseline's row first, then each value's, with the difference in
    mean validation and test accuracy from the baseline."""
    rows = pd.DataFrame([group_row(aggs[g]) for g in groups])
    for metric in ("val_acc", "test_acc"):
        rows[f"{metric}_minus_baseline"] = rows[f"{metric}_mean"] - rows[f"{metric}_mean"].iloc[0]
    return rows


def best_variant(aggs: dict, baseline) -> str | None:
    """The part3 group with the highest mean validation accuracy among those whose
    configuration differs from the baseline's (the modified network)."""
    def plain(cfg):
        return {k: v for k, v in cfg.items() if k != M.SEED}
    scores = {g: group_row(a)["val_acc_mean"] for g, a in aggs.items()
              if plain(a.runs[0].config) != plain(baseline.runs[0].config)}
    scores = {g: s for g, s in scores.items() if np.isfinite(s)}
    return max(scores, key=scores.get) if scores else None


def report(results: dict, out: Path, study, families=(), part1_epochs: int = 2) -> dict:
    """`families`: part3's (search_spaces.elec5307_part3.Family, ...), whose groups are FAMILY.VALUE;
    `part1_epochs`: the length part1 reports as its result (its longer prefixes are its curve)."""
    records = [r for stage in results.values() for r in stage]
    aggs = aggregate_groups(records, select=study.select)
    write_csv(out / "summary.csv", summary_table(aggs))
    write_csv(out / "curves.csv", curves_table(aggs))
    rows, figures, folded, notes = [], [], [], []
    if "part1" in results:
        _part1(_stage_aggs(aggs, results["part1"]), out, rows, figures, part1_epochs)
    if "part2" in results:
        notes.append(_part2(_stage_aggs(aggs, results["part2"]), out, rows, figures))
    if "part3" in results:
        _part3(_stage_aggs(aggs, results["part3"]), out, rows, folded, families)
    found = pd.DataFrame(rows)
    caption = ("What the study found, part by part: validation and test accuracy over repeats (mean \u00b1 sample "
               "standard deviation, n), training seconds per epoch and in total, evaluation excluded")
    return {"summary": found, "figures": figures, "notes": notes,
            "tables": [(page_found(found), caption)] if rows else [],
            "folded": [("part3: each ablation family against the baseline", folded)] if folded else []}


def page_found(found: pd.DataFrame) -> pd.DataFrame:
    """The findings as the report shows them: mean and sd in one cell, seconds to 3 digits,
    the diverged column only where a run diverged, so that the table fits the page."""
    shown = found[["part", "what", "group", "changes", "n"]].copy()
    if (found["diverged"] != 0).any():
        shown["diverged"] = found["diverged"]
    shown["validation (mean \u00b1 sd)"] = mean_sd_column(found, "val_acc")
    shown["test (mean \u00b1 sd)"] = mean_sd_column(found, "test_acc")
    for column, name in (("train_s_per_epoch", "training s / epoch"), ("train_s_total", "training s")):
        shown[name] = [format(float(x), ".3g") if pd.notna(x) else None for x in found[column]]
    return shown


def _stage_aggs(aggs: dict, records) -> dict:
    return {g: aggs[g] for g in dict.fromkeys(r.group for r in records)}


def _row(part: str, what: str, a) -> dict:
    return {"part": part, "what": what} | group_row(a)


def part1_result(aggs: dict, epochs: int) -> tuple:
    """(the group part1 reports, in words): the run of `epochs` (the course notebook's length),
    else, when that length was not run (an `epochs=` override), the longest."""
    by_length = {int(a.runs[0].config["epochs"]): a for a in aggs.values()}
    if epochs in by_length:
        return by_length[epochs], f"the tutorial baseline: {epochs} epochs, as the course notebook runs it"
    longest = by_length[max(by_length)]
    return longest, f"the tutorial baseline at {max(by_length)} epochs (the notebook's {epochs} were not run)"


def _part1(aggs: dict, out: Path, rows: list, figures: list, epochs: int) -> None:
    table = pd.DataFrame([{"epochs": a.runs[0].config["epochs"]} | group_row(a) for a in aggs.values()])
    write_csv(out / "part1.csv", table)
    # The result is the notebook's length; the longer prefixes are the curve it continues into.
    result, what = part1_result(aggs, epochs)
    longest = max(aggs.values(), key=lambda a: a.runs[0].config["epochs"])
    tests = [(row.epochs, row.test_acc_mean) for row in table.itertuples()]
    path = out / "part1.png"
    title = (f"part1: the tutorial's net, trained the tutorial's way; its result: {result.group} "
             f"(test accuracy at each length: dots)")
    plot_pairs([("loss", {longest.group: longest}, (M.LOSS, M.VAL_LOSS)),
                ("accuracy", {longest.group: longest}, (M.TRAIN_ACC, M.VAL_ACC))], path, title,
               marks={1: {longest.group: tests}})
    figures.append((path, title))
    rows.append(_row("part1", what, result))


def _part2(aggs: dict, out: Path, rows: list, figures: list) -> str:
    """part2's table, choice and figures; returns the choice in words."""
    table = grid_table(aggs)
    write_csv(out / "part2.csv", table)
    choice = choose(table, validation_images(next(iter(aggs.values())).runs[0].config))
    write_json(out / "part2_choice.json", choice)
    chosen = choice["chosen"]
    path = out / "part2_heatmaps.png"
    title = "part2: accuracy by batch size and learning rate, per number of epochs" + \
        (f" (box: chosen, {chosen['group']})" if chosen else "")
    plot_heatmaps(table, path, title, chosen=tuple(chosen[k] for k in GRID) if chosen else None)
    figures.append((path, title))
    longest = table.loc[table.groupby(["batch_size", "lr"])["epochs"].idxmax()]
    panels = [(f"batch {b}", {f"lr {row.lr:g}": aggs[row.group] for row in part.itertuples()}, (M.LOSS, M.VAL_LOSS))
              for b, part in longest.groupby("batch_size")]
    path = out / "part2_losses.png"
    title = f"part2: training (solid) and validation (dashed) loss, {int(longest['epochs'].max())} epochs"
    plot_pairs(panels, path, title)
    figures.append((path, title))
    if chosen:
        rows.append(_row("part2", "chosen: the quickest within noise of the best (part2_choice.json)",
                         aggs[chosen["group"]]))
        rows.append(_row("part2", "highest validation accuracy", aggs[choice["best"]["group"]]))
    return f"part2's choice, {chosen['group'] if chosen else 'none'}: {choice['rule']}."


def _part3(aggs: dict, out: Path, rows: list, figures: list, families) -> None:
    baseline, found, tables = aggs.get("baseline"), [], []
    for f in families:
        groups = [g for g in aggs if g.startswith(f.name + ".")]
        if not groups:  # not run (sid)
            continue
        table = family_table(aggs, groups)
        write_csv(out / f"part3_{f.name}.csv", table)
        tables.append(table.assign(family=f.name))
        path = out / f"part3_{f.name}.png"
        title = f"part3, {f.title}: each value against the baseline ({f.baseline})"
        plot_comparison({g: aggs[g] for g in groups}, [M.LOSS, M.VAL_LOSS, M.VAL_ACC], path, title=title,
                        x=M.EPOCH)
        figures.append((path, f"{title}: losses and validation accuracy against epochs, test accuracy "
                              f"(bars); {BAND} over repeats"))
        if table["val_acc_mean"].notna().any():
            top = table["group"].iloc[int(np.nanargmax(table["val_acc_mean"]))]
            found.append(_row("part3", f"{f.title}: best on validation", aggs[top]))
    if tables:
        write_csv(out / "part3.csv", pd.concat(tables, ignore_index=True))
    if baseline is None or baseline.best is None:
        rows += found
        return
    rows.append(_row("part3", "the new baseline", baseline))
    rows += found
    modified = best_variant({g: a for g, a in aggs.items() if g != "baseline"}, baseline)
    chosen = {"baseline": baseline.best, "modified": aggs[modified].best if modified else None}
    for name, run in chosen.items():
        # No weights when re-reported from the saved records (orchestrator/report.py): the sweep's files stay.
        if run is not None and run.weights is not None:
            save_weights(out / f"{name}.pt", run.state_dict(), run.config)
    if modified is not None:
        rows.append(_row("part3", "modified: the best variant on validation", aggs[modified]))
