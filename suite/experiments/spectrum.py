"""Eigenvalues of the pNTK against those of the eNTK at initialization (theorems T3, T3').

For each (architecture, depth, width, seed) one exact eNTK Theta (N, N, O, O) is computed on
a fixed batch of real inputs and turned into the (N*O) x (N*O) matrix ``kernels.as_matrix``;
its eigenvalues are taken with ``np.linalg.eigvalsh`` in float64. The approximation K (N, N)
(the pNTK, and the mean trace for comparison) follows exactly from the same eNTK
(``KERNELS[k].from_entk``); the spectrum of K x I_O is K's spectrum with every eigenvalue
repeated O times (THEORY.md T3), so only the N x N matrix K is decomposed.

Metrics, per approximation K (kernels ``pntk`` and ``trace_ntk``); lambda_k ascending:

* ``lambda_max_rel_err`` = |lambda_max(Theta) - lambda_max(K)| / lambda_max(Theta). T3: by
  Weyl, |lambda_k(Theta) - lambda_k(K x I)| <= ||Theta - K x I||_2 <= ||.||_F, so it falls at
  least like n^-1/2 (THEORY.md §4 measured -0.35 to -0.38 for an MLP, noisier than T2).
* ``spectrum_rel_err`` = ||lambda(Theta) - lambda(K x I)||_2 / ||lambda(Theta)||_2, both
  sorted. Hoffman-Wielandt bounds it by ||Theta - K x I||_F / ||Theta||_F (the denominators
  agree because ||lambda(Theta)||_2 = ||Theta||_F), the T2 error, so it falls at least like
  n^-1/2.
* ``lambda_min_rel_err`` = |lambda_min(Theta) - lambda_min(K)| / lambda_min(Theta) and
  ``cond_rel_err`` = |kappa(Theta) - kappa(K)| / kappa(Theta), kappa = lambda_max/lambda_min.
  T3': **not guaranteed**. The absolute error of lambda_min is bounded like any eigenvalue's,
  but relative to a small lambda_min it need not shrink (the O copies of each K eigenvalue
  split by O(n^-1/2) and lambda_min(Theta) is the lowest of its cluster). Report-only. When
  lambda_min(Theta) <= 1e-12 lambda_max(Theta) it is numerically zero and both are NaN: this
  happens when the network has about as few parameters P as the eNTK has rows N*O (rank
  Theta <= P), e.g. the 1-layer CNN at width 16 (P = 330 for 320 rows; lambda_min/lambda_max
  = -2e-17 in float64), while the N x N pNTK stays well conditioned.
* ``weyl_ratio`` = max_k |lambda_k(Theta) - lambda_k(K x I)| / ||Theta - K x I||_2 <= 1
  (Weyl) and ``hw_ratio`` = ||lambda(Theta) - lambda(K x I)||_2 / ||Theta - K x I||_F <= 1
  (Hoffman-Wielandt): how much of each bound the eigenvalues use. Report-only sanity checks.
* kernel ``entk``, ``inv_condition`` = lambda_min(Theta) / lambda_max(Theta). Report-only; it
  says how far lambda_min is from the kernel's rounding floor (below).

Precision: eigenvalues are computed in float64, but the kernel itself is float32 by default:
its entries carry relative rounding errors ~1e-7, i.e. absolute errors of order 1e-7
lambda_max in every eigenvalue at worst, so lambda_min of a float32 kernel is limited to a
relative accuracy of about 1e-7 / inv_condition. Measured on digits (N = 32, O = 10): the CNN
and ResNet kernels reach inv_condition ~3e-6 at width 16 (MLP ~1e-3), yet lambda_min of the
float32 and float64 kernels agreed to 1e-3 relative (rounding errors are far below the worst
case), against lambda_min errors of order 1 between eNTK and pNTK; float64 made the conv-net
kernels 5-10x slower on CPU. So the default stays float32 (``python -m suite run spectrum --float64`` switches);
fig_spectrum marks cases with inv_condition below 10 eps(dtype) as precision-limited.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

from suite import kernels
from suite.experiments import Experiment, common
from suite.experiments.convergence import QUICK_DEPTHS, Config, make_grid
from suite.stats import Prediction

VERSION = "1"

#: Approximations whose spectra are compared with the eNTK's.
KERNELS = ("pntk", "trace_ntk")

#: lambda_min(Theta) <= ZERO_TOL * lambda_max(Theta) counts as a numerically zero eigenvalue.
ZERO_TOL = 1e-12

#: Quick: fewer widths than convergence's quick grid (keeps it near 2 min); 5 seeds, because
#: lambda_max errors are noisier than the Frobenius error (3 seeds left a series non-monotone).
QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024), "cnn": (16, 32, 64, 128), "resnet": (16, 32, 64, 128)}
#: Full: mnist5k14, N = 64 (the eigendecompositions are of the 640x640 eNTK), conv nets narrower
#: than convergence's (the 3-hour budget of the whole full grid; README "full grid").
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "cnn": (16, 32, 64, 128, 256), "resnet": (16, 32, 64, 128)}
FULL_DEPTHS = {"mlp": (1, 2), "cnn": (1, 2), "resnet": (1,)}

#: Metrics the theory makes no rate claim about (T3') or that are ratios to a bound.
REPORT_ONLY = ("lambda_min_rel_err", "cond_rel_err", "weyl_ratio", "hw_ratio", "inv_condition")


#: lambda_max: the O-fold top eigenvalue of K x I_O splits by O(n^-1/2) (THEORY.md §3), so the
#: error falls like n^-1/2, not faster; the whole spectrum is only bounded (Hoffman-Wielandt).
PREDICTIONS = {
    "lambda_max_rel_err": Prediction("slope", -0.5, "T3 (THEORY.md §3)"),
    "spectrum_rel_err": Prediction("bound", -0.5, "T3, Hoffman-Wielandt bound (THEORY.md §3)"),
}

GRIDS = {
    "quick": lambda: make_grid(QUICK_WIDTHS, QUICK_DEPTHS, 5, dataset="digits", n_inputs=32),
    "full": lambda: make_grid(FULL_WIDTHS, FULL_DEPTHS, 5, dataset="mnist5k14", n_inputs=64),
}


# --------------------------------------------------------------------------- spectra


def symmetric_matrix(full: np.ndarray) -> np.ndarray:
    """The (N*O) x (N*O) eNTK matrix in float64, symmetrized (J J^T is symmetric; the
    symmetrization removes rounding asymmetry so ``eigvalsh`` sees exactly what it assumes)."""
    # as_matrix only reshapes, so it works on numpy arrays too (typed for jax arrays).
    mat = np.asarray(kernels.as_matrix(cast(Any, np.asarray(full, np.float64))), np.float64)
    return (mat + mat.T) / 2


def kron_spectrum(approx: np.ndarray, n_outputs: int) -> np.ndarray:
    """Ascending eigenvalues of K x I_O: K's eigenvalues, each repeated O times (T3)."""
    k = np.asarray(approx, np.float64)
    return np.repeat(np.linalg.eigvalsh((k + k.T) / 2), n_outputs)


