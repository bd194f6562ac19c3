"""A trained cell as tables: one record per (seed, η, β) point (the columns listed in the README,
"Reading a sweep"), and its curves. β is null for bp points, here and everywhere."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from .step import STATUSES
from .train import CellResult


def loss_summary(losses: np.ndarray, steps_run: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point of `losses` (G, S): the min of the finite losses, its step, and the loss of the
    last step run (non-finite for a diverged point). NaN and −1 for a point without a finite loss."""
    finite = np.isfinite(losses)
    has_min = finite.any(axis=1)
    masked = np.where(finite, losses, np.inf)
    step_of_min = np.where(has_min, masked.argmin(axis=1), -1)
    min_loss = np.where(has_min, masked.min(axis=1), np.nan)
    final = losses[np.arange(len(losses)), np.maximum(steps_run - 1, 0)]
    return min_loss, step_of_min, final


def code_version() -> str:
    """The package version, with the git commit when running from a checkout."""
    try:
        base = version("mupc-sweep")
    except PackageNotFoundError:
        base = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{base}+g{commit}" if commit else base


def cell_records(result: CellResult, dataset: str) -> pd.DataFrame:
    """One row per point with the record columns (the sweep adds `sweep` and `cell_id`)."""
    cfg = result.cfg
    min_loss, step_of_min, final = loss_summary(result.losses, result.steps_run)
    acc_max = np.nanmax(np.column_stack([result.eval_acc, result.test_acc_final]), axis=1)
    n = len(result.seeds)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "activation": cfg.activation,
            "param": cfg.param,
            "algorithm": cfg.algorithm,
            "width": cfg.width,
            "depth": cfg.depth,
            "inference_steps": cfg.inference_steps,
            "batch_size": cfg.batch_size,
            "epochs": float(cfg.epochs),
            "seed": result.seeds.astype(np.int64),
            "eta": result.etas.astype(np.float64),
            "beta": _betas(result, n),
            "min_train_loss": min_loss.astype(np.float64),
            "final_train_loss": final.astype(np.float64),
            "step_of_min": step_of_min.astype(np.int64),
            "steps_run": result.steps_run.astype(np.int64),
            "status": [STATUSES[s] for s in result.status],
            "inference_residual": _residual(result),
            "test_acc_final": result.test_acc_final.astype(np.float64),
            "test_acc_max": acc_max.astype(np.float64),
            "wall_s": result.wall_s,
            "device": result.device,
            "code_version": code_version(),
            "jax_version": jax.__version__,
            "created_at": pd.Timestamp(datetime.now(timezone.utc)),
        }
    )


def _residual(result: CellResult) -> pd.arrays.FloatingArray:
    """Each point's median inference residual over the steps where it was measured: null for bp,
    which has no inference, and for a point with no measured step."""
    with np.errstate(all="ignore"):
        measured = np.isfinite(result.residuals).any(axis=1)
        median = np.where(measured, np.nanmedian(np.where(measured[:, None], result.residuals, 0.0), axis=1), np.nan)
    return pd.array([None if result.cfg.algorithm == "bp" or not np.isfinite(m) else float(m) for m in median],
                    dtype="Float64")


def _betas(result: CellResult, n: int) -> pd.arrays.FloatingArray:
    """The points' β as a nullable column: null for bp, which has none."""
    return pd.array(result.betas if result.cfg.algorithm == "pc" else [None] * n, dtype="Float64")


def cell_curves(result: CellResult, dataset: str, every: int = 10) -> pd.DataFrame:
    """Long table of each point's curves: `train_loss` every `every` steps and `test_acc` at each
    evaluation; `step` counts the updates made before it (the final evaluation is at step S)."""
    cfg = result.cfg
    n_steps = result.losses.shape[1]
    steps = np.union1d(np.arange(0, n_steps, every), np.append(result.eval_steps, n_steps))
    acc = np.full((len(result.seeds), len(steps)), np.nan)
    for j, step in enumerate(result.eval_steps):
        acc[:, np.searchsorted(steps, step)] = result.eval_acc[:, j]
    acc[:, -1] = result.test_acc_final
    loss = np.full_like(acc, np.nan)
    inside = steps < n_steps
    loss[:, inside] = result.losses[:, steps[inside]]
    residual = np.full_like(acc, np.nan)
    measured = np.isin(steps, result.residual_steps)
    residual[:, measured] = result.residuals[:, np.searchsorted(result.residual_steps, steps[measured])]
    n = len(steps)
    return pd.DataFrame(
        {
            "dataset": dataset, "activation": cfg.activation, "param": cfg.param, "algorithm": cfg.algorithm,
            "width": cfg.width, "depth": cfg.depth, "inference_steps": cfg.inference_steps,
            "seed": np.repeat(result.seeds.astype(np.int64), n),
            "eta": np.repeat(result.etas.astype(np.float64), n),
            "beta": _betas(result, len(result.seeds)).repeat(n),
            "step": np.tile(steps.astype(np.int64), len(result.seeds)),
            "train_loss": loss.ravel(),
            "inference_residual": residual.ravel(),
            "test_acc": acc.ravel(),
        }
    )
