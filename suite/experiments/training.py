"""The pNTK approximation through training (THEORY.md §9; §5, F6; §6 "trained nets").

The theorems T2 and T3 hold at initialisation only: their proof needs the readout weights to
be independent of the features (THEORY.md §2), which training breaks. This experiment
measures what happens instead. Each case trains one network with plain mini-batch SGD
(optional heavy-ball momentum, written with ``jax.grad`` + ``jax.jit``) on a class-balanced
``mnist5k`` subset and, at checkpoints ``epoch`` = 0 (the initialisation), 1, 2, 4, ...,
computes one exact eNTK Theta (N, N, O, O) on a FIXED probe batch of N held-out images and
the pNTK from it (``KERNELS["pntk"].from_entk``). Metrics, one row each per checkpoint:

* ``rel_frobenius`` (kernel ``pntk``): ||Theta - pNTK x I_O||_F / ||Theta||_F (T2).
* ``lambda_max_rel_err`` (``pntk``): |lambda_max(Theta) - lambda_max(pNTK)| / lambda_max(Theta),
  Theta as the (N*O) x (N*O) matrix; pNTK x I_O has the spectrum of pNTK (T3).
* ``offdiag_mass`` (``entk``): sum over all blocks of |Theta_ab,ij|, i != j, over the sum of
  |Theta_ab,ii|. The lpNTK finding (THEORY.md §6) is that on trained nets this is not small.
* ``entk_drift`` (``entk``, epochs > 0 only): ||Theta_t - Theta_0||_F / ||Theta_0||_F, how far
  the kernel itself moved (below the edge of stability this shrinks with width: lazy training).
* ``readout_share`` (``entk``): ||K_ro x I_O||_F / ||Theta||_F, the part of the eNTK that the
  dense readout layer contributes, which is exactly Kronecker (:func:`readout_share`); the
  pNTK's error comes from the rest, so this explains why the error rises or falls (§9).
* ``lr_ratio`` (``network``, epoch 0 only): the learning rate over the edge of stability of
  gradient descent at initialisation, estimated from the probe's pNTK (:func:`lr_ratio`).
* ``train_loss``, ``train_acc``, ``test_acc`` (kernel ``network``): loss and accuracy on the
  whole training set, and accuracy on held-out test images (disjoint from the probe), so the
  report shows that, and how far, training happened.

The grids train each width at two learning rates per architecture (``LEARNING_RATES``), one
below and one above the edge of stability (THEORY.md §9): lazy training, where the kernel
moves by O(n^-1/2), and the catapult regime, where the first steps move it by O(1) at every
width, for 8 epochs (95-100% training accuracy).

Loss: softmax cross-entropy by default (``loss="xent"``). Squared loss on centred one-hot
targets (``loss="mse"``) is available, but under NTK parameterization the network's output
at initialisation is O(1) random noise that squared loss only partly fits away, so test
accuracy stays near 30% after a few epochs; cross-entropy reaches about 80% on 1000 images.
Learning rates are width-independent, as NTK parameterization allows. Standard
parameterization (``parameterization="standard"``, e.g. from a grid file) is NTK
parameterization with layer l's learning rate multiplied by its fan-in (THEORY.md §9), so the
same two regimes appear at rates about 1/n as large. A run whose parameters become non-finite,
or whose training loss exceeds 10x its value at initialisation, raises a :class:`SuiteError`
naming the learning rate.

Rows carry an ``epoch`` column that separates fitted series (``extra_series``): the report
fits every metric against width separately per epoch (and per learning rate, a Config field).
At epoch 0 ``rel_frobenius`` is T2 (predicted slope -1/2); at later epochs the theorem says
nothing, and ``rel_frobenius`` carries the lazy-training expectation of the same rate, marked
as outside the theorem's assumptions (THEORY.md §9), so the report says whether the n^-1/2
law survives training; the other metrics are ``report_only_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from suite import data, kernels, models
from suite.errors import SuiteError, unknown_name
from suite.experiments import Experiment, common
from suite.stats import Prediction

VERSION = "2"

LOSSES = ("xent", "mse")

#: Widths per architecture. One depth per architecture keeps the grids in budget. The CNN reads
#: out through ``flatten``: with global average pooling a one-conv-layer net barely learns MNIST
#: (~25% test accuracy after 4 epochs), so "after training" would say little.
QUICK_WIDTHS = {"mlp": (128, 512, 2048), "cnn": (16, 64, 256)}
FULL_WIDTHS = {"mlp": (128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128, 256)}
DEPTHS = {"mlp": 2, "cnn": 1}
#: Learning rates per architecture (NTK parameterization: the same for every width), one below
#: and one above the edge of stability at initialisation, lr_crit = 2 N O / lambda_max(pNTK)
#: for cross-entropy (THEORY.md §9; measured ``lr_ratio`` = lr / lr_crit: about 0.7 and 5.6 for
#: the MLP, 0.3-0.75 and 0.85-2.25 for the CNN). Below the edge training is lazy (the kernel
#: moves by O(n^-1/2)); above it the first steps move the kernel by O(1) at every width (the
#: catapult). The CNN tolerates less: at lr 16 and batch 50 every 16-channel seed diverged, at
#: 32 a 128-channel one did (an 8-channel one at 16 with batch 100), hence 12 and widths from 16.
LEARNING_RATES = {"mlp": (4.0, 32.0), "cnn": (4.0, 12.0)}


@dataclass(frozen=True)
class Config(common.CaseConfig):
    """One case: a network at one width and init seed, trained, with kernels at checkpoints.

    ``n_inputs`` is the probe batch N (the kernels' inputs); ``readout`` applies to cnn and
    resnet only; ``seed`` sets both the initialisation and the mini-batch order.
    """

    arch: str
    depth: int
    width: int
    seed: int
    n_outputs: int = 10
    dataset: str = "mnist5k"
    n_inputs: int = 32
    data_seed: int = 0
    parameterization: str = "ntk"
    dtype: str = "float32"
    readout: str = "flatten"
    n_train: int = 1000
    n_test: int = 500
    batch_size: int = 100
    epochs: int = 4
    lr: float = 4.0
    momentum: float = 0.0
    loss: str = "xent"

    POSITIVE_INTS: ClassVar[tuple[str, ...]] = ("n_outputs", "n_inputs", "n_train", "n_test", "batch_size")

    def validate(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise SuiteError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if self.batch_size > self.n_train:
            raise SuiteError(
                f"batch_size ({self.batch_size}) exceeds n_train ({self.n_train}); "
                "an epoch would have no full batch"
            )
        if not (isinstance(self.lr, int | float) and np.isfinite(self.lr) and self.lr > 0):
            raise SuiteError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.momentum, int | float) and 0 <= self.momentum < 1):
            raise SuiteError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.loss not in LOSSES:
            raise unknown_name("loss", self.loss, LOSSES)

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """Epochs at which kernels are computed: 0 (init), powers of two, and the last epoch."""
        points = {0, self.epochs}
        e = 1
        while e < self.epochs:
            points.add(e)
            e *= 2
        return tuple(sorted(points))

    def model_config(self) -> models.ModelConfig:
        extra: dict[str, Any] = {} if self.arch == "mlp" else {"readout": self.readout}
        return models.ModelConfig(
            self.arch, width=self.width, depth=self.depth, n_outputs=self.n_outputs,
            parameterization=self.parameterization, **extra,
        )


def _grid(widths, seeds: int, **fields: Any) -> list[Config]:
    return common.grid_product(Config, arch=widths, lr=LEARNING_RATES, width=widths, seed=range(seeds),
                               depth=DEPTHS, **fields)


def predict(series) -> Prediction | None:
    """n^-1/2 at initialization (T2); after training the theorem says nothing, but under NTK
    parameterization with learning rates below the edge of stability training is lazy (the
    kernel moves by O(n^-1/2)), so the same rate is expected, outside the theorem's assumptions
    (THEORY.md §9). Above the edge (``lr_ratio`` > 1) the kernel moves by O(1) and the lazy
    expectation is not expected to hold; the series keeps it, so the report shows by how much
    it fails."""
    if series["metric"] != "rel_frobenius":
        return None
    if series["epoch"] == 0:
        return Prediction("slope", -0.5, "T2")
    return Prediction("slope", -0.5, "lazy training (THEORY.md §9)", within_assumptions=False)


GRIDS = {
    # 36 cases: 8 epochs of 500 images (as many images per case as the 4 epochs of 1000 before)
    # reach 91-100% training accuracy at both rates; 3 seeds. Measured on 2 shared cores: 262
    # CPU-seconds (the previous 30-case grid: 223), 11.5 min wall under a load of about 12.
    "quick": lambda: _grid(QUICK_WIDTHS, 3, n_train=500, batch_size=50, n_test=500, epochs=8),
    # 60 cases: 8 epochs of 2000 images (4x the quick grid's images per case). Per case on 2
    # shared cores: MLP n = 2048 20 CPU-s (38 s wall), CNN 256 channels 120 s wall; the CNN's
    # 28x28 convolutions dominate. Estimated 20-25 CPU-minutes in all.
    "full": lambda: _grid(FULL_WIDTHS, 3, n_train=2000, n_test=1000, epochs=8),
}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    """Training set, held-out test set and the fixed probe batch (all disjoint)."""

    x_train: jax.Array
    y_train: jax.Array  # integer labels
    t_train: jax.Array  # one-hot (xent) or centred one-hot (mse) targets
    x_test: jax.Array
    y_test: jax.Array
    probe: jax.Array


@lru_cache(maxsize=8)
def split(dataset: str, n_train: int, n_test: int, n_probe: int, data_seed: int, dtype: str, loss: str) -> Split:
    """Class-balanced train / test / probe sets of one dataset, the same for every width and
    seed. The probe is held out from training and disjoint from the test set."""
    ds = data.load(dataset, n=n_train + n_test + n_probe, seed=data_seed,
                   targets="centered" if loss == "mse" else "onehot")
    train, held = data.train_test_split(ds, n_train, n_test + n_probe, seed=data_seed)
    probe, test = data.train_test_split(held, n_probe, n_test, seed=data_seed)
    f = common.DTYPES[dtype]
    return Split(
        jnp.asarray(train.x, f), jnp.asarray(train.y), jnp.asarray(train.targets, f),
        jnp.asarray(test.x, f), jnp.asarray(test.y), jnp.asarray(probe.x, f),
    )


# --------------------------------------------------------------------------- training


def loss_fn(apply_fn: Callable[..., jax.Array], loss: str) -> Callable[..., jax.Array]:
    """Mean loss over a batch: ``xent`` = -log softmax at the label (targets one-hot);
    ``mse`` = 0.5 ||f(x) - t||^2 (targets centred one-hot)."""

    def xent(params, x, t):
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(apply_fn(params, x)) * t, axis=-1))

    def mse(params, x, t):
        return 0.5 * jnp.mean(jnp.sum((apply_fn(params, x) - t) ** 2, axis=-1))

    return {"xent": xent, "mse": mse}[loss]


@lru_cache(maxsize=32)
def trainer(apply_fn: Callable[..., jax.Array], loss: str, lr: float, momentum: float):
    """Jitted ``step(params, velocity, x, t) -> (params, velocity, loss)`` (SGD with heavy-ball
    momentum v <- mu v + g, theta <- theta - lr v; plain SGD for mu = 0) and
    ``evaluate(params, x, t, y) -> (summed loss, number correct)``. Cached per apply function,
    so seeds of one width share the compilation."""
    objective = loss_fn(apply_fn, loss)

    @jax.jit
    def step(params, velocity, x, t):
        value, grads = jax.value_and_grad(objective)(params, x, t)
        velocity = jax.tree_util.tree_map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity, value

    @jax.jit
    def evaluate(params, x, t, y):
        out = apply_fn(params, x)
        correct = jnp.sum(jnp.argmax(out, axis=-1) == y)
        return objective(params, x, t) * x.shape[0], correct

    return step, evaluate


def sgd_epoch(step, params: Any, velocity: Any, x: jax.Array, t: jax.Array, order: np.random.Generator,
              batch_size: int) -> tuple[Any, Any]:
    """One epoch of mini-batch SGD with ``step`` (from :func:`trainer`) over (x, t), batches in
    the order of one permutation drawn from ``order``; a last partial batch is dropped."""
    perm = order.permutation(x.shape[0])
    for b in range(x.shape[0] // batch_size):
        idx = perm[b * batch_size:(b + 1) * batch_size]
        params, velocity, _ = step(params, velocity, x[idx], t[idx])
    return params, velocity


def evaluate_set(evaluate, params, x, t, y, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over a whole set, in chunks of ``chunk`` (CNN activations of a
    thousand 28x28 images at 256 channels would not fit at once)."""
    total, correct = 0.0, 0.0
    for i in range(0, x.shape[0], chunk):
        s, c = evaluate(params, x[i:i + chunk], t[i:i + chunk], y[i:i + chunk])
        total, correct = total + float(s), correct + float(c)
    return total / x.shape[0], correct / x.shape[0]


def _require_finite(params: Any, config: Config, epoch: int) -> None:
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(params)):
        raise SuiteError(
            f"{config.id}: training diverged (non-finite parameters) by epoch {epoch} with "
            f"lr={config.lr}; lower lr (or momentum) in the grid"
        )


