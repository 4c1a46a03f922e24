"""pNTK suite: exact and approximate empirical NTKs, and evidence of how good the approximation is.

Implements and verifies Mohamadi, Bae & Sutherland, "A Fast, Well-Founded Approximation to
the Empirical Neural Tangent Kernel" (ICML 2023). Registries: :data:`suite.models.ARCHS`,
:data:`suite.kernels.KERNELS`, :data:`suite.data.DATASETS`, :data:`suite.experiments.EXPERIMENTS`.

The kernel functions are re-exported lazily (PEP 562) so that jax-free parts of the suite
(figures, statistics, stores) import without loading jax.
"""

from __future__ import annotations

from typing import Any

__all__ = ["card", "entk", "logit_ntk", "pntk", "projected_ntk", "trace_ntk"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "card":  # the approximation card (suite/cards.py)
        from suite.cards import card

        return card
    if name in __all__:
        from suite import kernels

        return getattr(kernels, name)
    raise AttributeError(f"module 'suite' has no attribute {name!r}")
