"""Dependence of the pNTK's error on the number of outputs O (THEORY.md §3, "the √(O/n) constant").

The numerator of T2, ||Theta - pNTK x I_O||_F, collects about O^2 off-diagonal entries of size
n^-1/2 and the denominator ||Theta||_F about O diagonal entries of size 1, so the relative
Frobenius error grows roughly like sqrt(O / n): O = 100 needs far more width than O = 10.

Each case is one convergence case (:func:`suite.experiments.convergence.run`, same metrics)
with ``n_outputs`` in {2, 10, 100}; ``n_outputs`` is a config field, so the report fits one
width slope per O. The O dependence itself (a pooled fit of log error on log(O/n), and the
O exponent at fixed width) is fitted by the figure, ``fig_outputs``, from the saved rows.

Expected (THEORY.md §4): error ~ sqrt(O/n), i.e. exponent about +1/2 in O/n and in O at fixed
width, and slope about -1/2 in n for each O, except where the error saturates: the relative
error cannot exceed about 1, so O = 100 at the smallest widths (0.76 at n = 64 in THEORY.md §4;
O/n > 1) is pre-asymptotic and flattens both fits.

Cost: the eNTK grows like (N*O)^2 and structured derivatives' memory grows with O and the CNN's
width (about 8 GB for a CNN at O = 100, width 128, N = 32 on 8x8 digits; width 256 ran out of
memory on a 23 GB machine). So the CNN uses N = 16 inputs and widths up to 128, the MLP N = 32;
N is the same for every O of one architecture, so the O comparison is never confounded with N.
"""

from __future__ import annotations

from suite.experiments import Experiment, convergence

VERSION = "1"

#: Output counts: binary, CIFAR-10-like, CIFAR-100-like.
OUTPUTS = (2, 10, 100)

QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128)}
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "cnn": (16, 32, 64, 128)}

#: Inputs per architecture, the same for every O (CNN kept small for the O = 100 eNTK's memory).
QUICK_INPUTS = {"mlp": 32, "cnn": 16}
FULL_INPUTS = {"mlp": 32, "cnn": 16}

#: Depth of every network (hidden layers / conv layers), as in THEORY.md §4's table.
DEPTH = 2


def _grid(widths, n_inputs, seeds: int, dataset: str) -> list[convergence.Config]:
    return [
        convergence.Config(
            arch, DEPTH, width, seed, n_outputs=o, dataset=dataset, n_inputs=n_inputs[arch]
        )
        for arch in widths
        for o in OUTPUTS
        for width in widths[arch]
        for seed in range(seeds)
    ]


#: Seeds of the quick grid. 10, because with O = 2 the error rests on very few random entries and
#: its per-seed spread is wide and heavy-tailed (CNN, n = 64: 0.011 to 0.14 across seeds): 3 seeds
#: gave a CNN O = 2 slope of -0.91, 10 other seeds -0.54. The whole grid takes about 2 minutes.
QUICK_SEEDS = 10

GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, QUICK_INPUTS, QUICK_SEEDS, "digits"),
    "full": lambda: _grid(FULL_WIDTHS, FULL_INPUTS, 5, "mnist5k"),
}


EXPERIMENT = Experiment(
    name="outputs",
    description="Dependence on the number of outputs O in {2, 10, 100}: relative error ~ sqrt(O/n)",
    theorem="T2 (√(O/n) constant)",
    version=VERSION,
    config_type=convergence.Config,
    grids=GRIDS,
    run=convergence.run,
    predict=convergence.predict,
    verify=False,
    order=20,
)