def _require_trained(train_loss: float, first_loss: float, config: Config, epoch: int) -> None:
    """A loss that is non-finite or 10x its value at initialisation means training blew up
    (at a too large lr the parameters can grow for many epochs before overflowing)."""
    if not np.isfinite(train_loss) or train_loss > 10 * first_loss:
        raise SuiteError(
            f"{config.id}: training diverged (training loss {train_loss:.3g}, {first_loss:.3g} at "
            f"initialisation) by epoch {epoch} with lr={config.lr}; lower lr (or momentum) in the grid"
        )


# --------------------------------------------------------------------------- metrics


@lru_cache(maxsize=32)
def _readout_gram_fn(apply_fn: Callable[..., jax.Array], n_outputs: int) -> Callable[..., jax.Array]:
    """Jitted ``(head, readout, x) -> K_ro``: the pNTK of the readout layer's parameters only."""

    def g(head, readout, xi):
        return jnp.sum(apply_fn([*head, readout], xi[None])) / jnp.sqrt(n_outputs)

    def gram(head, readout, x):
        grads = jax.vmap(jax.grad(g, argnums=1), in_axes=(None, None, 0))(head, readout, x)
        flat = jnp.concatenate([leaf.reshape(x.shape[0], -1) for leaf in jax.tree_util.tree_leaves(grads)], axis=1)
        return flat @ flat.T

    return jax.jit(gram)


