"""What KubeRay v1.5.1 makes of deploy/raycluster.yaml, for testing the image without a cluster.

- `parse_quantity`: a Kubernetes resource quantity ("8Gi", "500m", 2) as an exact Fraction, or
  ValueError (the grammar of k8s.io/apimachinery's resource.Quantity).
- `ray_start_command`: the container command KubeRay v1.5.1 gives a group's Ray container
  (ray-operator/controllers/ray/common/pod.go: setMissingRayStartParams, generateRayStartCommand,
  convertParamMap; the head's address and ports as KubeRay fills them).
- `probe_command`: the liveness/readiness probe KubeRay injects (initLivenessAndReadinessProbe).
- `wait_gcs_command`: what the `wait-gcs-ready` init container of each worker runs.

Used by deploy/test_image.sh, which runs these commands in the image, and by tests/test_deploy.py.
Command line (prints one shell command):

    python deploy/kuberay.py start deploy/raycluster.yaml head [--set KEY=VALUE ...]
    python deploy/kuberay.py start deploy/raycluster.yaml GROUP --address HOST:PORT [--set KEY=VALUE ...]
    python deploy/kuberay.py probe head|worker [--agent-port N] [--dashboard-port N]
    python deploy/kuberay.py wait-gcs HOST:PORT
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from fractions import Fraction
from pathlib import Path

# k8s.io/apimachinery/pkg/api/resource: <sign><digits>[.<digits>]<suffix>, suffix one of the binary
# SI (Ki … Ei), decimal SI (n u m "" k M G T P E) or a decimal exponent (e3, E-2).
QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "k": 10**3,
           "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}

# KubeRay v1.5.1, ray-operator/controllers/ray/utils/constant.go
DEFAULT_METRICS_PORT = 8080
DEFAULT_DASHBOARD_AGENT_LISTEN_PORT = 52365
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_READINESS_PROBE_TIMEOUT_S = 2
DEFAULT_READINESS_PROBE_FAILURE_THRESHOLD = 10  # KubeRay passes it as the dashboard probe's wget -T
BASE_WGET_HEALTH_COMMAND = "wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"
GPU_RESOURCE = "nvidia.com/gpu"


def parse_quantity(value: object) -> Fraction:
    """A Kubernetes quantity (an int, or a string such as "8Gi", "2", "500m", "1e3") as a Fraction."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a quantity (an integer or a string such as 8Gi)")
    match = QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a quantity: a number with one of the suffixes Ki Mi Gi Ti Pi Ei, "
                         f"n u m k M G T P E, or an exponent e<N>")
    number = Fraction(match["number"])
    suffix = match["suffix"] or ""
    if suffix in BINARY:
        return number * BINARY[suffix]
    if suffix in DECIMAL:
        return number * DECIMAL[suffix]
    if suffix:
        return number * Fraction(10) ** int(suffix[1:])
    return number


def quantity_value(value: object) -> int:
    """resource.Quantity.Value(): the quantity rounded up to an integer."""
    return math.ceil(parse_quantity(value))


def group(manifest: dict, name: str) -> tuple[dict, bool]:
    """(group spec, is_head) of the head ("head") or the worker group called `name`."""
    spec = manifest["spec"]
    if name == "head":
        return spec["headGroupSpec"], True
    for worker in spec.get("workerGroupSpecs") or []:
        if worker.get("groupName") == name:
            return worker, False
    raise KeyError(f"no worker group {name!r} in the manifest")


