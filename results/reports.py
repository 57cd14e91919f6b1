"""Each study's outputs (pickles in the assignment's format, tables, plots),
composed from the pure aggregation and the plotting module.

A report is `report(results, out_dir, study)` where `results` maps each stage's
name to its RunRecords. It returns {"summary": its table, "figures": [(png path,
caption), ...]} and optionally "folded" [(heading, [(png path, caption)])], "tables"
[(DataFrame, caption)] and "notes" [text]:
what results/document.py adds to the report page beside what it builds for
every study.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from results.aggregate import aggregate_groups, curves_table, summary_table
from results.io import save_weights, write_csv, write_json, write_pickle
from results.plateau import first_plateau, second_plateau
from results.plots import BAND, plot_comparison, plot_first_layer, plot_schedules
from results.stats import summarize
from workloads import metrics as M
from workloads.config import starting_lr


def loss_words(cfg: dict) -> str:
    """What a run's recorded training loss is (TrainConfig.record_loss)."""
    return ("the loss of the record's own step (record_loss=last: the assignment's loss.item())"
            if cfg["record_loss"] == "last" else "the mean mini-batch loss since the previous record (record_loss=mean)")


def train_acc_words(cfg: dict) -> str:
    """What a run's training accuracy scores (DataConfig.train_eval_size)."""
    n = int(cfg["train_eval_size"])
    return "the whole training split" if n == 0 else f"a fixed sample of {n:,} training images"


def part3_report(results: dict, out: Path, study) -> dict:
    """part3_<arch>.pkl, the assignment's dict, per architecture:
      name             the architecture
      loss_curve       training loss every record_every steps, mean over repeats: the loss of the
                       record's own step (record_loss=last, the default: the assignment's loss.item()),
                       or the mean since the previous record (record_loss=mean)
      train_acc_curve  eval-mode accuracy on the whole training split (train_eval_size=0, the
                       default), or on a fixed sample of that many training images (--quick: 1,000)
      val_acc_curve    eval-mode accuracy on the validation split (500 images a class)
      test_acc         the best test accuracy over the repeats
      weights          the first layer of the run with that test accuracy
    The report's caption says which loss and which training accuracy the runs recorded."""
    aggs = aggregate_groups(results["train"], select=study.select)
    extra, weights = {}, []
    for name, a in aggs.items():
        extra[name] = {"arch": a.runs[0].config["arch"]}
        write_pickle(out / f"part3_{name}.pkl", {
            "name": name,
            "loss_curve": a.mean[M.LOSS].tolist(),
            "train_acc_curve": a.mean[M.TRAIN_ACC].tolist(),
            "val_acc_curve": a.mean[M.VAL_ACC].tolist(),
            "test_acc": float(a.test_accs.max()),
            "weights": a.best.first_layer,
        })
        if a.best.weights is not None:  # None when re-reported from the saved records: the sweep's file stays
            # read from its checkpoint now; its config beside it, for `evaluate`
            save_weights(out / "best" / f"{name}.pt", a.best.state_dict(), a.best.config)
        if a.best.first_layer is None:  # metrics= without first_layer: the runs did not keep it
            continue
        plot_first_layer(a.best.first_layer, f"{name} (best of {a.n}, test {a.test_accs.max():.3f})",
                         out / f"weights_{name}.png")
        weights.append((out / f"weights_{name}.png",
                        f"{name}: first-layer weights of the best of {a.n} runs (by {study.select}), each "
                        f"unit or filter scaled to its own range"))
    table = summary_table(aggs, extra)
    write_csv(out / "summary.csv", table)
    write_csv(out / "curves.csv", curves_table(aggs))
    plot_comparison(aggs, [M.LOSS, M.TRAIN_ACC, M.VAL_ACC], out / "compare.png",
                    title=f"{study.name}: {BAND} over repeats")
    cfg = results["train"][0].config
    curves = (out / "compare.png", f"Training loss, training and validation accuracy against optimizer "
                                   f"steps ({BAND} over repeats); test accuracy per architecture "
                                   f"(bars: mean and its 95% interval; dash: the best run). Training loss: "
                                   f"{loss_words(cfg)}; training accuracy: eval mode on {train_acc_words(cfg)}.")
    return {"summary": table, "figures": [curves],
            "folded": [("First-layer weights of each architecture's best run", weights)]}


