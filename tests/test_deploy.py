"""deploy/raycluster.yaml against KubeRay's RayCluster CRD (v1.5.1, vendored under tests/kuberay/),
the checks KubeRay's operator and Kubernetes add to it, the image it names, and deploy/test_image.sh's
refusal when it cannot get its tools. The image itself is built and run by deploy/test_image.sh (CI).

The validator covers the OpenAPI v3 subset the CRD uses: type, properties, required, items,
additionalProperties, enum, pattern, minLength/maxLength, minimum, format (int32, int64),
nullable, anyOf (int-or-string), x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
x-kubernetes-list-type (map, set) with x-kubernetes-list-map-keys. An unknown field is an error, as
`kubectl apply` (field validation Strict) makes it. A keyword it does not know, or a CEL rule
(x-kubernetes-validations) on a value the manifest sets, fails the test rather than passing it by.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "raycluster.yaml"
CRD = ROOT / "tests" / "kuberay" / "ray.io_rayclusters.yaml"
KUBERAY_VERSION = "1.5.1"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_spec = importlib.util.spec_from_file_location("deploy_kuberay", ROOT / "deploy" / "kuberay.py")
kuberay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kuberay)

KEYWORDS = {
    "type", "properties", "required", "items", "additionalProperties", "enum", "pattern", "format",
    "minLength", "maxLength", "minimum", "nullable", "anyOf", "default", "description",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-validations",
}
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _is_type(value: object, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise NotImplementedError(f"type {kind!r}")


def validate(value: object, schema: dict, path: str = "") -> list[str]:
    """The errors of `value` against a structural OpenAPI v3 schema, each 'path: what'."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise NotImplementedError(f"{path or '.'}: schema keywords this validator does not know: {sorted(unknown)}")
    where = path or "."
    if "x-kubernetes-validations" in schema:
        rules = [rule["rule"] for rule in schema["x-kubernetes-validations"]]
        return [f"{where}: has CEL rules this test does not evaluate ({rules}); check it another way"]
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
    if schema.get("x-kubernetes-int-or-string"):
        if not (_is_type(value, "integer") or _is_type(value, "string")):
            return [f"{where}: {value!r} is neither an integer nor a string"]
        patterns = [schema.get("pattern")] + [alt.get("pattern") for alt in schema.get("anyOf", [])]
        for pattern in filter(None, patterns):
            if isinstance(value, str) and not re.search(pattern, value):
                return [f"{where}: {value!r} does not match {pattern}"]
        return []
    if "anyOf" in schema:
        raise NotImplementedError(f"{where}: anyOf outside x-kubernetes-int-or-string")
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return [f"{where}: {value!r} is not of type {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: {value!r} has a length outside [{schema.get('minLength', 0)}, "
                          f"{schema.get('maxLength', '∞')}]")
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        low, high = INT_RANGES.get(schema.get("format"), (value, value))
        if not low <= value <= high:
            errors.append(f"{where}: {value} is out of range for {schema['format']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                errors += validate(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{path}.{key}")
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                errors.append(f"{path}.{key}: unknown field (known here: {', '.join(sorted(properties)) or 'none'})")
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required field missing")
    if isinstance(value, list):
        for i, item in enumerate(value):
            errors += validate(item, schema.get("items", {}), f"{path}[{i}]")
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            if len(set(keys)) != len(keys):
                errors.append(f"{where}: two items with the same {schema['x-kubernetes-list-map-keys']}")
        elif list_type == "set" and len({yaml.safe_dump(item) for item in value}) != len(value):
            errors.append(f"{where}: a value twice in a set")
    return errors


OBJECT_META = {"name", "namespace", "labels", "annotations", "generateName", "finalizers", "ownerReferences"}


