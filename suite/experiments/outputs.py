"""Dependence of the pNTK's error on the number of outputs O (THEORY.md §3, "the √(O/n) constant").

The numerator of T2, ||Theta - pNTK x I_O||_F, collects about O^2 off-diagonal entries of size
n^-1/2 and the denominator ||Theta||_F about O diagonal entries of size 1, so the relative
Frobenius error grows roughly like sqrt(O / n): O = 100 needs far more width than O = 10.

Each case is one convergence case (:func:`suite.experiments.convergence.run`, same metrics)
with ``n_outputs`` in {2, 10, 100} (quick) or {2, 5, 10, 20, 50, 100} (full); ``n_outputs`` is a
config field, so the report fits one width slope per O. The O dependence itself (a pooled fit of log error on log(O/n), and the
O exponent at fixed width) is fitted by the figure, ``fig_outputs``, from the saved rows.

Expected (THEORY.md §3-§4): error ~ sqrt(O/n), i.e. exponent about +1/2 in O/n and in O at fixed
width, and slope about -1/2 in n for each O, except where the error saturates: the relative
error cannot exceed about 1, so O = 100 at the smallest widths (0.76 at n = 64 in THEORY.md §4;
O/n > 1) is pre-asymptotic and flattens both fits. Counted exactly (THEORY.md §3, "The O
constant, counted exactly"), err = r / sqrt(1 + r²) with r ~ sqrt((O - 1)(O + 4) / (O n)): the O
exponent at fixed width is 0.45 for these O even where the error is small, and 1 - err² times
that where it is not. The full grid's MLP widths reach O/n = 100/8192 = 0.012 (err about 0.1 at
O = 100, saturation factor 0.99), where only the first effect remains.

Cost: the eNTK grows like (N*O)^2 and structured derivatives' memory grows with O and the CNN's
width (about 8 GB for a CNN at O = 100, width 128, N = 32 on 8x8 digits). So the CNN uses N = 16
inputs, the MLP N = 32; N is the same for every O of one architecture, so the O comparison is
never confounded with N. Full grid (14x14 mnist5k14; measured on 2 cores shared at load 7-15):
the MLP takes 72 s per seed (48 cases) plus 136 s of compiling, the CNN 88 s per seed (30 cases)
plus 128 s, so about 26 min for 8 seeds (the committed full run, on a quieter machine: 464 s of
case time); the slowest cases are the MLP at width 8192, O = 100
(18 s) and the CNN at width 256, O = 100 (25 s). Not run: MLP width 16384 (40-70 s at O = 100,
17 s at O = 2 of which 9-13 s is initialising 270M parameters; 4.5 GB; about +16 min for 8
seeds) and CNN width 512 (100 s at O = 100, 6.4 GB through the blocked eNTK).
"""

from __future__ import annotations

from suite.experiments import Experiment, common, convergence

VERSION = "1"

#: Output counts: binary, CIFAR-10-like, CIFAR-100-like.
OUTPUTS = (2, 10, 100)

#: Output counts of the full grid: six, for the O exponent at fixed width.
FULL_OUTPUTS = (2, 5, 10, 20, 50, 100)

QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128)}
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096, 8192), "cnn": (16, 32, 64, 128, 256)}

#: Inputs per architecture, the same for every O (CNN kept small for the O = 100 eNTK's memory).
QUICK_INPUTS = {"mlp": 32, "cnn": 16}
FULL_INPUTS = {"mlp": 32, "cnn": 16}

#: Depth of every network (hidden layers / conv layers), as in THEORY.md §4's table.
DEPTH = 2


def _grid(widths, n_inputs, seeds: int, dataset: str, outputs=OUTPUTS) -> list[convergence.Config]:
    return common.grid_product(convergence.Config, arch=widths, n_outputs=outputs, width=widths, seed=range(seeds),
                               depth=DEPTH, dataset=dataset, n_inputs=n_inputs)


#: Seeds of the quick grid. 10, because with O = 2 the error rests on very few random entries and
#: its per-seed spread is wide and heavy-tailed (CNN, n = 64: 0.011 to 0.14 across seeds): 3 seeds
#: gave a CNN O = 2 slope of -0.91, 10 other seeds -0.54. The whole grid takes about 2 minutes.
QUICK_SEEDS = 10
#: Seeds of the full grid (the same heavy-tailed O = 2 spread; 8 as for the headline series).
FULL_SEEDS = 8

GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, QUICK_INPUTS, QUICK_SEEDS, "digits"),
    "full": lambda: _grid(FULL_WIDTHS, FULL_INPUTS, FULL_SEEDS, "mnist5k14", FULL_OUTPUTS),
}


EXPERIMENT = Experiment(
    name="outputs",
    description="Dependence on the number of outputs O (2 to 100): relative error ~ sqrt(O/n)",
    theorem="T2 (√(O/n) constant)",
    version=VERSION,
    config_type=convergence.Config,
    grids=GRIDS,
    run=convergence.run,
    predict=convergence.predict,
    verify=False,
    order=20,
)
