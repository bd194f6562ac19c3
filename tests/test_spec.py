"""Sweep specs: the shipped files, expansion into cells, hashes, and errors that name the field."""

from pathlib import Path

import pytest
import yaml

from mupc_sweep.spec import SpecError, load_spec, with_resources

SWEEPS = Path(__file__).parent.parent / "sweeps"
PAPER_ETAS = [0.5, 0.1, 0.05, 0.01]
PAPER_BETAS = [1000, 500, 100, 50, 10, 5, 1, 0.5, 0.1, 0.05, 0.01]


def minimal(**overrides):
    raw = {"network": {"width": 8, "depth": [2, 3]}, "grid": {"eta": [0.1], "beta": [1.0, 0.5]}}
    for path, value in overrides.items():
        section, _, key = path.partition(".")
        if key:
            raw.setdefault(section, {})[key] = value
        else:
            raw[section] = value
    return raw


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_loads(path):
    spec = load_spec(path)
    assert spec.cells() and len({c.cell_id for c in spec.cells()}) == len(spec.cells())


def test_depth_spec_is_the_papers_figure_5_sweep():
    spec = load_spec(SWEEPS / "depth.yaml")
    assert spec.name == "paper-depth" and spec.dataset == "mnist" and spec.seeds == [0, 1, 2]
    assert spec.etas == PAPER_ETAS and spec.betas == PAPER_BETAS
    assert [(c.width, c.depth, c.inference_steps, c.activation) for c in spec.cells()] == [
        (512, h, h, "tanh") for h in (8, 16, 32, 64, 128)
    ]
    assert all(c.epochs == 1 and c.batch_size == 64 for c in spec.cells())
    width = load_spec(SWEEPS / "width.yaml")
    assert [(c.width, c.depth, c.inference_steps) for c in width.cells()] == [
        (n, 8, 8) for n in (64, 128, 256, 512, 1024)
    ]


def test_quick_spec_spans_three_depths():
    spec = load_spec(SWEEPS / "quick.yaml")
    assert [c.depth for c in spec.cells()] == [2, 4, 8]
    assert [c.cell_id for c in spec.cells()][0] == "tanh-mupc-pc-N64-H2-T2"
    assert len(spec.points("pc")) == 2 * 4 * 6 and len(spec.points("bp")) == 2 * 4


def test_list_fields_are_axes_and_defaults_fill_in():
    spec = load_spec(minimal(**{"network.activation": ["tanh", "relu"], "network.algorithm": ["pc", "bp"]}))
    assert len(spec.cells()) == 2 * 2 * 2
    assert spec.training == {"batch_size": 64, "epochs": 1.0, "eval_every": 300} and spec.seeds == [0]
    assert (spec.cpu, spec.gpu) == (1.0, 0.0)


def test_round_trip_and_hash():
    spec = load_spec(minimal())
    again = load_spec(yaml.safe_load(yaml.safe_dump(spec.to_raw())))
    assert again == spec and again.spec_hash() == spec.spec_hash()
    assert load_spec(minimal(resources={"cpu": 4, "gpu": 0.5})).spec_hash() == spec.spec_hash()
    assert load_spec(minimal(name="other")).spec_hash() == spec.spec_hash()
    assert load_spec(minimal(**{"grid.eta": [0.2]})).spec_hash() != spec.spec_hash()


