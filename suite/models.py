"""Registry of architectures, each built from neural-tangents ``stax`` layers.

One layer list gives both the finite network (``init``, ``apply``) and its
infinite-width kernel (``kernel(x1, x2, 'ntk' | 'nngp')``), so finite-width
eNTKs and the infinite-width NTK are computed for exactly the same network.

All architectures take NHWC images; the MLP flattens them first, so it also
accepts already-flat ``(N, D)`` inputs. Weights are i.i.d. N(0, 1) under the
NTK parameterization (the setting of the paper's theorem: THEORY.md, §2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import jax
import jax.numpy as jnp

from suite import _nt
from suite.errors import MemoryBudgetError, SuiteError, require_positive_int, unknown_name

ACTIVATIONS = ("relu", "erf", "gelu")
PARAMETERIZATIONS = ("ntk", "standard")
CNN_READOUTS = ("gap", "flatten")
#: ResNet-like networks by name (build kwargs of arch ``resnet``): blocks per stage, channels
#: doubling per stage; ResNet-50 and deeper use bottleneck blocks (1x1, 3x3, 1x1 convolutions
#: with 4x wider outputs), as in He et al. (2016).
RESNETS: dict[str, dict[str, Any]] = {
    "resnet18": {"stages": (2, 2, 2, 2)},
    "resnet34": {"stages": (3, 4, 6, 3)},
    "resnet50": {"stages": (3, 4, 6, 3), "bottleneck": True},
    "resnet101": {"stages": (3, 4, 23, 3), "bottleneck": True},
    "resnet152": {"stages": (3, 8, 36, 3), "bottleneck": True},
    "resnet200": {"stages": (3, 24, 36, 3), "bottleneck": True},
}
#: Stage layouts of the basic-block ResNets (ResNet-18/34).
RESNET_STAGES = {name: kw["stages"] for name, kw in RESNETS.items() if not kw.get("bottleneck")}
#: Output channels of a bottleneck block relative to its inner width.
BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one network. ``depth`` counts hidden layers (mlp),
    conv layers (cnn) or residual blocks (resnet, unless ``stages`` is set)."""

    arch: str
    width: int = 256
    depth: int = 2
    n_outputs: int = 10
    activation: str = "relu"
    parameterization: str = "ntk"
    W_std: float = 1.5
    b_std: float | None = 0.05
    readout: str = "gap"
    stages: tuple[int, ...] | None = None
    bottleneck: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise unknown_name("architecture", self.arch, ARCHS)
        require_positive_int("width", self.width)
        require_positive_int("depth", self.depth)
        require_positive_int("n_outputs", self.n_outputs)
        if self.activation not in ACTIVATIONS:
            raise unknown_name("activation", self.activation, ACTIVATIONS)
        if self.parameterization not in PARAMETERIZATIONS:
            raise unknown_name("parameterization", self.parameterization, PARAMETERIZATIONS)
        if self.readout not in CNN_READOUTS:
            raise unknown_name("readout", self.readout, CNN_READOUTS)
        if not (isinstance(self.W_std, int | float) and math.isfinite(self.W_std) and self.W_std > 0):
            raise SuiteError(f"W_std must be a positive finite number, got {self.W_std!r}")
        if self.b_std is not None and not (
            isinstance(self.b_std, int | float) and math.isfinite(self.b_std) and self.b_std >= 0
        ):
            raise SuiteError(f"b_std must be None or a finite number >= 0, got {self.b_std!r}")
        if self.stages is not None:
            if self.arch != "resnet":
                raise SuiteError(f"stages only apply to arch 'resnet', not {self.arch!r}")
            for s in self.stages:
                require_positive_int("blocks per stage", s)
        if self.bottleneck and self.stages is None:
            raise SuiteError("bottleneck blocks need stages, e.g. models.build('resnet', **models.RESNETS['resnet50'])")

    @property
    def id(self) -> str:
        """Readable stable id, e.g. ``mlp-d02-w0512-o10``."""
        return f"{self.arch}-d{self.depth:02d}-w{self.width:04d}-o{self.n_outputs}"


@dataclass(frozen=True)
class ArchSpec:
    """One registry entry: how to turn a config into a stax layer list."""

    name: str
    description: str
    layers: Callable[[ModelConfig], list[Any]]


def _activation(cfg: ModelConfig) -> Any:
    return {"relu": _nt.stax.Relu, "erf": _nt.stax.Erf, "gelu": _nt.stax.Gelu}[cfg.activation]()


