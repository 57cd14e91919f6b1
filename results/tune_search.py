"""The report of a study with a Tune search stage (search_spaces/tune_search.py): every
candidate (what it sampled, its validation score, whether it finished or was stopped early by
ASHA, and at which epoch), the one chosen, and the final runs of that configuration on new
seeds, the only test-set scores of the study.

    out = tune_report(results, out_dir, study)   # results["search"]: a SearchRecords

Files: candidates.csv (one row per candidate), final.csv (the final stage's summary),
best_config.json, candidates.png (each candidate's validation curve; stopped ones dashed,
ending in a cross).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups, summary_table
from results.cells import Missing, fmt_num
from results.io import save_figure, write_csv, write_json
from workloads import metrics as M


def status_words(row: dict) -> str:
    if row["status"] == M.STOPPED_EARLY:
        return f"stopped early at epoch {row['stopped_at']:.3g} (ASHA)"
    if row["status"] == "failed":
        return f"failed: {row['why']}"
    return row["status"]


def candidate_table(history: list[dict], space_keys: list[str]) -> pd.DataFrame:
    """candidates.csv: one row per candidate in the order Tune created them."""
    return pd.DataFrame([{"candidate": row["candidate"], **{k: row["changes"].get(k) for k in space_keys},
                          "val_score": row["score"], "status": row["status"], "stopped_at_epoch": row["stopped_at"],
                          "epochs_trained": row["epochs"], "chosen": row["chosen"], "why": row["why"]}
                         for row in history])


def page_candidates(history: list[dict], metric: str) -> pd.DataFrame:
    """The candidates as the report shows them, best completed first, then stopped and failed."""
    order = {M.FINISHED: 0, M.STOPPED_EARLY: 1}
    sign = -1.0 if metric == M.VAL_ACC else 1.0
    rows = sorted(history, key=lambda r: (order.get(r["status"], 2),
                                          np.inf if r["score"] is None else sign * r["score"]))
    return pd.DataFrame([{"candidate": r["candidate"] + (" (chosen)" if r["chosen"] else ""),
                          "changes": changes_text(r["changes"]),
                          f"last {metric}": fmt_num(r["score"]) if r["score"] is not None else Missing("none"),
                          "epochs trained": fmt_num(r["epochs"], 2) if r["epochs"] is not None else Missing(),
                          "status": status_words(r)} for r in rows])


def changes_text(changes: dict) -> str:
    """What a candidate sampled, in words: 'lr=0.0123, batch_size=64'."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())


def plot_candidates(search, metric: str, path: Path, title: str) -> None:
    by_name = {r.group: r for r in search}
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for row in search.history:
        r = by_name.get(row["candidate"])
        if r is None or metric not in r.curves:
            continue
        c = r.curves[[M.EPOCH, metric]].dropna()
        stopped = row["status"] == M.STOPPED_EARLY
        ax.plot(c[M.EPOCH], c[metric], ls="--" if stopped else "-", lw=2.5 if row["chosen"] else 1,
                color="C3" if row["chosen"] else "C0" if not stopped else "0.55",
                label=f"{row['candidate']} (chosen)" if row["chosen"] else None)
        if stopped and len(c):
            ax.plot(c[M.EPOCH].iloc[-1], c[metric].iloc[-1], "x", color="0.3")
    ax.set_xlabel("epoch")
    ax.set_ylabel(M.TITLES.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def tune_report(results: dict, out: Path, study) -> dict:
    search, stage = results["search"], next(s for s in study.stages if s.name == "search")
    spec = stage.search
    finals = aggregate_groups(results["final"], select=study.select)
    final = next(iter(finals.values()))
    keys = [k for k, _ in spec.space]
    table = candidate_table(search.history, keys)
    write_csv(out / "candidates.csv", table)
    final_table = summary_table(finals)
    write_csv(out / "final.csv", final_table)
    chosen = next(row for row in search.history if row["chosen"])
    changes = search.best_changes()
    write_json(out / "best_config.json", {
        "changes_from_base": changes, "config": search.best, "candidate": chosen["candidate"],
        "chosen_on": f"the last {spec.metric} of the candidates that completed (one run each)",
        "test_acc": {"mean": final.test_mean, "std": final.test_std, "n": final.n_test}})
    figure = out / "candidates.png"
    plot_candidates(search, spec.metric, figure, f"{study.name}: every candidate's {spec.metric}; dashed: "
                                                 f"stopped early by ASHA")
    counts = table["status"].value_counts()
    stopped, failed = int(counts.get(M.STOPPED_EARLY, 0)), int(counts.get("failed", 0))
    epochs = table["epochs_trained"].dropna()
    full = study.stage_config(stage).train.epochs
    notes = [f"The search ({spec.describe()}) trained {len(table)} candidates, one run each with the stage's seed, "
             f"on validation data only: {stopped} stopped early, {failed} failed. They trained "
             f"{epochs.sum():.3g} epochs in all, against {len(table) * full} had each run its {full}."
             if spec.scheduler else
             f"The search ({spec.describe()}) trained {len(table)} candidates to the end, one run each with the "
             f"stage's seed, on validation data only ({failed} failed).",
             f"Chosen: {chosen['candidate']} ({changes_text(chosen['changes'])}), "
             f"the best last {spec.metric} among the candidates that completed"
             + (" (a candidate stopped early trained less: its score is not comparable)" if spec.scheduler else "")
             + f". It was trained again with {final.n} repeat(s) on seeds the "
             f"search never used; those runs are the study's only test-set scores."]
    caption = (f"Each candidate's {spec.metric} over epochs: the chosen one thick, those ASHA stopped dashed and "
               f"ending in a cross where they were stopped.")
    return {"summary": table, "final": final_table, "figures": [(figure, caption)], "notes": notes,
            "best_changes": ", ".join(f"{k}={v}" for k, v in changes.items()),
            "tables": [(page_candidates(search.history, spec.metric),
                        "Every candidate of the search: what it sampled, its last validation score, how long it "
                        "trained, and whether it finished or was stopped early")]}
