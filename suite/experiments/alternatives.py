"""pNTK vs the other cheap kernels: the same error, a different cost (THEORY.md §3, F9).

Issue item 5: the pNTK, the mean trace, the first logit, a random projection and the
unscaled sum of logits (divided by O), each against the exact eNTK, with error and cost
side by side. Unlike ``convergence`` (which derives every approximation from one eNTK), each
kernel here is computed by its OWN implementation
(``kernels.KERNELS[k].compute(model.apply, params, x, implementation=...)``), as a user would,
so its cost can be timed:

* ``rel_frobenius``: ||Theta - K x I_O||_F / ||Theta||_F against the eNTK Theta (T2; the
  metric of ``convergence``), for every approximation K.
* ``seconds``: median wall time of 3 calls of the kernel's jitted function, each ending in
  ``jax.block_until_ready`` (the eNTK included), after one untimed call that compiles it (the
  call that produced the kernel's value). The timed function is the compiled executable of
  ``kernels.prepare(k, apply_fn, params, x, implementation=...)``, the one ``compute`` runs
  after validating its inputs, so input checks are not timed. Informative only: other
  processes may share the machine; benchmarks live in tests/test_bench_kernels.py. An eNTK
  that the memory budget refuses in one call is computed and timed as
  :func:`suite.blocked.entk_blocked` (whole blocked call, input checks included, timed once:
  :data:`BLOCKED_REPEATS`), as :func:`suite.experiments.common.exact_entk` computes it.
* ``jacobians_per_input``: ``KERNELS[k].jacobians_per_input(O)``: 1 for the pNTK, first logit,
  projection and unscaled sum; O for the mean trace and the eNTK.

The unscaled sum is the NTK of sum_i f_i, i.e. 1^T Theta 1 = sum_ij Theta_ij per pair, which
is O times the pNTK (the NTK of (1/sqrt O) sum_i f_i). Divided by O it IS the pNTK, identically,
so its error equals the pNTK's up to rounding; it is computed separately (kernel
``unscaled_sum``: the pNTK's prepared executable with v = ones instead of 1/sqrt(O), then / O)
because TE-NAS- and TRAK-style code uses the unscaled sum and must divide by O before it is
compared with an eNTK (THEORY.md §1, "unscaled sum").

Expected (THEORY.md §3, "alternatives at init"): at initialization every approximation shares
the n^-1/2 rate and their errors are close (off-diagonals dominate); the pNTK's edge is cost
(one Jacobian per input; the trace needs O), not accuracy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from suite import blocked, kernels
from suite.errors import MemoryBudgetError, SuiteError
from suite.experiments import Experiment, common, convergence
from suite.stats import Prediction

VERSION = "1"

#: Kernel id of the NTK of sum_i f_i divided by O (not a registered kernel: it equals pNTK).
UNSCALED = "unscaled_sum"

#: Every kernel of a case, the eNTK first.
KERNEL_NAMES = ("entk", *kernels.APPROXIMATIONS, UNSCALED)

#: Timed calls per kernel (after one untimed compile call); the median is stored.
REPEATS = 3
#: Timed calls of a blocked eNTK (one that does not fit in one call): each call is long
#: (many tile calls), so one timed call after the value's own call.
BLOCKED_REPEATS = 1

#: One depth per architecture (the deepest of convergence's quick grid).
DEPTHS = {"mlp": 3, "cnn": 2, "resnet": 2}
QUICK_WIDTHS = {"mlp": (128, 256, 512, 1024), "cnn": (16, 32, 64, 128), "resnet": (8, 16, 32, 64)}
FULL_WIDTHS = {"mlp": (128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128, 256), "resnet": (16, 32, 64, 128)}

#: Metrics that are not errors: cost is reported, not judged against a rate.
REPORT_ONLY = ("seconds", "jacobians_per_input")


@dataclass(frozen=True)
class Config(convergence.Config):
    """A convergence case plus the implementation whose cost is measured."""

    implementation: str = "auto"

    def validate(self) -> None:
        if self.implementation not in kernels.IMPLEMENTATION_CHOICES:
            raise SuiteError(
                f"implementation must be one of {list(kernels.IMPLEMENTATION_CHOICES)}, got {self.implementation!r}"
            )

    @property
    def id(self) -> str:
        """Readable case id, e.g. ``mlp-d03-w0512-o10-s2``."""
        return f"{self.arch}-d{self.depth:02d}-w{self.width:04d}-o{self.n_outputs}-s{self.seed}"


def _grid(widths, outputs, seeds: int, **common_fields) -> list[Config]:
    return common.grid_product(Config, arch=widths, n_outputs=outputs, depth=DEPTHS, width=widths,
                               seed=range(seeds), **common_fields)


#: Every approximation shares the pNTK's limit and rate at initialization (THEORY.md §3).
PREDICTIONS = {"rel_frobenius": Prediction("slope", -0.5, "T2 (alternatives at init, THEORY.md §3)")}

GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, (10,), 5, dataset="digits", n_inputs=32),
    # O = 100 only for the MLP: a conv net's O = 100 eNTK at N = 64 needs tiles (Jacobians of
    # 6400 rows) and would take most of the full grid's budget.
    "full": lambda: _grid(FULL_WIDTHS, (10,), 5, dataset="mnist5k14", n_inputs=64)
    + _grid({"mlp": FULL_WIDTHS["mlp"]}, (100,), 5, dataset="mnist5k14", n_inputs=64),
}


# --------------------------------------------------------------------------- kernels


def kernel_kwargs(seed: int) -> dict[str, dict]:
    """Extra arguments of the kernels that take any: the first logit, and the projection
    drawn from the case's seed (as in ``convergence``)."""
    return {"logit_ntk": {"index": 0}, "projected_ntk": {"key": jax.random.PRNGKey(seed)}}


