"""The resnet study's outputs: everything variants_report writes (summary.csv,
curves.csv, one figure per Figure of the study), the ablation table the report
prints (test accuracy with its spread, training time, per variant of each family),
the final recipe beside the report's numbers (final.csv: when validation first reached
93% and 95%, training accuracy in eval mode at the end), and the loss landscape: per model, the band between the lowest and the highest
training loss over its learning rates at every step.

    out = resnet_report(results, out_dir, study)   # {"summary", "ablations", "final", "figures", "tables"}
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups, summary_table
from results.cells import DASH, mean_sd_column
from results.io import write_csv
from results.reports import variants_report
from results.search_plots import plot_loss_band
from workloads import metrics as M

TIME = ("train_s_per_epoch", "wall_s_mean")


def ablation_table(aggs: dict, families: dict) -> pd.DataFrame:
    """One row per ablation variant, families in order: what it changes, n, test accuracy
    mean/std (over the finished repeats), final validation accuracy, training time."""
    names = [g for g in aggs if g.split("_")[0] in families]
    table = summary_table({g: aggs[g] for g in names})
    table.insert(0, "family", [families[g.split("_")[0]] for g in names])
    val = [np.array([r.final(M.VAL_ACC) for r in aggs[g].runs if r.finished]) for g in names]
    table["val_acc_mean"] = [float(v.mean()) if len(v) else None for v in val]
    table["val_acc_std"] = [float(v.std(ddof=1)) if len(v) > 1 else None for v in val]
    return table[["family", "group", "changes", "status", "n", "test_acc_mean", "test_acc_std",
                  "val_acc_mean", "val_acc_std", "parameters", *TIME]]


def page_ablations(table: pd.DataFrame) -> pd.DataFrame:
    """ablations.csv as the report shows it: mean and sd in one cell, so that it fits the
    page; the status column only where some run did not finish."""
    shown = pd.DataFrame({
        "family": table["family"], "group": table["group"], "changes": table["changes"], "n": table["n"],
        "test (mean \u00b1 sd)": mean_sd_column(table, "test_acc"),
        "validation (mean \u00b1 sd)": mean_sd_column(table, "val_acc"),
        "parameters": [f"{int(x):,}" for x in table["parameters"]],
        "training s / epoch": [format(float(x), ".3g") for x in table["train_s_per_epoch"]]})
    if (table["status"] != M.FINISHED).any():
        shown.insert(3, "status", table["status"])
    return shown


# The report's final model: validation 93.39% at epoch 55 and 95.09% at 116, training 99.99%.
THRESHOLDS = (0.93, 0.95)
NOT_REACHED = "not reached"


def first_epoch(epochs, values, threshold: float) -> float:
    """The first epoch whose value is at or above `threshold` (NaN: never)."""
    hit = np.flatnonzero(np.asarray(values, dtype=float) >= threshold)
    return float(np.asarray(epochs)[hit[0]]) if len(hit) else float("nan")


def final_row(run: str, epochs, val, train_end: float, running: float, test: float) -> dict:
    epochs, val = np.asarray(epochs, dtype=float), np.asarray(val, dtype=float)
    best = int(np.nanargmax(val)) if np.isfinite(val).any() else None
    return {"run": run, **{f"val_first_{round(100 * t)}_epoch": first_epoch(epochs, val, t) for t in THRESHOLDS},
            "val_best": val[best] if best is not None else float("nan"),
            "val_best_epoch": epochs[best] if best is not None else float("nan"),
            "val_final": val[-1] if len(val) else float("nan"), "train_acc_end": train_end,
            "train_acc_running_last": running, "test_acc": test}


def final_table(records: list) -> pd.DataFrame:
    """The final recipe beside the report's numbers: per run (and for the mean validation curve
    over the repeats), the epoch at which validation accuracy first reached 93% and 95% (NaN:
    not reached), its best and final value, the eval-mode accuracy on the training split at
    the end (M.TRAIN_ACC_END), the last epoch's running train-mode accuracy on augmented
    batches, and test accuracy."""
    rows = []
    for r in sorted(records, key=lambda r: r.repeat):
        c = r.curves.dropna(subset=[M.VAL_ACC]) if M.VAL_ACC in r.curves else r.curves.iloc[:0]
        rows.append(final_row(f"r{r.repeat}", c.get(M.EPOCH, []), c.get(M.VAL_ACC, []), r.final(M.TRAIN_ACC_END),
                              r.final(M.TRAIN_ACC_RUNNING), r.test_acc))
    if len(records) > 1:
        a = next(iter(aggregate_groups(records, metrics=(M.VAL_ACC, M.EPOCH), select=M.VAL_ACC).values()))
        full = a.count[M.VAL_ACC] == len(records)  # the points every repeat reached
        rows.append(final_row(f"mean of {len(records)}", a.mean[M.EPOCH][full], a.mean[M.VAL_ACC][full],
                              *(float(np.nanmean([row[k] for row in rows]))
                                for k in ("train_acc_end", "train_acc_running_last", "test_acc"))))
    return pd.DataFrame(rows)


def page_final(table: pd.DataFrame) -> pd.DataFrame:
    """final.csv as the report shows it: accuracies in percent, epochs whole, "not reached"."""
    def pct(v):
        return DASH if pd.isna(v) else f"{100 * v:.2f}%"

    def epoch(v, missing=NOT_REACHED):
        return missing if pd.isna(v) else f"{v:g}"
    shown = {"run": table["run"]}
    for t in THRESHOLDS:
        shown[f"validation first \u2265 {round(100 * t)}% (epoch)"] = [epoch(v) for v in
                                                                      table[f"val_first_{round(100 * t)}_epoch"]]
    shown.update({"best validation (epoch)": [f"{pct(v)} ({epoch(e, DASH)})" for v, e in
                                              zip(table["val_best"], table["val_best_epoch"])],
                  "final validation": [pct(v) for v in table["val_final"]],
                  "training split, eval mode, at the end": [pct(v) for v in table["train_acc_end"]],
                  "last epoch's batches, train mode (running)": [pct(v) for v in table["train_acc_running_last"]],
                  "test": [pct(v) for v in table["test_acc"]]})
    return pd.DataFrame(shown)


def loss_band(aggs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, low, high): at each step, the lowest and highest of the groups' mean training
    loss (one group per learning rate; means over repeats). A rate whose runs diverged or
    stopped early leaves the band where it has no value."""
    steps = np.array(sorted({int(s) for a in aggs for s in a.steps}))
    curves = np.full((len(aggs), len(steps)), np.nan)
    for i, a in enumerate(aggs):
        where = np.searchsorted(steps, a.steps)
        curves[i, where] = a.mean[M.LOSS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no rate reached that step
        return steps, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)


