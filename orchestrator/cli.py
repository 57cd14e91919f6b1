"""Command line.

    python -m orchestrator list
    python -m orchestrator plan part3 --quick repeats=3
    python -m orchestrator sweep part3 --quick [--data-dir DIR] [key=value ...]
    python -m orchestrator sweep part3 --resume --out runs/part3/20261123-141500
    python -m orchestrator sweep part3 --address auto --storage /mnt/shared/runs   # on a cluster
    python -m orchestrator report runs/part3/20261123-141500      # report.html/.md again, no Ray
    python -m orchestrator compare RUN_A RUN_B       # two runs of one study, group by group
    python -m orchestrator data --data-dir DIR       # download / verify CIFAR-10
    python -m orchestrator evaluate runs/elec5307/20261204-120000/baseline.pt   # test accuracy of saved weights

Bad input ends in one line on stderr and exit code 2, before any work starts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search_spaces import get_study, studies
from search_spaces.study import Study, plan_runs
from workloads.config import ConfigError
from workloads.data import DataError, load_cifar10, resolve_data_dir

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command Ctrl-C stopped


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UsageError(message)


def build_parser() -> Parser:
    p = Parser(prog="python -m orchestrator", description="Sweeps of CIFAR-10 studies on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="the studies and their trial counts")
    for name in ("plan", "sweep"):
        s = sub.add_parser(name, help="print the trial grid" if name == "plan" else "run a study")
        s.add_argument("study")
        s.add_argument("overrides", nargs="*", metavar="key=value")
        s.add_argument("--quick", action="store_true", help="the same path, small: minutes on a laptop")
        if name == "sweep":
            s.add_argument("--dry-run", action="store_true", help="print the trial grid and stop")
            s.add_argument("--out", help="output folder (default runs/STUDY/TIMESTAMP)")
            s.add_argument("--data-dir", help="CIFAR-10 folder (else $ORCHESTRATOR_DATA, else ./data)")
            s.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT")
            s.add_argument("--storage", help="results storage every node reaches (folder or URI)")
            s.add_argument("--cpus-per-trial", type=float, default=1.0)
            s.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU")
            s.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
            s.add_argument("--num-gpus", type=float, help="GPUs of a local Ray (default: detected)")
            s.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial")
            s.add_argument("--repeats-per-trial", type=int, default=1,
                           help="repeats of a group trained together as one vectorized model")
            s.add_argument("--resume", action="store_true",
                           help="finish the sweep in --out (default: the study's latest run)")
            s.add_argument("--quiet", action="store_true", help="no progress line")
            s.add_argument("-v", "--verbose", action="store_true",
                           help="Ray Tune's table of trials and the trials' own log lines")
    r = sub.add_parser("report", help="write report.html and report.md again from a finished run, without Ray")
    r.add_argument("run", help="a finished sweep's folder")
    c = sub.add_parser("compare", help="two finished runs of one study: per group, B's test accuracy minus A's")
    c.add_argument("run_a")
    c.add_argument("run_b")
    d = sub.add_parser("data", help="download (when online) and verify CIFAR-10")
    d.add_argument("--data-dir")
    e = sub.add_parser("evaluate", help="test accuracy of saved weights (NAME.pt with its NAME.json)")
    e.add_argument("weights")
    e.add_argument("--data-dir", help="CIFAR-10 folder (else $ORCHESTRATOR_DATA, else ./data)")
    return p


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        out[key.strip()] = value
    return out


def resolve_study(args) -> Study:
    study = get_study(args.study)
    if args.quick:
        study = study.with_quick()
    return study.with_overrides(parse_overrides(args.overrides))


def saved_study(saved: dict) -> Study:
    """The study a sweep ran, from its sweep.json."""
    return resolve_study(argparse.Namespace(study=saved["study"], quick=saved["quick"],
                                            overrides=saved["overrides"]))


def plan_lines(study: Study) -> list[str]:
    lines = [f"{study.name}: {study.description}"]
    for stage in study.stages:
        if stage.search is not None:
            lines += stage.search.plan_lines(stage.name, study.repeats)
            continue
        if stage.derive is not None:
            lines.append(f"stage {stage.name}: grid computed from earlier stages' results")
            continue
        trials = study.stage_trials(stage, {})
        runs = plan_runs(trials, stage.prefix)
        lines.append(f"stage {stage.name}: {len(runs)} trials" +
                     (f", {len(trials)} results" if len(trials) != len(runs) else ""))
        base = runs[0].config.to_flat()
        varying = sorted({k for r in runs for k, v in r.config.to_flat().items() if v != base[k]})
        lines.append("  shared: " + ", ".join(f"{k}={v}" for k, v in base.items() if k not in varying))
        for r in runs:
            flat = r.config.to_flat()
            serves = [t.name for t in r.trials[1:]]
            lines.append(f"  {r.name:<24} " + " ".join(f"{k}={flat[k]}" for k in varying)
                         + (f"  (also serves {', '.join(serves)})" if serves else ""))
    return lines


def trial_count(study: Study) -> str:
    counts = [str(len(plan_runs(study.stage_trials(s, {}), s.prefix))) if s.planned
              else f"<={s.search.most_trials(study.repeats)}" if s.search else "?" for s in study.stages]
    return "+".join(counts)


def cmd_list(args) -> int:
    for name, study in studies().items():
        print(f"{name:<10} {trial_count(study):>8} trials ({trial_count(study.with_quick())} quick)  "
              f"{study.description}")
    return 0


def cmd_plan(args) -> int:
    print("\n".join(plan_lines(resolve_study(args))))
    return 0


def request_of(args, argv):
    from orchestrator.sweeps import Request
    return Request(args.study, tuple(args.overrides), quick=args.quick, resume=args.resume, out=args.out,
                   data_dir=args.data_dir, storage=args.storage, address=args.address,
                   cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                   num_cpus=args.num_cpus, num_gpus=args.num_gpus, max_failures=args.max_failures,
                   repeats_per_trial=args.repeats_per_trial,
                   verbose=0 if args.quiet else 2 if args.verbose else 1, argv=tuple(argv))


def cmd_sweep(args, argv) -> int:
    from orchestrator.driver import SweepError
    from orchestrator.report import SWEEP_FILE
    from orchestrator.sweeps import Interrupted, output_folder, run, with_saved
    request = request_of(args, argv)
    if args.dry_run:  # the grid; with --resume, what it would finish
        out = output_folder(request) if args.resume else None
        if out is not None and (out / SWEEP_FILE).exists():
            request = with_saved(request, json.loads((out / SWEEP_FILE).read_text()))
        print("\n".join(plan_lines(request.resolve_study())))
        return 0
    try:
        finished = run(request)
    except SweepError as e:
        print(f"orchestrator: {e}", file=sys.stderr)
        if e.folder and (e.folder / "report.html").exists():
            print(f"what finished and what failed: {e.folder / 'report.html'}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"orchestrator: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\n".join(finished.closing_lines()))
    return 0


def cmd_report(args, argv) -> int:
    from orchestrator.report import finished_run, rewrite
    folder, saved, prov = finished_run(args.run)
    path, seconds = rewrite(saved_study(saved), folder, prov, argv)
    print(f"report: {path} and report.md (written in {seconds:.1f} s)")
    return 0


def cmd_compare(args) -> int:
    from orchestrator.report import compare_lines, finished_run
    a, b = finished_run(args.run_a), finished_run(args.run_b)
    if a[1]["study"] != b[1]["study"]:
        raise UsageError(f"{a[0]} is a run of {a[1]['study']} and {b[0]} of {b[1]['study']}: "
                         f"compare two runs of the same study")
    print("\n".join(compare_lines(a, b, saved_study(a[1]).select)))
    return 0


def cmd_data(args) -> int:
    root = resolve_data_dir(args.data_dir)
    raw = load_cifar10(root)
    print(f"CIFAR-10 ok at {root}: {len(raw.train_x)} training, {len(raw.test_x)} test images")
    return 0


def cmd_evaluate(args) -> int:
    """The role of the course's project1.py: one line with the test accuracy of saved weights."""
    from workloads.saved import build, load_weights, test_accuracy
    cfg, state = load_weights(Path(args.weights))  # bad files: one line, before the data is read
    model = build(cfg, state)                      # so are weights that do not fit the model
    acc, n = test_accuracy(cfg, model, load_cifar10(resolve_data_dir(args.data_dir)))
    print(f"{args.weights}: test accuracy {acc:.4f} on {n} images ({cfg.model.arch}, eval_view {cfg.data.eval_view})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Overrides may come before or after options: collect the key=value leftovers.
        args, rest = build_parser().parse_known_args(argv)
        stray = [r for r in rest if "=" not in r or r.startswith("-")]
        if stray:
            raise UsageError(f"unrecognized arguments: {' '.join(stray)}")
        if rest and not hasattr(args, "overrides"):
            raise UsageError(f"{args.command} takes no key=value overrides")
        if rest:
            args.overrides = list(args.overrides) + rest
        if args.command == "list":
            return cmd_list(args)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "data":
            return cmd_data(args)
        if args.command == "report":
            return cmd_report(args, argv)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_sweep(args, argv)
    except (UsageError, ConfigError, DataError) as e:
        print(f"orchestrator: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before a sweep's folder exists: nothing to resume
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