def own_kernels(apply_fn, params, x, implementation: str, seed: int) -> dict[str, jax.Array]:
    """Every kernel of :data:`KERNEL_NAMES` by its own implementation (not from the eNTK)."""
    return {name: own_kernel(name, apply_fn, params, x, implementation, seed) for name in KERNEL_NAMES}


def own_kernel(name: str, apply_fn, params, x, implementation: str, seed: int) -> jax.Array:
    """Kernel ``name`` by its own implementation: ``KERNELS[name].compute`` for registered
    kernels, the NTK of 1^T f divided by O for ``unscaled_sum``."""
    if name == UNSCALED:
        return _unscaled_call(kernels.prepare("pntk", apply_fn, params, x, implementation=implementation))()
    if name == "entk":  # the blocked eNTK where one call would not fit
        return common.exact_entk(apply_fn, params, x, implementation=implementation)
    kw = kernel_kwargs(seed).get(name, {})
    return kernels.KERNELS[name].compute(apply_fn, params, x, implementation=implementation, **kw)


def timed_calls(apply_fn, params, x, implementation: str, seed: int) -> dict[str, Callable[[], jax.Array | np.ndarray]]:
    """Zero-argument callables of the compiled kernels, one per kernel.

    Each is the executable of ``kernels.prepare`` (the one ``KERNELS[k].compute`` runs, with
    the kernel's output direction v from its registry entry), minus the input checks, so a
    timing measures the kernel alone. The scalar kernels share auto's choice (one compiled
    mode). ``unscaled_sum`` is the NTK of 1^T f (v = ones) divided by O.
    """
    calls: dict[str, Callable[[], jax.Array | np.ndarray]] = {}
    for name in kernels.KERNELS:
        kw = kernel_kwargs(seed).get(name, {})
        try:
            calls[name] = _bare_call(kernels.prepare(name, apply_fn, params, x, implementation=implementation, **kw))
        except MemoryBudgetError:
            if name != "entk":
                raise
            calls[name] = _blocked_entk_call(apply_fn, params, x, implementation)
    calls[UNSCALED] = _unscaled_call(kernels.prepare("pntk", apply_fn, params, x, implementation=implementation))
    return calls


