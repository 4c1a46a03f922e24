"""Convergence of the pNTK to the eNTK at initialization, rate O(n^-1/2) (theorems T1, T2).

For each (architecture, depth, width, seed) one exact eNTK Theta (N, N, O, O) is computed on
a fixed batch of real inputs; every approximation K follows from it exactly
(``KERNELS[k].from_entk``), so the approximations are compared on the same network:

* ``rel_frobenius``: ||Theta - K x I_O||_F / ||Theta||_F (T2), for each approximation K.
* ``max_offdiag`` (kernel ``entk``): max |Theta_ab,ij|, i != j, over mean diagonal (T1).
* ``max_diag_dev``: max |Theta_ab,ii - K_ab| over mean diagonal (T1), for each K.
* ``rel_frobenius_inf``: distance to the infinite-width NTK Theta_inf from neural-tangents'
  ``kernel_fn``: ||K - Theta_inf|| / ||Theta_inf|| for pNTK and trace, and
  ||Theta - Theta_inf x I|| / ||Theta_inf x I|| for the eNTK (a standard NTK result, not the
  paper's theorem; THEORY.md §3 "infinite-width link"), on the first ``INF_MAX_INPUTS`` inputs.

Expected (THEORY.md §4): every error falls like n^-1/2 (fitted slopes in about [-0.6, -0.35]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import jax
import numpy as np
import pandas as pd

from suite import kernels, models
from suite.experiments import Experiment, common
from suite.stats import Prediction

VERSION = "1"

#: Widths per architecture: >= 5 widths spanning >= 16x (hidden units for mlp, channels else).
QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128, 256), "resnet": (16, 32, 64, 128, 256)}
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "cnn": (16, 32, 64, 128, 256, 512), "resnet": (16, 32, 64, 128, 256, 512)}
QUICK_DEPTHS = {"mlp": (1, 3), "cnn": (1, 2), "resnet": (1, 2)}
#: Activations per architecture: the theorem needs no particular nonlinearity (THEORY.md §2:
#: only the readout's independence and the features' effective rank), so erf and GELU are
#: predicted to converge at the same rate as ReLU. The ResNets stay ReLU (cost).
ACTIVATIONS = {"mlp": models.ACTIVATIONS, "cnn": models.ACTIVATIONS}
FULL_DEPTHS = {"mlp": (1, 2, 4), "cnn": (1, 2, 4), "resnet": (1, 2, 4)}


@dataclass(frozen=True)
class Config(common.CaseConfig):
    """One case: a network at one width and init seed, on a fixed input batch."""

    arch: str
    depth: int
    width: int
    seed: int
    n_outputs: int = 10
    dataset: str = "digits"
    n_inputs: int = 32
    data_seed: int = 0
    parameterization: str = "ntk"
    dtype: str = "float32"
    activation: str = "relu"

    #: Added after the quick grid was published: hashed only when not relu (suite.runner.case_id).
    KEY_OMITS_DEFAULT: ClassVar[tuple[str, ...]] = ("activation",)
    POSITIVE_INTS: ClassVar[tuple[str, ...]] = ("n_outputs", "n_inputs")

    def model_config(self) -> models.ModelConfig:
        return models.ModelConfig(
            self.arch, width=self.width, depth=self.depth, n_outputs=self.n_outputs,
            parameterization=self.parameterization, activation=self.activation,
        )


def make_grid(widths, depths, seeds: int, activations=None, **common_fields) -> list[Config]:
    """Every (arch, depth, width, seed) of per-arch ``widths`` and ``depths`` tables, and every
    activation of an optional per-arch ``activations`` table (default: ReLU only)."""
    per_arch_activations = {arch: (activations or {}).get(arch, ("relu",)) for arch in widths}
    return common.grid_product(Config, arch=widths, activation=per_arch_activations, depth=depths,
                               width=widths, seed=range(seeds), **common_fields)


#: Seeds of the quick grid. The headline series (pNTK rel_frobenius per arch and depth) must be
#: decisive: their t-interval (reports/THEORY.md §10) within +-0.15 of -0.5. The committed 5-seed
#: run had per-seed slope sds of 0.03-0.08 and slopes -0.45 to -0.50; with 8 seeds (t_7 = 2.36)
#: the half-widths are 0.03-0.07, leaving room for the slope's own distance from -0.5.
QUICK_SEEDS = 8

#: The full grid, sized to what 2 CPU cores can do in its share of the 3-hour budget (README,
#: "full grid"): mnist5k downsampled to 14x14 (``mnist5k14``; a conv net's infinite-width kernel
#: would not fit at 28x28), 8 seeds. The eNTK's cost is N^2 O^2 P for a conv net, so the
#: conv nets' widest and deepest series trade N or width: every entry is
#: (arch, depths, widths, N, activations).
FULL_SEEDS = 8
#: (arch, depths, widths, N, activations, seeds). WRN-10 has 12 seeds: its 3 widths over a 4x span
#: gave -0.54 [-0.67, -0.41] with 8 (per-seed sd 0.16; about 11 seeds decide it, THEORY.md §10).
FULL_SERIES: tuple[tuple[str, tuple[int, ...], tuple[int, ...], int, tuple[str, ...], int], ...] = (
    ("mlp", (1, 2, 4), (64, 128, 256, 512, 1024, 2048, 4096), 128, ("relu",), FULL_SEEDS),
    ("mlp", (1, 2), (64, 128, 256, 512, 1024, 2048, 4096), 128, ("erf", "gelu"), FULL_SEEDS),
    ("cnn", (1,), (16, 32, 64, 128, 256, 512), 128, models.ACTIVATIONS, FULL_SEEDS),
    ("cnn", (2,), (16, 32, 64, 128, 256), 128, ("relu",), FULL_SEEDS),
    ("resnet", (1, 2), (16, 32, 64, 128, 256), 64, ("relu",), FULL_SEEDS),
    ("wrn", (1,), (16, 32, 64), 64, ("relu",), 12),
)
#: The float64 spot check (THEORY.md §3 "Precision"): the depth-1 headline series again in float64.
FULL_FLOAT64 = (("mlp", 1), ("cnn", 1))


def full_grid() -> list[Config]:
    """The full grid: :data:`FULL_SERIES`, then the float64 spot check of :data:`FULL_FLOAT64`.
    (Its float64 cases turn on jax's x64 mode for the whole run; the float32 cases still compute
    in float32: a case's values with x64 on and off differ by < 1e-6 relative.)"""
    configs = []
    for arch, depths, widths, n_inputs, activations, seeds in FULL_SERIES:
        configs += make_grid({arch: widths}, {arch: depths}, seeds, {arch: activations},
                             dataset="mnist5k14", n_inputs=n_inputs)
    for arch, depth in FULL_FLOAT64:
        series = next(s for s in FULL_SERIES if s[0] == arch and depth in s[1] and "relu" in s[4])
        configs += make_grid({arch: series[2]}, {arch: (depth,)}, series[5], dataset="mnist5k14",
                             n_inputs=series[3], dtype="float64")
    return configs


#: The ``paper`` grid (accelerators; CIFAR-10 from a local copy, 32x32x3): wider MLPs and CNNs
#: than a CPU can afford, every activation, 8 seeds, N = 128. The ResNet-18 and WideResNet-28
#: widths are the depth experiment's paper grid.
PAPER_WIDTHS = {"mlp": (256, 512, 1024, 2048, 4096, 8192), "cnn": (32, 64, 128, 256, 512, 1024)}
PAPER_DEPTHS = {"mlp": (1, 2), "cnn": (1, 2)}

GRIDS = {
    "quick": lambda: make_grid(QUICK_WIDTHS, QUICK_DEPTHS, QUICK_SEEDS, ACTIVATIONS, dataset="digits", n_inputs=32),
    "full": lambda: full_grid(),
    "paper": lambda: make_grid(PAPER_WIDTHS, PAPER_DEPTHS, 8, ACTIVATIONS, dataset="cifar10", n_inputs=128),
}


#: Predicted slopes under NTK parameterization (reports/THEORY.md §2-§3).
NTK_PREDICTIONS = {
    "rel_frobenius": Prediction("slope", -0.5, "T2"),
    "max_offdiag": Prediction("slope", -0.5, "T1"),
    "max_diag_dev": Prediction("slope", -0.5, "T1"),
    "rel_frobenius_inf": Prediction("slope", -0.5, "infinite-width NTK (THEORY.md §3)"),
}

#: Architectures whose depth-1 network has a single layer below the readout with a fixed
#: fan-in (the input), so that under standard parameterization the only source of
#: off-diagonal mass is down-weighted by 1/n (THEORY.md §7); a ResNet adds residual blocks
#: of fan-in n after its stem.
_SINGLE_FIXED_FAN_IN = ("mlp", "cnn")


def predict(series: Mapping[str, Any]) -> Prediction | None:
    """Predicted slope of one convergence-style series (shared by outputs, parameterization
    and depth): n^-1/2 under NTK parameterization (T1, T2 and the infinite-width link); under
    standard parameterization, outside the theorem, the rates THEORY.md §7 derives."""
    metric = series["metric"]
    if metric not in NTK_PREDICTIONS:
        return None
    if series.get("parameterization", "ntk") != "standard":
        return NTK_PREDICTIONS[metric]
    source = "standard parameterization (THEORY.md §7)"
    if metric != "rel_frobenius_inf" and series["depth"] == 1 and series["arch"] in _SINGLE_FIXED_FAN_IN:
        return Prediction("slope", -1.5, source, within_assumptions=False)
    return Prediction("slope", -0.5, source, within_assumptions=False)


#: The distance to the infinite-width NTK uses at most this many of a case's inputs (its first
#: ones). A conv net's infinite-width kernel carries pixel-pair covariances, N^2 (HW)^2 floats
#: per layer: at N = 128 on 14x14 inputs that is 2.5 GB per tensor and minutes per network on
#: 2 cores, for a metric that is not the paper's (THEORY.md §3). The quick grid (N = 32) is
#: unaffected.
INF_MAX_INPUTS = 64


@lru_cache(maxsize=64)
def infinite_ntk(cfg: models.ModelConfig, dataset: str, n_inputs: int, data_seed: int, dtype: str,
                 n_used: int | None = None) -> np.ndarray:
    """Theta_inf (n, n) of the architecture on the first ``n_used`` (default all) of the case's
    ``n_inputs`` inputs (width-independent under NTK parameterization)."""
    x = common.inputs(dataset, n_inputs, data_seed, dtype)[:n_used]
    return np.asarray(models.from_config(cfg).kernel(x, None, "ntk"), np.float64)


def run(config: Config) -> pd.DataFrame:
    """Compute one case's tidy rows (see the module docstring for the metrics)."""
    common.ensure_dtype(config.dtype)
    x = common.inputs(config.dataset, config.n_inputs, config.data_seed, config.dtype)
    model, params = common.network(config.model_config(), config.seed, tuple(x.shape[1:]), config.dtype)
    full = np.asarray(common.exact_entk(model.apply, params, x), np.float64)

    rows: list[tuple[str, str, float]] = [("entk", "max_offdiag", common.max_offdiagonal(full))]
    approx_kwargs: dict[str, dict[str, Any]] = {"logit_ntk": {"index": 0}, "projected_ntk": {"key": jax.random.PRNGKey(config.seed)}}
    approximations = {}
    for name in kernels.APPROXIMATIONS:
        k = np.asarray(kernels.KERNELS[name].from_entk(full, **approx_kwargs.get(name, {})), np.float64)
        approximations[name] = k
        rows.append((name, "rel_frobenius", common.rel_frobenius_kron(full, k)))
        rows.append((name, "max_diag_dev", common.max_diagonal_deviation(full, k)))

    # Under standard parameterization Theta_inf depends on the declared width.
    inf_cfg = config.model_config()
    if config.parameterization == "ntk":
        inf_cfg = models.with_width(inf_cfg, 1)
    n_inf = min(config.n_inputs, INF_MAX_INPUTS)
    theta_inf = infinite_ntk(inf_cfg, config.dataset, config.n_inputs, config.data_seed, config.dtype, n_inf)
    for name in ("pntk", "trace_ntk"):
        rows.append((name, "rel_frobenius_inf", common.rel_frobenius(approximations[name][:n_inf, :n_inf], theta_inf)))
    inf_norm = np.sqrt(config.n_outputs) * np.linalg.norm(theta_inf)  # ||Theta_inf x I_O||_F
    rows.append(("entk", "rel_frobenius_inf", common.kron_distance(full[:n_inf, :n_inf], theta_inf) / inf_norm))

    return common.tidy_frame(rows, ["kernel", "metric", "value"], config,
                             n_params=model.param_count(tuple(x.shape[1:])))


EXPERIMENT = Experiment(
    name="convergence",
    description="pNTK -> eNTK at init: relative Frobenius and entrywise errors vs width, plus distance to the infinite-width NTK",
    theorem="T1, T2",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    order=0,
    predict=predict,
    metric_text={
        "rel_frobenius": "‖eNTK − K⊗I_O‖_F / ‖eNTK‖_F (T2)",
        "max_offdiag": "max |off-diagonal entry of the O×O blocks| / mean diagonal (T1)",
        "max_diag_dev": "max |diagonal entry − K| / mean diagonal (T1)",
        "rel_frobenius_inf": "relative Frobenius distance to the infinite-width NTK (Θ∞, or Θ∞⊗I for the eNTK)",
    },
)