@pytest.mark.parametrize("raw,message", [
    (minimal(**{"network.dpth": 4}), r"^network\.dpth: unknown field; allowed here: activation, algorithm, depth"),
    (minimal(epochs=1), r"^epochs: unknown field"),
    (minimal(**{"network.depth": [2, 0]}), r"^network\.depth\[1\]: must be an integer of at least 1; got 0\.$"),
    (minimal(**{"network.depth": "deep"}), r"^network\.depth: must be an integer of at least 1; got 'deep'"),
    (minimal(**{"network.depth": [2, 4, 2]}), r"^network\.depth: must not repeat values; got \[2, 4, 2\]"),
    (minimal(**{"network.inference_steps": [None, None]}), r"^network\.inference_steps: must not repeat"),
    (minimal(**{"training.seeds": [0, 2**32]}), r"^training\.seeds\[1\]: must be an integer from 0 to 2\*\*32 - 1"),
    (minimal(**{"network.activation": "gelu"}), r"^network\.activation: must be one of linear, tanh, relu"),
    (minimal(**{"grid.eta": []}), r"^grid\.eta: must not be an empty list"),
    (minimal(**{"grid.beta": [1.0, -1.0]}), r"^grid\.beta\[1\]: must be a positive learning rate; got -1\.0"),
    (minimal(**{"grid.beta": [1.0, 1.0]}), r"^grid\.beta: must not repeat"),
    (minimal(**{"training.batch_size": 0}), r"^training\.batch_size: must be an integer of at least 1"),
    (minimal(**{"training.epochs": "one"}), r"^training\.epochs: must be a positive number"),
    (minimal(**{"training.seeds": [0, 0]}), r"^training\.seeds: must not repeat"),
    (minimal(dataset="cifar10"), r"^dataset: must be one of mnist, fashion_mnist"),
    (minimal(name="../escape"), r"^name: must be a folder name"),
    (minimal(resources={"cpu": 0, "gpu": 0}), r"^resources.cpu and resources.gpu: a trial needs some cpu or gpu"),
    ({"network": {"width": 8, "depth": 2}}, r"^grid: required section is missing"),
    ({"network": {"depth": 2}, "grid": {"eta": [0.1], "beta": [1]}}, r"^network\.width: required"),
    ([1, 2], r"^spec: must be a path to a YAML file, a mapping or a SweepSpec; got list"),
])
def test_bad_specs_name_the_field(raw, message):
    with pytest.raises(SpecError, match=message):
        load_spec(raw)


def test_bp_only_spec_needs_no_beta():
    spec = load_spec({"network": {"width": 8, "depth": 2, "algorithm": "bp"}, "grid": {"eta": [0.1, 0.01]}})
    assert spec.betas == [] and len(spec.points("bp")) == 2


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml is not valid YAML"):
        load_spec(bad)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe")
    with pytest.raises(SpecError, match="binary.yaml cannot be read as a YAML spec: 'utf-8' codec"):
        load_spec(binary)


