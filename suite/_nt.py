"""The one place neural-tangents is imported (compatibility shim for jax 0.5.3).

neural-tangents 0.6.5 is the last release. On jax >= 0.4.26 its
STRUCTURED_DERIVATIVES implementation reads two attributes jax removed from
``jax.interpreters.ad``; we restore them (the same change as the unreleased
upstream commit e84d2ab). ``neural_tangents/__init__`` imports ``experimental``,
which needs TensorFlow; when TensorFlow is absent an empty module stands in
(only ``nt.experimental.empirical_ntk_fn_tf`` is lost).

Every other module of the suite imports ``nt`` and ``stax`` from here, or asks
:func:`available` first, so that the suite's own pure-JAX kernels keep working
on newer jax where neural-tangents does not import.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from typing import Any

nt: Any = None
stax: Any = None
IMPORT_ERROR: str | None = None

#: The pins neural-tangents 0.6.5 (its last release) imports with, and the commands that give them.
JAX_PIN = "jax[cpu]==0.5.3"
NT_PIN = "neural-tangents==0.6.5"
INSTALL_NT = f"pip install --no-deps {NT_PIN}"
INSTALL_JAX = f"pip install '{JAX_PIN}'"

#: What works without neural-tangents and what does not (the ImportError and ``doctor`` say it).
WORKS_WITHOUT = (
    "the suite's own kernels: suite.entk, pntk, trace_ntk, logit_ntk, projected_ntk and "
    "suite.kernels.prepare with implementation='jax' or 'auto' (auto is then the jax path), and "
    "suite.blocked.pntk_blocked (and entk_blocked with implementation='jax')"
)
NEEDS_IT = (
    "suite.models.build (the stax networks), the infinite-width kernels (Model.kernel), the "
    "implementations jacobian_contraction, ntk_vector_products and structured_derivatives, and "
    "every experiment (python -m suite run / verify)"
)


class NeuralTangentsUnavailable(ImportError):
    """neural-tangents is needed for this call but does not import here (see :func:`require`)."""


def _apply_shims() -> None:
    import jax
    import jax.extend
    import jax.interpreters.ad as ad

    if not hasattr(ad, "source_info_util"):
        ad.source_info_util = jax.extend.source_info_util  # type: ignore[attr-defined]
    if not hasattr(ad, "config"):
        ad.config = jax.config  # type: ignore[attr-defined]
    if importlib.util.find_spec("tensorflow") is None:
        sys.modules.setdefault(
            "neural_tangents.experimental", types.ModuleType("neural_tangents.experimental")
        )


try:
    _apply_shims()
    with warnings.catch_warnings():
        # neural-tangents touches jax.core names deprecated after it was frozen.
        warnings.simplefilter("ignore", DeprecationWarning)
        import neural_tangents as _nt
        from neural_tangents import stax as _stax
    nt, stax = _nt, _stax
    # Residual blocks end each branch in a fresh zero-mean Conv, so stax's FanIn
    # "independent inputs" warning is benign for every architecture in suite.models.
    warnings.filterwarnings("ignore", message="`FanIn` layers assume independent inputs")
    # Structured derivatives calls jax's linear_util without DebugInfo (a jax 0.5 deprecation).
    warnings.filterwarnings("ignore", message="linear_util.wrap_init is missing a DebugInfo")
except Exception as exc:  # pragma: no cover - exercised only on unsupported jax
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def available() -> bool:
    """True when neural-tangents imported (it needs jax <= 0.5.3)."""
    return nt is not None


def install_hint() -> str:
    """The exact commands that make neural-tangents import here."""
    if importlib.util.find_spec("neural_tangents") is None:
        return (f"{INSTALL_NT} (--no-deps: its declared TensorFlow requirement is not needed; "
                f"it imports only with jax <= 0.5.3, so on a newer jax first {INSTALL_JAX})")
    return (f"neural-tangents is installed but does not import with this jax: {INSTALL_JAX} "
            f"(then {INSTALL_NT} if it is missing)")


def require() -> Any:
    """Return the neural_tangents module or raise :class:`NeuralTangentsUnavailable` saying why
    it is missing, what works without it and the exact install command."""
    if nt is None:
        import jax

        raise NeuralTangentsUnavailable(
            f"neural-tangents could not be imported with jax {jax.__version__} ({IMPORT_ERROR}). "
            f"Without it, what works: {WORKS_WITHOUT}. What needs it: {NEEDS_IT}. "
            f"To install it: {install_hint()}."
        )
    return nt
