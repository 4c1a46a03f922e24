"""``implementation="auto"``: time the candidates once per network and argument shapes and
keep the fastest, unless the preferred one is within a margin of it.

Why timing and not a cost model: no implementation is fastest everywhere (reports/bench):
structured derivatives wins by 10-40x on MLPs, while on conv nets the plain per-example
Jacobians / gradients of the ``jax`` path (or neural-tangents' Jacobian contraction, the
same computation in another order) are 10-45% faster; neural-tangents' FLOP-based AUTO is
documented as correct only on TPU and crashes on jax 0.5.3 (notes/neural-tangents.md §2).

Noise (a shared 2-core machine moves a millisecond call by 10-30% from one run to the next):
each candidate gets several timed runs and counts by its fastest one (noise only adds time);
when the decision falls within :data:`AUTO_NOISE` of the margin, the preferred and the
contender are timed again, alternately, and decide on all their runs; and the preferred
candidate is kept unless another beats it by :data:`AUTO_MARGIN`, so auto is never slower
than the preferred default by more than that (plus the remaining noise).
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax

from suite.errors import MemoryBudgetError
from suite.kernels.implementations import (
    available_implementations,
    executable,
    resolve_implementation,
    signature,
)
from suite.kernels.memory import estimate_bytes, memory_budget
from suite.kernels.registry import KERNELS
from suite.kernels.validation import ApplyFn, Problem

#: Implementations ``auto`` times against each other, per compiled mode, preferred first.
#: Structured derivatives is preferred (fastest or close on most networks, least memory);
#: ``jax`` wins on conv nets; Jacobian contraction is tried for the scalar kernels, where it
#: beat both on a small CNN (issue 10). NTK-vector products was never ahead, so it is not tried.
AUTO_CANDIDATES: dict[str, tuple[str, ...]] = {
    "full": ("structured_derivatives", "jax"),
    "trace": ("structured_derivatives", "jax"),
    "scalar": ("structured_derivatives", "jax", "jacobian_contraction"),
}
#: ``auto`` keeps the preferred candidate unless another is at least this much faster, so that
#: near-ties do not flip the choice from one run to the next on a noisy machine. With 5%, the
#: kept candidate is within 1/0.95 = 1.053x of the fastest (target: within 10%).
AUTO_MARGIN = 0.05
#: Timed runs per candidate after its first call, for calls shorter than AUTO_LONG_CALL_S: at
#: least AUTO_RUNS, more for short calls (about AUTO_TIME_S of runs), at most AUTO_MAX_RUNS.
AUTO_RUNS = 3
AUTO_TIME_S = 0.05
AUTO_MAX_RUNS = 15
#: A first call this long is itself the measurement (its noise is small beside it, and
#: repeating it would multiply the cost of a one-off call); its result is returned.
AUTO_LONG_CALL_S = 0.25
#: Re-time when (fastest / preferred) / (1 - margin) is within this of 1, with AUTO_RETIME_RUNS
#: alternating runs of each of the two.
AUTO_NOISE = 0.10
AUTO_RETIME_RUNS = 5

_AUTO_CHOICE: dict[tuple[Any, ...], str] = {}


#: Below this many rows on either side, neural-tangents' Jacobian contraction is no candidate:
#: XLA:CPU sums the parameter axis of such a thin product in sequence, 6e-4 off in float32 for
#: one pair on ResNet-18, where the ``jax`` path contracts it in chunks (see implementations).
THIN_ROWS = 2


def candidates(mode: str, n_rows: int | None = None) -> tuple[str, ...]:
    """:data:`AUTO_CANDIDATES` of ``mode`` that run here (only ``jax`` without neural-tangents);
    ``n_rows``: the smaller of N1 and N2, when known (see :data:`THIN_ROWS`)."""
    here = available_implementations()
    pool = [c for c in AUTO_CANDIDATES[mode] if c in here]
    if n_rows is not None and n_rows <= THIN_ROWS:
        pool = [c for c in pool if c != "jacobian_contraction"]
    return tuple(pool) or ("jax",)


def pick_with_margin(timings: dict[str, float], margin: float) -> str:
    """The first key of ``timings`` (the preferred one) unless the fastest is more than
    ``margin`` (a fraction) faster than it."""
    preferred = next(iter(timings))
    fastest = min(timings, key=timings.__getitem__)
    return fastest if timings[fastest] < (1 - margin) * timings[preferred] else preferred


def near_tie(timings: dict[str, float], margin: float = AUTO_MARGIN, noise: float = AUTO_NOISE) -> str | None:
    """The contender to re-time against the preferred candidate when the decision of
    :func:`pick_with_margin` is within ``noise`` of flipping, else None."""
    preferred = next(iter(timings))
    others = {k: v for k, v in timings.items() if k != preferred}
    if not others:
        return None
    contender = min(others, key=others.__getitem__)
    ratio = timings[contender] / timings[preferred] / (1 - margin)
    return contender if abs(ratio - 1) < noise else None


def _timed(exe: Any, args: tuple[Any, ...]) -> tuple[jax.Array, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(exe(*args)[0])
    return out, time.perf_counter() - start


def choose_implementation(kernel: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None = None) -> str:
    """The fastest of :func:`candidates` for this kernel's mode, network and argument
    shapes, cached per network and shapes. See :func:`choose` for how it is timed."""
    return choose(kernel, apply_fn, args, problem)[0]


def choose(
    kernel: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None
) -> tuple[str, jax.Array | None]:
    """(implementation, the chosen candidate's result when this call timed it, else None).

    Each candidate is compiled and run once; a first run shorter than :data:`AUTO_LONG_CALL_S`
    is followed by timed runs (see :data:`AUTO_RUNS`) whose fastest counts, a longer one is
    the measurement. A near tie (:func:`near_tie`) is re-timed. The preferred (first)
    candidate is kept unless another beats it by :data:`AUTO_MARGIN`. A one-off long call thus
    costs one run per candidate, and its result is reused rather than computed again.
    Candidates over the memory budget (by :func:`estimate_bytes` for ``problem`` when given,
    and by XLA's compiled estimate) are skipped; the kept result is dropped when two results
    would not fit the budget together.
    """
    mode = KERNELS[kernel].mode
    key = (apply_fn, mode, signature(args))
    if key in _AUTO_CHOICE:
        return _AUTO_CHOICE[key], None
    x1, x2 = args[0], args[1]
    pool = candidates(mode, min(x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0]))
    if len(pool) == 1:
        _AUTO_CHOICE[key] = pool[0]
        return pool[0], None
    runs: dict[str, list[float]] = {}
    exes: dict[str, Any] = {}
    kept: tuple[str, jax.Array] | None = None  # the best candidate so far and its result
    budget = memory_budget()

    def keep(candidate: str, out: jax.Array) -> None:
        nonlocal kept
        best = {c: min(r) for c, r in runs.items() if r}
        if pick_with_margin(best, AUTO_MARGIN) == candidate:
            kept = (candidate, out) if 2 * out.nbytes <= budget else None

    # Every candidate is compiled and run once before any is timed (the first run pays for
    # allocation and caches), then the timed runs go round-robin, so that the machine warming
    # up, or a slow spell, does not fall on one candidate only (measured on a small CNN: one
    # candidate's runs fell from 2.2 to 0.6 ms over its first dozen calls).
    todo: dict[str, int] = {}
    for candidate in pool:
        if problem is not None and estimate_bytes(kernel, problem, candidate) > budget:
            continue
        try:
            exe = executable(kernel, apply_fn, candidate, mode, args)
        except MemoryBudgetError:
            continue
        exes[candidate] = exe
        out, first = _timed(exe, args)
        if first >= AUTO_LONG_CALL_S:  # a long first run is the measurement
            runs[candidate] = [first]
            keep(candidate, out)
        else:  # short: best of several later runs
            runs[candidate] = []
            todo[candidate] = min(AUTO_MAX_RUNS, max(AUTO_RUNS, math.ceil(AUTO_TIME_S / max(first, 1e-6))))
        del out
    while any(todo.values()):
        for candidate in [c for c, n in todo.items() if n]:
            out, t = _timed(exes[candidate], args)
            runs[candidate].append(t)
            todo[candidate] -= 1
            keep(candidate, out)
            del out
    if not runs:  # every candidate is over budget: let the caller's check say so
        return pool[0], None
    best = {c: min(r) for c, r in runs.items()}
    contender = near_tie(best)
    preferred = next(iter(best))
    if contender is not None and max(best[preferred], best[contender]) < AUTO_LONG_CALL_S:
        for _ in range(AUTO_RETIME_RUNS):  # alternate, so that a slow spell hits both
            for candidate in (preferred, contender):
                out, t = _timed(exes[candidate], args)
                runs[candidate].append(t)
                keep(candidate, out)
                del out
        best = {c: min(r) for c, r in runs.items()}
    chosen = pick_with_margin(best, AUTO_MARGIN)
    _AUTO_CHOICE[key] = chosen
    return chosen, kept[1] if kept is not None and kept[0] == chosen else None


def concrete_implementation(
    kernel: str, implementation: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None = None
) -> str:
    """The implementation a call with these arguments runs (``auto`` resolved, timing once if
    needed); ``args`` as passed to :func:`executable`."""
    impl = resolve_implementation(implementation, kernel)
    return choose_implementation(kernel, apply_fn, args, problem) if impl == "auto" else impl
