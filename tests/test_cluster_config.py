"""cluster.yaml: valid for Ray 2.60's cluster launcher, and safe to `ray up`.

Three layers, all offline (no AWS call, no Ray cluster), all in a second or two:

1. Ray's shipped JSON schema (ray/autoscaler/ray-schema.json), with jsonschema.
2. What `ray up` itself does before it talks to AWS (ray/autoscaler/_private/commands.py
   `_bootstrap_config`): `prepare_config` (merges the AWS defaults.yaml, fills per-type
   min/max workers) then `validate_config` (schema again, head_node_type among
   available_node_types, sum of min_workers within max_workers).
3. This project's invariants: a CPU head and GPU workers whose declared resources match the
   instance type; worker counts that add up; the project installed with the Ray version the
   tests run with; CIFAR-10 staged where the driver reads it; token auth on for every
   `ray start`; the dashboard on localhost only; every command valid shell.

Deliberately broken copies must fail (the last test), so a bad edit fails CI.
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import jsonschema
import pytest

from cluster_checks import (GPUS, INVARIANTS, MIN_CAPABILITY, ROOT, load_config, node_types, problems,
                            ray_prepare_and_validate, ray_schema, worker_types)


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config()


# ------------------------------------------------------------------------------ tests

def test_schema_is_ray_2_60s_own(config):
    schema = ray_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(config, schema)


def test_ray_up_offline_checks_pass(config):
    prepared = ray_prepare_and_validate(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Ray's defaults are filled in, and ours win over them.
    assert prepared["provider"]["type"] == "aws"
    assert prepared["auth"]["ssh_user"] == "ubuntu"
    for name, spec in prepared["available_node_types"].items():
        assert spec["min_workers"] <= spec["max_workers"], name
    assert prepared["head_setup_commands"][: len(config["setup_commands"])] == config["setup_commands"]


def test_aws_provider_settings(config):
    provider = config["provider"]
    assert provider["type"] == "aws"
    assert provider.get("region"), "set provider.region"
    zones = [z.strip() for z in provider.get("availability_zone", "").split(",") if z.strip()]
    assert zones and all(z.startswith(provider["region"]) for z in zones), \
        f"availability zones {zones} are not in region {provider['region']}"
    assert config["auth"]["ssh_user"] == "ubuntu"
    for name, spec in node_types(config).items():
        assert spec["node_config"].get("InstanceType"), f"{name}: no InstanceType"
        assert spec["node_config"].get("ImageId"), f"{name}: no ImageId (Ray's default AMI is too old)"


def test_file_mount_sources_exist(config):
    # `ray up` asserts that every local side exists; relative ones are relative to where it runs.
    for remote, local in (config.get("file_mounts") or {}).items():
        assert (ROOT / Path(local).expanduser()).exists(), f"file_mounts[{remote!r}]: {local} missing"


def test_cluster_ray_matches_pyproject(config):
    """The Ray that setup_commands pin is the one pyproject.toml pins (pip keeps it then)."""
    import tomllib
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("no pyproject.toml")
    deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
    project_pins = {m.group(1) for d in deps for m in [re.match(r"ray(?:\[[^\]]*\])?\s*==\s*([\w.]+)", d)] if m}
    cluster_pins = {m.group(1) for c in config["setup_commands"]
                    for m in re.finditer(r"\bray(?:\[[^\]]*\])?==([\w.]+)", c)}
    if project_pins:
        assert cluster_pins == project_pins, f"cluster installs Ray {cluster_pins}, pyproject pins {project_pins}"


def test_cli_offers_what_the_config_runs():
    # Parsed, not imported (importing the CLI pulls in torch: too slow here).
    strings = set()
    for path in (ROOT / "orchestrator").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("add_parser", "add_argument"):
                strings |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    assert {"data", "--data-dir", "--address", "--storage", "--resume"} <= strings


@pytest.mark.parametrize("check", INVARIANTS, ids=lambda f: f.__name__.removeprefix("check_"))
def test_invariant(config, check):
    check(config)


def test_no_problems(config):
    assert problems(config) == []


def _set(path, value):
    def mutate(cfg):
        *keys, last = path
        node = cfg
        for k in keys:
            node = node[k]
        node[last] = value
    return mutate


def _drop(path):
    def mutate(cfg):
        *keys, last = path
        node = cfg
        for k in keys:
            node = node[k]
        del node[last]
    return mutate


def _edit_commands(key, old, new):
    def mutate(cfg):
        cfg[key] = [c.replace(old, new) for c in cfg[key]]
    return mutate


def _first_worker(cfg):
    return next(iter(worker_types(cfg)))


BROKEN = {
    "head_node_type not a node type": (_set(["head_node_type"], "no-such-type"), "head_node_type"),
    "unknown top-level key": (_set(["head_node"], {"InstanceType": "m5.large"}), "schema"),
    "typo in a node type field": (
        lambda c: c["available_node_types"][_first_worker(c)].update(min_worker=1), "schema"),
    "fractional resource": (
        lambda c: c["available_node_types"][_first_worker(c)]["resources"].update(GPU=0.5), "schema"),
    "min_workers above max_workers": (
        lambda c: c["available_node_types"][_first_worker(c)].update(min_workers=99, max_workers=1),
        "min_workers"),
    "min_workers add up past max_workers": (
        lambda c: [s.update(min_workers=c["max_workers"]) for s in worker_types(c).values()],
        "max_workers"),
    "GPU worker declares no GPU on a CPU instance": (
        lambda c: c["available_node_types"][_first_worker(c)].update(
            resources={"CPU": 8}, node_config={"InstanceType": "m5.2xlarge", "ImageId": "ami-x"}),
        "has no GPU"),
    "resources disagree with the instance": (
        lambda c: c["available_node_types"][_first_worker(c)]["resources"].update(GPU=8), "GPUs"),
    "GPU too old for CUDA 13 (V100)": (
        lambda c: c["available_node_types"][_first_worker(c)].update(
            resources={"CPU": 8, "GPU": 1}, node_config={"InstanceType": "p3.2xlarge", "ImageId": "ami-x"}),
        "compute capability 7.0"),
    "an AMD GPU": (
        lambda c: c["available_node_types"][_first_worker(c)].update(
            resources={"CPU": 4, "GPU": 1}, node_config={"InstanceType": "g4ad.xlarge", "ImageId": "ami-x"}),
        "Radeon Pro V520 (AMD) GPU"),
    "GPU head": (lambda c: c["available_node_types"][c["head_node_type"]]["node_config"].update(
        InstanceType="g5.xlarge"), "GPU type"),
    "project not installed": (_edit_commands("setup_commands", "-e ~/sweeps", "ray"), "pip install -e"),
    "project mount elsewhere": (_set(["file_mounts"], {"~/sweeps": "/tmp"}), "folder holding"),
    "Ray version differs": (_edit_commands("setup_commands", "==2.", "==1."), "Ray"),
    "no CIFAR-10 staging": (_set(["head_setup_commands"], []), "stages CIFAR-10"),
    "head starts without token auth": (
        _edit_commands("head_start_ray_commands", "RAY_AUTH_MODE=token ", ""), "RAY_AUTH_MODE"),
    "worker starts without token auth": (
        _edit_commands("worker_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
        "token auth"),
    "head never makes a token": (
        _edit_commands("head_start_ray_commands", "get-auth-token --generate", "--version"), "token"),
    "token not synced to workers": (_set(["cluster_synced_files"], []), "cluster_synced_files"),
    "dashboard on all interfaces": (
        _edit_commands("head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
        "dashboard"),
    "dashboard port open to the world": (
        _set(["provider", "security_group"], {"GroupName": "g", "IpPermissions": [
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}),
        "security group"),
    "broken shell": (lambda c: c["setup_commands"].append("if true; then echo"), "not valid shell"),
    "no provider": (_drop(["provider"]), "provider"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_copy_is_rejected(config, name):
    mutate, expected = BROKEN[name]
    broken = copy.deepcopy(config)
    mutate(broken)
    found = problems(broken)
    assert found, f"{name}: accepted"
    assert any(expected in p for p in found), f"{name}: rejected, but not for {expected!r}: {found}"


def test_the_gpu_table_agrees_with_the_installed_torch():
    """MIN_CAPABILITY is the oldest GPU the installed wheel has kernels for (imports torch)."""
    import torch
    from workloads.device import MIN_CAPABILITY as trial_side, has_kernels
    arch = torch.cuda.get_arch_list()
    assert trial_side == MIN_CAPABILITY and has_kernels(MIN_CAPABILITY, arch)
    for gpu, capability in GPUS.values():
        if capability is not None:
            assert has_kernels(capability, arch) == (capability >= MIN_CAPABILITY), gpu


def test_ray_rejects_the_classic_mistakes(config):
    """Ray's own validator, not just ours, refuses these (what `ray up` would say)."""
    bad_head = copy.deepcopy(config)
    bad_head["head_node_type"] = "no-such-type"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_prepare_and_validate(bad_head)
    extra_key = copy.deepcopy(config)
    extra_key["dashboard_host"] = "0.0.0.0"
    with pytest.raises(jsonschema.ValidationError):
        ray_prepare_and_validate(extra_key)