def readout_kernel(apply_fn: Callable[..., jax.Array], params: Any, x: jax.Array, n_outputs: int) -> np.ndarray:
    """K_ro (N, N): the readout layer's part of the eNTK is exactly K_ro x I_O (THEORY.md §9).

    Every architecture here ends in a dense readout f_i = c sum_k W_ki phi_k + c_b b_i, whose
    parameters are ``params[-1]``; its gradient for logit i touches column i only, so its eNTK
    term is c^2 phi(x).phi(x') (+ c_b^2) times delta_ij, and K_ro is the pNTK of that layer alone.
    """
    head = list(params[:-1])
    return np.asarray(_readout_gram_fn(apply_fn, n_outputs)(head, params[-1], x), np.float64)


def readout_share(full: np.ndarray, k_readout: np.ndarray) -> float:
    """||K_ro x I_O||_F / ||Theta||_F: the share of the eNTK that is exactly Kronecker.

    Theta = K_ro x I_O + Theta_below, and only Theta_below can differ from pNTK x I_O, so the
    pNTK's error is ||Theta_below - pNTK(Theta_below) x I_O||_F / ||Theta||_F: a readout share
    that grows during training dilutes the error, one that shrinks exposes it (THEORY.md §9).
    """
    o = full.shape[-1]
    return float(np.sqrt(o) * np.linalg.norm(k_readout) / np.linalg.norm(full))


