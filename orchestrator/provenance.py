"""What every result carries: resolved configs, code version, hardware, libraries,
when it ran and where its trials ran."""
from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

LIBRARIES = ("torch", "torchvision", "ray", "numpy", "pandas", "scipy", "matplotlib", "jinja2", "tensorboardX")


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_version() -> str:
    return _git("describe", "--always", "--dirty") or "unknown"


def code_state() -> dict:
    """The commit and whether the working tree had changes (`describe` ends in -dirty)."""
    describe = code_version()
    return {"describe": describe, "commit": _git("rev-parse", "HEAD") or None,
            "dirty": describe.endswith("-dirty")}


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """/proc/cpuinfo's model name on Linux (platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_names() -> list[str]:
    """This machine's GPUs, from nvidia-smi: asking torch would create a CUDA context in the
    driver, GPU memory held away from the trials that share this machine's GPUs."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):  # a driver problem must not lose the results
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def hardware() -> dict:
    info = {"host": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
            "cpu_model": cpu_model(), "cpus": os.cpu_count()}
    info["cuda"] = gpu_names()
    try:
        import ray
        if ray.is_initialized():
            info["ray_cluster"] = {k: v for k, v in ray.cluster_resources().items() if "node:" not in k}
    except Exception:
        pass
    return info


def placement(rows: list[dict]) -> list[dict]:
    """Where trials ran, from trials.csv's rows: trials per host and device, in order of appearance."""
    counts = Counter((str(r.get("hostname") or "?"), str(r.get("device") or "?")) for r in rows)
    return [{"host": host, "device": device, "trials": n} for (host, device), n in counts.items()]


def numerics(rows: list[dict]) -> dict:
    """{the float32 and determinism switches a trial reported (trials.csv's numerics): trials}.
    The configs say what was asked (precision, deterministic); this, what torch did."""
    return dict(Counter(r["numerics"] for r in rows if isinstance(r.get("numerics"), str)))


def iso(seconds: float) -> str:
    """A time.time() value as an ISO 8601 UTC time."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def provenance(study, opts, plans: dict, argv, started: float | None = None, rows: list | None = None) -> dict:
    """`started`: the driver's start (time.time()); `rows`: trials.csv's rows."""
    from results.document import overrides_of
    finished, code = time.time(), code_state()
    quick, command_line = overrides_of(study)
    return {"study": study.name, "overrides": dict(study.user), "quick": quick,
            "command_line": dict(command_line), "argv": argv,
            "started": iso(started) if started else None, "finished": iso(finished),
            "wall_s": round(finished - started, 1) if started else None,
            "code_version": code["describe"], "code": code, "libraries": library_versions(),
            "hardware": hardware(), "placement": placement(rows or []), "numerics": numerics(rows or []),
            "options": {k: str(v) for k, v in asdict(opts).items()}, "trials": plans,
            **({"study_file": {"path": study.source, "text": study.text}} if study.text else {})}