def landscape(records: list, select: str) -> dict:
    """{model: (steps, low, high)} of the landscape stage, one band per architecture."""
    by_arch: dict = {}
    for g, a in aggregate_groups(records, select=select).items():
        by_arch.setdefault(a.runs[0].config["arch"], []).append(a)
    return {arch: loss_band(groups) for arch, groups in by_arch.items()}


def resnet_report(results: dict, out: Path, study, families: dict, landscape_rates: tuple) -> dict:
    made = variants_report(results, out, study)
    ablations = ablation_table(aggregate_groups(results["ablations"], select=study.select), families)
    write_csv(out / "ablations.csv", ablations)
    bands = landscape(results["landscape"], study.select)
    labels = {"vgg_a": "VGG-A", "vgg_a_bn": "VGG-A with BatchNorm"}
    figure = out / "landscape.png"
    rates = ", ".join(f"{lr:g}" for lr in sorted({float(r.config["lr"]) for r in results["landscape"]}))
    n = max(r.repeat for r in results["landscape"]) + 1
    smooth = 1 if len(next(iter(bands.values()))[0]) < 200 else 20
    title = (f"Loss landscape: training loss at each step, lowest to highest over lr {rates}"
             + (f" (mean of {n} repeats)" if n > 1 else "") + (f", averaged over {smooth} steps" if smooth > 1 else ""))
    plot_loss_band({labels.get(k, k): v for k, v in bands.items()}, figure, title, smooth=smooth)
    caption = ("Per model, the band between the lowest and the highest training loss over the learning rates "
               f"({rates}; the study's are {', '.join(f'{lr:g}' for lr in landscape_rates)}) at every step: "
               "a narrower band is a loss that the step size changes less (Santurkar et al. 2018).")
    final = final_table(results["final"])
    write_csv(out / "final.csv", final)
    scored = {int(r.config["train_eval_size"]) for r in results["final"]}
    split = "the whole training split" if scored == {0} else f"a fixed sample of {', '.join(map(str, scored))} training images"
    tables = [(page_ablations(ablations), "Ablations: per family and variant, test and final validation accuracy (mean and "
                          "sample std over the finished repeats) and training time"),
              (page_final(final), "The final recipe beside the report's numbers (validation 93.39% at epoch 55, 95.09% "
                                  "at epoch 116; training 99.99%): the epoch at which validation accuracy (recorded "
                                  f"every epoch) first reached 93% and 95%; training accuracy in eval mode on {split} "
                                  "at the end, beside the running train-mode accuracy of the last epoch's augmented "
                                  "batches (final.csv)")]
    return {**made, "ablations": ablations, "final": final, "figures": made["figures"] + [(figure, caption)],
            "tables": made.get("tables", []) + tables}
