"""Diagnostics: the activity Hessian against its closed form and against jax.hessian of the independent
energy, Lanczos against dense eigenvalues, the coord check on a hand-worked network and through the
sweeps' trainer, `mupc-sweep diagnose` end to end, and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import random_net, ref_energy, ref_forward, ref_scalings, write
from matplotlib.figure import Figure
from typer.testing import CliRunner

from mupc_sweep import InputError, activity_hessian, activity_spectrum, condition_figure, coord_figure
from mupc_sweep.cli import app
from mupc_sweep.coord import checkpoints, coord_check, layer_stats
from mupc_sweep.coord_plots import coord_figures
from mupc_sweep.data import Dataset
from mupc_sweep.pcn import Scalings, Weights, to_layers
from mupc_sweep.train import batch_indices
from mupc_sweep.verify import train_points

D, N, H, C = 5, 4, 3, 2


def net(param: str, seed: int = 0, width: int = N, depth: int = H) -> list[np.ndarray]:
    """Float64 weights drawn as `param` draws them in scale: N(0, 1) for μPC, variance 1/fan_in for SP."""
    ws = random_net(seed, D, width, depth, C)
    return ws if param == "mupc" else [w / np.sqrt(w.shape[1]) for w in ws]


def example(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=D), np.eye(C)[rng.integers(C)]


def closed_form(ws: list[np.ndarray], param: str) -> np.ndarray:
    """AᵀA for a linear network: F = ½‖Az − b‖², A block-bidiagonal with rows [I, 0, …] for e_1,
    −(I + a_h W_l) and I for e_l, and a_L W_L at column H for the output error."""
    width, depth = ws[0].shape[0], len(ws) - 1
    _, a_h, a_out = ref_scalings(param, ws[0].shape[1], width, depth)
    eye = np.eye(width)
    a = np.zeros((depth * width + ws[-1].shape[0], depth * width))
    a[:width, :width] = eye
    for l in range(1, depth):  # e_{l+1} = z_{l+1} − (I + a_h W_{l+1}) z_l
        a[l * width:(l + 1) * width, (l - 1) * width:l * width] = -(eye + a_h * ws[l])
        a[l * width:(l + 1) * width, l * width:(l + 1) * width] = eye
    a[depth * width:, (depth - 1) * width:] = a_out * ws[-1]
    return a.T @ a


@pytest.mark.parametrize("param", ["mupc", "sp"])
def test_a_linear_networks_hessian_is_the_closed_form_at_any_example_and_activities(x64, param):
    ws = net(param)
    expected = closed_form(ws, param)
    x, y = example()
    at_forward = activity_hessian(ws, x, y, activation="linear", param=param)
    assert at_forward.shape == (H * N, H * N) and at_forward.dtype == np.float64
    np.testing.assert_allclose(at_forward, expected, rtol=1e-12, atol=1e-12)
    z = np.random.default_rng(5).normal(size=(H, N))
    x2, y2 = example(seed=7)
    np.testing.assert_allclose(activity_hessian(ws, x2, y2, activation="linear", param=param, z=z), expected,
                               rtol=1e-12, atol=1e-12)
    assert np.linalg.eigvalsh(expected)[0] > 0  # positive definite (Theorem A.1)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("param", ["mupc", "sp"])
def test_the_hessian_is_jax_hessian_of_the_reference_energy(x64, activation, param):
    """At the feedforward activities and at random ones; the reference is a batch mean, here of B = 1."""
    ws = net(param)
    x, y = example()

    def reference(flat):
        zs = [flat[l * N:(l + 1) * N][None] for l in range(H)]
        return ref_energy([jnp.asarray(w) for w in ws], zs, x[None], y[None], activation, param)

    zs, _ = ref_forward([jnp.asarray(w) for w in ws], jnp.asarray(x[None]), activation, param)
    feedforward = jnp.concatenate([z[0] for z in zs])
    np.testing.assert_allclose(activity_hessian(ws, x, y, activation=activation, param=param),
                               jax.hessian(reference)(feedforward), rtol=1e-10, atol=1e-12)
    z = np.random.default_rng(3).normal(size=(H, N))
    np.testing.assert_allclose(activity_hessian(ws, x, y, activation=activation, param=param, z=z),
                               jax.hessian(reference)(jnp.asarray(z.reshape(-1))), rtol=1e-10, atol=1e-12)


def test_lanczos_is_exact_at_full_size_and_batched_over_examples(x64):
    """k = H·N Lanczos steps give the dense extremes; vmapped examples give what each alone gives."""
    ws = net("sp")
    rng = np.random.default_rng(2)
    xs, ys = rng.normal(size=(3, D)), np.eye(C)[rng.integers(C, size=3)]
    spectrum = activity_spectrum(ws, xs, ys, activation="tanh", param="sp", lanczos_steps=H * N)
    for i in range(3):
        dense = np.linalg.eigvalsh(activity_hessian(ws, xs[i], ys[i], activation="tanh", param="sp"))
        np.testing.assert_allclose([spectrum.lambda_min[i], spectrum.lambda_max[i]], [dense[0], dense[-1]],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(spectrum.condition[i], abs(dense[-1]) / abs(dense[0]), rtol=1e-8)
        alone = activity_spectrum(ws, xs[i:i + 1], ys[i:i + 1], activation="tanh", param="sp", lanczos_steps=H * N)
        np.testing.assert_allclose(alone.condition[0], spectrum.condition[i], rtol=1e-8)
    assert np.all(spectrum.residual_min < 1e-8) and np.all(spectrum.residual_max < 1e-8)


def test_lanczos_extremes_on_a_mid_size_network_are_within_their_residuals_of_dense(x64):
    """N = 16, H = 16 (H·N = 256) with 120 steps: λ_max converges first; every Ritz extreme lies inside
    the spectrum, within its residual of the true eigenvalue."""
    ws = random_net(4, D, 16, 16, C)
    x, y = example()
    dense = np.linalg.eigvalsh(activity_hessian(ws, x, y, activation="relu", param="mupc"))
    spectrum = activity_spectrum(ws, x[None], y[None], activation="relu", param="mupc", lanczos_steps=120)
    lam_min, lam_max = spectrum.lambda_min[0], spectrum.lambda_max[0]
    assert dense[0] - 1e-12 <= lam_min and lam_max <= dense[-1] + 1e-12
    assert lam_min - dense[0] <= spectrum.residual_min[0] + 1e-12
    assert dense[-1] - lam_max <= spectrum.residual_max[0] + 1e-12
    np.testing.assert_allclose(lam_max, dense[-1], rtol=1e-8)
    np.testing.assert_allclose(lam_min, dense[0], rtol=1e-2)  # κ ≈ 1000: λ_min converges last


def test_layer_stats_on_a_hand_worked_network(x64):
    """D = N = C = 1, H = 2, SP (all a = 1), linear; W_1 = 2, W_2 = 0.5, W_3 = −1, x = 1, y = 1, β = 0.5, T = 2.

    Feedforward: z_1 = 2, z_2 = z_1 + 0.5 z_1 = 3, ŷ = −3, so e_L = 4 and e_1 = e_2 = 0.
    Step 1 (only z_2 moves): ∂F/∂z_2 = e_2 − W_3 e_L = 4, z_2 = 3 − 0.5·4 = 1;
    now e_2 = 1 − 3 = −2, e_L = 1 + 1 = 2.
    Step 2: ∂F/∂z_1 = e_1 − e_2 − W_2 e_2 = 0 + 2 + 1 = 3, ∂F/∂z_2 = e_2 − W_3 e_L = −2 + 2 = 0:
    z_1 = 0.5, z_2 = 1.
    Errors: e_1 = 0.5 − 2 = −1.5, e_2 = 1 − 0.5 − 0.25 = 0.25, e_L = 1 + 1 = 2;
    energies ½e²: 1.125, 0.03125, 2.
    """
    w = Weights(jnp.array([[2.0]]), jnp.array([[[0.5]]]), jnp.array([[-1.0]]))
    stats = layer_stats(w, jnp.array([[1.0]]), jnp.array([[1.0]]), Scalings(1.0, 1.0, 1.0), "linear", 0.5, 2)
    np.testing.assert_allclose(stats.z, [2, 3], rtol=1e-14)
    np.testing.assert_allclose(stats.error, [1.5, 0.25, 2], rtol=1e-14)
    np.testing.assert_allclose(stats.energy, [1.125, 0.03125, 2], rtol=1e-14)


def toy_data(n_train: int = 12, n_test: int = 4, d_in: int = D) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset("toy", rng.normal(size=(n_train, d_in)).astype(np.float32), rng.integers(0, 10, n_train),
                   rng.normal(size=(n_test, d_in)).astype(np.float32), rng.integers(0, 10, n_test))


def test_checkpoints_train_as_train_points_does(x64):
    """The weights after 3 steps are those of `train_points` from the step-0 weights on the same batches."""
    data = toy_data()
    first, third = checkpoints(data, widths=[3], depths=[2], params=["mupc"], seeds=[7], steps=[0, 3],
                               activation="tanh", eta=0.01, beta=2.0, batch_size=4)
    assert (first.step, third.step, third.status) == (0, 3, "ok")
    order = np.asarray(batch_indices(jax.random.fold_in(jax.random.PRNGKey(7), 1), 12, 4, 3))
    xs, ys = data.x_train[order].astype(np.float64), np.eye(10)[data.y_train[order]]
    _, final = train_points([np.asarray(a) for a in to_layers(first.weights)], xs, ys, activation="tanh",
                            param="mupc", etas=np.array([0.01]), betas=np.array([2.0]), inference_steps=2)
    for got, want in zip(to_layers(third.weights), final):
        np.testing.assert_allclose(got, want[0], rtol=1e-12, atol=1e-14)


def test_lanczos_restarts_after_a_breakdown(x64):
    """Linear SP with W_2 = … = W_L = 0: H_z = T ⊗ I_N with T (H × H) tridiagonal, so a Krylov space
    spans only H directions and Lanczos breaks down every H steps; its restarts keep it exact."""
    ws = [np.random.default_rng(0).normal(size=(N, D))] + [np.zeros((N, N))] * (H - 1) + [np.zeros((C, N))]
    x, y = example()
    dense = np.linalg.eigvalsh(activity_hessian(ws, x, y, activation="linear", param="sp"))
    for lanczos_steps in (H + 1, H * N):
        spectrum = activity_spectrum(ws, x[None], y[None], activation="linear", param="sp", lanczos_steps=lanczos_steps)
        np.testing.assert_allclose([spectrum.lambda_min[0], spectrum.lambda_max[0]], [dense[0], dense[-1]], rtol=1e-10)


def test_coord_check_tables(x64):
    check = coord_check(toy_data(), widths=[2, 3], depths=[2], params=["sp"], steps=[0, 1], batch_size=4,
                        lanczos_steps=5)
    # per network and step: z at H = 2 layers, error and energy at L = 3
    assert len(check.coord) == 2 * 2 * (2 + 2 * 3) and len(check.spectrum) == 2 * 2 * 4
    assert set(check.coord.quantity) == {"z", "error", "energy"} and set(check.coord.status) == {"ok"}
    assert list(check.spectrum.lanczos_steps) == [4] * 8 + [5] * 8  # capped at H·N = 4 for N = 2
    assert (check.spectrum.condition >= 1).all()
    at_init = check.coord[(check.coord.step == 0) & (check.coord.quantity == "error")]
    assert (at_init.value > 0).all()  # after T = H inference steps every layer's error has moved


def synthetic_check(steps=(0, 10)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coord and spectrum tables of the shape `coord_check` returns: widths 8, 16 by depths 2, 4."""
    coord, spectrum = [], []
    for param, width, depth, step in itertools.product(["mupc", "sp"], [8, 16], [2, 4], steps):
        key = dict(param=param, activation="tanh", width=width, depth=depth, seed=0, step=step, status="ok")
        for quantity, layers in (("z", depth), ("error", depth + 1), ("energy", depth + 1)):
            coord += [dict(key, layer=l, quantity=quantity, value=float(l * width)) for l in range(1, layers + 1)]
        spectrum += [dict(key, example=i, condition=float(width * depth + i)) for i in range(3)]
    return pd.DataFrame(coord), pd.DataFrame(spectrum)