def lr_ratio(approx: np.ndarray, lr: float, loss: str, n_outputs: int) -> float:
    """The learning rate over the edge of stability of gradient descent at initialisation.

    GD on a mean loss over a batch of B inputs is stable while lr < 2 / lambda_max(H), with the
    Gauss-Newton H = J^T (d^2 l / df^2) J / B. With Theta ~ K x I_O and the loss curvature of
    cross-entropy at uniform softmax, (I - 1 1^T / O) / O (squared loss: I), that is
    lambda_max(K_B) / (B O) (squared loss: lambda_max(K_B) / B). lambda_max(K_B) / B is estimated
    on the probe's pNTK, lambda_max(K) / N (THEORY.md §9). Above 1 the first steps cannot stay in
    the linearised (lazy) regime: the kernel must move until the edge rises above lr
    (the catapult of Lewkowycz et al., 2020).

    The uniform softmax is an idealisation: under NTK parameterization the initial logits are
    O(1), and with the softmax curvature at the actual initial outputs the edge is lower (the
    ratio 2.1x higher in ``tests/test_exp_training.py``'s network). Cross-entropy also flattens
    as the logits grow, so the ratio orders the runs and marks the regimes; it is not a sharp
    threshold (THEORY.md §9).
    """
    curvature = 1.0 / n_outputs if loss == "xent" else 1.0
    top = float(np.linalg.eigvalsh((approx + approx.T) / 2)[-1])
    return float(lr * curvature * top / approx.shape[0] / 2.0)


