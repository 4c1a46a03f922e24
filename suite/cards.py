"""Approximation card: is the pNTK a good stand-in for the eNTK of *your* network, and what
does it save? (``suite.card``; ``python -m suite card MODULE:FACTORY``.)

A card takes any ``apply_fn(params, x) -> (N, O)`` with its parameters and inputs (and
optionally labels), draws a seeded probe subset of the inputs small enough for the exact eNTK,
and reports, on that probe:

* T2: ||Theta - K x I_O||_F / ||Theta||_F for the pNTK and the alternatives (mean trace, first
  logit, random projection) -- :func:`suite.experiments.common.rel_frobenius_kron`;
* T1: the largest off-diagonal entry of the eNTK's O x O blocks and the largest deviation of
  their diagonal from K, both over the mean diagonal -- ``common.max_offdiagonal`` and
  ``common.max_diagonal_deviation``;
* T3: the relative error of lambda_max (and of the whole sorted spectrum) --
  :func:`suite.experiments.spectrum.spectrum_metrics`;
* with labels: ridge kernel regression (float64) with the eNTK and with pNTK x I_O on a
  seeded train/test split of the probe, both test accuracies, how often their argmax agree and
  the relative difference of their predictions -- :func:`suite.experiments.regression.predict_entk`
  and ``predict_scalar``, ridges relative to the mean diagonal of the train eNTK as in the
  regression experiment;
* cost: the fastest of a few timed calls and XLA's memory estimate of every kernel at growing sizes,
  extrapolated to all N inputs (module :data:`COST_METHOD`), and the exact size of each
  result at N (eNTK (N O)^2 numbers, the scalar kernels N^2);
* one recommendation line that states the numbers behind it.

Everything is computed exactly as the experiments compute it: the eNTK by
:func:`suite.experiments.common.exact_entk` (the experiments' fixed implementation, the blocked
eNTK where one call does not fit), every approximation derived from it by
``KERNELS[k].from_entk``, the metrics by the experiments' own functions, so a card of a stax
network on the convergence experiment's inputs gives the convergence experiment's numbers
(``tests/test_card.py`` checks this to 1e-6).

The computation imports jax lazily; :class:`Card`'s markdown and the report's side-by-side
table work from the JSON dictionary alone.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import MemoryBudgetError, SuiteError

#: Version of the card.json layout.
SCHEMA_VERSION = 1

#: Probe size when none is given: at most this many inputs ...
DEFAULT_N_PROBE = 64
#: ... and at most this many eNTK rows (n_probe * O), but never fewer than MIN_DEFAULT_PROBE
#: inputs, so that a 100-class network still gets 16 probe inputs (a 1600 x 1600 eNTK).
DEFAULT_MAX_ROWS = 1280
MIN_DEFAULT_PROBE = 16

#: (N*O)^2 float64 arrays the analysis holds at once at its peak: the eNTK, its matrix and
#: symmetrized copy, the Kronecker product K x I_O, the residual and its symmetrized copy, and
#: LAPACK's eigenvalue workspace (spectrum.spectrum_metrics).
ANALYSIS_COPIES = 7

#: Relative ridge of the recommendation line (lambda = ridge * mean diagonal of the train
#: eNTK); the card's table shows every level of the regression experiment too.
DEFAULT_RIDGE = 0.1

#: Fractions of the probe at which every kernel is timed (at least 2 inputs each).
TIMING_FRACTIONS = (0.25, 0.5, 1.0)
#: Timed calls per kernel and size, after one untimed (compiling) call; the median is kept.
TIMING_REPEATS = 3
#: Beyond the probe, a kernel is timed at doubling sizes while one call takes less than this ...
MAX_CALL_SECONDS = 1.0
#: ... and the size stays at most this (and at most N).
MAX_TIMING_N = 4096

#: Thresholds of the recommendation's wording (the suite's convention, stated on the card).
CLOSE_T2 = 0.10
ROUGH_T2 = 0.30
CLOSE_AGREEMENT = 0.95

#: Largest O whose full O x O block heat map is stored; larger networks keep the leading corner.
MAX_BLOCK_MAP = 64

#: Test share of the probe when labels are given (the regression experiment uses 32 + 16).
TEST_FRACTION = 1 / 3

COST_METHOD = (
    "time: the fastest of {repeats} calls (after one compiling call; the fastest, because other load only "
    "adds time) of each kernel's compiled program at a quarter, half and all of the probe, then at doubling "
    "sizes while one call takes under {max_seconds:g} s (up to N and at most {max_n}); fitted by "
    "t(n) = c + a·n + b·n² with non-negative least squares (per-input derivatives are linear in n, the Gram "
    "and its result quadratic), evaluated at N and kept between the two bounds shown, the time at the largest "
    "timed n scaled linearly and quadratically to N. The fit's n² term is only as good as the timings at "
    "the largest sizes, so the further N is from them, the more the bounds say. Memory: XLA's estimate of one "
    "call (result and temporaries) at the same sizes, fitted the same way. The extrapolation assumes one call "
    "with the memory to hold it; where the eNTK exceeds the memory budget it has to be computed in tiles "
    "(suite.blocked.entk_blocked), which recomputes Jacobians and takes longer."
)

KERNEL_LABELS = {
    "entk": "eNTK",
    "pntk": "pNTK",
    "trace_ntk": "mean trace",
    "logit_ntk": "first logit",
    "projected_ntk": "random projection",
}


# --------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class Card:
    """An approximation card: ``data`` is its JSON dictionary (``card.json``)."""

    data: dict[str, Any]

    @property
    def recommendation(self) -> str:
        """The one-line recommendation, with the numbers that support it."""
        return str(self.data["recommendation"])

    def metric(self, kernel: str, name: str) -> float:
        """One metric of one kernel on the probe, e.g. ``metric("pntk", "rel_frobenius")``."""
        return float(self.data["metrics"][kernel][name])

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.data), indent=2, allow_nan=False) + "\n"

    def markdown(self, figure: str | None = None) -> str:
        """``card.md``; ``figure`` is the figure's path relative to the markdown file."""
        return markdown(self.data, figure)

    def figure(self) -> Any:
        """The card's figure (a matplotlib Figure): eNTK block structure beside the errors."""
        from suite.figures import card as fig_card

        return fig_card.render(self.data)

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write ``card.json``, ``card.md`` and ``card.png`` (and ``.svg``) into ``out``."""
        from suite.figures import save as save_figure
        from suite.store import atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        fig = self.figure()
        try:
            png, svg = save_figure(fig, out, "card")
        finally:
            import matplotlib.pyplot as plt

            plt.close(fig)
        atomic_write_text(out / "card.json", self.to_json())
        atomic_write_text(out / "card.md", self.markdown(png.name))
        return {"json": out / "card.json", "markdown": out / "card.md", "png": png, "svg": svg}


def card(
    apply_fn: Callable[..., Any],
    params: Any,
    x: Any,
    y: Any = None,
    *,
    n_probe: int | None = None,
    key: Any = None,
    ridge: float = DEFAULT_RIDGE,
    implementation: str | None = None,
    timing: bool = True,
    name: str | None = None,
) -> Card:
    """Approximation card of the pNTK for a network (see the module docstring).

    Args:
        apply_fn: ``apply_fn(params, x) -> (N, O)`` logits.
        params: its parameter pytree (nested dicts, Flax variables, an NNX state, an Equinox
            partition, stax tuples...).
        x: all N inputs, a floating numpy or jax array with a leading batch axis.
        y: optional labels: N integers in [0, O), or (N, O) targets (labels are their argmax).
        n_probe: inputs of the probe (2 <= n_probe <= N; 3 or more with ``y``). Default:
            min(N, 64, max(16, 1280 // O)).
        key: jax PRNG key or integer seed (default 0): draws the probe, the train/test split
            and, as in the experiments, the random projection's direction (this key itself).
        ridge: relative ridge of the recommendation's regression (lambda = ridge * mean
            diagonal of the train eNTK); the table shows the regression experiment's levels too.
        implementation: kernel implementation (default: the experiments' fixed one).
        timing: time every kernel at three probe sizes and extrapolate to N (``False`` leaves
            the cost section out).
        name: shown in the card's title.

    Raises:
        SuiteError: bad inputs, labels, probe size or parameters (each message names the fix).
        MemoryBudgetError: the probe's eNTK and its float64 analysis would exceed the memory
            budget (refused before anything is allocated; the message says which n_probe fits).
    """
    import jax

    from suite import kernels
    from suite.experiments import common

    started = time.perf_counter()
    if not callable(apply_fn):
        raise SuiteError(f"apply_fn must be callable as apply_fn(params, x) -> (N, O), got {type(apply_fn).__name__}")
    x = _check_x(x)
    n_all = int(x.shape[0])
    key = _check_key(key)
    ridge = _check_ridge(ridge)
    impl = kernels.reproducible_implementation() if implementation is None else kernels.resolve_implementation(implementation, "entk")

    # Output shape on one example first (cheap, and it gives O for the default probe size).
    _, _, problem1 = kernels.validate(apply_fn, params, x[:1])
    n_outputs = problem1.n_outputs
    labels, targets = _check_labels(y, n_all, n_outputs)
    n = _check_n_probe(n_probe, n_all, n_outputs, labels is not None)

    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), n_all))
    idx = np.sort(order[:n])  # the probe keeps x's order (all of x when n_probe = N)
    xp = x[idx]
    _check_batch(apply_fn, params, xp, n_outputs)
    xp, _, problem = kernels.validate(apply_fn, params, xp)
    check_budget(problem, impl)

    full = np.asarray(common.exact_entk(apply_fn, params, xp, implementation=impl), np.float64)
    with _blas_threads(1):
        metrics, approximations = probe_metrics(full, key)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name or getattr(apply_fn, "__qualname__", None) or type(apply_fn).__name__,
        "n_inputs": n_all,
        "n_probe": n,
        "n_outputs": n_outputs,
        "n_params": problem.n_params,
        "input_shape": list(problem.example_shape),
        "dtype": str(problem.dtype),
        "implementation": impl,
        "probe_indices": idx.tolist(),
        "metrics": metrics,
        "block_structure": block_structure(full),
        "regression": None,
        "cost": None,
    }
    if labels is not None and targets is not None:
        n_test = max(1, round(n * TEST_FRACTION))
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), n))
        test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        ridges = tuple(sorted({*_regression_ridges(), ridge}))
        with _blas_threads(1):
            rows = regression_rows(full, targets[idx], labels[idx], train, test, ridges)
        data["regression"] = {"n_train": len(train), "n_test": len(test), "ridge": ridge,
                              "test_indices": idx[test].tolist(), "rows": rows}
    del full, approximations
    if timing:
        data["cost"] = measure_cost(apply_fn, params, x, order, n, impl, key)
    data["seconds"] = time.perf_counter() - started
    data["environment"] = common.environment()
    data["recommendation"] = recommendation(data)
    return Card(data)


def _blas_threads(n: int) -> Any:
    """numpy's BLAS limited to ``n`` threads (threadpoolctl, a scikit-learn dependency): the
    card's eigenvalue problems are at most a few thousand rows, where one thread loses little,
    while a multi-threaded OpenBLAS on a machine busy with XLA's threads was measured 100x
    slower (a 640 x 640 eigvalsh: 7 s against 0.04 s with one thread, load average 5 on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


# --------------------------------------------------------------------------- input checks


def _check_x(x: Any) -> Any:
    if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")):
        raise SuiteError(
            f"x must be an array (numpy or jax) of shape (N, ...) with N inputs, got {type(x).__name__}; "
            "convert it, e.g. np.asarray(x, np.float32)"
        )
    if not np.issubdtype(np.dtype(x.dtype), np.floating):
        raise SuiteError(f"x has dtype {x.dtype}; the kernels need floating-point inputs (cast it, e.g. x.astype(np.float32))")
    if x.ndim < 2:
        raise SuiteError(f"x has shape {tuple(x.shape)}; inputs need a leading batch axis, shape (N, ...)")
    if x.shape[0] < 2:
        raise SuiteError(f"x has {x.shape[0]} input(s); a card needs at least 2 (a kernel between inputs)")
    if isinstance(x, np.ndarray):
        finite = bool(np.all(np.isfinite(x)))
    else:
        import jax.numpy as jnp

        finite = bool(jnp.all(jnp.isfinite(x)))
    if not finite:
        raise SuiteError("x contains NaN or inf; clean or impute the inputs first")
    return x


def _check_key(key: Any) -> Any:
    import jax

    if key is None:
        return jax.random.PRNGKey(0)
    if isinstance(key, bool):
        raise SuiteError(f"key must be a jax PRNG key or a non-negative integer seed, got {key!r}")
    if isinstance(key, int | np.integer):
        if key < 0:
            raise SuiteError(f"key must be a jax PRNG key or a non-negative integer seed, got {key!r}")
        return jax.random.PRNGKey(int(key))
    try:
        jax.random.fold_in(key, 0)
    except Exception as exc:
        raise SuiteError(f"key must be a jax PRNG key (jax.random.PRNGKey(0)) or an integer seed, got {key!r}") from exc
    return key


def _check_ridge(ridge: Any) -> float:
    if isinstance(ridge, bool) or not isinstance(ridge, int | float) or not math.isfinite(ridge) or ridge < 0:
        raise SuiteError(f"ridge must be a finite number >= 0 (relative to the mean diagonal), got {ridge!r}")
    return float(ridge)


def _check_labels(y: Any, n_all: int, n_outputs: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(labels, float64 targets) from ``y``: integer labels -> centred one-hot targets (as
    the regression experiment's), (N, O) targets -> themselves with labels their argmax."""
    if y is None:
        return None, None
    if not hasattr(y, "shape"):
        if isinstance(y, list | tuple):
            y = np.asarray(y)
        else:
            raise SuiteError(f"y must be an array of N labels or (N, O) targets, got {type(y).__name__}")
    y = np.asarray(y)
    if y.shape[:1] != (n_all,):
        raise SuiteError(f"y has shape {y.shape} but x has {n_all} inputs; pass one label (or target row) per input")
    if y.ndim == 1:
        if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
            raise SuiteError(f"y has dtype {y.dtype}; labels must be integers in [0, O) (or pass (N, O) targets)")
        labels = y.astype(np.int64)
        if labels.min() < 0 or labels.max() >= n_outputs:
            raise SuiteError(
                f"y holds labels in [{labels.min()}, {labels.max()}] but the network has O={n_outputs} outputs; "
                f"labels must be in [0, {n_outputs})"
            )
        targets = np.eye(n_outputs)[labels] - 1.0 / n_outputs
        return labels, targets
    if y.ndim == 2 and y.shape[1] == n_outputs:
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise SuiteError("y (targets) must be finite numbers")
        targets = y.astype(np.float64)
        return np.argmax(targets, axis=1), targets
    raise SuiteError(f"y has shape {y.shape}; pass N labels (shape ({n_all},)) or targets of shape ({n_all}, {n_outputs})")


def default_n_probe(n_all: int, n_outputs: int) -> int:
    """min(N, 64, max(16, 1280 // O)): at most 1280 eNTK rows unless that leaves under 16 inputs."""
    return min(n_all, DEFAULT_N_PROBE, max(MIN_DEFAULT_PROBE, DEFAULT_MAX_ROWS // n_outputs))


def _check_n_probe(n_probe: Any, n_all: int, n_outputs: int, labelled: bool) -> int:
    low = 3 if labelled else 2
    if n_probe is None:
        n = default_n_probe(n_all, n_outputs)
        if n < low:
            raise SuiteError(f"x has {n_all} inputs; a card with labels needs at least {low} (train and test)")
        return n
    if isinstance(n_probe, bool) or not isinstance(n_probe, int | np.integer):
        raise SuiteError(f"n_probe must be an integer, got {n_probe!r}")
    if n_probe < low:
        why = " (with labels: at least 2 to train on and 1 to test)" if labelled else " (a kernel between inputs)"
        raise SuiteError(f"n_probe must be at least {low}{why}, got {n_probe}")
    if n_probe > n_all:
        raise SuiteError(f"n_probe = {n_probe} exceeds the {n_all} inputs in x; pass n_probe <= {n_all}")
    return int(n_probe)


def _check_batch(apply_fn: Callable[..., Any], params: Any, xp: Any, n_outputs: int) -> None:
    """``apply_fn`` must map a batch of n inputs to n rows (a one-example check cannot see a
    function that, say, sums over the batch)."""
    import jax

    try:
        out = jax.eval_shape(apply_fn, params, xp)
    except Exception as exc:
        raise SuiteError(f"apply_fn(params, x) failed on a batch of {xp.shape[0]} inputs: {type(exc).__name__}: {exc}") from exc
    shape = tuple(getattr(out, "shape", ()))
    if shape != (xp.shape[0], n_outputs):
        raise SuiteError(
            f"apply_fn must return logits of shape (N, O); for {xp.shape[0]} inputs it returned {shape} "
            f"(for 1 input: (1, {n_outputs})). Map each input to one row, e.g. with jax.vmap"
        )


def analysis_bytes(n: int, n_outputs: int) -> int:
    """Bytes of the card's float64 analysis of an n-input eNTK (:data:`ANALYSIS_COPIES` copies)."""
    return ANALYSIS_COPIES * (n * n_outputs) ** 2 * 8


def card_bytes(problem: Any, implementation: str) -> int:
    """The kernel call's estimate (:func:`suite.kernels.estimate_bytes`) plus the analysis."""
    from suite import kernels

    return kernels.estimate_bytes("entk", problem, implementation) + analysis_bytes(problem.n1, problem.n_outputs)


def check_budget(problem: Any, implementation: str, budget: int | None = None) -> int:
    """Refuse a probe whose eNTK and float64 analysis exceed the memory budget, before anything
    is allocated; the message says the largest probe that fits. Returns the estimate."""
    from dataclasses import replace

    from suite import kernels

    budget = kernels.memory_budget() if budget is None else budget
    need = card_bytes(problem, implementation)
    if need <= budget:
        return need
    low, high = 1, problem.n1  # the largest m with card_bytes(m) <= budget, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if card_bytes(replace(problem, n1=mid, n2=mid), implementation) <= budget:
            low = mid
        else:
            high = mid - 1
    o = problem.n_outputs
    fix = (f"pass n_probe={low} or less (--n-probe {low})" if low >= 2 else
           "even 2 probe inputs do not fit: use a machine with more memory")
    raise MemoryBudgetError(
        f"a card on n_probe={problem.n1} inputs with O={o} outputs needs about {kernels.format_bytes(need)} "
        f"(the exact eNTK, a {problem.n1 * o}x{problem.n1 * o} matrix, and {ANALYSIS_COPIES} float64 copies for "
        f"its eigenvalues and the Kronecker residual), over the memory budget of {kernels.format_bytes(budget)}; "
        f"{fix}, or raise SUITE_MEMORY_BUDGET (e.g. '16GB') if the memory is there"
    )


# --------------------------------------------------------------------------- metrics


def _kernel_kwargs(key: Any) -> dict[str, dict[str, Any]]:
    """As in the experiments: the first logit, and the projection drawn from ``key``."""
    return {"logit_ntk": {"index": 0}, "projected_ntk": {"key": key}}


def probe_metrics(full: np.ndarray, key: Any) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Every metric of the probe's eNTK ``full`` (N, N, O, O) float64, with the experiments'
    functions: ``{kernel: {metric: value}}`` and the approximations themselves."""
    from suite import kernels
    from suite.experiments import common, spectrum

    o = full.shape[-1]
    metrics: dict[str, dict[str, float]] = {"entk": {"max_offdiag": common.max_offdiagonal(full)}}
    mat = spectrum.symmetric_matrix(full)
    eig = np.linalg.eigvalsh(mat)
    metrics["entk"]["lambda_max"] = float(eig[-1])
    kwargs = _kernel_kwargs(key)
    approximations = {}
    for name in kernels.APPROXIMATIONS:
        k = np.asarray(kernels.KERNELS[name].from_entk(full, **kwargs.get(name, {})), np.float64)
        approximations[name] = k
        spec = spectrum.spectrum_metrics(mat, eig, k, o)
        metrics[name] = {
            "rel_frobenius": common.rel_frobenius_kron(full, k),
            "max_diag_dev": common.max_diagonal_deviation(full, k),
            "lambda_max_rel_err": spec["lambda_max_rel_err"],
            "spectrum_rel_err": spec["spectrum_rel_err"],
            "jacobians_per_input": float(kernels.KERNELS[name].jacobians_per_input(o)),
        }
    metrics["entk"]["jacobians_per_input"] = float(o)
    return metrics, approximations


def block_structure(full: np.ndarray) -> dict[str, Any]:
    """Mean |Theta_ab,ij| over all input pairs (a, b), an O x O map divided by the mean of its
    diagonal (so the diagonal is about 1 and pNTK x I predicts 0 off it); also the same split
    into self pairs (a = b) and cross pairs (a != b)."""
    n, _, o, _ = full.shape
    absolute = np.abs(full)
    mean = absolute.mean(axis=(0, 1))
    scale = float(np.mean(np.diag(mean))) or 1.0
    self_mean = np.einsum("aaij->ij", absolute) / n
    cross = (absolute.sum(axis=(0, 1)) - n * self_mean) / max(n * n - n, 1)
    shown = min(o, MAX_BLOCK_MAP)
    off = ~np.eye(o, dtype=bool)
    return {
        "outputs_shown": shown,
        "map": (mean[:shown, :shown] / scale).tolist(),
        "mean_offdiag_over_diag": float(mean[off].mean() / scale) if o > 1 else 0.0,
        "self_offdiag_over_diag": float(self_mean[off].mean() / np.mean(np.diag(self_mean))) if o > 1 else 0.0,
        "cross_offdiag_over_diag": float(cross[off].mean() / np.mean(np.diag(cross))) if o > 1 and n > 1 else 0.0,
    }


def _regression_ridges() -> tuple[float, ...]:
    from suite.experiments import regression

    return tuple(regression.RIDGES)


def regression_rows(
    full: np.ndarray, targets: np.ndarray, labels: np.ndarray, train: Sequence[int] | np.ndarray,
    test: Sequence[int] | np.ndarray, ridges: Sequence[float],
) -> list[dict[str, float]]:
    """Ridge kernel regression (float64) with the eNTK and with pNTK x I_O, as the regression
    experiment does it: train on ``train`` (positions in ``full``), predict ``test``, lambda =
    ridge * mean diagonal of the train eNTK. One row per ridge: both test accuracies, argmax
    agreement, ||f_e - f_p||_F / ||f_e||_F."""
    from suite import kernels
    from suite.experiments import common, regression

    train_i, test_i = np.asarray(train), np.asarray(test)
    block_train = full[np.ix_(train_i, train_i)]
    block_test = full[np.ix_(test_i, train_i)]
    k_train = np.asarray(kernels.KERNELS["pntk"].from_entk(block_train), np.float64)
    k_test = np.asarray(kernels.KERNELS["pntk"].from_entk(block_test), np.float64)
    y = np.asarray(targets, np.float64)[train_i]
    truth = np.asarray(labels)[test_i]
    lam_scale = common.mean_diagonal(block_train)
    rows = []
    for ridge in ridges:
        lam = ridge * lam_scale
        f_e = regression.predict_entk(block_train, block_test, y, lam)
        f_p = regression.predict_scalar(k_train, k_test, y, lam)
        acc_e, acc_p = regression.accuracy(f_e, truth), regression.accuracy(f_p, truth)
        rows.append({
            "ridge": float(ridge),
            "entk_acc": acc_e,
            "pntk_acc": acc_p,
            "acc_gap": abs(acc_e - acc_p),
            "agreement": float(np.mean(np.argmax(f_e, 1) == np.argmax(f_p, 1))),
            "pred_rel_diff": regression.rel_diff(f_e, f_p),
        })
    return rows


# --------------------------------------------------------------------------- cost


def timing_sizes(n: int) -> list[int]:
    """Probe sizes every kernel is timed at first: :data:`TIMING_FRACTIONS` of n, at least 2."""
    return sorted({max(2, round(f * n)) for f in TIMING_FRACTIONS})


def fit_quadratic(ns: Sequence[float], values: Sequence[float]) -> list[float]:
    """[c, a, b] >= 0 of v(n) = c + a n + b n^2 by non-negative least squares (columns scaled
    to unit norm first, so the fit does not depend on units)."""
    from scipy.optimize import nnls

    ns_ = np.asarray(ns, np.float64)
    design = np.column_stack([np.ones_like(ns_), ns_, ns_**2])
    scale = np.linalg.norm(design, axis=0)
    coef, _ = nnls(design / scale, np.asarray(values, np.float64))
    return (coef / scale).tolist()


def evaluate_fit(coef: Sequence[float], n: float) -> float:
    c, a, b = coef
    return float(c + a * n + b * n * n)


def fastest_seconds(call: Callable[[], Any], repeats: int = TIMING_REPEATS) -> float:
    """The fastest of ``repeats`` calls, each ending in ``jax.block_until_ready``, after one
    untimed call that compiles (other processes on the machine only ever add time)."""
    import jax

    jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_cost(apply_fn: Callable[..., Any], params: Any, x: Any, order: np.ndarray, n_probe: int,
                 implementation: str, key: Any, repeats: int = TIMING_REPEATS) -> dict[str, Any]:
    """Median time and XLA's memory estimate of every kernel, fitted and extrapolated to all
    N = len(x) inputs (:data:`COST_METHOD`), with the exact size of each result at N and the
    memory budget.

    Each kernel is timed on the inputs ``x[order[:m]]`` at :func:`timing_sizes` of the probe,
    then at doubling m while a call took under :data:`MAX_CALL_SECONDS`, m is below N and
    :data:`MAX_TIMING_N`, and ``prepare`` accepts it (the memory budget): the cheap kernels are
    measured much closer to N than the probe.
    """
    from suite import kernels

    n_all = int(x.shape[0])
    kwargs = _kernel_kwargs(key)
    out: dict[str, Any] = {}
    for name, spec in kernels.KERNELS.items():
        rows: list[dict[str, Any]] = []
        problem = None
        planned = timing_sizes(n_probe)
        m = planned[0]
        while True:
            try:
                prepared = kernels.prepare(name, apply_fn, params, x[np.sort(order[:m])],
                                           implementation=implementation, **kwargs.get(name, {}))
            except MemoryBudgetError as exc:
                rows.append({"n": m, "seconds": None, "bytes": None, "refused": str(exc)})
                break
            problem = prepared.problem
            seconds = fastest_seconds(prepared.run_unchecked, repeats=repeats)
            measured = prepared.compiled_bytes
            rows.append({
                "n": m, "seconds": seconds,
                "bytes": measured if measured is not None else kernels.estimate_bytes(name, problem, prepared.implementation),
            })
            later = [s for s in planned if s > m]
            if later:
                m = later[0]
            elif seconds < MAX_CALL_SECONDS and m < min(n_all, MAX_TIMING_N):
                m = min(2 * m, n_all, MAX_TIMING_N)
            else:
                break
        entry: dict[str, Any] = {"at": rows, "seconds_at_n": None, "bytes_at_n": None, "result_bytes_at_n": None}
        good = [r for r in rows if r["seconds"] is not None]
        if good and problem is not None:
            last = good[-1]
            fit_t = fit_quadratic([r["n"] for r in good], [r["seconds"] for r in good])
            fit_b = fit_quadratic([r["n"] for r in good], [r["bytes"] for r in good])
            o = problem.n_outputs
            entry.update({
                "fit_seconds": fit_t, "fit_bytes": fit_b,
                "largest_timed": max(r["n"] for r in good),
                # Bounds from the largest timed size: all cost linear in n, or all quadratic.
                "seconds_at_n_low": last["seconds"] * n_all / last["n"],
                "seconds_at_n_high": last["seconds"] * (n_all / last["n"]) ** 2,
                "seconds_at_n": min(max(evaluate_fit(fit_t, n_all), last["seconds"] * n_all / last["n"]),
                                    last["seconds"] * (n_all / last["n"]) ** 2),
                "bytes_at_n": evaluate_fit(fit_b, n_all),
                "result_bytes_at_n": n_all * n_all * (o * o if spec.block else 1) * problem.dtype.itemsize,
            })
        out[name] = entry
    return {
        "repeats": repeats,
        "n_inputs": n_all,
        "budget_bytes": kernels.memory_budget(),
        "method": COST_METHOD.format(repeats=repeats, max_seconds=MAX_CALL_SECONDS, max_n=MAX_TIMING_N),
        "kernels": out,
    }


# --------------------------------------------------------------------------- text


def format_seconds(s: float | None) -> str:
    """``12 ms``, ``3.4 s``, ``5.2 min``, ``7.1 h``, ``3.0 days``."""
    if s is None or not math.isfinite(s):
        return "–"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"


def format_bytes(n: float | None) -> str:
    from suite.kernels.memory import format_bytes as fmt

    return "–" if n is None else fmt(float(n))


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def recommendation(data: Mapping[str, Any]) -> str:
    """One line: how close the pNTK is on the probe, what it saves at N, and the wording that
    follows from :data:`CLOSE_T2`, :data:`ROUGH_T2` and :data:`CLOSE_AGREEMENT`."""
    m = data["metrics"]
    t2 = float(m["pntk"]["rel_frobenius"])
    lam = float(m["pntk"]["lambda_max_rel_err"])
    o = int(data["n_outputs"])
    reg = _headline_regression(data)
    agree_ok = reg is None or reg["agreement"] >= CLOSE_AGREEMENT
    if o == 1:
        verdict = "With one output the pNTK is the eNTK"
    elif t2 <= CLOSE_T2 and agree_ok:
        verdict = "The pNTK is a close stand-in for the eNTK here"
    elif t2 <= ROUGH_T2:
        verdict = "The pNTK only roughly approximates the eNTK here; check what you use it for against the eNTK on a subset"
    else:
        verdict = "The pNTK is not a faithful stand-in for the eNTK here; use the eNTK (in tiles where needed) or a kernel that keeps the output structure"
    closeness = (f"relative Frobenius error {_pct(t2)}, largest off-diagonal entry {m['entk']['max_offdiag']:.2g} "
                 f"of the mean diagonal, λ_max off by {_pct(lam)}")
    if reg is not None:
        closeness += (f"; ridge regression (λ = {reg['ridge']:g}×mean diagonal) agrees on {_pct(reg['agreement'])} of "
                      f"{data['regression']['n_test']} test inputs, accuracy {reg['pntk_acc']:.2f} vs eNTK {reg['entk_acc']:.2f}")
    text = f"{verdict}: {closeness} (probe of {data['n_probe']} inputs)"
    cost = data.get("cost")
    if cost:
        ke, kp = cost["kernels"]["entk"], cost["kernels"]["pntk"]
        n_all = int(cost["n_inputs"])
        if ke["result_bytes_at_n"] and kp["result_bytes_at_n"]:
            text += (f"; on all {n_all:,} inputs the eNTK takes {format_bytes(ke['result_bytes_at_n'])} and about "
                     f"{_time_at_n(ke, n_all)}, the pNTK {format_bytes(kp['result_bytes_at_n'])} and about "
                     f"{_time_at_n(kp, n_all)}")
            peak = max(ke["result_bytes_at_n"], ke["bytes_at_n"] or 0)
            if peak > cost["budget_bytes"]:
                text += (f" (one eNTK call would need about {format_bytes(peak)}, over this machine's memory budget "
                         f"of {format_bytes(cost['budget_bytes'])}: it would have to run in tiles)")
    better = [(k, float(m[k]["rel_frobenius"])) for k in ("logit_ntk", "projected_ntk", "trace_ntk")
              if float(m[k]["rel_frobenius"]) < 0.8 * t2]
    if better and o > 1:
        k, v = min(better, key=lambda kv: kv[1])
        text += f"; note: the {KERNEL_LABELS[k]} is closer on this probe ({_pct(v)})"
    return text + "."


def _time_at_n(entry: Mapping[str, Any], n_all: int) -> str:
    """``3.6 min (34 s – 8.7 min)``: the extrapolated time with its bounds, or the measured one."""
    text = format_seconds(entry["seconds_at_n"])
    timed = [r["n"] for r in entry["at"] if r["seconds"] is not None]
    if timed and max(timed) < n_all and entry.get("seconds_at_n_low") is not None:
        text += f" ({format_seconds(entry['seconds_at_n_low'])} – {format_seconds(entry['seconds_at_n_high'])})"
    return text


def _headline_regression(data: Mapping[str, Any]) -> dict[str, Any] | None:
    reg = data.get("regression")
    if not reg:
        return None
    rows = [r for r in reg["rows"] if math.isclose(r["ridge"], reg["ridge"])]
    return rows[0] if rows else None


def markdown(data: Mapping[str, Any], figure: str | None = None) -> str:
    """The card as markdown (``card.md``), from its JSON dictionary."""
    m = data["metrics"]
    o = data["n_outputs"]
    shape = "×".join(map(str, data["input_shape"]))
    parts = [
        f"# Approximation card: {data['name']}",
        "",
        f"**{data['recommendation']}**",
        "",
        f"Network: O = {o} outputs, P = {data['n_params']:,} parameters, inputs {shape}, {data['dtype']}. "
        f"Probe: {data['n_probe']} of the {data['n_inputs']:,} inputs (seeded random subset); the exact eNTK on the "
        f"probe is a {data['n_probe'] * o}×{data['n_probe'] * o} matrix, computed with `{data['implementation']}`. "
        f"Thresholds of the wording: relative Frobenius error ≤ {CLOSE_T2:g} close, ≤ {ROUGH_T2:g} rough, else not "
        f"faithful; with labels, argmax agreement ≥ {CLOSE_AGREEMENT:g} for close.",
        "",
        "## How close is pNTK ⊗ I to the eNTK (on the probe)",
        "",
        "| kernel | ‖Θ − K⊗I‖_F / ‖Θ‖_F (T2) | max_i \\|Θ_ii − K\\| / mean diag (T1) | λ_max rel. error (T3) | "
        "spectrum rel. error | Jacobians per input |",
        "|---|---|---|---|---|---|",
    ]
    for k in ("pntk", "trace_ntk", "logit_ntk", "projected_ntk"):
        r = m[k]
        parts.append(f"| {KERNEL_LABELS[k]} | {r['rel_frobenius']:.4g} | {r['max_diag_dev']:.4g} | "
                     f"{r['lambda_max_rel_err']:.4g} | {r['spectrum_rel_err']:.4g} | {r['jacobians_per_input']:g} |")
    b = data["block_structure"]
    parts += [
        "",
        f"Off the diagonal of the eNTK's O×O blocks (T1, which pNTK ⊗ I sets to 0): largest entry "
        f"{m['entk']['max_offdiag']:.4g} of the mean diagonal; on average {b['mean_offdiag_over_diag']:.3g} "
        f"of the diagonal (self pairs {b['self_offdiag_over_diag']:.3g}, pairs of different inputs "
        f"{b['cross_offdiag_over_diag']:.3g}).",
        "",
    ]
    reg = data.get("regression")
    if reg:
        parts += [
            "## Kernel regression with the labels (ridge, float64)",
            "",
            f"Train on {reg['n_train']} probe inputs, test on the other {reg['n_test']}; targets are centred one-hot; "
            "λ = ridge × mean diagonal of the train eNTK, as in the regression experiment.",
            "",
            "| ridge | eNTK test acc. | pNTK test acc. | argmax agreement | ‖f_e − f_p‖ / ‖f_e‖ |",
            "|---|---|---|---|---|",
        ]
        for r in reg["rows"]:
            mark = " (headline)" if math.isclose(r["ridge"], reg["ridge"]) else ""
            parts.append(f"| {r['ridge']:g}{mark} | {r['entk_acc']:.3f} | {r['pntk_acc']:.3f} | "
                         f"{r['agreement']:.3f} | {r['pred_rel_diff']:.4g} |")
        parts.append("")
    cost = data.get("cost")
    if cost:
        n_all = cost["n_inputs"]
        parts += [
            f"## Cost: measured, extrapolated to all {n_all:,} inputs",
            "",
            "| kernel | timed at n = | time at the largest n | XLA memory there | time at N (linear – quadratic bounds) | "
            "result at N | peak at N (XLA, extrapolated) |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, e in cost["kernels"].items():
            good = [r for r in e["at"] if r["seconds"] is not None]
            last = good[-1] if good else {}
            sizes = ", ".join(str(r["n"]) for r in good) or "–"
            refused = [r for r in e["at"] if r["seconds"] is None]
            if refused:
                sizes += f" ({refused[0]['n']} refused by the budget)"
            at_n = format_seconds(e["seconds_at_n"])
            if last.get("n") == n_all:
                at_n += " (measured)"
            elif e.get("seconds_at_n_low") is not None:
                at_n += f" ({format_seconds(e['seconds_at_n_low'])} – {format_seconds(e['seconds_at_n_high'])})"
            parts.append(f"| {KERNEL_LABELS.get(k, k)} | {sizes} | {format_seconds(last.get('seconds'))} | "
                         f"{format_bytes(last.get('bytes'))} | {at_n} | {format_bytes(e['result_bytes_at_n'])} | "
                         f"{format_bytes(e['bytes_at_n'])} |")
        parts += ["", f"Memory budget on this machine: {format_bytes(cost['budget_bytes'])}. How: {cost['method']}", ""]
    if figure:
        parts += [f"![eNTK block structure and the errors]({figure})", ""]
    env = data.get("environment", {})
    parts += [
        f"Computed in {data.get('seconds', float('nan')):.0f} s with jax {env.get('jax')}, neural-tangents "
        f"{env.get('neural_tangents')}, {env.get('backend')} ({env.get('device')}), commit {env.get('git_commit')}.",
        "",
    ]
    return "\n".join(parts)


#: Rows of the side-by-side table: (label, function of the card's JSON dictionary).
_COMPARE: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
    ("pNTK: ‖Θ − K⊗I‖_F / ‖Θ‖_F (T2)", lambda d: f"{d['metrics']['pntk']['rel_frobenius']:.4g}"),
    ("eNTK: max off-diagonal / mean diagonal (T1)", lambda d: f"{d['metrics']['entk']['max_offdiag']:.4g}"),
    ("pNTK: max diagonal deviation (T1)", lambda d: f"{d['metrics']['pntk']['max_diag_dev']:.4g}"),
    ("pNTK: λ_max rel. error (T3)", lambda d: f"{d['metrics']['pntk']['lambda_max_rel_err']:.4g}"),
    ("mean off-diagonal / diagonal of the blocks", lambda d: f"{d['block_structure']['mean_offdiag_over_diag']:.3g}"),
    ("mean trace: T2", lambda d: f"{d['metrics']['trace_ntk']['rel_frobenius']:.4g}"),
    ("first logit: T2", lambda d: f"{d['metrics']['logit_ntk']['rel_frobenius']:.4g}"),
    ("random projection: T2", lambda d: f"{d['metrics']['projected_ntk']['rel_frobenius']:.4g}"),
    ("regression: eNTK / pNTK test acc.", lambda d: (lambda r: "–" if r is None else
                                                     f"{r['entk_acc']:.3f} / {r['pntk_acc']:.3f}")(_headline_regression(d))),
    ("regression: argmax agreement", lambda d: (lambda r: "–" if r is None else f"{r['agreement']:.3f}")(_headline_regression(d))),
    ("eNTK / pNTK result at N", lambda d: "–" if not d.get("cost") else
     f"{format_bytes(d['cost']['kernels']['entk']['result_bytes_at_n'])} / "
     f"{format_bytes(d['cost']['kernels']['pntk']['result_bytes_at_n'])}"),
    ("eNTK time at N (bounds)", lambda d: "–" if not d.get("cost") else
     _time_at_n(d["cost"]["kernels"]["entk"], d["cost"]["n_inputs"])),
    ("pNTK time at N (bounds)", lambda d: "–" if not d.get("cost") else
     _time_at_n(d["cost"]["kernels"]["pntk"], d["cost"]["n_inputs"])),
]


def comparison_table(cards: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown table of several cards side by side (one column per card, keyed by label)."""
    labels = list(cards)
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for text, get in _COMPARE:
        lines.append(f"| {text} | " + " | ".join(get(cards[label]) for label in labels) + " |")
    return lines


def load(path: str | Path) -> dict[str, Any]:
    """A card's JSON dictionary from ``card.json`` (or its folder).

    Raises:
        SuiteError: missing, unreadable, or of another schema version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "card.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"{path} does not exist; write a card with python -m suite card MODULE:FACTORY --out DIR") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise SuiteError(f"{path} is not a card of schema version {SCHEMA_VERSION}; write it again with python -m suite card")
    return data


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- factories


def load_factory(spec: str) -> tuple[Callable[..., Any], Any, Any, Any]:
    """Import ``MODULE:FACTORY``, call the factory, check what it returned.

    The factory takes no arguments and returns ``(apply_fn, params, x)`` or
    ``(apply_fn, params, x, y)``.

    Raises:
        SuiteError: a malformed spec, a module that does not import, a missing or non-callable
            factory, a factory that raises, or one that returns the wrong things.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise SuiteError(f"expected MODULE:FACTORY, e.g. suite.examples.plain_jax:build, got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        hint = ""
        if missing.split(".")[0] in ("flax", "equinox"):
            hint = " (the Flax and Equinox examples need the optional group: pip install -e '.[frameworks]')"
        elif module_name.startswith(missing) or missing.startswith(module_name.split(".")[0]):
            hint = " (check the module path; it must be importable from the current directory or the environment)"
        raise SuiteError(f"cannot import {module_name!r}: {exc}{hint}") from exc
    except Exception as exc:
        raise SuiteError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                        and getattr(v, "__module__", None) == module.__name__)
        raise SuiteError(f"module {module_name!r} has no {attr!r}; its functions: {', '.join(public) or 'none'}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise SuiteError(f"{spec} is a {type(factory).__name__}, not a function returning (apply_fn, params, x[, y])")
    try:
        result = factory()
    except SuiteError as exc:
        raise SuiteError(f"factory {spec} failed: {exc}") from exc
    except Exception as exc:
        raise SuiteError(f"factory {spec} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, tuple | list):
        raise SuiteError(f"factory {spec} must return a tuple (apply_fn, params, x[, y]), got {type(result).__name__}")
    if len(result) not in (3, 4):
        raise SuiteError(f"factory {spec} returned {len(result)} values; it must return (apply_fn, params, x) or (apply_fn, params, x, y)")
    apply_fn, params, x, *rest = result
    if not callable(apply_fn):
        raise SuiteError(f"factory {spec}: the first value must be apply_fn(params, x) -> (N, O), got {type(apply_fn).__name__}")
    return apply_fn, params, x, (rest[0] if rest else None)


def card_from_factory(spec: str, **kwargs: Any) -> Card:
    """:func:`card` of what ``MODULE:FACTORY`` returns, named after it."""
    apply_fn, params, x, y = load_factory(spec)
    return card(apply_fn, params, x, y, name=kwargs.pop("name", spec), **kwargs)