def test_coord_figures_have_a_panel_per_param_and_quantity_and_a_line_per_step():
    coord, spectrum = synthetic_check()
    fig = coord_figure(coord, "width", at=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3
    assert all(ax.get_xscale() == ax.get_yscale() == "log" for ax in fig.axes)
    assert [len(ax.lines) for ax in fig.axes] == [2] * 6
    # the line is the mean over layers: z at layers 1..4 of width N is l·N, so its mean is 2.5 N
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [2.5 * 8, 2.5 * 16])
    fig = condition_figure(spectrum, "depth", at=16)
    assert len(fig.axes) == 2 and [len(ax.lines) for ax in fig.axes] == [2, 2]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [16 * 2 + 1, 16 * 4 + 1])  # median of 3 examples
    stems = {f"{kind}_by_{axis}" for kind in ("coord", "condition") for axis in ("width_H2", "width_H4", "depth_N8",
                                                                                   "depth_N16")}
    assert set(coord_figures(coord, spectrum)) == stems


def test_diverged_networks_are_not_drawn():
    coord, _ = synthetic_check(steps=(0,))
    coord.loc[coord.width == 16, "status"] = "diverged"
    assert list(coord_figure(coord, "width", at=2).axes[0].lines[0].get_xdata()) == [8]


runner = CliRunner()