def offdiag_mass(full: np.ndarray) -> float:
    """sum_{a,b,i!=j} |Theta_ab,ij| / sum_{a,b,i} |Theta_ab,ii| (THEORY.md §6, lpNTK)."""
    absolute = np.abs(full)
    diag = float(np.einsum("abii->", absolute))
    return (float(absolute.sum()) - diag) / diag


def lambda_max_rel_err(full: np.ndarray, approx: np.ndarray) -> float:
    """|lambda_max(Theta) - lambda_max(K)| / lambda_max(Theta), Theta as the (N*O)^2 matrix.

    K x I_O has the eigenvalues of K (each O times), so lambda_max(K x I_O) = lambda_max(K)
    (theorem T3)."""
    mat = np.asarray(kernels.as_matrix(full), np.float64)
    top = float(np.linalg.eigvalsh((mat + mat.T) / 2)[-1])
    top_approx = float(np.linalg.eigvalsh((approx + approx.T) / 2)[-1])
    return abs(top - top_approx) / top


def kernel_rows(full: np.ndarray) -> list[tuple[str, str, float]]:
    """(kernel, metric, value) of one eNTK: the pNTK's errors and the off-diagonal mass."""
    approx = np.asarray(kernels.KERNELS["pntk"].from_entk(full), np.float64)
    return [
        ("pntk", "rel_frobenius", common.rel_frobenius_kron(full, approx)),
        ("pntk", "lambda_max_rel_err", lambda_max_rel_err(full, approx)),
        ("entk", "offdiag_mass", offdiag_mass(full)),
    ]


# --------------------------------------------------------------------------- one case