def _keep_dtype(layer: Any) -> Any:
    """Make a stax layer return its input's dtype.

    stax scales by a numpy float64 constant, so with ``jax_enable_x64`` on, float32 inputs
    and parameters come out float64 and the next Conv fails on mixed dtypes.
    """
    init_fn, apply_fn, kernel_fn = layer

    def apply(params: Any, inputs: jax.Array, **kwargs: Any) -> jax.Array:
        return apply_fn(params, inputs, **kwargs).astype(inputs.dtype)

    return init_fn, apply, kernel_fn


def _dense(cfg: ModelConfig, out: int) -> Any:
    return _keep_dtype(
        _nt.stax.Dense(out, W_std=cfg.W_std, b_std=cfg.b_std, parameterization=cfg.parameterization)
    )


def _conv(cfg: ModelConfig, out: int, shape: tuple[int, int] = (3, 3), strides=(1, 1)) -> Any:
    return _keep_dtype(
        _nt.stax.Conv(
            out,
            shape,
            strides=strides,
            padding="SAME",
            W_std=cfg.W_std,
            b_std=cfg.b_std,
            parameterization=cfg.parameterization,
        )
    )


def _mlp_layers(cfg: ModelConfig) -> list[Any]:
    layers: list[Any] = [_nt.stax.Flatten()]
    for _ in range(cfg.depth):
        layers += [_dense(cfg, cfg.width), _activation(cfg)]
    return [*layers, _dense(cfg, cfg.n_outputs)]


def _pool(cfg: ModelConfig) -> Any:
    return _nt.stax.GlobalAvgPool() if cfg.readout == "gap" else _nt.stax.Flatten()


def _cnn_layers(cfg: ModelConfig) -> list[Any]:
    layers: list[Any] = []
    for _ in range(cfg.depth):
        layers += [_conv(cfg, cfg.width), _activation(cfg)]
    return [*layers, _pool(cfg), _dense(cfg, cfg.n_outputs)]


def _residual_block(cfg: ModelConfig, channels: int, downsample: bool) -> Any:
    stax = _nt.stax
    strides = (2, 2) if downsample else (1, 1)
    main = stax.serial(
        _activation(cfg),
        _conv(cfg, channels, strides=strides),
        _activation(cfg),
        _conv(cfg, channels),
    )
    shortcut = _conv(cfg, channels, (1, 1), strides) if downsample else stax.Identity()
    return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum())


def _bottleneck_block(cfg: ModelConfig, channels: int, downsample: bool, project: bool) -> Any:
    """1x1 conv to ``channels``, 3x3 conv (strided when downsampling), 1x1 conv to 4x
    ``channels``; the shortcut is a strided 1x1 conv when the shape changes (``project``)."""
    stax = _nt.stax
    strides = (2, 2) if downsample else (1, 1)
    main = stax.serial(
        _activation(cfg),
        _conv(cfg, channels, (1, 1)),
        _activation(cfg),
        _conv(cfg, channels, strides=strides),
        _activation(cfg),
        _conv(cfg, BOTTLENECK_EXPANSION * channels, (1, 1)),
    )
    shortcut = _conv(cfg, BOTTLENECK_EXPANSION * channels, (1, 1), strides) if project else stax.Identity()
    return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum())


def _resnet_layers(cfg: ModelConfig) -> list[Any]:
    layers: list[Any] = [_conv(cfg, cfg.width)]
    if cfg.stages is None:
        layers += [_residual_block(cfg, cfg.width, False) for _ in range(cfg.depth)]
    else:
        for stage, blocks in enumerate(cfg.stages):
            channels = cfg.width * 2**stage
            for b in range(blocks):
                downsample = stage > 0 and b == 0
                if cfg.bottleneck:
                    layers.append(_bottleneck_block(cfg, channels, downsample, project=b == 0))
                else:
                    layers.append(_residual_block(cfg, channels, downsample))
    return [*layers, _activation(cfg), _pool(cfg), _dense(cfg, cfg.n_outputs)]


#: Stages of a WideResNet (Zagoruyko & Komodakis, 2016): three stages of ``depth`` basic blocks,
#: so WRN-(6·depth+4); channels width, 2·width, 4·width (the paper's 16k, 32k, 64k for width 16k).
WRN_STAGES = 3


def wrn_name(depth: int, width: int) -> str:
    """The paper's name of a ``wrn`` config, e.g. depth 4, width 160 -> ``WRN-28-10``."""
    k = width / 16
    return f"WRN-{6 * depth + 4}-{int(k) if k.is_integer() else round(k, 2)}"


