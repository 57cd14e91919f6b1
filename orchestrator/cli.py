"""Command line.

    python -m orchestrator list
    python -m orchestrator plan part3 --quick repeats=3
    python -m orchestrator plan part3 lr=0.001,0.0005         # a new axis: twice the trials
    python -m orchestrator sweep docs/examples/my_study.yaml --quick   # a study file
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
import signal
import sys

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from search_spaces import BUILT_IN
from workloads.registry import ConfigError, DataError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # as shells report a command Ctrl-C stopped: 130


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UsageError(message)


def package_version() -> str:
    try:
        return version("cifar-sweeps")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> Parser:
    p = Parser(prog="python -m orchestrator", description="Sweeps of CIFAR-10 studies on Ray Tune.")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    ls = sub.add_parser("list", help="the studies and their trial counts")
    ls.add_argument("studies", nargs="*", metavar="STUDY", help="these alone (names or study files)")
    for name in ("plan", "sweep"):
        s = sub.add_parser(name, help="print the trial grid" if name == "plan" else "run a study")
        s.add_argument("study", help="a built-in study (" + ", ".join(BUILT_IN) + ") or a study file, "
                                     "PATH.yaml or PATH.py (docs/examples/my_study.yaml)")
        s.add_argument("overrides", nargs="*", metavar="key=value")
        s.add_argument("--quick", action="store_true", help="the same path, small: minutes on a laptop")
        if name == "sweep":
            s.add_argument("--dry-run", action="store_true", help="print the trial grid and stop")
            s.add_argument("--out", help="output folder (default runs/STUDY/TIMESTAMP)")
            s.add_argument("--data-dir", help="CIFAR-10 folder (else $ORCHESTRATOR_DATA, else ./data)")
            s.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT")
            s.add_argument("--storage", help="results storage every node reaches (folder or URI)")
            s.add_argument("--cpus-per-trial", type=float, default=1.0)
            s.add_argument("--gpus-per-trial", type=float, default=0.0,
                           help="at most 1: a trial trains on one GPU; fractions share one")
            s.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
            s.add_argument("--num-gpus", type=float, help="GPUs of a local Ray (default: detected)")
            s.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial")
            s.add_argument("--repeats-per-trial", type=int, default=1,
                           help="repeats of a group trained together as one vectorized model")
            s.add_argument("--log", action="append", metavar="TRACKER[:TARGET]",
                           help="also log to mlflow[:URI] (default OUT/mlruns) or wandb[:PROJECT]; "
                                "repeatable; pip install 'cifar-sweeps[mlflow]' or '[wandb]'")
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Overrides may come before or after options: collect the key=value leftovers.
        args, rest = build_parser().parse_known_args(argv)
        stray = [r for r in rest if "=" not in r or r.startswith("-")]
        if stray:
            raise UsageError(f"unrecognized arguments: {' '.join(stray)}")
        if any("=" in name for name in getattr(args, "studies", ())):
            rest.append("=")  # `list` names studies; a key=value is no study
        if rest and not hasattr(args, "overrides"):
            raise UsageError(f"{args.command} takes no key=value overrides")
        if rest:
            args.overrides = list(args.overrides) + rest
        # torch, Ray and the studies load only now: --help and --version answer without them
        commands = import_module("orchestrator.commands")
        return getattr(commands, f"cmd_{args.command}")(args, argv)
    except (UsageError, ConfigError, DataError) as e:
        print(f"orchestrator: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # a sweep's Interrupted names the command that finishes it
        print(f"orchestrator: {str(e) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED


def console() -> None:
    """The `orchestrator` command pip installs (pyproject.toml's [project.scripts])."""
    sys.exit(main())
