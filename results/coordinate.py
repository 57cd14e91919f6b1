"""The coordinate study's outputs: what the search tried at each setting and what it
chose (on validation accuracy), the path of choices, and the final configuration's
test accuracy, the only test-set scores of the study.

    out = coordinate_report(results, out_dir, study)   # results["search"]: a SearchRecords

Files: steps.csv (one row per setting and value: validation mean, spread, n, the final
training loss beside it as the report tabulates it, chosen, reused, why), path.csv (one
row per setting: what was kept, its loss, the gain and the noise it was judged against; a
last row with the final runs' test accuracy), final.csv (the final stage's summary),
best_config.json, curves.csv, path.png.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups, curves_table, summary_table
from results.cells import Missing, fmt_mean_sd, fmt_num, mean_sd_column
from results.io import write_csv, write_json
from results.search_plots import plot_search_path
from workloads import metrics as M


def describe(changes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "(the current best)"


def _key(config: dict) -> str:
    return repr(sorted((k, v) for k, v in config.items() if k != M.SEED))


def final_losses(search) -> dict:
    """{config key: [the final training loss of each finished run]} over a SearchRecords."""
    losses: dict = {}
    for r in search:
        if r.finished and np.isfinite(r.final(M.LOSS)):
            losses.setdefault(_key({k: r.config.get(k) for k in search.base}), []).append(r.final(M.LOSS))
    return losses


def _loss_columns(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"train_loss_mean": float(v.mean()) if len(v) else None,
            "train_loss_std": float(v.std(ddof=1)) if len(v) > 1 else None}


def step_table(history: list[dict], base: dict | None = None, losses: dict | None = None) -> pd.DataFrame:
    """One row per setting and value, in the order they were tried. With the search's `base`
    and `final_losses`, each row has its runs' final training loss (mean, std) too: a value's
    config is the best before its step with its changes."""
    rows = []
    for i, step in enumerate(history, 1):
        before = history[i - 2]["best"] if i > 1 else base
        for row in step["rows"]:
            loss = ({} if base is None or losses is None else
                    _loss_columns(losses.get(_key({**before, **row["changes"]}), [])))
            rows.append({"step": i, "setting": step["step"], "value": row["candidate"],
                         "changes": describe(row["changes"]), "n": row["n"],
                         "val_acc_mean": _finite(row["mean"]), "val_acc_std": _finite(row["std"]), **loss,
                         "chosen": row["chosen"], "reused": row["reused"],
                         "failed": "; ".join(f"r{f['repeat']}: {f['why']}" for f in row["failed"]),
                         "why": row["reason"]})
    return pd.DataFrame(rows)


def path_table(history: list[dict], final=None, base: dict | None = None, losses: dict | None = None) -> pd.DataFrame:
    """One row per setting: the value kept, its validation mean (and final training loss,
    given `base` and `final_losses`), the gain of the best challenger and the noise it had to
    beat; then the final runs (a GroupAggregate) with the test accuracy, which no search row
    has (its runs never scored the test set)."""
    rows = []
    for i, step in enumerate(history, 1):
        chosen = next(r for r in step["rows"] if r["chosen"])
        loss = {} if base is None or losses is None else _loss_columns(losses.get(_key(step["best"]), []))
        rows.append({"step": i, "setting": step["step"], "kept": step["chosen"],
                     "was": step["incumbent"], "changed": step["chosen"] != step["incumbent"],
                     "val_acc_mean": _finite(chosen["mean"]), "val_acc_std": _finite(chosen["std"]), **loss,
                     "n": chosen["n"], "gain": step["gain"], "noise": step["noise"],
                     "trained": sum(not r["reused"] and not r["reason"].startswith("invalid")
                                    for r in step["rows"])})
    if final is not None:
        val = np.array([r.final(M.VAL_ACC) for r in final.runs if r.finished])
        loss = [] if losses is None else [r.final(M.LOSS) for r in final.runs if r.finished]
        rows.append({"step": len(history) + 1, "setting": "final", "kept": "the search's best, new seeds",
                     "val_acc_mean": float(val.mean()) if len(val) else None,
                     "val_acc_std": float(val.std(ddof=1)) if len(val) > 1 else None,
                     **({} if losses is None else _loss_columns([x for x in loss if np.isfinite(x)])), "n": final.n,
                     "trained": len(final.runs), "test_acc_mean": final.test_mean, "test_acc_std": final.test_std,
                     "test_n": final.n_test})
    return pd.DataFrame(rows)


def page_path(path: pd.DataFrame) -> pd.DataFrame:
    """path.csv as the report shows it: mean and spread in one cell, numbers rounded, so
    that the table fits the page's width; the search's rows say their test set was not scored."""
    test = path.get("test_acc_mean", pd.Series(np.nan, index=path.index))
    test_sd = path.get("test_acc_std", pd.Series(np.nan, index=path.index))
    return pd.DataFrame({
        "step": path["step"], "setting": path["setting"], "kept": path["kept"], "was": path["was"],
        "validation (mean \u00b1 sd)": mean_sd_column(path, "val_acc"), **_loss_cells(path),
        "n": path["n"], "gain": [fmt_num(g, signed=True) for g in path["gain"]],
        "noise": [fmt_num(x) for x in path["noise"]], "trained": path["trained"],
        "test (mean \u00b1 sd)": [fmt_mean_sd(m, s) if pd.notna(m) else Missing("not scored")
                                 for m, s in zip(test, test_sd)]})


def page_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """steps.csv as the report shows it: the decision in words (reused and failed repeats
    included) instead of four columns of flags."""
    def decision(row) -> str:
        words = ("reused; " if row.reused else "") + row.why
        return words + (f" (failed: {row.failed})" if isinstance(row.failed, str) and row.failed else "")

    return pd.DataFrame({
        "step": steps["step"], "setting": steps["setting"], "value": steps["value"],
        "changes": steps["changes"], "n": steps["n"],
        "validation (mean \u00b1 sd)": mean_sd_column(steps, "val_acc"), **_loss_cells(steps),
        "decision": [decision(r) for r in steps.itertuples()]})


def _loss_cells(frame: pd.DataFrame) -> dict:
    """The final training loss as one 'mean \u00b1 sd' column, where the table has it."""
    return {"final training loss": mean_sd_column(frame, "train_loss")} if "train_loss_mean" in frame else {}


def _finite(value):
    return float(value) if value is not None and np.isfinite(value) else None


def coordinate_report(results: dict, out: Path, study) -> dict:
    search = results["search"]
    finals = aggregate_groups(results["final"], select=study.select)
    final = next(iter(finals.values()))
    losses = final_losses(search)
    steps = step_table(search.history, search.base, losses)
    path = path_table(search.history, final, search.base, losses)
    write_csv(out / "steps.csv", steps)
    write_csv(out / "path.csv", path)
    table = summary_table(finals, {final.group: {"val_acc_mean": path["val_acc_mean"].iloc[-1]}})
    write_csv(out / "final.csv", table)
    write_csv(out / "curves.csv", curves_table({**aggregate_groups(list(search), select=study.select), **finals}))
    changes = search.best_changes()
    write_json(out / "best_config.json", {"changes_from_base": changes, "config": search.best,
                                          "chosen_on": "validation accuracy (mean over repeats)",
                                          "test_acc": {"mean": final.test_mean, "std": final.test_std,
                                                       "n": final.n_test}})
    figure = out / "path.png"
    title = (f"{study.name}: validation accuracy along the path of choices "
             f"(mean +- std over {study.repeats} repeat(s))")
    last = path.iloc[-1]
    plot_search_path(search.history, (last["val_acc_mean"], last["val_acc_std"], final.test_mean, final.test_std,
                                      final.n), figure, title)
    caption = ("Each setting's values (grey, mean +- std of validation accuracy), the value kept (colour) "
               "and the path through them; the final configuration on new seeds: its validation accuracy "
               "(circle) and its test accuracy (star), the study's only test-set score.")
    trained = study.stage_config(study.stages[0]).train_images
    notes = [f"The search trains on {trained:,} images (the 50,000 less the validation split); the report it "
             f"follows trained on 40,000 (\"10,000 test images and 40,000 training images\").",
             f"The search chose on validation accuracy (mean over {study.repeats} repeat(s)) and never scored "
             f"the test set: its groups have no test accuracy. The final configuration ({describe(changes)}) "
             f"was trained again on seeds the search never used; its runs are the study's only test-set scores."]
    tables = [(page_path(path), "The path of choices: per setting, the value kept, its validation accuracy, and the gain of "
                     "the best challenger against the noise it had to beat; last, the final runs"),
              (page_steps(steps), "Every value of every setting, in the order tried (reused: its results came "
                                  "from an earlier setting; the rule: the best challenger replaces the value kept "
                                  "only if its mean is higher by more than the noise)")]
    return {"summary": path, "steps": steps, "final": table, "figures": [(figure, caption)],
            "best_changes": describe(changes), "notes": notes, "tables": tables}