def ray_start_params(manifest: dict, name: str, address: str | None = None) -> dict[str, str]:
    """The rayStartParams KubeRay v1.5.1 starts a group's Ray container with (`block` included)."""
    spec, head = group(manifest, name)
    params = {str(k): str(v) for k, v in (spec.get("rayStartParams") or {}).items()}
    # setMissingRayStartParams
    if not head and "address" not in params:
        if address is None:
            raise ValueError("a worker needs the head's address (KubeRay uses the head service's FQDN:6379)")
        params["address"] = address
    if head:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", str(DEFAULT_METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(DEFAULT_DASHBOARD_AGENT_LISTEN_PORT))
    # generateRayStartCommand: CPUs, memory and GPUs from the Ray container's resources
    resources = spec["template"]["spec"]["containers"][0].get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "num-cpus" not in params:
        cpu = limits.get("cpu") if limits.get("cpu") not in (None, 0, "0") else requests.get("cpu")
        if cpu is not None and parse_quantity(cpu) != 0:
            params["num-cpus"] = str(quantity_value(cpu))
    if "memory" not in params and limits.get("memory") is not None and parse_quantity(limits["memory"]) != 0:
        params["memory"] = str(quantity_value(limits["memory"]))
    if "num-gpus" not in params and limits.get(GPU_RESOURCE) is not None:
        gpus = quantity_value(limits[GPU_RESOURCE])
        if gpus:
            params["num-gpus"] = str(gpus)
    return params


def ray_start_command(manifest: dict, name: str, address: str | None = None,
                      overrides: dict[str, str] | None = None) -> str:
    """The Ray container's command line, as KubeRay v1.5.1 writes it after `/bin/bash -c --`."""
    params = {**ray_start_params(manifest, name, address), **(overrides or {})}
    _, head = group(manifest, name)
    flags = []
    for key in sorted(params):  # convertParamMap
        value = params[key]
        if value.lower() in ("true", "false") and key not in ("log-color", "include-dashboard"):
            if value.lower() == "true":
                flags.append(f"--{key}")
        else:
            flags.append(f"--{key}={value}")
    return "ulimit -n 65536; ray start " + ("--head " if head else "") + " ".join(flags)


def probe_command(node: str, agent_port: int = DEFAULT_DASHBOARD_AGENT_LISTEN_PORT,
                  dashboard_port: int = DEFAULT_DASHBOARD_PORT) -> str:
    """The exec probe KubeRay v1.5.1 injects into a head's or a worker's Ray container."""
    raylet = BASE_WGET_HEALTH_COMMAND.format(timeout=DEFAULT_READINESS_PROBE_TIMEOUT_S, port=agent_port,
                                             path="api/local_raylet_healthz")
    if node == "worker":
        return raylet
    gcs = BASE_WGET_HEALTH_COMMAND.format(timeout=DEFAULT_READINESS_PROBE_FAILURE_THRESHOLD, port=dashboard_port,
                                          path="api/gcs_healthz")
    return f"{raylet} && {gcs}"


def wait_gcs_command(address: str, limit_s: int = 120) -> str:
    """The `wait-gcs-ready` init container's loop (with a limit here, where KubeRay waits forever)."""
    return (f"SECONDS=0; until ray health-check --address {address} >/dev/null 2>&1; do "
            f"if (( SECONDS > {limit_s} )); then ray health-check --address {address}; exit 1; fi; sleep 2; done; "
            f"echo 'GCS is ready.'")


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="a group's Ray container command")
    start.add_argument("manifest", type=Path)
    start.add_argument("group", help="head, or a worker group's name")
    start.add_argument("--address", help="the head's HOST:PORT (workers)")
    start.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a ray start parameter (ports shared by two nodes in one network namespace)")
    probe = commands.add_parser("probe", help="KubeRay's health probe")
    probe.add_argument("node", choices=("head", "worker"))
    probe.add_argument("--agent-port", type=int, default=DEFAULT_DASHBOARD_AGENT_LISTEN_PORT)
    probe.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    wait = commands.add_parser("wait-gcs", help="the wait-gcs-ready init container's loop")
    wait.add_argument("address")
    args = parser.parse_args(argv)
    if args.command == "start":
        manifest = yaml.safe_load(args.manifest.read_text())
        overrides = dict(item.split("=", 1) for item in args.set)
        print(ray_start_command(manifest, args.group, args.address, overrides))
    elif args.command == "probe":
        print(probe_command(args.node, args.agent_port, args.dashboard_port))
    else:
        print(wait_gcs_command(args.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
