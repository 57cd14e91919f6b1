"""What each command does, once the command line is parsed (orchestrator/cli.py):
every function takes argparse's namespace, prints, and returns the exit code. Bad
input raises ConfigError or DataError (one line, exit code 2, from cli.main).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.request import Request
from search_spaces import get_study, studies
from search_spaces.study import Study
from workloads.data import load_cifar10, resolve_data_dir
from workloads.registry import ConfigError


def resolve_study(args) -> Study:
    return Request(args.study, tuple(args.overrides), quick=args.quick).resolve_study()


def saved_study(saved: dict) -> Study:
    """The study a sweep ran, from its sweep.json (a study file from the text it kept)."""
    return Request(saved["study"], tuple(saved["overrides"]), quick=saved["quick"],
                   study_text=saved.get("study_file", {}).get("text")).resolve_study()


def cmd_list(args, argv=None) -> int:
    chosen = {name: get_study(name) for name in args.studies} if args.studies else studies()
    for name, study in chosen.items():
        print(f"{name:<10} {study.plan.count():>8} trials ({study.with_quick().plan.count()} quick)  "
              f"{study.description}")
    return 0


def cmd_plan(args, argv=None) -> int:
    print("\n".join(resolve_study(args).plan.lines()))
    return 0


def request_of(args, argv) -> Request:
    return Request(args.study, tuple(args.overrides), quick=args.quick, resume=args.resume, out=args.out,
                   data_dir=args.data_dir, storage=args.storage, address=args.address,
                   cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                   num_cpus=args.num_cpus, num_gpus=args.num_gpus, max_failures=args.max_failures,
                   repeats_per_trial=args.repeats_per_trial, log=tuple(args.log or ()),
                   verbose=0 if args.quiet else 2 if args.verbose else 1, argv=tuple(argv))


def cmd_sweep(args, argv) -> int:
    from orchestrator.experiment import SweepError
    from orchestrator.report import SWEEP_FILE
    from orchestrator.sweeps import output_folder, run, with_saved
    request = request_of(args, argv)
    if args.dry_run:  # the grid; with --resume, what it would finish
        out = output_folder(request) if args.resume else None
        if out is not None and (out / SWEEP_FILE).exists():
            request = with_saved(request, json.loads((out / SWEEP_FILE).read_text()))
        print("\n".join(request.resolve_study().plan.lines()))
        return 0
    try:
        finished = run(request)
    except SweepError as e:
        print(f"orchestrator: {e}", file=sys.stderr)
        if e.folder and (e.folder / "report.html").exists():
            print(f"what finished and what failed: {e.folder / 'report.html'}", file=sys.stderr)
        return 1
    print("\n".join(finished.closing_lines()))
    return 0


def cmd_report(args, argv) -> int:
    from orchestrator.report import finished_run, rewrite
    folder, saved, prov = finished_run(args.run)
    path, seconds = rewrite(saved_study(saved), folder, prov, argv)
    print(f"report: {path} and report.md (written in {seconds:.1f} s)")
    return 0


def cmd_compare(args, argv=None) -> int:
    from orchestrator.report import compare_lines, finished_run
    a, b = finished_run(args.run_a), finished_run(args.run_b)
    named = [saved.get("study_name", saved["study"]) for _, saved, _ in (a, b)]
    if named[0] != named[1]:
        raise ConfigError(f"{a[0]} is a run of {named[0]} and {b[0]} of {named[1]}: "
                         f"compare two runs of the same study")
    print("\n".join(compare_lines(a, b, saved_study(a[1]).select)))
    return 0


def cmd_data(args, argv=None) -> int:
    root = resolve_data_dir(args.data_dir)
    raw = load_cifar10(root)
    print(f"CIFAR-10 ok at {root}: {len(raw.train_x)} training, {len(raw.test_x)} test images")
    return 0


def cmd_evaluate(args, argv=None) -> int:
    """The role of the course's project1.py: one line with the test accuracy of saved weights."""
    from workloads.saved import build, load_weights, test_accuracy
    cfg, state = load_weights(Path(args.weights))  # bad files: one line, before the data is read
    model = build(cfg, state)                      # so are weights that do not fit the model
    acc, n = test_accuracy(cfg, model, load_cifar10(resolve_data_dir(args.data_dir)))
    print(f"{args.weights}: test accuracy {acc:.4f} on {n} images ({cfg.model.arch}, eval_view {cfg.data.eval_view})")
    return 0