def manifest_errors(manifest: dict, schema: dict) -> list[str]:
    """`validate` of a whole object: its metadata is Kubernetes' ObjectMeta, which the API server checks
    itself (the CRD's schema says only `type: object`), so only its fields are checked here."""
    errors = [f".metadata.{key}: unknown field" for key in manifest.get("metadata", {}) if key not in OBJECT_META]
    return errors + validate({k: v for k, v in manifest.items() if k != "metadata"}, schema)


def kuberay_errors(manifest: dict) -> list[str]:
    """What KubeRay v1.5.1's operator and Kubernetes check beyond the CRD's schema (for what the
    manifest uses): ray-operator/controllers/ray/utils/validation.go, ObjectMeta's name, and each
    container's resources."""
    errors = []
    name = manifest.get("metadata", {}).get("name", "")
    if len(name) > 53 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        errors.append(f"metadata.name {name!r} is not a DNS-1035 label of at most 53 characters")
    spec = manifest["spec"]
    groups = [("headGroupSpec", spec["headGroupSpec"])]
    groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    for where, group in groups:
        containers = group["template"].get("spec", {}).get("containers") or []
        if not containers:
            errors.append(f"{where}: no container")
        params = group.get("rayStartParams") or {}
        if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
            errors.append(f"{where}: resources set in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{where}: rayStartParams['labels'] is not supported; use labels")
        if "replicas" in group and not group.get("minReplicas", 0) <= group["replicas"] <= group["maxReplicas"]:
            errors.append(f"{where}: replicas outside [minReplicas, maxReplicas]")
        for c, container in enumerate(containers):
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            for kind, table in (("requests", requests), ("limits", limits)):
                for resource, quantity in table.items():
                    try:
                        kuberay.parse_quantity(quantity)
                    except ValueError as error:
                        errors.append(f"{where}.containers[{c}].resources.{kind}.{resource}: {error}")
            for resource in set(requests) & set(limits):
                try:
                    request, limit = kuberay.parse_quantity(requests[resource]), kuberay.parse_quantity(limits[resource])
                except ValueError:
                    continue
                if request > limit:
                    errors.append(f"{where}.containers[{c}]: {resource} request {requests[resource]} exceeds "
                                  f"its limit {limits[resource]}")
                if "/" in resource and (request != limit or request.denominator != 1):
                    errors.append(f"{where}.containers[{c}]: {resource} (an extended resource) needs a whole "
                                  f"request equal to its limit")
    if (spec.get("authOptions") or {}).get("mode") == "token":
        version = spec.get("rayVersion", "")
        parts = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version)
        if not parts:
            errors.append(f"authOptions.mode is 'token' but rayVersion {version!r} is not a version")
        elif tuple(int(p or 0) for p in parts.groups()) < (2, 52, 0):
            errors.append(f"authOptions.mode is 'token' but the minimum Ray version is 2.52.0, got {version}")
    return errors


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.load(CRD.read_text(), Loader=Loader)


@pytest.fixture(scope="module")
def schema(crd: dict) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert version["served"] and version["storage"]
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_vendored_crd_is_kuberays_for_the_version_the_manifest_names(crd: dict) -> None:
    header = CRD.read_text().split("\n---\n", 1)[0]
    assert f"v{KUBERAY_VERSION}" in header and "github.com/ray-project/kuberay" in header
    assert re.search(r"commit [0-9a-f]{40}", header) and re.search(r"sha256 of the file below this header: [0-9a-f]{64}",
                                                                    header)
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == "rayclusters.ray.io"
    assert f"KubeRay ≥ {KUBERAY_VERSION}" in MANIFEST.read_text()
    assert f"operator ≥ {KUBERAY_VERSION}" in (ROOT / "README.md").read_text()


def test_the_manifest_is_a_ray_io_v1_raycluster_valid_against_the_crd(crd: dict, schema: dict, manifest: dict) -> None:
    assert manifest["apiVersion"] == f"{crd['spec']['group']}/v1"
    assert manifest["kind"] == crd["spec"]["names"]["kind"]
    assert manifest_errors(manifest, schema) == []
    assert kuberay_errors(manifest) == []