def part4_report(results: dict, out: Path, study) -> dict:
    """Per architecture: part4_<arch>.pkl and part4_<arch>.png (ReLU and sigmoid
    side by side); summary.csv and curves.csv (means with std and n) for all groups.
    The pickle's *_loss_curve is the training loss every record_every steps: the loss of the
    record's own step (record_loss=last, the default: the assignment's loss.item()), or the
    mean since the previous record (record_loss=mean); *_grad_curve the first layer's gradient
    norm at that step."""
    aggs = aggregate_groups(results["train"], select=study.select)
    pairs: dict[str, dict] = {}   # arch -> {activation: GroupAggregate}
    extra, figures = {}, []
    for name, a in aggs.items():
        cfg = a.runs[0].config
        pairs.setdefault(cfg["arch"], {})[cfg["activation"]] = a
        extra[name] = {"arch": cfg["arch"], "activation": cfg["activation"],
                       "final_loss": float(a.mean[M.LOSS][-1]),
                       "grad_norm_first": float(a.mean[M.GRAD_NORM][0]),
                       "grad_norm_last": float(a.mean[M.GRAD_NORM][-1]),
                       "grad_norm_median": float(np.median(a.mean[M.GRAD_NORM]))}
    for arch, by_act in pairs.items():
        def curve(activation, metric):
            a = by_act.get(activation)
            return a.mean[metric].tolist() if a is not None else None
        write_pickle(out / f"part4_{arch}.pkl", {
            "name": arch,
            "relu_loss_curve": curve("relu", M.LOSS),
            "sigmoid_loss_curve": curve("sigmoid", M.LOSS),
            "relu_grad_curve": curve("relu", M.GRAD_NORM),
            "sigmoid_grad_curve": curve("sigmoid", M.GRAD_NORM),
        })
        n = max(a.n for a in by_act.values())
        lr = next(iter(by_act.values())).runs[0].config["lr"]
        plot_comparison(by_act, [M.LOSS, M.GRAD_NORM], out / f"part4_{arch}.png", test_bars=False,
                        title=f"{arch}: ReLU vs sigmoid, SGD lr {lr}"
                              + (f", {BAND} over {n} repeats" if n > 1 else ""))
        figures.append((out / f"part4_{arch}.png",
                        f"{arch}: ReLU against sigmoid, training loss and the first layer's gradient norm "
                        f"(log scale) against optimizer steps" + (f"; {BAND} over {n} repeats" if n > 1 else "")))
    table = summary_table(aggs, extra)
    write_csv(out / "summary.csv", table)
    write_csv(out / "curves.csv", curves_table(aggs))
    return {"summary": table, "figures": figures}





def lr_tag(lr: float) -> str:
    """0.1 -> '1', 0.01 -> '01', 0.001 -> '001' (the assignment's key suffixes)."""
    text = np.format_float_positional(float(lr), trim="-")
    return text[2:] if text.startswith("0.") else text.replace(".", "_")


