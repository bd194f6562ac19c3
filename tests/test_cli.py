"""The command line, in-process: success paths, help, and bad input (exit status 2, one message)."""

import pytest
from conftest import write
from typer.testing import CliRunner

from mupc_sweep.cli import app

runner = CliRunner()
def commands(group=app, prefix=()) -> list[tuple[str, ...]]:
    """Every command of the typer app, sub-apps included, as its words on the command line."""
    found = [(*prefix, c.name or c.callback.__name__) for c in group.registered_commands]
    for sub in group.registered_groups:
        found += commands(sub.typer_instance, (*prefix, sub.name))
    return found


def test_the_command_list_is_the_whole_app():
    assert set(commands()) >= {("train",), ("run",), ("status",), ("plot",), ("transfer",), ("data", "fetch")}


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Example: mupc-sweep " + " ".join(command) in result.output


def test_train_prints_a_row_per_point(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    args = ["train", "--data-dir", str(directory), "--width", "8", "--depth", "2", "--batch-size", "4",
            "--epochs", "3", "--eta", "0.1", "--eta", "0.01", "--beta", "0.5", "--seed", "0", "--seed", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert len(rows) == 4
    # 3 steps, shorter than eval_every: the final evaluation is the first, where below 15 % stops a point
    for row in rows:
        status, test_acc_final = row.split()[7:9]
        assert status == ("no_learning" if float(test_acc_final) < 15 else "ok"), row
    assert "best η=" in result.stdout or "no valid point (every point diverged or stopped)" in result.stdout


def test_train_bp_has_no_beta(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    args = ["train", "--data-dir", str(directory), "--width", "8", "--depth", "2", "--batch-size", "4",
            "--epochs", "3", "--algorithm", "bp", "--eta", "0.1", "--eta", "0.01", "--eval-every", "100"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "β=" not in result.stdout and "<NA>" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--activation", "sigmoid"], "--activation: must be one of linear, tanh, relu; got 'sigmoid'"),
    (["--eta", "-0.1"], "--eta: must be a positive learning rate; got -0.1"),
    (["--batch-size", "0"], "--batch-size: must be an integer of at least 1"),
    (["--dataset", "cifar10"], "--dataset: must be one of mnist, fashion_mnist"),
    (["--seed", "0", "--seed", "0"], "--seed: must not repeat values; got [0, 0]"),
    (["--eta", "0.1", "--eta", "0.1"], "--eta: must not repeat values"),
    (["--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1; got -1"),
    (["--chunk", "-2"], "--chunk: must be an integer of at least 1; got -2"),
])
def test_train_bad_input_exits_2_with_one_message(small_mnist, tmp_path, args, message):
    directory = write(tmp_path / "idx", small_mnist)
    result = runner.invoke(app, ["train", "--data-dir", str(directory), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_fetch_verifies_a_directory_and_names_a_missing_file(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    result = runner.invoke(app, ["data", "fetch", "mnist", "--data-dir", str(directory)])
    assert result.exit_code == 0 and "mnist: verified" in result.stdout
    (directory / "t10k-labels-idx1-ubyte").unlink()
    result = runner.invoke(app, ["data", "fetch", "mnist", "--data-dir", str(directory)])
    assert result.exit_code == 2 and "lacks t10k-labels-idx1-ubyte" in result.stderr
    result = runner.invoke(app, ["data", "fetch", "mnist", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and f"data directory {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_data_fetch_rejects_an_unknown_name_before_fetching_anything(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    result = runner.invoke(app, ["data", "fetch", "mnist", "bogus", "--data-dir", str(directory)])
    assert result.exit_code == 2 and "got 'bogus'" in result.stderr and "verified" not in result.stdout


def test_version_and_a_directory_given_as_spec(tmp_path):
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("mupc-sweep ")
    result = runner.invoke(app, ["run", str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path} is a directory; give a spec file" in result.stderr


def test_one_bad_value_gets_one_message_from_a_spec_the_command_line_and_python(small_mnist, tmp_path):
    from mupc_sweep import CellConfig, InputError
    from mupc_sweep.spec import SpecError, load_spec

    body = "must be one of linear, tanh, relu; got 'gelu'."
    with pytest.raises(InputError) as python:
        CellConfig(width=8, depth=2, activation="gelu")
    with pytest.raises(SpecError) as spec:
        load_spec({"network": {"width": 8, "depth": 2, "activation": "gelu"}, "grid": {"eta": [0.1], "beta": [1]}})
    cli = runner.invoke(app, ["train", "--data-dir", str(write(tmp_path / "idx", small_mnist)), "--activation", "gelu"])
    assert str(python.value) == f"activation: {body}" and str(spec.value) == f"network.activation: {body}"
    assert cli.exit_code == 2 and cli.stderr.strip() == f"Error: --activation: {body}"  # named as the option


def test_old_spellings_still_work_hidden(tmp_path, small_mnist):
    """Names users may have in scripts: `run --out`, `--cpus-per-cell`, `--gpus-per-cell` and
    `diagnose --examples` do what the new names do, and no help lists them."""
    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "network": {"width": 8, "depth": [2, 3]},
                                    "grid": {"eta": [0.1], "beta": [1.0]}}))
    old = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "r"), "--cpus-per-cell", "2", "--dry-run",
                              "--slots", "1"])
    new = runner.invoke(app, ["run", str(spec), "--results", str(tmp_path / "r"), "--cpus-per-trial", "2",
                              "--dry-run", "--slots", "1"])
    assert old.exit_code == new.exit_code == 0 and old.stdout == new.stdout
    refused = runner.invoke(app, ["run", str(spec), "--gpus-per-cell", "2", "--dry-run"])
    assert refused.exit_code == 2 and "--gpus-per-trial: a trial trains on one device" in refused.stderr
    directory = write(tmp_path / "idx", small_mnist)
    examples = runner.invoke(app, ["diagnose", "--data-dir", str(directory), "--results", str(tmp_path / "d"),
                                   "--width", "2", "--depth", "1", "--examples", "4"])
    assert examples.exit_code == 2 and "--batch-size: must be at most 3" in examples.stderr
    for command in (["run"], ["diagnose"]):
        shown = runner.invoke(app, [*command, "--help"]).output
        assert "--out " not in shown and "-per-cell" not in shown and "--examples" not in shown