def test_token_authentication_is_on_and_valid_there(schema: dict, manifest: dict) -> None:
    auth_schema = schema["properties"]["spec"]["properties"]["authOptions"]
    assert manifest["spec"]["authOptions"] == {"mode": "token"}
    assert validate(manifest["spec"]["authOptions"], auth_schema) == []
    assert "token" in auth_schema["properties"]["mode"]["enum"]


def test_every_resource_quantity_parses(manifest: dict) -> None:
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    worker = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]
    assert kuberay.parse_quantity(head["limits"]["memory"]) == 8 * 2**30
    assert kuberay.parse_quantity(worker["limits"]["memory"]) == 64 * 2**30
    assert kuberay.parse_quantity(worker["limits"]["nvidia.com/gpu"]) == 1
    for resources in (head, worker):
        for table in resources.values():
            for quantity in table.values():
                assert kuberay.parse_quantity(quantity) > 0


@pytest.mark.parametrize(("text", "value"), [
    ("8Gi", 8 * 2**30), ("64Gi", 64 * 2**30), ("500m", Fraction(1, 2)), ("2", 2), (2, 2), ("1.5", Fraction(3, 2)),
    ("1e3", 1000), ("1E-2", Fraction(1, 100)), ("100M", 10**8), ("1k", 1000), ("0.5Ki", 512), (".5", Fraction(1, 2)),
    ("+1", 1), ("10n", Fraction(1, 10**8)),
])
def test_quantities_parse_as_kubernetes_parses_them(text: object, value: Fraction) -> None:
    assert kuberay.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["8GB", "8 Gi", "Gi", "8gi", "1K", "one", "", "1.2.3", True, 1.5, None, "8Gi "])
def test_what_is_not_a_quantity_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        kuberay.parse_quantity(text)


def _at(manifest: dict, path: str):
    """The mapping holding the last key of a dotted path (`[i]` indexes a list), and that key."""
    node = manifest
    keys = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for key in keys[:-1]:
        node = node[int(key[1:-1])] if key.startswith("[") else node[key]
    return node, keys[-1]


WORKER = "spec.workerGroupSpecs.[0]"
HEAD_CONTAINER = "spec.headGroupSpec.template.spec.containers.[0]"


@pytest.mark.parametrize(("path", "value", "message"), [
    (f"{WORKER}.replica", 2, "replica: unknown field"),                          # misspelled
    ("spec.authOptions.mod", "token", "authOptions.mod: unknown field"),
    ("spec.authOption", {"mode": "token"}, "authOption: unknown field"),
    ("spec.authOptions.mode", "tokens", "not one of ['disabled', 'token']"),
    (f"{HEAD_CONTAINER}.resource", {}, "resource: unknown field"),
    (f"{HEAD_CONTAINER}.resources.limits.memory", "8GB", "does not match"),
    (f"{HEAD_CONTAINER}.resources.requests.cpu", True, "neither an integer nor a string"),
    ("spec.headGroupSpec.rayStartParams.num-cpus", 0, "is not of type string"),  # must be quoted
    (f"{WORKER}.replicas", "2", "is not of type integer"),
    (f"{WORKER}.maxReplicas", 2**31, "out of range for int32"),
    (f"{WORKER}.template.spec.containers", [{"name": "a"}, {"name": "a"}], "two items with the same ['name']"),
    ("spec.managedBy", "someone", "CEL rules"),
    ("metadata.nmae", "mupc-sweep", "metadata.nmae: unknown field"),
])
def test_a_wrong_field_is_caught(schema: dict, manifest: dict, path: str, value: object, message: str) -> None:
    node, key = _at(manifest, path)
    node[key] = value
    errors = manifest_errors(manifest, schema)
    assert any(message in error for error in errors), errors