def _wrn_layers(cfg: ModelConfig) -> list[Any]:
    # Pre-activation basic blocks with a width-channel stem, as _resnet_layers with stages;
    # no batch norm (stax has no finite-width batch norm with an infinite-width kernel).
    return _resnet_layers(replace(cfg, arch="resnet", stages=(cfg.depth,) * WRN_STAGES))


ARCHS: dict[str, ArchSpec] = {
    "mlp": ArchSpec("mlp", "fully connected: depth x (Dense(width), act), Dense(O)", _mlp_layers),
    "cnn": ArchSpec(
        "cnn", "depth x (Conv3x3(width), act), global-avg-pool or flatten, Dense(O)", _cnn_layers
    ),
    "resnet": ArchSpec(
        "resnet",
        "Conv stem, depth residual blocks (or the stages of RESNETS: ResNet-18 to -152), act, pool, Dense(O)",
        _resnet_layers,
    ),
    "wrn": ArchSpec(
        "wrn",
        "WideResNet WRN-(6·depth+4)-(width/16): Conv stem, 3 stages of depth pre-activation blocks "
        "(width, 2·width, 4·width channels), act, pool, Dense(O)",
        _wrn_layers,
    ),
}


@dataclass(frozen=True)
class Model:
    """A finite network and its infinite-width kernel, from one stax layer list."""

    config: ModelConfig
    init_fn: Callable[..., Any] = field(repr=False)
    apply_fn: Callable[..., Any] = field(repr=False)
    kernel_fn: Callable[..., Any] = field(repr=False)

    def init(self, key: jax.Array, input_shape: tuple[int, ...]) -> Any:
        """Sample parameters in jax's default float dtype (float64 when x64 is on).
        ``input_shape`` is one example's shape (e.g. ``(8, 8, 1)``); a leading ``-1`` batch
        axis is accepted too.

        Sampling always uses float32 draws, so a seed gives the same network whether or not
        jax's x64 mode is on (with x64 on, ``jax.random.normal`` would draw another stream).

        Refused before anything is allocated when the network does not fit the memory budget
        (:meth:`check_memory`: :class:`suite.errors.MemoryBudgetError` naming the size).
        """
        self.check_memory(input_shape)
        return self._init(key, input_shape)

    def _init(self, key: jax.Array, input_shape: tuple[int, ...]) -> Any:
        with _float32_draws():
            params = self.init_fn(key, _batched(input_shape))[1]
        return cast_params(params, jax.dtypes.canonicalize_dtype(jnp.float64))

    def memory(self, input_shape: tuple[int, ...]) -> NetworkMemory:
        """Memory of this network's parameters and of one forward pass on one example of
        ``input_shape``, from shapes alone (``jax.eval_shape`` / ``jax.make_jaxpr``: nothing is
        allocated, so a network of any size is measured in well under a second)."""
        itemsize = jax.dtypes.canonicalize_dtype(jnp.float64).itemsize
        return _network_memory(self.config, tuple(int(s) for s in _batched(input_shape)[1:]), itemsize)

    def check_memory(self, input_shape: tuple[int, ...], budget: int | None = None) -> NetworkMemory:
        """Refuse (:class:`suite.errors.MemoryBudgetError`) a network whose parameters plus one
        example's activations exceed ``budget`` (default: the kernels' memory budget,
        ``SUITE_MEMORY_BUDGET`` or half the free memory); returns the estimate."""
        from suite.kernels.memory import format_bytes, memory_budget

        need = self.memory(input_shape)
        budget = memory_budget() if budget is None else budget
        if need.total_bytes > budget:
            cfg = self.config
            raise MemoryBudgetError(
                f"the {cfg.arch} network of width {cfg.width}, depth {cfg.depth} has {need.n_params:,} "
                f"parameters and needs about {format_bytes(need.total_bytes)} before any kernel "
                f"({format_bytes(need.init_bytes)} of parameters as init samples them, "
                f"{format_bytes(need.activation_bytes)} of activations for one example of shape "
                f"{need.input_shape}), over the memory budget of {format_bytes(budget)}; refused "
                "before allocating anything. Use a smaller width or depth, or raise the budget "
                "with SUITE_MEMORY_BUDGET (e.g. '64GB') if the memory is there."
            )
        return need

    def apply(self, params: Any, x: jax.Array) -> jax.Array:
        """Logits ``(N, O)`` for inputs ``x`` (N examples)."""
        return self.apply_fn(params, x)

    def kernel(self, x1: jax.Array, x2: jax.Array | None = None, get: str = "ntk") -> jax.Array:
        """Infinite-width kernel ``(N1, N2)`` per logit (Theta_inf; the full one is Theta_inf x I_O)."""
        if get not in ("ntk", "nngp"):
            raise unknown_name("kernel type", get, ("ntk", "nngp"))
        return self._jitted_kernel(x1, x2, get)

    @cached_property
    def _jitted_kernel(self) -> Callable[..., jax.Array]:
        return jax.jit(self.kernel_fn, static_argnames="get")

    def param_count(self, input_shape: tuple[int, ...]) -> int:
        """Number of trainable parameters, without allocating them."""
        shapes = jax.eval_shape(lambda k: self._init(k, input_shape), jax.random.PRNGKey(0))
        return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))


