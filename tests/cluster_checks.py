"""cluster.yaml's checks (tests/test_cluster_config.py runs them): Ray's schema, what `ray up`
itself checks before it talks to AWS, and this project's invariants (`INVARIANTS`); `problems`
lists everything wrong with a config.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
PROJECT_MOUNT = "~/sweeps"      # where setup_commands `pip install -e` the project
TOKEN_FILE = "~/.ray/auth_token"
LOCALHOST = {"127.0.0.1", "localhost", "::1"}
PUBLIC_PORTS = {6379, 8265, 10001}  # GCS, dashboard / job API, Ray Client

# (vCPUs, GPUs) of common instance types; a declared `resources` must agree with these.
INSTANCE_TYPES = {
    "m5.large": (2, 0), "m5.xlarge": (4, 0), "m5.2xlarge": (8, 0), "m5.4xlarge": (16, 0),
    "m6i.xlarge": (4, 0), "m6i.2xlarge": (8, 0), "c5.2xlarge": (8, 0), "r5.2xlarge": (8, 0),
    "g4dn.xlarge": (4, 1), "g4dn.2xlarge": (8, 1), "g4dn.4xlarge": (16, 1),
    "g4dn.12xlarge": (48, 4),
    "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.4xlarge": (16, 1), "g5.8xlarge": (32, 1),
    "g5.12xlarge": (48, 4), "g5.16xlarge": (64, 1), "g5.24xlarge": (96, 4),
    "g5.48xlarge": (192, 8),
    "g6.xlarge": (4, 1), "g6.2xlarge": (8, 1), "g6.12xlarge": (48, 4),
    "g6e.xlarge": (4, 1), "g4ad.xlarge": (4, 1), "g5g.xlarge": (4, 1), "p2.xlarge": (4, 1),
    "p3.2xlarge": (8, 1), "p3.8xlarge": (32, 4), "p4d.24xlarge": (96, 8), "p5.48xlarge": (192, 8),
}
GPU_FAMILY = re.compile(r"^(g3|g4dn|g4ad|g5|g5g|g6|g6e|gr6|p2|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-b200)\.")
# Each GPU family's GPU and its CUDA compute capability (None: not NVIDIA). torch 2.14.1 is a
# CUDA 13 build with kernels for compute capability 7.5 and newer (torch.cuda.get_arch_list()
# starts at sm_75; workloads/device.py), on NVIDIA driver 580 or newer: docs/cluster.md.
GPUS = {"g4dn": ("T4", (7, 5)), "g5": ("A10G", (8, 6)), "g6": ("L4", (8, 9)), "gr6": ("L4", (8, 9)),
        "g6e": ("L40S", (8, 9)), "p4d": ("A100", (8, 0)), "p4de": ("A100", (8, 0)), "p5": ("H100", (9, 0)),
        "p5e": ("H200", (9, 0)), "p5en": ("H200", (9, 0)), "p6-b200": ("B200", (10, 0)),
        "p3": ("V100", (7, 0)), "p3dn": ("V100", (7, 0)), "p2": ("K80", (3, 7)), "g3": ("M60", (5, 2)),
        "g4ad": ("Radeon Pro V520 (AMD)", None), "g5g": ("T4G on an ARM (Graviton2) host", (7, 5))}
MIN_CAPABILITY = (7, 5)
ARM_HOSTS = {"g5g"}  # the config's AMI and setup are x86_64's; not tried on ARM


def load_config() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def ray_schema() -> dict:
    import ray.autoscaler
    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


def ray_prepare_and_validate(cfg: dict) -> dict:
    """`ray up`'s offline part: defaults, per-type worker counts, Ray's own validation."""
    from ray.autoscaler._private.util import prepare_config, validate_config
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


# ----------------------------------------------------------------- project invariants

def node_types(cfg: dict) -> dict:
    return cfg.get("available_node_types") or {}


def worker_types(cfg: dict) -> dict:
    return {k: v for k, v in node_types(cfg).items() if k != cfg.get("head_node_type")}


def commands(cfg: dict, *keys: str) -> list[str]:
    return [c for k in keys for c in cfg.get(k) or []]


def head_commands(cfg: dict) -> list[str]:
    return commands(cfg, "initialization_commands", "setup_commands", "head_setup_commands")


def worker_commands(cfg: dict) -> list[str]:
    return commands(cfg, "initialization_commands", "setup_commands", "worker_setup_commands")


def check_head_node_type(cfg):
    head = cfg.get("head_node_type")
    assert head in node_types(cfg), f"head_node_type {head!r} is not one of {sorted(node_types(cfg))}"


def check_cpu_head(cfg):
    head = node_types(cfg)[cfg["head_node_type"]]
    itype = head["node_config"]["InstanceType"]
    assert not GPU_FAMILY.match(itype), f"head instance {itype} is a GPU type; the head is CPU only"
    assert head.get("resources", {}).get("GPU", 0) == 0, "the head declares GPUs"
    assert head.get("max_workers", 0) == 0, "the head type must not also be a worker type"


def check_gpu_workers(cfg):
    workers = worker_types(cfg)
    assert workers, "no worker node types"
    for name, spec in workers.items():
        itype = spec["node_config"].get("InstanceType", "")
        declared = spec.get("resources", {})
        assert declared.get("GPU", 0) > 0 or GPU_FAMILY.match(itype), \
            f"worker type {name} ({itype}) has no GPU: declare resources GPU > 0 on a GPU instance"
        if itype in INSTANCE_TYPES:
            cpus, gpus = INSTANCE_TYPES[itype]
            assert gpus > 0, f"worker type {name}: {itype} has no GPU"
            if "GPU" in declared:
                assert declared["GPU"] == gpus, f"{name}: {itype} has {gpus} GPUs, resources say {declared['GPU']}"
            if "CPU" in declared:
                assert declared["CPU"] == cpus, f"{name}: {itype} has {cpus} vCPUs, resources say {declared['CPU']}"


def check_gpu_supported(cfg):
    for name, spec in worker_types(cfg).items():
        itype = spec["node_config"].get("InstanceType", "")
        family = itype.split(".")[0]
        assert family in GPUS, f"worker type {name}: {itype}'s GPU is not in this test's GPUS table: add it"
        gpu, capability = GPUS[family]
        need = "torch 2.14.1's CUDA 13 build needs an NVIDIA GPU of compute capability 7.5 or newer"
        assert capability is not None, f"worker type {name}: {itype} has a {gpu} GPU: {need}"
        assert capability >= MIN_CAPABILITY, \
            f"worker type {name}: {itype}'s {gpu} has compute capability {capability[0]}.{capability[1]}: {need}"
        assert family not in ARM_HOSTS, f"worker type {name}: {itype} is an ARM host ({gpu}): use an x86_64 type"


def check_worker_counts(cfg):
    cap = cfg.get("max_workers")
    assert isinstance(cap, int) and cap > 0, "set a global max_workers > 0"
    for name, spec in worker_types(cfg).items():
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers", cap)
        assert 0 <= lo <= hi, f"{name}: min_workers {lo} > max_workers {hi}"
        assert hi <= cap, f"{name}: max_workers {hi} above the global max_workers {cap}"
    total_min = sum(spec.get("min_workers", 0) for spec in node_types(cfg).values())
    assert total_min <= cap, f"the min_workers add up to {total_min}, above max_workers {cap}"


def check_project_installed(cfg):
    mounts = cfg.get("file_mounts") or {}
    assert PROJECT_MOUNT in mounts, f"file_mounts must sync the project to {PROJECT_MOUNT}"
    local = Path(mounts[PROJECT_MOUNT]).expanduser()
    assert (ROOT / local).resolve() == ROOT, \
        f"file_mounts[{PROJECT_MOUNT!r}] = {mounts[PROJECT_MOUNT]!r} is not the folder holding cluster.yaml"
    install = re.compile(r"\bpip install\b[^;&|]*\s-e\s+" + re.escape(PROJECT_MOUNT) + r"(/|\s|$)")
    for role, cmds in (("head", head_commands(cfg)), ("worker", worker_commands(cfg))):
        assert any(install.search(c) for c in cmds), f"{role} setup never runs `pip install -e {PROJECT_MOUNT}`"


def check_ray_version_pinned(cfg):
    import ray
    pins = [m.group(1) for c in commands(cfg, "setup_commands")
            for m in re.finditer(r"\bray(?:\[[^\]]*\])?==([\w.]+)", c)]
    assert pins, "setup_commands must install an exact Ray version (ray[...]==X.Y.Z)"
    assert set(pins) == {ray.__version__}, \
        f"the cluster installs Ray {pins}, this checkout uses {ray.__version__}: they must match"
    assert any("default" in c for c in commands(cfg, "setup_commands") if "ray[" in c), \
        "install ray[default]: the dashboard and the job server need it"


def check_data_staged(cfg):
    stage = re.compile(r"python -m orchestrator data --data-dir[= ](\S+)")
    dirs = [m.group(1) for c in head_commands(cfg) for m in [stage.search(c)] if m]
    assert dirs, "the head never stages CIFAR-10 (python -m orchestrator data --data-dir DIR)"
    exported = [m.group(1) for c in commands(cfg, "setup_commands")
                for m in re.finditer(r"export ORCHESTRATOR_DATA=([^'\"\s]+)", c)]
    assert exported, "setup_commands must export ORCHESTRATOR_DATA for the sweep driver"
    norm = {d.replace("$HOME", "~").rstrip("/") for d in dirs + exported}
    assert len(norm) == 1, f"CIFAR-10 staged in {dirs} but ORCHESTRATOR_DATA is {exported}"


def check_token_auth(cfg):
    text = yaml.safe_dump(cfg)
    assert "RAY_AUTH_MODE=disabled" not in text, "token auth is switched off somewhere"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg.get(key) or [] if re.search(r"\bray start\b", c)]
        assert starts, f"{key} never runs `ray start`"
        for c in starts:
            assert re.search(r"RAY_AUTH_MODE=token\b[^;&|]*\bray start\b", c), \
                f"{key}: `ray start` without RAY_AUTH_MODE=token: {c!r}"
    head = cfg["head_start_ray_commands"]
    first_start = next(i for i, c in enumerate(head) if re.search(r"\bray start\b", c))
    made = any("get-auth-token --generate" in c for c in head[:first_start] + head_commands(cfg))
    assert made, "the head must create its token (ray get-auth-token --generate) before `ray start`"
    synced = TOKEN_FILE in (cfg.get("cluster_synced_files") or []) or TOKEN_FILE in (cfg.get("file_mounts") or {})
    assert synced, f"workers need the head's token: list {TOKEN_FILE} in cluster_synced_files"
    assert any("export RAY_AUTH_MODE=token" in c for c in commands(cfg, "setup_commands")), \
        "export RAY_AUTH_MODE=token in the nodes' ~/.bashrc, for ray status / drivers / jobs there"


def check_dashboard_local(cfg):
    starts = commands(cfg, "head_start_ray_commands", "worker_start_ray_commands")
    for c in starts:
        for host in re.findall(r"--dashboard-host[= ](\S+)", c):
            assert host.strip("'\"") in LOCALHOST, f"dashboard bound to {host}, not localhost"
        assert "0.0.0.0" not in c, f"a start command binds 0.0.0.0: {c!r}"
    perms = (cfg["provider"].get("security_group") or {}).get("IpPermissions") or []
    for p in perms:
        ports = set(range(p.get("FromPort", 0), p.get("ToPort", 65535) + 1))
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in p.get("IpRanges", []))
        assert not (world and ports & PUBLIC_PORTS), f"security group opens {sorted(ports & PUBLIC_PORTS)} to the world"


def check_shell_syntax(cfg):
    bash = shutil.which("bash")
    if bash is None:
        return
    keys = ("initialization_commands", "setup_commands", "head_setup_commands",
            "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    for c in commands(cfg, *keys):
        r = subprocess.run([bash, "-n", "-c", c], capture_output=True, text=True)
        assert r.returncode == 0, f"not valid shell: {c!r}: {r.stderr.strip()}"


INVARIANTS = [check_head_node_type, check_cpu_head, check_gpu_workers, check_gpu_supported, check_worker_counts,
              check_project_installed, check_ray_version_pinned, check_data_staged,
              check_token_auth, check_dashboard_local, check_shell_syntax]


def problems(cfg: dict) -> list[str]:
    """Everything wrong with a config: schema, Ray's own checks, the invariants."""
    found = []
    try:
        jsonschema.validate(cfg, ray_schema())
    except jsonschema.ValidationError as e:
        found.append(f"schema: {e.message}")
    try:
        ray_prepare_and_validate(cfg)
    except Exception as e:  # Ray raises ValidationError, ValueError, KeyError, AssertionError
        found.append(f"ray: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    for check in INVARIANTS:
        try:
            check(cfg)
        except (AssertionError, KeyError, TypeError, StopIteration) as e:
            found.append(f"{check.__name__}: {type(e).__name__}: {e}")
    return found
