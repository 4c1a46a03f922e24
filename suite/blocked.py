"""Memory-bounded pNTK (gradients once, Gram tiles on the device) and exact eNTK for large N.

The pNTK is the NTK of the scalar g = (1/sqrt O) sum_i f_i (THEORY.md §1, paper eq. 2), so
with G the (N, P) matrix of per-example gradients of g, Theta_hat(X1, X2) = G1 G2^T. Unlike
the eNTK ((N*O)^2 entries, O Jacobian rows per input) this needs one gradient row per input
and an N1 x N2 result, the cost saving the paper claims (THEORY.md §1 "Cost"). This module
makes that saving usable at N in the tens of thousands, the regime where users of
neural-tangents run out of memory (notes/neural-tangents.md §5: #106, #166, #182):

1. **Gradients once.** X is cut into row blocks of ``B`` examples; each block's gradients
   come from one jitted ``vmap(grad(g))`` call, are flattened to (B, P) and stored on the
   host (a numpy array, or a ``.npy`` memmap when they exceed the host budget). No gradient
   is ever recomputed per tile.
2. **Tiles on the device.** K[i, j] = G_i G_j^T for every pair of blocks, with G_i kept on
   the device across its row of tiles. With ``x2=None`` only tiles j >= i are computed and
   mirrored, and G2 = G1.
3. **Bounded memory.** ``B`` follows from the memory budget: the device holds two gradient
   blocks and one tile, about (2 B P + B^2) * itemsize bytes, and the compiled gradient pass's
   own footprint (XLA's memory analysis) is checked too. The result goes to RAM or, with
   ``out=``, to a ``.npy`` memmap written under a temporary name and renamed when complete.
4. **Several devices.** Each row block is sharded over a 1-D ``Mesh`` along "batch" (padded to
   a multiple of the device count), so the gradient pass and the Gram tiles run
   data-parallel; the result is the same as on one device.

The exact eNTK ((N O)^2 entries, THEORY.md §1, paper eq. 1) is blocked too, by
:func:`entk_blocked`: each tile pair is the public :func:`suite.kernels.entk` on one tile of x1
and one of x2 (its Jacobians recomputed per tile pair, so memory is that of one tile call),
tiles chosen from the budget by XLA's compiled estimate, symmetry reused as above.

The pNTK path uses only the public jax API (no neural-tangents), so it works on jax releases
where neural-tangents does not import; the eNTK path uses whichever implementation is asked for. Examples must not interact inside ``apply_fn`` (no batch
norm in training mode), as for every kernel in :mod:`suite.kernels`.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding
from tqdm.auto import tqdm

from suite import kernels
from suite.errors import MemoryBudgetError, SuiteError, require_positive_int

__all__ = ["BlockPlan", "EntkTiles", "entk_blocked", "gradient_pass", "gram", "gram_cost", "plan_blocks", "pntk_blocked"]

#: Largest automatic block: bigger blocks did not speed up the Gram tiles (mnist5k MLP, CPU),
#: while the device copies of G_i, G_j and the gradient pass grow with B (peak RSS 2.4 GB at
#: B = 1024 vs 2.0 GB at 512) and the progress bar gets coarse.
MAX_AUTO_BLOCK = 512
#: The same on GPUs/TPUs (not measured here): each tile re-sends G_j from the host, so a tile
#: does 2 B^2 P flops per 2 B P * itemsize bytes sent; B = 512 would leave an accelerator
#: waiting on host transfers, B = 4096 gives ~1000 flops per byte sent (float64: ~500).
MAX_AUTO_BLOCK_ACCELERATOR = 4096

ApplyFn = Callable[[Any, jax.Array], jax.Array]


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class BlockPlan:
    """How one blocked pNTK is cut up, and what it holds in memory.

    Attributes:
        block_size: examples per row block (before padding to ``padded_block``).
        padded_block: rows each block is computed with: a multiple of ``n_devices``; every
            block has this shape, so the gradient and tile functions compile once.
        n_devices: devices each block is sharded over.
        blocks1, blocks2: row blocks of x1 and of x2 (``blocks2 == blocks1`` when symmetric).
        n_tiles: Gram tiles computed (j >= i only when symmetric).
        device_bytes: per-device working set estimate, (2 B P + B^2) * itemsize.
        gradient_bytes: host bytes of the stored gradients G1 (and G2).
        result_bytes: bytes of the N1 x N2 kernel.
        spill_gradients: the gradients go to a disk memmap (they exceed the host budget).
    """

    block_size: int
    padded_block: int
    n_devices: int
    blocks1: int
    blocks2: int
    n_tiles: int
    device_bytes: int
    gradient_bytes: int
    result_bytes: int
    spill_gradients: bool


def _device_bytes(b: int, p: int, itemsize: int) -> int:
    return (2 * b * p + b * b) * itemsize


def _largest_block(p: int, itemsize: int, budget: int) -> int:
    """Largest B with (2 B P + B^2) * itemsize <= budget: B = sqrt(P^2 + budget/s) - P."""
    return math.isqrt(p * p + budget // itemsize) - p  # floor: exact in integers


def plan_blocks(
    n1: int,
    n2: int | None,
    n_params: int,
    itemsize: int,
    *,
    budget: int,
    n_devices: int = 1,
    block_size: int | None = None,
    to_disk: bool = False,
    max_block: int = MAX_AUTO_BLOCK,
) -> BlockPlan:
    """Choose the block size and check every memory bound of a blocked pNTK.

    Args:
        n1, n2: numbers of inputs (``n2=None``: the symmetric kernel of x1 with itself).
        n_params: P, parameters of the network.
        itemsize: bytes per number (4 for float32).
        budget: bytes allowed on each device and on the host (see :func:`pntk_blocked`).
        n_devices: devices a block is sharded over.
        block_size: fixed B, or ``None`` for the largest B within the budget (at most
            ``max_block`` and at most max(n1, n2)).
        to_disk: the result goes to a file, so it does not count against the host budget.
        max_block: cap on an automatic B (:data:`MAX_AUTO_BLOCK` on CPU,
            :data:`MAX_AUTO_BLOCK_ACCELERATOR` on accelerators).

    Raises:
        MemoryBudgetError: even one example per device does not fit the device budget, a
            given ``block_size`` does not fit, or an in-memory result exceeds the budget.
    """
    symmetric = n2 is None
    n2_: int = n1 if n2 is None else n2
    n_max = max(n1, n2_)
    p, s = n_params, itemsize
    smallest = _device_bytes(n_devices, p, s)
    if smallest > budget:
        raise MemoryBudgetError(
            f"the blocked pNTK needs two blocks of per-example gradients of P={p:,} parameters on "
            f"each device, about {kernels.format_bytes(smallest)} even with one example per "
            f"device, over the memory budget of {kernels.format_bytes(budget)}. Use a smaller "
            "network, float32 instead of float64, or raise SUITE_MEMORY_BUDGET (or pass "
            "memory_budget=) if the memory is there."
        )
    b: int
    if block_size is None:
        b = max(min(_largest_block(p, s, budget), max_block, n_max), 1)
    else:
        b = min(require_positive_int("block_size", block_size), n_max)
    padded = -(-b // n_devices) * n_devices
    need = _device_bytes(padded, p, s)
    if need > budget:
        raise MemoryBudgetError(
            f"block_size={b} needs about {kernels.format_bytes(need)} per device "
            f"((2*B*P + B^2) * {s} bytes with P={p:,}), over the memory budget of "
            f"{kernels.format_bytes(budget)}; pass a smaller block_size or block_size=None "
            f"to choose it from the budget (at most {_largest_block(p, s, budget)} here)"
        )
    blocks1 = -(-n1 // b)
    blocks2 = blocks1 if symmetric else -(-n2_ // b)
    n_tiles = blocks1 * (blocks1 + 1) // 2 if symmetric else blocks1 * blocks2
    gradient_bytes = (n1 if symmetric else n1 + n2_) * p * s
    result_bytes = n1 * n2_ * s
    if not to_disk and result_bytes > budget:
        raise MemoryBudgetError(
            f"the {n1}x{n2_} pNTK takes {kernels.format_bytes(result_bytes)}, over the memory "
            f"budget of {kernels.format_bytes(budget)}; pass out='kernel.npy' to write it to a "
            "memory-mapped file instead of RAM"
        )
    host = gradient_bytes + (0 if to_disk else result_bytes)
    return BlockPlan(
        block_size=b, padded_block=padded, n_devices=n_devices, blocks1=blocks1, blocks2=blocks2,
        n_tiles=n_tiles, device_bytes=need, gradient_bytes=gradient_bytes,
        result_bytes=result_bytes, spill_gradients=host > budget,
    )


def gram_cost(n1: int, n2: int | None, n_params: int, itemsize: int = 4) -> dict[str, float]:
    """FLOPs and bytes of the Gram stage, for a roofline ("how near the limit") estimate.

    ``flops``: 2 N1 N2 P multiply-adds, halved (to N(N+1) P) when symmetric;
    ``gradient_bytes``: the stored gradients; ``result_bytes``: the kernel;
    ``intensity``: flops per byte of gradients read once (the best-case arithmetic intensity).
    """
    symmetric = n2 is None
    n2_: int = n1 if n2 is None else n2
    flops = float(n1 * (n1 + 1) * n_params) if symmetric else 2.0 * n1 * n2_ * n_params
    gradient_bytes = float((n1 if symmetric else n1 + n2_) * n_params * itemsize)
    result_bytes = float(n1 * n2_ * itemsize)
    return {
        "flops": flops,
        "gradient_bytes": gradient_bytes,
        "result_bytes": result_bytes,
        "intensity": flops / (gradient_bytes + result_bytes),
    }


# --------------------------------------------------------------------------- jitted pieces


@lru_cache(maxsize=32)
def _flat_gradients(apply_fn: ApplyFn, n_outputs: int) -> Callable[[Any, jax.Array], jax.Array]:
    """(params, x_block) -> (B, P): per-example gradients of g = (1/sqrt O) sum_i f_i, every
    parameter leaf flattened and concatenated (the order of ``tree_leaves``). Not jitted."""
    scale = 1.0 / math.sqrt(n_outputs)

    def g(params: Any, x: jax.Array) -> jax.Array:
        out = apply_fn(params, x[None])[0]
        return out.sum() * jnp.asarray(scale, out.dtype)

    per_example = jax.vmap(jax.grad(g), in_axes=(None, 0))

    def flat(params: Any, x: jax.Array) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(per_example(params, x))
        return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)

    return flat


def _gram_local(a: jax.Array, b: jax.Array) -> jax.Array:
    # HIGHEST: on GPUs the default float32 matmul may use TF32 (about 1e-3 relative error).
    return jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)


def _shard_map() -> Callable[..., Any]:
    """``jax.shard_map`` (newer jax) or ``jax.experimental.shard_map.shard_map`` (older).

    Newer jax's ``check_vma`` types the replicated parameters as invariant over the mesh, so
    ``jax.grad`` inside the per-device body sums their gradient over the devices (the transpose
    of the implicit invariant-to-varying cast is a psum): on jax 0.10.2 with two devices each
    per-example gradient came out summed with the other device's row (pNTK relative error 3.0).
    Each device's gradients must stay its own, so the check is off; the body has no collectives.
    """
    fn = getattr(jax, "shard_map", None)
    if fn is None:
        from jax.experimental.shard_map import shard_map

        return shard_map
    return functools.partial(fn, check_vma=False)


@lru_cache(maxsize=32)
def _gradient_fn(apply_fn: ApplyFn, n_outputs: int, mesh: Mesh | None = None) -> Callable[..., jax.Array]:
    """Jitted gradient pass; with a mesh, each device differentiates its own rows.

    ``shard_map`` instead of letting jit's SPMD partitioner split the batch: on jax 0.5.3 the
    partitioned per-example weight gradients of a convolution (a grouped convolution after
    vmap) came out wrong on the second device (up to 25% of the gradient), and later XLA
    all-gathers such convolutions (openxla/xla#47945). Per-device code avoids both. Cached
    per apply_fn so that repeated calls reuse jax's compilation cache.
    """
    flat = _flat_gradients(apply_fn, n_outputs)
    if mesh is None:
        return jax.jit(flat)
    spec = PartitionSpec("batch")
    return jax.jit(_shard_map()(flat, mesh=mesh, in_specs=(PartitionSpec(), spec), out_specs=spec))


def gradient_pass(apply_fn: ApplyFn, n_outputs: int) -> Callable[[Any, jax.Array], jax.Array]:
    """The jitted ``(params, x) -> (N, P)`` per-example gradient pass of the pNTK's scalar
    function g = (1/sqrt O) sum_i f_i, as the blocked pNTK runs it on each row block (one
    device). Its Gram G G^T is the pNTK; the benchmarks time it as the pNTK's lower bound."""
    return _gradient_fn(apply_fn, n_outputs)


def gram() -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The jitted Gram tile ``(A, B) -> A B^T`` of the blocked pNTK (one device)."""
    return _gram_fn()


@lru_cache(maxsize=8)
def _gram_fn(mesh: Mesh | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Jitted tile G_i G_j^T; with a mesh, each device multiplies its rows of G_i by all of G_j."""
    if mesh is None:
        return jax.jit(_gram_local)
    spec = PartitionSpec("batch")
    return jax.jit(_shard_map()(_gram_local, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec))


# --------------------------------------------------------------------------- placement


class _Placement:
    """Where blocks live: one device, or sharded along "batch" over a 1-D mesh."""

    def __init__(self, devices: Sequence[Any]):
        self.n = len(devices)
        self.platform = devices[0].platform
        self.mesh: Mesh | None = None
        self.rows: SingleDeviceSharding | NamedSharding
        self.replicated: SingleDeviceSharding | NamedSharding
        if self.n == 1:
            self.rows = self.replicated = SingleDeviceSharding(devices[0])
        else:
            self.mesh = Mesh(np.asarray(devices), ("batch",))
            self.rows = NamedSharding(self.mesh, PartitionSpec("batch"))
            self.replicated = NamedSharding(self.mesh, PartitionSpec())

    def shard_rows(self, a: np.ndarray) -> jax.Array:
        return jax.device_put(a, self.rows)

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)