def part5_report(results: dict, out: Path, study) -> dict:
    """part5_<arch>.pkl and part5_<arch>_rates.png from the constant rates (the pickle's
    loss_curve_*: the training loss every record_every steps, the loss of the record's own step
    with record_loss=last, the default, as the assignment's loss.item(); the mean since the
    previous record with record_loss=mean);
    part5_<arch>_schedules.png with the detected switch points; summary.csv
    (every group), schedule_vs_adam.csv, switches.json and curves.csv.

    The plateaus the study derived its schedules from (results.plateau.first_plateau and
    second_plateau, read again from the same records) are drawn and written to switches.json."""
    rates = aggregate_groups(results["rates"], M.CURVES, select=study.select)
    rates = dict(sorted(rates.items(), key=lambda kv: -float(kv[1].runs[0].config["lr"])))
    arch = next(iter(rates.values())).runs[0].config["arch"]
    record = {"name": arch}
    for key, metric in (("loss_curve", M.LOSS), ("val_acc_curve", M.VAL_ACC)):
        for a in rates.values():
            record[f"{key}_{lr_tag(a.runs[0].config['lr'])}"] = a.mean[metric].tolist()
    write_pickle(out / f"part5_{arch}.pkl", record)
    labelled = {f"lr={a.runs[0].config['lr']}": a for a in rates.values()}
    plot_comparison(labelled, [M.LOSS, M.VAL_ACC], out / f"part5_{arch}_rates.png",
                    title=f"part5 {arch}: SGD at constant rates")

    later = {name: aggregate_groups(results[name], M.CURVES, select=study.select)
             for name in ("one_switch", "two_switches", "adam")}
    one, two, adam = (next(iter(later[n].values())) for n in ("one_switch", "two_switches", "adam"))
    (e1, _), (e2, _) = two.runs[0].config["lr_schedule"]
    high_label = next(iter(labelled))
    first, second = first_plateau(results), second_plateau(results)
    plot_schedules({high_label: rates[next(iter(rates))], "one switch": one, "two switches": two,
                    "adam": adam},
                   [(high_label, first), ("one switch", second)],
                   [(e1, f"e1={e1}"), (e2, f"e2={e2}")], out / f"part5_{arch}_schedules.png",
                   title=f"part5 {arch}: schedules from the plateaus (test acc: two switches "
                         f"{two.test_mean:.3f}, Adam {adam.test_mean:.3f})")

    everything = {**rates, **later["one_switch"], **later["two_switches"], **later["adam"]}
    stage_of = {g: s for s, recs in results.items() for g in {r.group for r in recs}}
    extra = {g: {"stage": stage_of[g], "optimizer": a.runs[0].config["optimizer"],
                 "lr": rate(a.runs[0].config),
                 "lr_schedule": describe_schedule(a.runs[0].config), "epochs": a.runs[0].config["epochs"],
                 "final_val_acc": float(a.mean[M.VAL_ACC][-1])}
             for g, a in everything.items()}
    table = summary_table(everything, extra)
    write_csv(out / "summary.csv", table)
    compare, verdict = against_adam(table, two, adam)
    write_csv(out / "schedule_vs_adam.csv", compare)
    write_csv(out / "curves.csv", curves_table(everything))
    write_json(out / "switches.json", {
        "rule": asdict(first.rule),
        "e1": int(e1), "e2": int(e2),
        "first": plateau_summary(first, f"{high_label} validation curve (mean over repeats)"),
        "second": plateau_summary(second, "one_switch validation curve after e1 (mean over repeats)"),
    })
    figures = [(out / f"part5_{arch}_rates.png", f"SGD at constant learning rates: training loss ("
                                                 f"{loss_words(next(iter(rates.values())).runs[0].config)}) and "
                                                 f"validation accuracy against steps ({BAND} over repeats)"),
               (out / f"part5_{arch}_schedules.png",
                f"The schedules against epochs, with the plateaus they were derived from: the {high_label} "
                f"run's validation curve stops rising at epoch {first.last_improvement:.2f} (switch at "
                f"e1={e1}), the one-switch run's at {second.last_improvement:.2f} (e2={e2}); {BAND}")]
    return {"summary": table, "comparison": compare, "figures": figures, "notes": [verdict],
            "tables": [(compare, "Two switches against Adam, part3's recipe for the same model "
                                 "(schedule_vs_adam.csv): Adam's mean, its 95% t interval and best")]}


