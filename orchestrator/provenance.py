"""What every result carries: resolved configs, code version, hardware, libraries."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

LIBRARIES = ("torch", "torchvision", "ray", "numpy", "pandas", "matplotlib", "tensorboardX")


def code_version() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    info = {"host": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
            "cpus": os.cpu_count()}
    try:
        import torch
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a driver problem must not lose the results
        info["cuda"] = []
    try:
        import ray
        if ray.is_initialized():
            info["ray_cluster"] = {k: v for k, v in ray.cluster_resources().items() if "node:" not in k}
    except Exception:
        pass
    return info


def provenance(study, opts, plans: dict, argv) -> dict:
    return {"study": study.name, "overrides": dict(study.user), "argv": argv,
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(), "libraries": library_versions(), "hardware": hardware(),
            "options": {k: str(v) for k, v in asdict(opts).items()}, "trials": plans}