def spectrum_metrics(mat: np.ndarray, eig_full: np.ndarray, approx: np.ndarray, n_outputs: int) -> dict[str, float]:
    """Every eigenvalue metric of one approximation K against the eNTK matrix ``mat``.

    Args:
        mat: the symmetric (N*O) x (N*O) eNTK matrix (float64).
        eig_full: its ascending eigenvalues.
        approx: K, (N, N).
        n_outputs: O.
    """
    eig_k = kron_spectrum(approx, n_outputs)
    diff = eig_full - eig_k
    lmax, lmin = eig_full[-1], eig_full[0]
    kmax, kmin = eig_k[-1], eig_k[0]
    residual = mat - np.kron(np.asarray(approx, np.float64), np.eye(n_outputs))
    residual = (residual + residual.T) / 2
    spec_norm = float(np.abs(np.linalg.eigvalsh(residual)).max())
    frob = float(np.linalg.norm(residual))
    out = {
        "lambda_max_rel_err": float(abs(lmax - kmax) / lmax),
        "spectrum_rel_err": float(np.linalg.norm(diff) / np.linalg.norm(eig_full)),
        "lambda_min_rel_err": np.nan,
        "cond_rel_err": np.nan,
        # A zero residual has zero eigenvalue error: the bounds hold with ratio 0.
        "weyl_ratio": float(np.abs(diff).max() / spec_norm) if spec_norm > 0 else 0.0,
        "hw_ratio": float(np.linalg.norm(diff) / frob) if frob > 0 else 0.0,
    }
    if lmin > ZERO_TOL * lmax:  # else lambda_min(Theta) is numerically zero: leave NaN
        out["lambda_min_rel_err"] = float(abs(lmin - kmin) / lmin)
        if kmin > 0:
            cond, cond_k = lmax / lmin, kmax / kmin
            out["cond_rel_err"] = float(abs(cond - cond_k) / cond)
    return out


def run(config: Config) -> pd.DataFrame:
    """Compute one case's tidy rows (see the module docstring for the metrics)."""
    common.ensure_dtype(config.dtype)
    x = common.inputs(config.dataset, config.n_inputs, config.data_seed, config.dtype)
    model, params = common.network(config.model_config(), config.seed, tuple(x.shape[1:]), config.dtype)
    full = np.asarray(common.exact_entk(model.apply, params, x), np.float64)
    mat = symmetric_matrix(full)
    eig_full = np.linalg.eigvalsh(mat)

    rows: list[tuple[str, str, float]] = [("entk", "inv_condition", float(eig_full[0] / eig_full[-1]))]
    for name in KERNELS:
        approx = np.asarray(kernels.KERNELS[name].from_entk(full), np.float64)
        for metric, value in spectrum_metrics(mat, eig_full, approx, config.n_outputs).items():
            rows.append((name, metric, value))

    return common.tidy_frame(rows, ["kernel", "metric", "value"], config,
                             n_params=model.param_count(tuple(x.shape[1:])))


EXPERIMENT = Experiment(
    name="spectrum",
    description="eigenvalues of pNTK x I vs the eNTK at init: lambda_max and whole-spectrum error vs width; lambda_min and condition number reported",
    theorem="T3, T3'",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    predict=lambda series: PREDICTIONS.get(series["metric"]),
    verify=True,
    order=5,
    report_only_metrics=REPORT_ONLY,
    metric_text={
        "lambda_max_rel_err": "|λmax(eNTK) − λmax(K)| / λmax(eNTK) (T3)",
        "spectrum_rel_err": "‖sorted eig(eNTK) − sorted eig(K⊗I_O)‖_2 / ‖eig(eNTK)‖_2 (T3, Hoffman–Wielandt)",
        "lambda_min_rel_err": "|λmin(eNTK) − λmin(K)| / λmin(eNTK) (T3', no guarantee; NaN if λmin(eNTK) ≈ 0)",
        "cond_rel_err": "|κ(eNTK) − κ(K)| / κ(eNTK), κ = λmax/λmin (T3', no guarantee)",
        "weyl_ratio": "max_k |Δλ_k| / ‖eNTK − K⊗I_O‖_2, ≤ 1 by Weyl",
        "hw_ratio": "‖Δλ‖_2 / ‖eNTK − K⊗I_O‖_F, ≤ 1 by Hoffman–Wielandt",
        "inv_condition": "λmin/λmax of the eNTK (how close λmin is to rounding)",
    },
)