def run(config: Config) -> pd.DataFrame:
    """Train one network and return its tidy rows at every checkpoint (module docstring)."""
    common.ensure_dtype(config.dtype)
    d = split(config.dataset, config.n_train, config.n_test, config.n_inputs, config.data_seed,
              config.dtype, config.loss)
    shape = tuple(d.x_train.shape[1:])
    model, params = common.network(config.model_config(), config.seed, shape, config.dtype)
    step, evaluate = trainer(model.apply, config.loss, float(config.lr), float(config.momentum))
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
    order = np.random.default_rng(config.seed)
    chunk = max(config.batch_size, 250)
    y_test_onehot = jax.nn.one_hot(d.y_test, config.n_outputs, dtype=d.t_train.dtype)
    if config.loss == "mse":
        y_test_onehot = y_test_onehot - 1.0 / config.n_outputs

    rows: list[tuple[int, str, str, float]] = []
    first: np.ndarray | None = None
    first_loss = float("nan")
    checkpoints = config.checkpoints
    for epoch in range(config.epochs + 1):
        if epoch > 0:
            params, velocity = sgd_epoch(step, params, velocity, d.x_train, d.t_train, order, config.batch_size)
        if epoch not in checkpoints:
            continue
        _require_finite(params, config, epoch)
        train_loss, train_acc = evaluate_set(evaluate, params, d.x_train, d.t_train, d.y_train, chunk)
        if epoch == 0:
            first_loss = train_loss
        _require_trained(train_loss, first_loss, config, epoch)
        full = np.asarray(common.exact_entk(model.apply, params, d.probe), np.float64)
        rows += [(epoch, *r) for r in kernel_rows(full)]
        k_ro = readout_kernel(model.apply, params, d.probe, config.n_outputs)
        rows.append((epoch, "entk", "readout_share", readout_share(full, k_ro)))
        if first is None:
            first = full
            approx = np.asarray(kernels.KERNELS["pntk"].from_entk(full), np.float64)
            rows.append((epoch, "network", "lr_ratio", lr_ratio(approx, config.lr, config.loss, config.n_outputs)))
        else:
            rows.append((epoch, "entk", "entk_drift", common.rel_frobenius(full, first)))
        _, test_acc = evaluate_set(evaluate, params, d.x_test, y_test_onehot, d.y_test, chunk)
        rows += [(epoch, "network", "train_loss", train_loss), (epoch, "network", "train_acc", train_acc),
                 (epoch, "network", "test_acc", test_acc)]

    return common.tidy_frame(rows, ["epoch", "kernel", "metric", "value"], config,
                             n_params=model.param_count(shape))


EXPERIMENT = Experiment(
    name="training",
    description="pNTK vs eNTK through SGD training on mnist5k: errors, lambda_max and off-diagonal mass at checkpoints",
    theorem="T2, T3 (init); none after",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    predict=predict,
    verify=False,
    order=30,
    extra_series=("epoch",),
    metric_text={
        "entk_drift": "‖Θ_t − Θ_0‖_F / ‖Θ_0‖_F, how far training moved the eNTK on the probe (training)",
        "offdiag_mass": "Σ|Θ_ab,ij| over i ≠ j / Σ|Θ_ab,ii|, the off-diagonal mass of the eNTK's O×O blocks (training)",
        "readout_share": "‖K_ro⊗I‖_F / ‖Θ‖_F, the exactly Kronecker readout layer's part of the eNTK (training, THEORY.md §9)",
        "lr_ratio": "lr / lr_crit, the edge of stability at initialisation lr_crit = 2NO/λ_max(pNTK) (training, THEORY.md §9)",
        "train_acc": "accuracy of the network on its training images",
    },
    report_only_metrics=("lambda_max_rel_err", "offdiag_mass", "entk_drift", "readout_share", "lr_ratio",
                         "train_loss", "train_acc", "test_acc"),
)