@dataclass(frozen=True)
class NetworkMemory:
    """What a network needs before any kernel (:meth:`Model.memory`).

    Attributes:
        n_params: trainable parameters.
        init_bytes: the parameters as ``init`` holds them: float32 draws, plus their float64
            copy when jax's x64 mode is on.
        activation_bytes: every intermediate value of one forward pass on one example, summed
            (what a gradient pass keeps for its backward pass; XLA may reuse some buffers).
        input_shape: one example's shape.
    """

    n_params: int
    init_bytes: int
    activation_bytes: int
    input_shape: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        return self.init_bytes + self.activation_bytes


def _jaxpr_bytes(jaxpr: Any) -> int:
    """Bytes of every value a jaxpr's equations produce, nested jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = var.aval
            total += math.prod(getattr(aval, "shape", ())) * getattr(getattr(aval, "dtype", None), "itemsize", 0)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    total += _jaxpr_bytes(sub)
    return total


@lru_cache(maxsize=256)
def _network_memory(cfg: ModelConfig, input_shape: tuple[int, ...], itemsize: int) -> NetworkMemory:
    """:meth:`Model.memory`, cached per network, example shape and float width."""
    model = from_config(cfg)
    with _float32_draws():
        drawn = jax.eval_shape(lambda k: model.init_fn(k, (-1, *input_shape))[1], jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves(drawn)
    n_params = sum(math.prod(leaf.shape) for leaf in leaves)
    dtype = jnp.float64 if itemsize == 8 else jnp.float32
    params = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, dtype), drawn)
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    activations = _jaxpr_bytes(jax.make_jaxpr(model.apply_fn)(params, x).jaxpr)
    init_bytes = n_params * 4 + (n_params * itemsize if itemsize != 4 else 0)
    return NetworkMemory(n_params, init_bytes, activations, input_shape)


def _float32_draws() -> Any:
    """Context in which jax draws float32 random numbers even when x64 is enabled."""
    try:
        from jax.experimental import disable_x64

        return disable_x64()
    except ImportError:  # removed in later jax releases
        return jax.enable_x64(False)  # type: ignore[attr-defined]


def _batched(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    return shape if shape and shape[0] == -1 else (-1, *shape)


def build(name: str, **config: Any) -> Model:
    """Build architecture ``name`` (a key of :data:`ARCHS`) with :class:`ModelConfig` fields.

    Raises:
        SuiteError: unknown architecture, unknown option or invalid value; the
            message lists what is valid.
    """
    if name not in ARCHS:
        raise unknown_name("architecture", name, ARCHS)
    valid = set(ModelConfig.__dataclass_fields__) - {"arch"}
    bad = sorted(set(config) - valid)
    if bad:
        raise SuiteError(f"unknown model option(s) {bad}; valid options: {', '.join(sorted(valid))}")
    return from_config(ModelConfig(arch=name, **config))


@lru_cache(maxsize=128)
def from_config(cfg: ModelConfig) -> Model:
    """Build the :class:`Model` described by a :class:`ModelConfig`.

    Cached: the same config returns the same Model, hence the same ``apply`` function, so the
    kernels' jit cache (keyed by apply function) is hit instead of recompiling.
    """
    _nt.require()
    init_fn, apply_fn, kernel_fn = _nt.stax.serial(*ARCHS[cfg.arch].layers(cfg))
    return Model(cfg, init_fn, apply_fn, kernel_fn)


def with_width(cfg: ModelConfig, width: int) -> ModelConfig:
    """The same network at another width (for convergence sweeps)."""
    return replace(cfg, width=width)


def cast_params(params: Any, dtype: Any) -> Any:
    """Cast every floating leaf of a parameter pytree to ``dtype``."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