def _resolve_devices(devices: Sequence[Any] | None) -> list[Any]:
    if devices is None:
        return list(jax.local_devices())
    devices = list(devices)
    if not devices:
        raise SuiteError("devices is empty; pass None (all devices) or a list of jax devices")
    remote = [d for d in devices if d.process_index != jax.process_index()]
    if remote:
        raise SuiteError(
            f"{len(remote)} of the devices belong to other processes ({remote[0]}, process "
            f"{remote[0].process_index}); the blocked kernels gather results on this host, so each "
            "process passes its own devices (the default, jax.local_devices()) and computes its own "
            "rows of the kernel, e.g. pntk_blocked(apply_fn, params, x[rows], x) with rows = "
            "np.array_split(np.arange(len(x)), jax.process_count())[jax.process_index()]"
        )
    if len({d.platform for d in devices}) > 1:
        raise SuiteError(f"devices mix platforms {sorted({d.platform for d in devices})}; use one kind")
    return devices


def _cast(x: Any, dtype: np.dtype) -> Any:
    """``x`` in ``dtype`` if it is floating; anything else is left for validation to reject."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """Pad a block to ``rows`` by repeating its last example (real data keeps every op finite);
    padded rows are dropped after the computation."""
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.repeat(x[-1:], rows - x.shape[0], axis=0)])


# --------------------------------------------------------------------------- main entry


def pntk_blocked(
    apply_fn: ApplyFn,
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    block_size: int | None = None,
    memory_budget: int | str | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    devices: Sequence[Any] | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """The N1 x N2 pNTK (paper eq. 2) in memory-bounded blocks; equals :func:`suite.kernels.pntk`.

    Args:
        apply_fn: ``apply_fn(params, x) -> (N, O)`` logits.
        params: the network's parameter pytree.
        x1: inputs (N1, ...).
        x2: inputs (N2, ...), or ``None`` for the symmetric kernel of x1 (about half the
            tiles, one set of gradients).
        block_size: examples per row block; ``None`` chooses the largest that fits
            ``memory_budget`` (at most :data:`MAX_AUTO_BLOCK` on CPU,
            :data:`MAX_AUTO_BLOCK_ACCELERATOR` on accelerators).
        memory_budget: bytes (or a string like ``"4GB"``) allowed on each device and on the
            host; default :func:`suite.kernels.memory_budget` (``SUITE_MEMORY_BUDGET``, else
            half the free memory). Gradients that do not fit on the host go to a temporary
            memmap beside ``out`` (or in the system temp folder), deleted at the end.
        out: path of a ``.npy`` file for the result (kept on disk, returned as a read-only
            memmap), so the kernel may exceed RAM. Written under a temporary name and renamed
            when complete: a partial kernel never appears at ``out``.
        progress: show a tqdm bar over gradient blocks and tiles.
        devices: jax devices to shard blocks over (default: this process's devices of the
            default backend, ``jax.local_devices()``, which are all devices unless
            ``jax.distributed`` is initialized); results equal those of one device. Across
            hosts, each process computes its own rows of the kernel (README, "Several hosts").
        dtype: compute dtype (e.g. ``np.float32``); default the network's output dtype.
            ``float64`` needs jax's x64 mode.

    Returns:
        ``np.ndarray`` (N1, N2), or a read-only ``np.memmap`` of ``out``.

    Raises:
        SuiteError: invalid inputs (via :func:`suite.kernels.validate`), devices or dtype.
        MemoryBudgetError: not even one example per device fits the budget, or an in-memory
            result would exceed it (pass ``out=``).
    """
    if dtype is not None:
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise SuiteError(f"dtype must be a floating dtype, got {dtype}")
        if jnp.zeros((), dtype).dtype != dtype:
            raise SuiteError(f"dtype {dtype} needs jax's x64 mode: jax.config.update('jax_enable_x64', True)")
        params = jax.tree_util.tree_map(lambda a: _cast(a, dtype), params)
        x1 = _cast(x1, dtype)
        x2 = None if x2 is None else _cast(x2, dtype)
    x1j, x2j, problem = kernels.validate(apply_fn, params, x1, x2)
    x1h = np.asarray(x1j)
    x2h = None if x2j is None else np.asarray(x2j)
    if isinstance(memory_budget, str):
        memory_budget = kernels.parse_bytes(memory_budget)
    budget = kernels.memory_budget() if memory_budget is None else int(memory_budget)
    devs = _resolve_devices(devices)
    place = _Placement(devs)
    out_path = None if out is None else Path(out)
    if out_path is not None and not out_path.parent.is_dir():
        raise SuiteError(f"cannot write {out_path}: folder {out_path.parent} does not exist")

    result_dtype = problem.dtype
    params_dev = place.replicate(params)
    plan, compiled = _fit_plan(
        apply_fn, params_dev, x1h, problem, x2h is None, budget, place, block_size, out_path is not None
    )
    grad_fn = compiled if compiled is not None else _gradient_fn(apply_fn, problem.n_outputs, place.mesh)

    spill_dir = None
    if plan.spill_gradients:
        spill_dir = Path(tempfile.mkdtemp(prefix="pntk-grads-", dir=None if out_path is None else out_path.parent))
    bar = tqdm(total=plan.blocks1 + (0 if x2h is None else plan.blocks2) + plan.n_tiles,
               desc="pNTK gradients", unit="step", disable=not progress)
    try:
        if plan.n_tiles == 1 and place.mesh is None and out_path is None and not plan.spill_gradients:
            return _single_tile(grad_fn, params_dev, x1h, x2h, plan, result_dtype, bar)
        g1 = _gradients(grad_fn, params_dev, x1h, plan, place, result_dtype, problem.n_params, spill_dir, "g1", bar)
        g2 = g1 if x2h is None else _gradients(
            grad_fn, params_dev, x2h, plan, place, result_dtype, problem.n_params, spill_dir, "g2", bar
        )
        bar.set_description("pNTK tiles")
        return _filled((problem.n1, problem.n2), result_dtype, out_path,
                       lambda result: _tiles(g1, g2, result, plan, place, symmetric=x2h is None, bar=bar))
    finally:
        bar.close()
        if spill_dir is not None:
            for f in spill_dir.iterdir():
                f.unlink()
            spill_dir.rmdir()


def _filled(shape: tuple[int, ...], dtype: Any, out_path: Path | None, fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """``fill(result)`` into a new array in RAM or, with ``out_path``, into a ``.npy`` memmap
    written under a temporary name and renamed when complete (an interrupted run leaves
    nothing at ``out_path``); returns the result (read-only memmap on disk)."""
    if out_path is None:
        result = np.empty(shape, dtype)
        fill(result)
        return result
    tmp_out = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        on_disk = np.lib.format.open_memmap(tmp_out, mode="w+", dtype=dtype, shape=shape)
        fill(on_disk)
        on_disk.flush()
        del on_disk
        os.replace(tmp_out, out_path)
        return np.load(out_path, mmap_mode="r")
    finally:
        if tmp_out.exists():
            tmp_out.unlink()


def _fit_plan(apply_fn, params_dev, x1h, problem, symmetric, budget, place, block_size, to_disk):
    """:func:`plan_blocks`, then shrink an automatic block until the compiled gradient pass
    (XLA's memory analysis: arguments, outputs and temporaries, per device) fits the budget.

    Returns the plan and, on one device, the compiled gradient pass (reused, so the memory
    check costs no second compilation), else None.
    """
    cap = MAX_AUTO_BLOCK if place.platform == "cpu" else MAX_AUTO_BLOCK_ACCELERATOR
    kw = dict(budget=budget, n_devices=place.n, to_disk=to_disk, max_block=cap)
    n2 = None if symmetric else problem.n2
    plan = plan_blocks(problem.n1, n2, problem.n_params, problem.dtype.itemsize, block_size=block_size, **kw)
    single = _gradient_fn(apply_fn, problem.n_outputs)
    while True:
        used, compiled = _compile_and_measure(single, params_dev, x1h, plan.padded_block, place)
        if used is None or used <= budget:
            return plan, compiled
        if block_size is not None or plan.block_size <= 1:
            raise MemoryBudgetError(
                f"the gradient pass over a block of {plan.padded_block} examples needs about "
                f"{kernels.format_bytes(used)} per device (activations included), over the memory "
                f"budget of {kernels.format_bytes(budget)}; pass a smaller block_size or raise "
                "SUITE_MEMORY_BUDGET"
            )
        plan = plan_blocks(problem.n1, n2, problem.n_params, problem.dtype.itemsize,
                           block_size=max(plan.block_size // 2, 1), **kw)


def _compile_and_measure(single, params_dev, x1h, rows: int, place: _Placement):
    """(per-device bytes, compiled executable or None) of the one-device gradient pass over
    one device's share of ``rows``; (None, None) where the backend has no memory analysis."""
    if place.mesh is None:
        args = (params_dev, jax.ShapeDtypeStruct((rows, *x1h.shape[1:]), x1h.dtype, sharding=place.rows))
    else:
        shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params_dev)
        args = (shapes, jax.ShapeDtypeStruct((rows // place.n, *x1h.shape[1:]), x1h.dtype))
    try:
        compiled = single.lower(*args).compile()
        stats = compiled.memory_analysis()
    except Exception:  # memory analysis is optional in XLA backends
        return None, None
    if stats is None:
        return None, None
    total = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return int(total), (compiled if place.mesh is None else None)


def _single_tile(grad_fn, params_dev, x1h, x2h, plan, dtype, bar) -> np.ndarray:
    """The whole kernel as one tile on one device: the gradients stay on the device (no host
    copies of the (N, P) gradients, which cost as much as the Gram when P >> N)."""
    rows = plan.padded_block
    g1 = grad_fn(params_dev, _pad_rows(x1h, rows))
    g2 = g1 if x2h is None else grad_fn(params_dev, _pad_rows(x2h, rows))
    bar.update(1 if x2h is None else 2)
    tile = np.array(_gram_fn()(g1, g2), dtype)[: x1h.shape[0], : (x1h if x2h is None else x2h).shape[0]]
    if x2h is None:  # exactly symmetric, as the tiled path
        tile = np.triu(tile) + np.triu(tile, 1).T
    bar.update()
    return tile


def _gradients(grad_fn, params_dev, x, plan, place, dtype, n_params, spill_dir, name, bar) -> np.ndarray:
    """(N, P) per-example gradients, each block computed once, stored on the host."""
    n = x.shape[0]
    if spill_dir is None:
        store = np.empty((n, n_params), dtype)
    else:
        store = np.lib.format.open_memmap(spill_dir / f"{name}.npy", mode="w+", dtype=dtype, shape=(n, n_params))
    b = plan.block_size
    for k in range(-(-n // b)):
        lo, hi = k * b, min((k + 1) * b, n)
        block = grad_fn(params_dev, place.shard_rows(_pad_rows(x[lo:hi], plan.padded_block)))
        store[lo:hi] = np.asarray(block)[: hi - lo]
        bar.update()
    return store


def _tiles(g1, g2, result, plan, place, *, symmetric: bool, bar) -> None:
    """Fill result with G1_i G2_j^T tile by tile; when symmetric only j >= i, mirrored, so
    the kernel is exactly symmetric."""
    b, rows = plan.block_size, plan.padded_block
    n1, n2 = g1.shape[0], g2.shape[0]
    gram = _gram_fn(place.mesh)
    for i in range(-(-n1 // b)):
        lo1, hi1 = i * b, min((i + 1) * b, n1)
        gi = place.shard_rows(_pad_rows(np.asarray(g1[lo1:hi1]), rows))
        for j in range(i if symmetric else 0, -(-n2 // b)):
            lo2, hi2 = j * b, min((j + 1) * b, n2)
            gj = place.replicate(_pad_rows(np.asarray(g2[lo2:hi2]), rows))
            tile = np.asarray(gram(gi, gj))[: hi1 - lo1, : hi2 - lo2]
            if symmetric and j == i:  # rounding may differ across the diagonal: mirror one half
                tile = np.triu(tile) + np.triu(tile, 1).T
            result[lo1:hi1, lo2:hi2] = tile
            if symmetric and j != i:
                result[lo2:hi2, lo1:hi1] = tile.T
            bar.update()


# --------------------------------------------------------------------------- blocked eNTK


@dataclass(frozen=True)
class EntkTiles:
    """How one blocked eNTK is cut up (see :func:`entk_blocked`).

    Attributes:
        block1, block2: examples per tile of x1 and of x2 (``block2 == block1`` when
            symmetric); every tile is padded to this many rows, so each tile shape compiles once.
        tiles1, tiles2: tiles along x1 and x2.
        n_tiles: kernel calls made (j >= i only when symmetric).
        compiled_bytes: the largest tile call's XLA estimate (result and temporaries), or
            None where the backend does not report it.
    """

    block1: int
    block2: int
    tiles1: int
    tiles2: int
    n_tiles: int
    compiled_bytes: int | None


def _balanced(n: int, b: int) -> int:
    """The smallest tile size that needs as few tiles of at most ``b`` as ``b`` does: with
    N = 128 and b = 53, three tiles of 43 instead of 53, 53 and a padded 22."""
    tiles = -(-n // min(b, n))
    return -(-n // tiles)


def _jacobian_block(n_params: int, n_outputs: int, itemsize: int, budget: int) -> int:
    """Largest b whose off-diagonal tile holds both tiles' Jacobians and its result,
    (2 b O P + b^2 O^2) * itemsize <= budget: b = (sqrt(P^2 + budget/s) - P) / O. A starting
    guess only (structured derivatives may need more or less); the compiled estimate decides."""
    return (math.isqrt(n_params * n_params + budget // itemsize) - n_params) // n_outputs


def _entk_tile_calls(apply_fn, params, x1h, x2h, b1, b2, implementation):
    """Prepared kernels for the tile shapes a plan with tiles (b1, b2) uses: the diagonal tile
    entk(x_i) (symmetric case) and the off-diagonal tile entk(x_i, x_j). Compiles each shape
    once (cached by :func:`suite.kernels.prepare`); raises MemoryBudgetError when refused."""
    calls = []
    if x2h is None:
        calls.append(kernels.prepare("entk", apply_fn, params, x1h[:b1], None, implementation=implementation))
        if b1 < x1h.shape[0]:
            calls.append(kernels.prepare("entk", apply_fn, params, x1h[:b1], x1h[:b1], implementation=implementation))
    else:
        calls.append(kernels.prepare("entk", apply_fn, params, x1h[:b1], x2h[:b2], implementation=implementation))
    return calls


def _entk_fit(apply_fn, params, x1h, x2h, problem, budget, block_size, implementation) -> EntkTiles:
    """Choose the tiles: a given ``block_size``, or the largest tile whose compiled tile calls
    fit ``budget`` (start from the Jacobian estimate, grow by doubling while XLA's estimate
    leaves room, halve on refusal)."""
    n1, n2 = problem.n1, problem.n2
    n_max = max(n1, n2)
    symmetric = x2h is None

    def attempt(b: int) -> tuple[int, int, int | None]:
        b1 = _balanced(n1, b)
        b2 = b1 if symmetric else _balanced(n2, b)
        calls = _entk_tile_calls(apply_fn, params, x1h, x2h, b1, b2, implementation)
        sizes = [c.compiled_bytes for c in calls if c.compiled_bytes is not None]
        used = max(sizes) if sizes else None
        if used is not None and used > budget:
            raise MemoryBudgetError(
                f"an eNTK tile of {b1}x{b2} examples needs {kernels.format_bytes(used)} by XLA's "
                f"estimate, over the memory budget of {kernels.format_bytes(budget)}"
            )
        return b1, b2, used

    def plan(b1: int, b2: int, used: int | None) -> EntkTiles:
        t1 = -(-n1 // b1)
        t2 = t1 if symmetric else -(-n2 // b2)
        n_tiles = t1 * (t1 + 1) // 2 if symmetric else t1 * t2
        return EntkTiles(b1, b2, t1, t2, n_tiles, used)

    if block_size is not None:
        b = min(require_positive_int("block_size", block_size), n_max)
        try:
            return plan(*attempt(b))
        except MemoryBudgetError as e:
            raise MemoryBudgetError(
                f"entk_blocked with block_size={b}: {e}. Pass a smaller block_size, or "
                "block_size=None to choose it from the budget."
            ) from None

    b = max(min(_jacobian_block(problem.n_params, problem.n_outputs, problem.dtype.itemsize, budget), n_max), 1)
    last_error: MemoryBudgetError | None = None
    while True:
        try:
            fitted = attempt(b)
            break
        except MemoryBudgetError as e:
            last_error = e
            if b == 1:
                raise MemoryBudgetError(
                    f"entk_blocked: even a tile of one example does not fit ({last_error}). The "
                    "Jacobian of one input has O x P = "
                    f"{problem.n_outputs} x {problem.n_params:,} entries; use "
                    "implementation='structured_derivatives' (usually the least memory), float32 "
                    "instead of float64, a smaller network, the pNTK (suite.blocked.pntk_blocked), "
                    "or raise SUITE_MEMORY_BUDGET (e.g. '16GB') if the memory is there."
                ) from None
            b = max(b // 2, 1)
    # Grow while XLA's estimate says a doubled tile should fit (the estimate grows about
    # linearly with b: the Jacobians dominate); stop at the first refusal.
    while fitted[2] is not None and max(fitted[0], fitted[1]) < n_max and last_error is None:
        b_next = min(2 * max(fitted[0], fitted[1]), n_max)
        if fitted[2] * b_next / max(fitted[0], fitted[1]) > budget:
            break
        try:
            fitted = attempt(b_next)
        except MemoryBudgetError:
            break
    return plan(*fitted)


def _symmetrize_block(tile: np.ndarray) -> np.ndarray:
    """A diagonal tile (B, B, O, O) made exactly symmetric as the (B O) x (B O) matrix
    Theta[a o, c q] = tile[a, c, o, q]: its upper triangle, mirrored (rounding may differ
    across the diagonal)."""
    b, _, o, _ = tile.shape
    m = tile.transpose(0, 2, 1, 3).reshape(b * o, b * o)
    m = np.triu(m) + np.triu(m, 1).T
    return m.reshape(b, o, b, o).transpose(0, 2, 1, 3)


def entk_blocked(
    apply_fn: ApplyFn,
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    block_size: int | None = None,
    implementation: str | None = None,
    memory_budget: int | str | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The exact eNTK Theta(x1, x2) = J(x1) J(x2)^T (THEORY.md §1, paper eq. 1) in tiles
    whose memory fits the budget; equals :func:`suite.kernels.entk`, shape (N1, N2, O, O).

    Tile pair (i, j) is ``suite.kernels.prepare("entk", apply_fn, params, x1_i, x2_j)``: the
    public kernel on tile i of x1 and tile j of x2, written into the result at rows i and
    columns j. Every tile has the same shape (the last one padded by repeating its last
    example, the padding sliced off), so the tile kernel compiles once (twice when
    symmetric: the diagonal tile entk(x_i) and the off-diagonal entk(x_i, x_j)). With
    ``x2=None`` only tiles j >= i are computed; tile (j, i) is the transpose of (i, j)
    (Theta(x_b, x_a) = Theta(x_a, x_b)^T), and diagonal tiles are mirrored from their upper
    triangle, so the (N O) x (N O) matrix is exactly symmetric.

    Cost: each tile call recomputes both tiles' Jacobians (or the structured-derivative
    equivalent), so with T tiles per side the derivative work is about T times that of one
    unblocked call (N T forward/backward passes instead of N, for x2=None and N1 = N2 = N),
    while the contraction work, O(N^2 O^2 P), is the same. In exchange, memory never exceeds
    one tile call: two tiles' Jacobians (about 2 B O P numbers for tiles of B examples) and a
    (B, B, O, O) result, plus the result on the host (or on disk with ``out=``).

    Args:
        apply_fn: ``apply_fn(params, x) -> (N, O)`` logits.
        params: the network's parameter pytree.
        x1: inputs (N1, ...).
        x2: inputs (N2, ...), or ``None`` for the symmetric kernel of x1 (about half the
            tiles).
        block_size: examples per tile; ``None`` chooses the largest tile whose compiled call
            fits the budget (by XLA's memory analysis, ``Prepared.compiled_bytes``), then
            evens out the tiles (N = 128 at most 53 per tile: three tiles of 43).
        implementation: a key of :data:`suite.kernels.IMPLEMENTATIONS` or ``auto``; default
            :func:`suite.kernels.reproducible_implementation` (structured derivatives).
        memory_budget: bytes (or e.g. ``"4GB"``) one tile call may allocate; default
            :func:`suite.kernels.memory_budget`. Each tile call is also held to that default
            by :func:`suite.kernels.prepare`, so a larger value has no effect.
        out: path of a ``.npy`` file for the result (returned as a read-only memmap), so the
            (N1 O) x (N2 O) kernel may exceed RAM. Written under a temporary name and renamed
            when complete: a partial kernel never appears at ``out``.
        progress: show a tqdm bar over the tiles.

    Returns:
        ``np.ndarray`` (N1, N2, O, O) in the network's dtype, or a read-only memmap of ``out``.

    Raises:
        SuiteError: invalid inputs (via :func:`suite.kernels.validate`), a bad ``block_size``
            or implementation, or a missing output folder.
        MemoryBudgetError: a tile of one example does not fit, a given ``block_size`` does
            not fit, or an in-memory result would exceed the budget (pass ``out=``).
    """
    if block_size is not None:
        require_positive_int("block_size", block_size)
    impl = kernels.reproducible_implementation() if implementation is None else implementation
    kernels.resolve_implementation(impl, "entk")  # an unknown name fails before any work
    x1j, x2j, problem = kernels.validate(apply_fn, params, x1, x2)
    x1h = np.asarray(x1j)
    x2h = None if x2j is None else np.asarray(x2j)
    if isinstance(memory_budget, str):
        memory_budget = kernels.parse_bytes(memory_budget)
    budget = kernels.memory_budget() if memory_budget is None else int(memory_budget)
    out_path = None if out is None else Path(out)
    if out_path is not None and not out_path.parent.is_dir():
        raise SuiteError(f"cannot write {out_path}: folder {out_path.parent} does not exist")
    n1, n2, o = problem.n1, problem.n2, problem.n_outputs
    shape = (n1, n2, o, o)
    result_bytes = n1 * n2 * o * o * problem.dtype.itemsize
    if out_path is None and result_bytes > budget:
        raise MemoryBudgetError(
            f"the ({n1 * o})x({n2 * o}) eNTK takes {kernels.format_bytes(result_bytes)}, over the "
            f"memory budget of {kernels.format_bytes(budget)}; pass out='kernel.npy' to write it "
            "to a memory-mapped file instead of RAM, or use the pNTK (O^2 smaller)"
        )

    tiles = _entk_fit(apply_fn, params, x1h, x2h, problem, budget, block_size, impl)
    bar = tqdm(total=tiles.n_tiles, desc="eNTK tiles", unit="tile", disable=not progress)
    try:
        return _filled(shape, problem.dtype, out_path,
                       lambda result: _entk_tiles(apply_fn, params, x1h, x2h, result, tiles, impl, bar))
    finally:
        bar.close()


def _entk_tiles(apply_fn, params, x1h, x2h, result, tiles: EntkTiles, implementation: str, bar) -> None:
    """Fill ``result`` (N1, N2, O, O) tile by tile; when symmetric only j >= i, mirrored."""
    symmetric = x2h is None
    xs2 = x1h if symmetric else x2h
    b1, b2 = tiles.block1, tiles.block2
    n1, n2 = x1h.shape[0], xs2.shape[0]
    for i in range(tiles.tiles1):
        lo1, hi1 = i * b1, min((i + 1) * b1, n1)
        xi = _pad_rows(x1h[lo1:hi1], b1)
        for j in range(i if symmetric else 0, tiles.tiles2):
            lo2, hi2 = j * b2, min((j + 1) * b2, n2)
            xj = None if symmetric and j == i else _pad_rows(xs2[lo2:hi2], b2)
            k = kernels.prepare("entk", apply_fn, params, xi, xj, implementation=implementation).run()
            tile = np.asarray(k)[: hi1 - lo1, : hi2 - lo2]
            if symmetric and j == i:
                tile = _symmetrize_block(tile)
            result[lo1:hi1, lo2:hi2] = tile
            if symmetric and j != i:
                result[lo2:hi2, lo1:hi1] = tile.transpose(1, 0, 3, 2)
            bar.update()
