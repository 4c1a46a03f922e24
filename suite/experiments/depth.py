"""Convergence at several depths: MLPs of 1-8 hidden layers, ResNets up to the ResNet-18 layout.

The statement (THEORY.md §3, T2) is for "a network of depth L and width n": the rate n^-1/2
does not depend on L, but the constant may grow with depth (more layers below the readout add
off-diagonal mass, THEORY.md §2). Each case is a convergence case (same metrics, computed by
:func:`suite.experiments.convergence.run`) whose config also carries ResNet ``stages``.

ResNets are given as stage layouts (blocks per stage, channels doubling and the resolution
halving from one stage to the next, :data:`suite.models.RESNET_STAGES`); ``depth`` is then the
number of residual blocks, sum(stages): "1-1" (2 blocks), "2-2" (4 blocks) and "2-2-2-2" (the
ResNet-18 layout, 8 blocks: 16 convolutions plus stem and readout). ``width`` is the first
stage's channel count, so the last stage of "2-2-2-2" has 8 * width channels: on 8x8 digits a
ResNet-18 at width 64 has 11M parameters and its eNTK takes about 10 s per seed on 2 CPU cores,
which caps the quick grid at width 64. The MLP ("depth" = hidden layers) is cheap at every depth.

Expected: slope about -1/2 at every depth, with a prefactor (error x sqrt(n)) that grows with
depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from suite import models
from suite.errors import SuiteError
from suite.experiments import Experiment, common, convergence

VERSION = "1"


@dataclass(frozen=True)
class Config(convergence.Config):
    """A convergence case plus an optional ResNet stage layout.

    ``stages`` is a dash-separated string of blocks per stage ("2-2-2-2" for ResNet-18), empty
    for none; a string, not a tuple, so that it is one scalar cell of the tidy rows and of the
    results CSV. With ``stages`` set, ``depth`` must equal the total number of blocks.
    """

    stages: str = ""

    def validate(self) -> None:
        if self.stages:
            if self.arch != "resnet":
                raise SuiteError(f"stages only apply to arch 'resnet', not {self.arch!r}")
            blocks = parse_stages(self.stages)
            if sum(blocks) != self.depth:
                raise SuiteError(
                    f"depth must be the number of residual blocks, sum of stages {self.stages!r} "
                    f"= {sum(blocks)}, got {self.depth}"
                )

    @property
    def stage_blocks(self) -> tuple[int, ...] | None:
        """``stages`` as a tuple of ints (None when empty)."""
        return parse_stages(self.stages) if self.stages else None

    @property
    def id(self) -> str:
        """Readable case id, e.g. ``resnet-st2-2-2-2-w0032-s1`` or ``mlp-d08-w0512-s0``."""
        if self.stages:
            return f"{self.arch}-st{self.stages}-w{self.width:04d}-s{self.seed}"
        return super().id

    def model_config(self) -> models.ModelConfig:
        return models.ModelConfig(
            self.arch, width=self.width, depth=self.depth, n_outputs=self.n_outputs,
            parameterization=self.parameterization, stages=self.stage_blocks,
        )


def parse_stages(text: str) -> tuple[int, ...]:
    """``"2-2-2-2"`` -> ``(2, 2, 2, 2)``; a clear error for anything else."""
    try:
        blocks = tuple(int(s) for s in text.split("-"))
    except ValueError:
        blocks = ()
    if not blocks or any(b < 1 for b in blocks):
        raise SuiteError(f"stages must be positive block counts joined by '-', e.g. '2-2-2-2', got {text!r}")
    return blocks


QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048), "resnet": (16, 32, 64), "wrn": (16, 32, 64)}
#: Full: mnist5k14, N = 64; ResNet-18 at 128 channels ends in a 1024-channel stage (~38M
#: parameters), beyond the full grid's budget on 2 cores, so the ResNets stop at 64 (the paper grid
#: goes to 128).
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "resnet": (16, 32, 64), "wrn": (16, 32, 64)}
MLP_DEPTHS = (1, 2, 4, 8)
#: Blocks per stage of the WideResNets: WRN-10 and WRN-16 (models.wrn_name).
WRN_DEPTHS = (1, 2)
QUICK_STAGES = ("1-1", "2-2", "2-2-2-2")
# ResNet-34 ("3-4-6-3") is left out: at width 128 on 28x28 inputs its eNTK is too slow on a CPU.
FULL_STAGES = QUICK_STAGES


def _layouts(arch: str, stages: tuple[str, ...], wrn_depths: tuple[int, ...]) -> list[tuple[int, str]]:
    """(depth, stages) pairs of one architecture."""
    if arch == "resnet":
        return [(sum(parse_stages(s)), s) for s in stages]
    return [(d, "") for d in (wrn_depths if arch == "wrn" else MLP_DEPTHS)]


def _grid(widths, stages: tuple[str, ...], seeds: int, wrn_depths: tuple[int, ...] = WRN_DEPTHS,
          **common_fields) -> list[Config]:
    def make(arch: str, layout: tuple[int, str], **fields: Any) -> Config:
        return Config(arch=arch, depth=layout[0], stages=layout[1], **fields)

    layouts = {arch: tuple(_layouts(arch, stages, wrn_depths)) for arch in widths}
    return common.grid_product(make, arch=widths, layout=layouts, width=widths, seed=range(seeds), **common_fields)


#: The ``paper`` grid (accelerators; CIFAR-10 from a local copy): ResNet-18 at 1/4 to 2x its
#: standard 64 channels, and WRN-28-k for k = 1, 2, 4, 10 (WRN-28-10 is the usual CIFAR
#: WideResNet), 8 seeds, N = 128 CIFAR-10 images.
PAPER_WIDTHS = {"resnet": (16, 32, 64, 128), "wrn": (16, 32, 64, 160)}
PAPER_STAGES = ("2-2-2-2",)
PAPER_WRN_DEPTHS = (4,)


GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, QUICK_STAGES, 5, dataset="digits", n_inputs=32),
    "full": lambda: _grid(FULL_WIDTHS, FULL_STAGES, 5, dataset="mnist5k14", n_inputs=64),
    "paper": lambda: _grid(PAPER_WIDTHS, PAPER_STAGES, 8, PAPER_WRN_DEPTHS, dataset="cifar10", n_inputs=128),
}


def run(config: Config) -> pd.DataFrame:
    """One case's tidy rows: :func:`suite.experiments.convergence.run` on this config, whose
    ``model_config()`` carries the stages (the rows get a ``stages`` column with the rest)."""
    return convergence.run(config)


EXPERIMENT = Experiment(
    name="depth",
    description="Convergence at depths 1-8 (MLP), ResNet stage layouts up to ResNet-18, WRN-10 and WRN-16",
    theorem="T2 (rate independent of depth L)",
    version=VERSION,
    config_type=Config,
    grids=GRIDS,
    run=run,
    predict=convergence.predict,
    verify=False,
    order=22,
)
