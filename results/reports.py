"""Each study's outputs (pickles in the assignment's format, tables, plots),
composed from the pure aggregation and the plotting module.

A report is `report(results, out_dir, study)` where `results` maps each stage's
name to its RunRecords.
"""
from __future__ import annotations

from pathlib import Path

from results.aggregate import aggregate_groups, curves_table, summary_table
from results.io import save_torch, write_csv, write_pickle
from results.plots import plot_comparison, plot_first_layer
from workloads import metrics as M
from workloads.models import build_model, count_parameters


def part3_report(results: dict, out: Path, study) -> dict:
    aggs = aggregate_groups(results["train"])
    extra = {}
    for name, a in aggs.items():
        arch = a.best.config["arch"]
        extra[name] = {"arch": arch, "parameters": count_parameters(build_model(arch))}
        write_pickle(out / f"part3_{name}.pkl", {
            "name": name,
            "loss_curve": a.mean[M.LOSS].tolist(),
            "train_acc_curve": a.mean[M.TRAIN_ACC].tolist(),
            "val_acc_curve": a.mean[M.VAL_ACC].tolist(),
            "test_acc": float(a.test_accs.max()),
            "weights": a.best.first_layer,
        })
        save_torch(out / "best" / f"{name}.pt", a.best.state_dict)
        plot_first_layer(a.best.first_layer, f"{name} (best of {a.n}, test {a.test_accs.max():.3f})",
                         out / f"weights_{name}.png")
    table = summary_table(aggs, extra)
    write_csv(out / "summary.csv", table)
    write_csv(out / "curves.csv", curves_table(aggs))
    plot_comparison(aggs, [M.LOSS, M.TRAIN_ACC, M.VAL_ACC], out / "compare.png",
                    title=f"{study.name}: mean +- std over repeats")
    return {"summary": table}
