"""The resnet study's outputs: everything variants_report writes (summary.csv,
curves.csv, one figure per Figure of the study), the ablation table the report
prints (test accuracy with its spread, training time, per variant of each family),
and the loss landscape: per model, the band between the lowest and the highest
training loss over its learning rates at every step.

    out = resnet_report(results, out_dir, study)   # {"summary", "ablations", "figures"}
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups, summary_table
from results.cells import mean_sd_column
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


def resnet_report(results: dict, out: Path, study) -> dict:
    from search_spaces.resnet import FAMILIES, LANDSCAPE_RATES
    made = variants_report(results, out, study)
    ablations = ablation_table(aggregate_groups(results["ablations"], select=study.select), FAMILIES)
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
               f"({rates}; the study's are {', '.join(f'{lr:g}' for lr in LANDSCAPE_RATES)}) at every step: "
               "a narrower band is a loss that the step size changes less (Santurkar et al. 2018).")
    tables = [(page_ablations(ablations), "Ablations: per family and variant, test and final validation accuracy (mean and "
                          "sample std over the finished repeats) and training time")]
    return {**made, "ablations": ablations, "figures": made["figures"] + [(figure, caption)],
            "tables": made.get("tables", []) + tables}
