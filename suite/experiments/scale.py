"""Scale: pNTK kernel regression on all 5000 mnist5k images with the blocked pNTK, with the
kernel of a network at initialisation or of a trained one.

A demonstration of the cost claim (THEORY.md §1 "Cost": the pNTK is O^2 smaller than the
eNTK) and of the regression form of T4 (THEORY.md §1 "Kernel regression": with
Theta_hat x I_O the solve decouples over outputs, so one N x N ridge solve serves all O), and
the paper's full-dataset use of the pNTK of a *trained* network (THEORY.md §9): does kernel
regression with the trained network's pNTK reach the network's own test accuracy? No rate is
claimed, so every metric is report-only.

Per case (one network, at init or after ``epochs`` of SGD on the 4000 training images with the
training experiment's code): the 5000 x 5000 pNTK of all images by
:func:`suite.blocked.pntk_blocked` (per-example gradients once, Gram tiles, symmetric),
then ridge regression of centred one-hot targets on a class-balanced 4000 / 1000 split,
alpha = (K_train + lambda I)^-1 Y in float64 with lambda = ``ridge_rel`` x mean diag(K_train),
predictions K_test,train alpha. Metrics (kernel ``pntk`` unless said otherwise):

* ``test_acc``: test accuracy of argmax predictions.
* ``test_acc``, ``train_acc`` (kernel ``network``): the network's own accuracy on the same
  test and training images (chance, about 0.1, at initialisation).
* ``seconds_train`` (kernel ``network``, trained cases only): wall time of the SGD epochs.
* ``seconds_kernel``, ``seconds_solve``: wall time of the kernel (compile included) and of the
  Cholesky solve plus prediction.
* ``peak_rss_gb``: peak resident memory of the process during the case (Linux ``VmHWM``,
  reset before the case through ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, the peak
  since the process started). Includes the interpreter, jax, the dataset and any training.
* ``pntk_gb``, ``gradients_gb``: sizes of the float32 pNTK (N^2) and of the stored gradients (N P).
* ``entk_gb``: size of the eNTK result the same regression would need, (N O)^2 float32
  = 10 GB, before any Jacobian.
* ``entk_refused``: 1 if :func:`suite.kernels.check_memory` refuses that eNTK under a
  budget of :data:`ENTK_BUDGET` (4 GB, the memory cap this experiment targets; the default
  budget, half the free RAM, depends on the machine).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.linalg

from suite import blocked, data, kernels, models
from suite.errors import MemoryBudgetError, SuiteError
from suite.experiments import Experiment, common, training

VERSION = "2"

#: Memory budget under which the eNTK alternative is judged (the target machine's cap).
ENTK_BUDGET = 4 * 10**9

#: One modest width per architecture: the per-example gradients (5000 x P float32) stay
#: far below 2 GB (cnn P ~ 10k: 0.2 GB; mlp P ~ 55k: 1.1 GB).
WIDTHS = {"cnn": 32, "mlp": 64}

METRICS = (
    "test_acc", "train_acc", "seconds_kernel", "seconds_solve", "seconds_train", "peak_rss_gb", "pntk_gb",
    "gradients_gb", "entk_gb", "entk_refused",
)


#: Networks trained before their kernel is taken (``epochs`` > 0), as in the training experiment:
#: architecture -> (depth, width, readout, learning rates). The CNN is the training
#: experiment's one-conv-layer net with a flatten readout (the depth-2 global-pooling CNN
#: above reached 49% test accuracy after 10 epochs of SGD); 16 channels keep its per-example
#: gradients at 2.5 GB (P = 126k; measured peak RSS 4.1 GB, a little over ENTK_BUDGET).
#: Rates: below and above the edge of stability (THEORY.md §9), as in the training grids.
TRAINED = {"mlp": (2, 64, "gap", (4.0, 32.0)), "cnn": (1, 16, "flatten", (4.0, 12.0))}
#: Epochs of SGD on the 4000 training images (batch 100): 99% training accuracy for both nets.
TRAINED_EPOCHS = 10


@dataclass(frozen=True)
class Config(common.CaseConfig):
    """One case: a network (at init, or after ``epochs`` of SGD on the training split at
    learning rate ``lr``) and the kernel regression with its pNTK on mnist5k. ``readout``
    applies to cnn and resnet only."""

    arch: str
    depth: int
    width: int
    seed: int
    n_train: int = 4000
    n_test: int = 1000
    ridge_rel: float = 1e-3
    dtype: str = "float32"
    dataset: str = "mnist5k"
    n_outputs: int = 10
    data_seed: int = 0
    readout: str = "gap"
    epochs: int = 0
    lr: float = 4.0
    batch_size: int = 100

    POSITIVE_INTS: ClassVar[tuple[str, ...]] = ("n_train", "n_test", "n_outputs", "batch_size")

    def validate(self) -> None:
        if not (isinstance(self.ridge_rel, int | float) and self.ridge_rel > 0):
            raise SuiteError(f"ridge_rel must be a positive number, got {self.ridge_rel!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise SuiteError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if not (isinstance(self.lr, int | float) and np.isfinite(self.lr) and self.lr > 0):
            raise SuiteError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.epochs and self.batch_size > self.n_train:
            raise SuiteError(f"batch_size ({self.batch_size}) exceeds n_train ({self.n_train})")

    def model_config(self) -> models.ModelConfig:
        extra: dict[str, Any] = {} if self.arch == "mlp" else {"readout": self.readout}
        return models.ModelConfig(self.arch, width=self.width, depth=self.depth, n_outputs=self.n_outputs, **extra)


def _grid(seeds: int, trained: tuple[str, ...]) -> list[Config]:
    """The networks at init (``WIDTHS``), and for the archs in ``trained`` the ``TRAINED`` net at
    init and after ``TRAINED_EPOCHS`` at each of its learning rates."""
    configs = common.grid_product(Config, arch=WIDTHS, depth=2, width=WIDTHS, seed=range(seeds))
    for arch in trained:
        depth, width, readout, rates = TRAINED[arch]
        for seed in range(seeds):
            if (arch, depth, width) not in {(a, 2, w) for a, w in WIDTHS.items()}:
                configs.append(Config(arch, depth, width, seed, readout=readout))
            configs += [Config(arch, depth, width, seed, readout=readout, epochs=TRAINED_EPOCHS, lr=lr) for lr in rates]
    return configs


GRIDS = {
    # Quick: 4 cases, 89 CPU-s (185 s wall on 2 shared cores). The trained CNN is in the full
    # grid only: its init and two trained cases take about 55 CPU-s each (81 s wall, 10 epochs
    # 5 s of it), 21 cases in all.
    "quick": lambda: _grid(1, ("mlp",)),
    "full": lambda: _grid(3, ("mlp", "cnn")),
}


def split(config: Config) -> tuple[data.Dataset, data.Dataset]:
    """The class-balanced train / test split of the whole dataset (fixed by ``data_seed``)."""
    ds = data.load(config.dataset, targets="centered", seed=config.data_seed)
    return data.train_test_split(ds, config.n_train, config.n_test, seed=config.data_seed)


def ridge_predict(k: np.ndarray, n_train: int, y_train: np.ndarray, ridge_rel: float) -> np.ndarray:
    """Predictions K[n_train:, :n_train] (K_tr + lambda I)^-1 Y in float64, with
    lambda = ridge_rel * mean diag(K_tr) (k holds train rows/columns first)."""
    k_train = np.array(k[:n_train, :n_train], np.float64)
    lam = ridge_rel * float(np.mean(np.diag(k_train)))
    k_train[np.diag_indices_from(k_train)] += lam
    factor = scipy.linalg.cho_factor(k_train, lower=True, overwrite_a=True, check_finite=False)
    alpha = scipy.linalg.cho_solve(factor, np.asarray(y_train, np.float64), check_finite=False)
    return np.asarray(k[n_train:, :n_train], np.float64) @ alpha


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_gb(reset: bool) -> float:
    if reset:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def entk_refused(n: int, n_outputs: int, n_params: int, budget: int = ENTK_BUDGET) -> tuple[float, float]:
    """(eNTK result size in GB, 1.0 if :func:`suite.kernels.check_memory` refuses it)."""
    problem = kernels.Problem(n, n, n_outputs, n_params, np.dtype(np.float32))
    # structured derivatives holds no Jacobians: the (N O)^2 result is the whole estimate.
    size = kernels.estimate_bytes("entk", problem, "structured_derivatives")
    try:
        kernels.check_memory("entk", problem, "structured_derivatives", budget=budget)
    except MemoryBudgetError:
        return size / 1e9, 1.0
    return size / 1e9, 0.0


def _onehot(ds: data.Dataset, n_outputs: int, dtype: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    f = common.DTYPES[dtype]
    return jnp.asarray(ds.x, f), jax.nn.one_hot(jnp.asarray(ds.y), n_outputs, dtype=f), jnp.asarray(ds.y)


def train(apply_fn: Any, params: Any, train_set: data.Dataset, config: Config) -> Any:
    """``config.epochs`` of mini-batch SGD on softmax cross-entropy over the training split, with
    the training experiment's code (:func:`suite.experiments.training.trainer`, ``sgd_epoch``;
    THEORY.md §9); the parameters unchanged when ``epochs`` is 0.

    Raises:
        SuiteError: The parameters became non-finite (lr too large).
    """
    if not config.epochs:
        return params
    x, t, _ = _onehot(train_set, config.n_outputs, config.dtype)
    step, _ = training.trainer(apply_fn, "xent", float(config.lr), 0.0)
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
    order = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        params, velocity = training.sgd_epoch(step, params, velocity, x, t, order, config.batch_size)
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(params)):
        raise SuiteError(f"{config.id}: training diverged (non-finite parameters) with lr={config.lr}; lower lr")
    return params


def network_accuracy(apply_fn: Any, params: Any, train_set: data.Dataset, test: data.Dataset,
                     config: Config) -> tuple[float, float]:
    """(training accuracy, test accuracy) of the network itself, by argmax of its outputs."""
    _, evaluate = training.trainer(apply_fn, "xent", float(config.lr), 0.0)
    accs = []
    for ds in (train_set, test):
        x, t, y = _onehot(ds, config.n_outputs, config.dtype)
        accs.append(training.evaluate_set(evaluate, params, x, t, y, 500)[1])
    return accs[0], accs[1]


def run(config: Config) -> pd.DataFrame:
    """Compute one case's tidy rows (see the module docstring for the metrics)."""
    common.ensure_dtype(config.dtype)
    reset = _reset_peak_rss()
    train_set, test = split(config)
    x = np.concatenate([train_set.x, test.x]).astype(common.DTYPES[config.dtype])
    shape = tuple(x.shape[1:])
    model, params = common.network(config.model_config(), config.seed, shape, config.dtype)
    n_params = model.param_count(shape)

    t0 = time.perf_counter()
    params = train(model.apply, params, train_set, config)
    seconds_train = time.perf_counter() - t0
    net_train_acc, net_test_acc = network_accuracy(model.apply, params, train_set, test, config)

    t0 = time.perf_counter()
    k = blocked.pntk_blocked(model.apply, params, x, progress=False)
    seconds_kernel = time.perf_counter() - t0

    t0 = time.perf_counter()
    pred = ridge_predict(k, config.n_train, train_set.targets, config.ridge_rel)
    seconds_solve = time.perf_counter() - t0
    test_acc = float(np.mean(np.argmax(pred, axis=1) == test.y))

    n = x.shape[0]
    item = np.dtype(config.dtype).itemsize
    entk_gb, refused = entk_refused(n, config.n_outputs, n_params)
    values = {
        "test_acc": test_acc,
        "seconds_kernel": seconds_kernel,
        "seconds_solve": seconds_solve,
        "peak_rss_gb": _peak_rss_gb(reset),
        "pntk_gb": n * n * item / 1e9,
        "gradients_gb": n * n_params * item / 1e9,
        "entk_gb": entk_gb,
        "entk_refused": refused,
    }
    rows = [("pntk", metric, value) for metric, value in values.items()]
    rows += [("network", "test_acc", net_test_acc), ("network", "train_acc", net_train_acc)]
    if config.epochs:
        rows.append(("network", "seconds_train", seconds_train))
    # n_inputs and parameterization: the columns every figure's data carry (suite.figures).
    return common.tidy_frame(rows, ["kernel", "metric", "value"], config, n_params=n_params,
                             n_inputs=n, parameterization="ntk")


EXPERIMENT = Experiment(
    name="scale",
    description="blocked pNTK kernel regression on all 5000 mnist5k images: accuracy, time, peak memory, eNTK size",
    theorem="cost (§1), T4 regression form",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    verify=False,
    order=40,
    timed=True,
    report_only_metrics=METRICS,
)
