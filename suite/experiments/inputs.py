"""Dependence of the pNTK's error on the number of inputs N at fixed width (THEORY.md §3,
"Dependence on N").

Numerator and denominator of T2 both sum over the N² input pairs (a, b):
||Theta - pNTK x I_O||_F² = sum_ab ||E_ab||² and ||Theta||_F² = sum_ab ||Theta_ab||², and the
size of each pair's terms does not depend on how many other inputs there are. So to leading
order the relative Frobenius error does not depend on N (exponent 0 at fixed width); the N self
pairs (a = a), which can differ from the N(N - 1) others, move it by O(1/N). The max-entry T1
metrics are maxima over N²·O² (or N²·O) entries and may grow slowly, like sqrt(log N).

Each case is one convergence case (:func:`suite.experiments.convergence.run`, same metrics and
the same n^-1/2 width prediction per N) with ``n_inputs`` in a range of N; ``n_inputs`` is a
config field, so the report fits one width slope per N. The N exponent at fixed width (log err
on log N, one intercept per width, per seed; Student-t interval over seeds) is fitted by the
figure, ``fig_inputs``, from the saved rows.

Design: depth 2, O = 10, the same widths and seeds for every N of one architecture, so the N
comparison is never confounded with width. The batches are the class-balanced subsets of
:func:`suite.data.load` for each N (seed 0); a network (arch, width, seed) is the same for
every N, so within a seed the N dependence is not masked by the network-to-network spread.
"""

from __future__ import annotations

from suite.experiments import Experiment, common, convergence

VERSION = "1"

#: Input counts N per architecture. Quick: 8x8 digits; the CNN stops at N = 64, where a case
#: of width 64 takes about 1 s (and its first, compiling, 3-13 s) on 2 shared cores.
QUICK_INPUTS = {"mlp": (8, 16, 32, 64, 128), "cnn": (8, 16, 32, 64)}
#: Full: 14x14 mnist5k (``mnist5k14``). The CNN stops at N = 128: a case of width 256 takes about
#: 40-50 s there (10 GB peak) and its eNTK grows like N², so N = 256 would cost about 4x that.
FULL_INPUTS = {"mlp": (16, 32, 64, 128, 256), "cnn": (16, 32, 64, 128)}

#: Widths per architecture (>= 3, so each N also gets a width slope).
QUICK_WIDTHS = {"mlp": (128, 512, 2048), "cnn": (16, 32, 64)}
FULL_WIDTHS = {"mlp": (256, 1024, 4096), "cnn": (32, 64, 128, 256)}

#: Depth and number of outputs of every network.
DEPTH = 2
N_OUTPUTS = 10

#: Seeds. Within one seed the error hardly moves with N (the same network on every batch), so
#: the per-seed N exponents scatter little (sd 0.005-0.01 for T2 on the quick grid); the seeds are
#: for the width slope per N, whose per-seed sd is 0.03-0.08 in the convergence experiment (8
#: seeds there). The quick grid's cost is mostly compiling (one program per N and width), so 8
#: seeds cost little; the full grid takes 5 (measured on 2 cores shared at load 7-15, cases then
#: compiles: MLP 23 s per seed + 48 s, CNN 103 s per seed + 248 s, so about 15 min in all; the
#: committed full run, on a quieter machine: 207 s of case time;
#: the slowest case is the CNN at width 256, N = 128: 47 s).
QUICK_SEEDS = 8
FULL_SEEDS = 5


def _grid(widths, n_inputs, seeds: int, dataset: str) -> list[convergence.Config]:
    return common.grid_product(convergence.Config, arch=widths, n_inputs=n_inputs, width=widths, seed=range(seeds),
                               depth=DEPTH, n_outputs=N_OUTPUTS, dataset=dataset)


GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, QUICK_INPUTS, QUICK_SEEDS, "digits"),
    "full": lambda: _grid(FULL_WIDTHS, FULL_INPUTS, FULL_SEEDS, "mnist5k14"),
}


EXPERIMENT = Experiment(
    name="inputs",
    description="Dependence on the number of inputs N at fixed width: relative error ~ N^0",
    theorem="T2 (dependence on N)",
    version=VERSION,
    config_type=convergence.Config,
    grids=GRIDS,
    run=convergence.run,
    predict=convergence.predict,
    verify=False,
    order=23,
)
