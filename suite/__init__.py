"""pNTK suite: exact and approximate empirical NTKs, and evidence of how good the approximation is.

Implements and verifies Mohamadi, Bae & Sutherland, "A Fast, Well-Founded Approximation to
the Empirical Neural Tangent Kernel" (ICML 2023). Registries: :data:`suite.models.ARCHS`,
:data:`suite.kernels.KERNELS`, :data:`suite.data.DATASETS`, :data:`suite.experiments.EXPERIMENTS`.
"""

from __future__ import annotations

from suite.kernels import entk, logit_ntk, pntk, projected_ntk, trace_ntk

__all__ = ["entk", "logit_ntk", "pntk", "projected_ntk", "trace_ntk"]
__version__ = "0.1.0"