def against_adam(table, two, adam) -> tuple:
    """(schedule_vs_adam table, a sentence): the two-switch schedule's test accuracy against the
    Adam runs' (the assignment's "same model trained with Adam in 3.1", repeated): their mean,
    its 95% t interval, and their best; where the schedule's accuracy lies against that interval."""
    compare = table.set_index("group").loc[[two.group, adam.group]].reset_index()
    compare = compare[["group", "optimizer", "lr_schedule", "epochs", "n", "test_acc_mean",
                       "test_acc_std", "test_acc_best", "final_val_acc"]]
    s = summarize(adam.test_accs) if adam.n_test else None
    low, high = (s.ci_low, s.ci_high) if s else (None, None)
    compare["minus_adam"] = compare["test_acc_mean"] - adam.test_mean if s else None
    compare["adam_ci_low"], compare["adam_ci_high"] = low, high
    accuracy = two.test_mean
    if s is None or accuracy is None:
        return compare, "Two switches against Adam: no test accuracy on " + (
            "either side." if s is None and accuracy is None else "Adam's side." if s is None else "the schedule's side.")
    where = ("no interval (n = 1)" if low is None else "above it" if accuracy > high
             else "below it" if accuracy < low else "within it")
    return compare, (f"Two switches: test accuracy {accuracy:.4f}" + (f" (mean of {two.n})" if two.n > 1 else "")
                     + f"; Adam, part3's recipe for {adam.runs[0].config['arch']} over {s.n} repeats: mean "
                     f"{s.mean:.4f}" + (f", 95% interval [{low:.4f}, {high:.4f}]" if low is not None else "")
                     + f", best {s.best:.4f}. The schedule's accuracy is {accuracy - s.mean:+.4f} from Adam's "
                     f"mean: {where}" + ("" if low is None else " (the interval is of Adam's mean, not of one run)")
                     + ".")


def describe_schedule(cfg: dict) -> str:
    """'0.1 -> 0.01@7 -> 0.001@12' (a rate and the epoch each later one starts at)."""
    parts = [str(rate(cfg))] + [f"{lr}@{int(e)}" for e, lr in cfg["lr_schedule"]]
    return " -> ".join(parts)


def rate(cfg: dict) -> float:
    """The rate a run started with (lr 0 is the optimizer's default)."""
    return starting_lr(cfg["lr"], cfg["optimizer"])


def plateau_summary(p, source: str) -> dict:
    return {"source": source, "switch_epoch": p.switch_epoch, "last_improvement": p.last_improvement,
            "smoothed_best": p.best, "stalled": p.stalled, "clamped": p.clamped}


def variants_report(results: dict, out: Path, study) -> dict:
    """summary.csv (what each group changes, its parameters and status, final and best test
    accuracy with the epoch of the best, training seconds per epoch), curves.csv, and the
    study's figures (search_spaces.study.Figure), one PNG each."""
    records = [r for stage in results.values() for r in stage]
    aggs = aggregate_groups(records, select=study.select)
    extra = {g: best_epochs(a) for g, a in aggs.items()}
    table = summary_table(aggs, extra)
    write_csv(out / "summary.csv", table)
    write_csv(out / "curves.csv", curves_table(aggs))
    figures = []
    for f in study.figures:
        chosen = {g: aggs[g] for g in f.groups or aggs if g in aggs}  # groups=(): every group
        if chosen:
            path = out / f"{f.name}.png"
            plot_comparison(chosen, f.metrics, path, test_bars=False, title=f.title, x=M.EPOCH, log=f.log,
                            overlay=f.overlay)
            many = max(len(a.runs) for a in chosen.values()) > 1
            figures.append((path, f"{f.title}. Against epochs; " + (f"{BAND} over repeats." if many else
                                                                    "one run a group (repeats=N adds bands).")))
    return {"summary": table, "figures": figures}


def best_epochs(a) -> dict:
    """Final and best (mean over repeats) test and validation accuracy, with the epoch of the best."""
    out = {}
    for metric in (M.TEST_ACC, M.VAL_ACC):
        if metric in a.mean and np.isfinite(a.mean[metric]).any():
            curve, epochs = a.mean[metric], a.mean[M.EPOCH]
            i = int(np.nanargmax(curve))
            out.update({f"{metric}_final_curve": float(curve[np.isfinite(curve)][-1]),
                        f"{metric}_best_curve": float(curve[i]), f"{metric}_best_epoch": float(epochs[i])})
    return out