def test_diagnose_end_to_end(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    results = tmp_path / "results"
    args = ["diagnose", "--data-dir", str(directory), "--results", str(results), "--name", "tiny", "--param", "mupc",
            "--width", "3", "--depth", "1", "--depth", "2", "--steps", "0", "--steps", "3", "--batch-size", "2",
            "--lanczos-steps", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = results / "diagnose" / "tiny"
    assert {p.name for p in folder.iterdir()} == {"coord.parquet", "spectrum.parquet", "coord_by_depth_N3.png",
                                                  "condition_by_depth_N3.png"}
    coord, spectrum = pd.read_parquet(folder / "coord.parquet"), pd.read_parquet(folder / "spectrum.parquet")
    assert len(coord) == 2 * sum(h + 2 * (h + 1) for h in (1, 2)) and len(spectrum) == 2 * 2 * 2
    assert set(coord.step) == {0, 3} and set(spectrum.example) == {0, 1}
    assert list(spectrum.lanczos_steps.unique()) == [3, 4]  # capped at H·N = 3 for H = 1
    assert "condition" in result.stdout and "z_mean" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--activation", "sigmoid"], "--activation: must be one of linear, tanh, relu; got 'sigmoid'"),
    (["--param", "ntk"], "--param: must be one of mupc, sp; got 'ntk'"),
    (["--width", "0"], "--width: must be an integer of at least 1; got 0"),
    (["--depth", "-1"], "--depth: must be an integer of at least 1; got -1"),
    (["--steps", "-1"], "--steps: must be an integer of at least 0; got -1"),
    (["--steps", "2", "--steps", "2"], "--steps: must not repeat values; got [2, 2]"),
    (["--batch-size", "4"], "--batch-size: must be at most 3"),
    (["--eta", "0"], "--eta: must be a positive number; got 0.0"),
    (["--name", "a/b"], "--name: must be a plain folder name; got 'a/b'"),
])
def test_diagnose_bad_input_exits_2_and_writes_nothing(small_mnist, tmp_path, args, message):
    directory = write(tmp_path / "idx", small_mnist)
    results = tmp_path / "results"
    result = runner.invoke(app, ["diagnose", "--data-dir", str(directory), "--results", str(results), "--width", "2",
                                 "--depth", "1", "--batch-size", "2", *args])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not results.exists()