def test_a_key_given_twice_is_refused(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("network:\n  width: [8]\n  depth: [2]\n  width: [16]\ngrid:\n  eta: [0.1]\n  beta: [1]\n")
    with pytest.raises(SpecError, match=r"twice.yaml: key 'width' is given twice \(line 4\); keep one"):
        load_spec(twice)
    once = tmp_path / "once.yaml"
    once.write_text(twice.read_text().replace("  width: [16]\n", ""))
    assert load_spec(once).network["width"] == [8]


def test_merge_keys_load_and_unhashable_keys_are_spec_errors(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("network: {width: [8], depth: [2]}\n"
                      "training: {<<: {batch_size: 32, epochs: 0.5}, epochs: 0.25}\n"
                      "grid: {eta: [0.1], beta: [1]}\n")
    spec = load_spec(merged)
    assert (spec.training["batch_size"], spec.training["epochs"]) == (32, 0.25)  # an explicit key overrides
    unhashable = tmp_path / "unhashable.yaml"
    unhashable.write_text("network: {width: [8], depth: [2]}\n? [a, b]\n: 1\n")
    with pytest.raises(SpecError, match="unhashable.yaml is not valid YAML"):
        load_spec(unhashable)


def test_resource_overrides_are_named_as_the_arguments_that_set_them():
    spec = load_spec(SWEEPS / "quick.yaml")
    with pytest.raises(SpecError, match=r"^gpus_per_trial: a trial trains on one device, so at most 1"):
        with_resources(spec, gpu=2)
    with pytest.raises(SpecError, match=r"^cpus_per_trial: must be a non-negative number; got -1"):
        with_resources(spec, cpu=-1)
    assert (with_resources(spec, gpu=0.25).gpu, with_resources(spec, gpu=0.25).cpu) == (0.25, spec.cpu)
    with pytest.raises(SpecError, match=r"^cpus_per_trial and resources.gpu: a trial needs some cpu or gpu"):
        with_resources(spec, cpu=0)
    with pytest.raises(SpecError, match=r"^resources.gpu: a trial trains on one device"):
        load_spec({**spec.to_raw(), "resources": {"cpu": 1, "gpu": 2}})


def test_points_per_trial_is_a_resource_outside_the_hash():
    spec = load_spec(minimal())
    sharded = load_spec(minimal(resources={"cpu": 1, "points_per_trial": 5}))
    assert sharded.points_per_trial == 5 and spec.points_per_trial is None
    assert sharded.spec_hash() == spec.spec_hash()
    assert load_spec(yaml.safe_load(yaml.safe_dump(sharded.to_raw()))) == sharded
    assert with_resources(spec, points_per_trial=3).points_per_trial == 3
    for bad in (0, -2, 1.5, "ten"):
        with pytest.raises(SpecError, match=r"^resources\.points_per_trial: must be an integer of at least 1"):
            load_spec(minimal(resources={"points_per_trial": bad}))
        with pytest.raises(SpecError, match=r"^points_per_trial: must be an integer of at least 1"):
            with_resources(spec, points_per_trial=bad)


def test_two_combinations_giving_one_cell_are_refused():
    with pytest.raises(SpecError, match=r"^network: two of its combinations give the same cell tanh-mupc-pc-N8-H3-T3"):
        load_spec(minimal(**{"network.depth": 3, "network.inference_steps": [None, 3]}))


def test_a_spec_is_a_path_a_mapping_or_a_spec_and_nothing_else():
    spec = load_spec(SWEEPS / "quick.yaml")
    assert load_spec(spec) is spec and load_spec(spec.to_raw()) == spec and load_spec(str(SWEEPS / "quick.yaml")) == spec
    with pytest.raises(SpecError, match=r"^spec: must be a path to a YAML file, a mapping or a SweepSpec; got int"):
        load_spec(3)


def test_transfer_sweep_fields_default_and_are_checked():
    spec = load_spec(minimal())
    assert (spec.targets, spec.patch, spec.extend) == ("full", 1, 0) and spec.size_axis == "depth"
    patch = load_spec(minimal(grid={"eta": [0.1], "beta": [1.0], "targets": "patch", "patch": 2, "extend": 3}))
    assert (patch.targets, patch.patch, patch.extend) == ("patch", 2, 3)
    assert load_spec(yaml.safe_load(yaml.safe_dump(patch.to_raw()))) == patch


@pytest.mark.parametrize("grid,network,message", [
    ({"targets": "patch"}, {"depth": 4}, r"^grid\.targets: patch needs exactly one size axis with several values "
                                         r"\(network\.width or network\.depth\) to find each family's smallest size; got none"),
    ({"targets": "patch"}, {"width": [8, 16]}, r"^grid\.targets: patch needs exactly one size axis .*; got width and depth"),
    ({"targets": "some"}, {}, r"^grid\.targets: must be one of full, patch; got 'some'"),
    ({"targets": "patch", "patch": 0}, {}, r"^grid\.patch: must be an integer of at least 1; got 0"),
    ({"extend": -1}, {}, r"^grid\.extend: must be an integer of at least 0; got -1"),
    ({"extend": 1.5}, {}, r"^grid\.extend: must be an integer of at least 0; got 1\.5"),
])
def test_bad_transfer_sweep_fields_name_the_field(grid, network, message):
    raw = minimal()
    raw["grid"] = {**raw["grid"], **grid}
    raw["network"] = {**raw["network"], **network}
    with pytest.raises(SpecError, match=message):
        load_spec(raw)


def test_settings_are_what_changes_every_points_result():
    spec = load_spec(minimal())
    assert spec.settings() == {"dataset": "mnist", "training.batch_size": 64, "training.epochs": 1.0,
                               "training.eval_every": 300, "curves_every": 10}
    grown = load_spec(minimal(**{"grid.eta": [0.1, 0.5], "network.depth": [2, 3, 4], "training.seeds": [0, 1]}))
    assert grown.settings() == spec.settings() and grown.spec_hash() != spec.spec_hash()
    assert load_spec(minimal(**{"training.epochs": 2})).settings()["training.epochs"] == 2