@pytest.mark.parametrize(("path", "message"), [
    (f"{WORKER}.groupName", "groupName: required field missing"),
    (f"{WORKER}.template", "template: required field missing"),
    (f"{HEAD_CONTAINER}.name", "name: required field missing"),
])
def test_a_missing_required_field_is_caught(schema: dict, manifest: dict, path: str, message: str) -> None:
    node, key = _at(manifest, path)
    del node[key]
    assert any(message in error for error in manifest_errors(manifest, schema))


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["spec"].__setitem__("rayVersion", "2.51.0"), "minimum Ray version is 2.52.0"),
    (lambda m: m["metadata"].__setitem__("name", "mupc_sweep"), "DNS-1035"),
    (lambda m: m["spec"]["headGroupSpec"].__setitem__("resources", {"cpu": "2"}), "both rayStartParams and"),
    (lambda m: m["spec"]["workerGroupSpecs"][0].__setitem__("replicas", 9), "replicas outside"),
    (lambda m: m["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
     .__setitem__("memory", "9Gi"), "exceeds its limit"),
    (lambda m: m["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["requests"]
     .__setitem__("nvidia.com/gpu", "500m"), "whole request equal to its limit"),
    (lambda m: m["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
     .__setitem__("memory", "64 Gi"), "not a quantity"),
])
def test_what_kuberay_or_kubernetes_would_refuse_is_caught(manifest: dict, change, message: str) -> None:
    change(manifest)
    assert any(message in error for error in kuberay_errors(manifest))


def test_the_validator_refuses_schema_keywords_it_does_not_know() -> None:
    with pytest.raises(NotImplementedError, match="oneOf"):
        validate({}, {"type": "object", "oneOf": []})


def test_the_image_and_the_manifest_name_the_same_ray(manifest: dict) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (pinned,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M)
    assert manifest["spec"]["rayVersion"] == pinned
    assert f"Ray {pinned}" in MANIFEST.read_text()  # the header comment says so too
    images = {c["image"] for g in [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
              for c in g["template"]["spec"]["containers"]}
    assert images == {"REGISTRY/mupc-sweep:gpu"}  # one image for every node, the one README says to push


def test_ray_start_commands_are_those_kuberay_writes_for_the_manifest(manifest: dict) -> None:
    assert kuberay.ray_start_command(manifest, "head") == (
        "ulimit -n 65536; ray start --head --block --dashboard-agent-listen-port=52365 --dashboard-host=127.0.0.1 "
        "--memory=8589934592 --metrics-export-port=8080 --num-cpus=0")
    assert kuberay.ray_start_command(manifest, "gpu", "mupc-sweep-head-svc.default.svc.cluster.local:6379") == (
        "ulimit -n 65536; ray start --address=mupc-sweep-head-svc.default.svc.cluster.local:6379 --block "
        "--dashboard-agent-listen-port=52365 --memory=68719476736 --metrics-export-port=8080 --num-cpus=8 "
        "--num-gpus=1")
    assert kuberay.probe_command("worker") == (
        "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_image_script_says_in_one_line_when_it_cannot_install_its_tools(tmp_path: Path) -> None:
    # In a mount namespace of its own, podman, runc, mmdebstrap and apt-get are a program that fails.
    stub = tmp_path / "fails"
    stub.write_text("#!/bin/sh\necho 'E: Unable to locate package podman' >&2\nexit 100\n")
    stub.chmod(0o755)
    masks = " ".join(f"{d}/{p}" for p in ("podman", "runc", "mmdebstrap", "apt-get")
                     for d in ("/usr/local/bin", "/usr/bin", "/usr/sbin"))
    inner = (f"for f in {masks}; do if [ -e $f ]; then mount --bind {stub} $f; fi; done; "
             f"exec bash deploy/test_image.sh")
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "podman, runc or mmdebstrap" in lines[0] and "cannot be installed" in lines[0]