@pytest.mark.parametrize("change,message", [
    (dict(activation="gelu"), "activation: must be one of linear, tanh, relu; got 'gelu'"),
    (dict(param="ntk"), "param: must be one of mupc, sp; got 'ntk'"),
    (dict(z=np.zeros((N, H))), f"z: must have shape ({H}, {N}); got ({N}, {H})"),
    (dict(x=np.zeros(D + 1)), f"x: must have shape ({D},); got ({D + 1},)"),
    (dict(y=np.zeros((1, C))), f"y: must have shape ({C},); got (1, {C})"),
    (dict(weights="square"), f"weights[1]: a hidden layer must be square ({N}, {N}); got ({N + 1}, {N})"),
    (dict(weights="chain"), "weights[1]: must have shape (out, 4) to follow weights[0]"),
])
def test_activity_hessian_bad_input_is_one_sentence(change, message):
    ws = net("mupc")
    if change.get("weights") == "square":
        ws[1], ws[2] = np.zeros((N + 1, N)), np.zeros((N, N + 1))
    elif change.get("weights") == "chain":
        ws[1] = np.zeros((N, N + 1))
    x, y = example()
    kwargs = {"x": x, "y": y, "activation": "tanh", "param": "mupc"}
    kwargs.update({k: v for k, v in change.items() if k != "weights"})
    with pytest.raises(InputError) as raised:
        activity_hessian(ws, kwargs.pop("x"), kwargs.pop("y"), **kwargs)
    assert isinstance(raised.value, ValueError) and message in str(raised.value)
    assert str(raised.value).count(". ") == 0 and str(raised.value).endswith(".")


def test_activity_spectrum_and_coord_check_bad_input():
    ws = net("mupc")
    xs, ys = np.zeros((2, D)), np.zeros((2, C))
    with pytest.raises(InputError, match=r"zs: must have shape \(2, 3, 4\); got \(2, 4, 3\)"):
        activity_spectrum(ws, xs, ys, activation="tanh", param="mupc", zs=np.zeros((2, N, H)))
    with pytest.raises(InputError, match="lanczos_steps: must be an integer of at least 1; got 0"):
        activity_spectrum(ws, xs, ys, activation="tanh", param="mupc", lanczos_steps=0)
    with pytest.raises(InputError, match="widths: must not be an empty list"):
        coord_check(toy_data(), widths=[], depths=[2])
    with pytest.raises(InputError, match=r"depths\[1\]: must be an integer of at least 1; got 0"):
        coord_check(toy_data(), widths=[2], depths=[2, 0])
