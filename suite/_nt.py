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


def require() -> Any:
    """Return the neural_tangents module or raise a clear error saying why it is missing."""
    if nt is None:
        import jax

        raise ImportError(
            f"neural-tangents could not be imported with jax {jax.__version__} ({IMPORT_ERROR}). "
            "Install the pinned versions: pip install 'jax[cpu]==0.5.3' && "
            "pip install --no-deps neural-tangents==0.6.5. The suite's own kernels "
            "(implementation='jax') work without it."
        )
    return nt