class _BlockedCall:
    """The blocked eNTK as a timed call (the whole :func:`suite.blocked.entk_blocked`)."""

    def __init__(self, apply_fn, params, x, implementation: str):
        self.args = (apply_fn, params, x)
        self.implementation = implementation

    def __call__(self) -> np.ndarray:
        return blocked.entk_blocked(*self.args, implementation=self.implementation, progress=False)


def _blocked_entk_call(apply_fn, params, x, implementation: str) -> Callable[[], np.ndarray]:
    return _BlockedCall(apply_fn, params, x, implementation)


def _bare_call(prepared: kernels.Prepared) -> Callable[[], jax.Array]:
    return prepared.run_unchecked


def _unscaled_call(pntk: kernels.Prepared) -> Callable[[], jax.Array]:
    """The pNTK's executable with v = ones (the NTK of 1^T f), divided by O."""
    o = pntk.problem.n_outputs
    x, x2, params, v = pntk.args
    ones = jnp.ones(o, v.dtype)
    return lambda: pntk.executable(x, x2, params, ones)[0] / o


def median_seconds(call: Callable[[], jax.Array | np.ndarray], repeats: int = REPEATS, warmup: bool = True) -> float:
    """Median wall time of ``repeats`` calls, after one untimed (compiling) call if ``warmup``
    (pass False when the caller has just made that call)."""
    if warmup:
        jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(config: Config) -> pd.DataFrame:
    """Compute one case's tidy rows (see the module docstring for the metrics)."""
    common.ensure_dtype(config.dtype)
    x = common.inputs(config.dataset, config.n_inputs, config.data_seed, config.dtype)
    model, params = common.network(config.model_config(), config.seed, tuple(x.shape[1:]), config.dtype)
    calls = timed_calls(model.apply, params, x, config.implementation, config.seed)
    values, seconds = {}, {}
    for name in KERNEL_NAMES:
        # The value's own call is the untimed one that compiles the jitted kernel function.
        values[name] = jax.block_until_ready(own_kernel(name, model.apply, params, x, config.implementation, config.seed))
        repeats = BLOCKED_REPEATS if isinstance(calls[name], _BlockedCall) else REPEATS
        seconds[name] = median_seconds(calls[name], repeats=repeats, warmup=False)
    full = np.asarray(values["entk"], np.float64)

    o = config.n_outputs
    rows: list[tuple[str, str, float]] = []
    for name in KERNEL_NAMES:
        if name != "entk":
            rows.append((name, "rel_frobenius", common.rel_frobenius_kron(full, np.asarray(values[name], np.float64))))
        rows.append((name, "seconds", seconds[name]))
        per_input = 1 if name == UNSCALED else kernels.KERNELS[name].jacobians_per_input(o)
        rows.append((name, "jacobians_per_input", float(per_input)))

    return common.tidy_frame(rows, ["kernel", "metric", "value"], config,
                             n_params=model.param_count(tuple(x.shape[1:])))


EXPERIMENT = Experiment(
    name="alternatives",
    description="pNTK vs mean trace, first logit, random projection and unscaled sum / O: error against the eNTK and cost, each by its own implementation",
    theorem="T2 (alternatives at init)",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    predict=lambda series: PREDICTIONS.get(series["metric"]),
    verify=False,
    order=25,
    timed=True,
    report_only_metrics=REPORT_ONLY,
    metric_text={
        "rel_frobenius": "‖eNTK − K⊗I_O‖_F / ‖eNTK‖_F (T2)",
        "seconds": "median wall time of one kernel call after compilation (alternatives; informative only)",
        "jacobians_per_input": "Jacobian rows (VJPs) per input a kernel needs: 1, or O for the trace and eNTK",
    },
)
