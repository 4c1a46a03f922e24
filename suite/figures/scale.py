"""fig_scale: pNTK kernel regression on all of mnist5k, with the kernel of a network at
initialisation and of the same network trained, against the network's own test accuracy.

Reads ``reports/data/scale.csv`` (THEORY.md §9; the experiment: :mod:`suite.experiments.scale`).
One group of bars per network (architecture, depth, width, readout), one pair of bars per
state (at initialisation, or after ``epochs`` of SGD at learning rate ``lr``): the test
accuracy of ridge regression with that network's 5000 x 5000 pNTK (4000 train / 1000 test
images) and the accuracy of the network itself on the same test images. Bars are means over
seeds, whiskers span min to max. The subtitle gives the cost: the blocked pNTK's time and
peak memory against the size of the eNTK the same regression would need.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MultipleLocator, PercentFormatter

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_scale"
EXPERIMENT = "scale"
TITLE = "pNTK kernel regression on all of mnist5k, at init and trained, vs the network itself"
#: (kernel, label, colour) of the two bars of one state.
BARS: tuple[tuple[str, str, str], ...] = (
    ("pntk", "kernel regression with the network's pNTK", style.kernel_color("pntk", ("entk", "pntk"))),
    ("network", "the network itself", "#555555"),
)
#: Columns that tell networks and states apart (absent ones are ignored).
NETWORK_COLUMNS = ("arch", "depth", "width", "readout")
STATE_COLUMNS = ("epochs", "lr")


def _state_label(epochs: Any, lr: Any) -> str:
    if epochs is None or not np.isfinite(float(epochs)) or int(epochs) == 0:
        return "at init"
    return f"trained\n{int(epochs)} ep., lr {float(lr):g}"


def _network_label(arch: str, depth: int, width: int, readout: Any) -> str:
    text = f"{style.arch_label(arch)}, depth {depth}, n = {width}"
    if arch != "mlp" and isinstance(readout, str):
        text += f", {'flatten' if readout == 'flatten' else 'avg. pool'} readout"
    return text


def _cost_text(df: pd.DataFrame) -> str:
    """One line from the data: the blocked pNTK's time and memory against the eNTK's size."""

    def span(metric: str, fmt: str) -> str | None:
        v = df.loc[(df["metric"] == metric) & (df["kernel"] == "pntk"), "value"].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        if not v.size:
            return None
        low, high = fmt.format(v.min()), fmt.format(v.max())
        return low if low == high else f"{low}–{high}"

    seconds, rss, gb, entk = span("seconds_kernel", "{:.0f}"), span("peak_rss_gb", "{:.1f}"), \
        span("pntk_gb", "{:.2g}"), span("entk_gb", "{:.0f}")
    parts = []
    if gb and seconds:
        parts.append(f"blocked pNTK: {gb} GB in {seconds} s")
    if rss:
        parts.append(f"peak memory {rss} GB")
    if entk:
        refused = df.loc[df["metric"] == "entk_refused", "value"].to_numpy(dtype=np.float64)
        parts.append(f"the eNTK would be {entk} GB" + (" (refused under a 4 GB budget)" if refused.size and refused.min() > 0 else ""))
    return " · ".join(parts)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Grouped bars of test accuracy: pNTK regression and the network, per network and state.

    Raises:
        MissingDataError: If there are no ``test_acc`` rows of the pNTK.
    """
    df = c.prepare(data, NAME)
    c.select(df, "test_acc", ["pntk"], NAME)
    acc = df[(df["metric"] == "test_acc") & df["kernel"].isin([b[0] for b in BARS])].copy()
    for col in (*NETWORK_COLUMNS, *STATE_COLUMNS):
        if col not in acc.columns:
            acc[col] = np.nan
    acc["epochs"] = pd.to_numeric(acc["epochs"], errors="coerce").fillna(0).astype("int64")
    acc["lr"] = pd.to_numeric(acc["lr"], errors="coerce")
    acc["_arch_order"] = acc["arch"].map(lambda a: style.ARCH_ORDER.index(a) if a in style.ARCH_ORDER else 99)
    networks = (acc[["_arch_order", *NETWORK_COLUMNS]].drop_duplicates()
                .sort_values(["_arch_order", "depth", "width"], na_position="last"))
    setting = c.single_setting(df, NAME)
    setting["n_inputs"] = None  # the subtitle names the split instead
    with style.theme():
        groups: list[tuple[str, list[tuple[str, pd.DataFrame]]]] = []
        for _, net in networks.iterrows():
            rows = acc
            for col in NETWORK_COLUMNS:
                rows = rows[rows[col].isna()] if pd.isna(net[col]) else rows[rows[col] == net[col]]
            states = rows[["epochs", "lr"]].drop_duplicates().sort_values(["epochs", "lr"])
            entries = []
            for _, st in states.iterrows():
                part = rows[rows["epochs"] == st["epochs"]]
                if st["epochs"]:
                    part = part[part["lr"] == st["lr"]]
                entries.append((_state_label(st["epochs"], st["lr"]), part))
            groups.append((_network_label(net["arch"], int(net["depth"]), int(net["width"]), net["readout"]), entries))
        n_states = sum(len(e) for _, e in groups)
        fig = Figure(figsize=(max(9.5, 1.3 * n_states + 2.0), 5.6), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        x, ticks, labels, centers = 0.0, [], [], []
        bar_w = 0.38
        for net_label, entries in groups:
            start = x
            for state_label, part in entries:
                for k, (kernel, label, color) in enumerate(BARS):
                    v = part.loc[part["kernel"] == kernel, "value"].to_numpy(dtype=np.float64)
                    if not v.size:
                        continue
                    pos = x + (k - 0.5) * bar_w
                    mean = float(v.mean())
                    ax.bar(pos, mean, bar_w * 0.95, color=color, label=label, zorder=2)
                    if v.size > 1:
                        ax.errorbar(pos, mean, yerr=[[mean - v.min()], [v.max() - mean]], color="black",
                                    linewidth=1.0, capsize=2.5, zorder=3)
                    ax.text(pos, float(v.max()) + 0.015, f"{mean:.0%}" if mean >= 0.1 else f"{mean:.1%}",
                            ha="center", va="bottom", fontsize=8)
                ticks.append(x)
                labels.append(state_label)
                x += 1.0
            centers.append(((start + x - 1.0) / 2, net_label))
            x += 0.6
        ax.set_xticks(ticks, labels, fontsize=8.5)
        ax.set_xlim(-0.9, x - 0.7)  # room for the group labels under the outer bars
        for center, net_label in centers:
            ax.annotate("\n".join(textwrap.wrap(net_label, 20)), xy=(center, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, -42), textcoords="offset points", ha="center", va="top", fontsize=9.5,
                        fontweight="bold")
        ax.set_ylim(0, 1.08)
        ax.yaxis.set_major_locator(MultipleLocator(0.2))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("test accuracy (1000 held-out images)")
        n_outputs = setting.get("n_outputs")
        if n_outputs:
            ax.axhline(1.0 / int(n_outputs), color=style.REFERENCE_COLOR, linestyle=":", linewidth=1.0, zorder=1)
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        fig.legend(list(unique.values()), list(unique), loc="outside lower center", ncols=2)
        split = ""
        if "n_train" in df.columns and "n_test" in df.columns:
            split = f"{int(df['n_train'].iloc[0])} train / {int(df['n_test'].iloc[0])} test images"
        chars = max(30, int(fig.get_figwidth() * 10))
        lines = [TITLE, " · ".join(p for p in (c.setting_text(setting), split) if p), _cost_text(df)]
        fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines if line))
        return fig


def findings(data: pd.DataFrame) -> str:
    """Per network and state, the kernel regression's test accuracy against the network's own,
    for the report (means over seeds)."""
    df = c.prepare(data, NAME)
    acc = df[df["metric"] == "test_acc"].copy()
    for col in (*NETWORK_COLUMNS, *STATE_COLUMNS):
        if col not in acc.columns:
            acc[col] = np.nan
    acc["epochs"] = pd.to_numeric(acc["epochs"], errors="coerce").fillna(0).astype("int64")
    parts = []
    keys = ["arch", "depth", "width", "readout", "epochs", "lr"]
    for _key, rows in acc.groupby(keys, dropna=False, sort=True):
        first = rows.iloc[0]
        arch, depth, width, readout = first["arch"], first["depth"], first["width"], first["readout"]
        epochs, lr = int(first["epochs"]), float(first["lr"])
        kernel = rows.loc[rows["kernel"] == "pntk", "value"]
        net = rows.loc[rows["kernel"] == "network", "value"]
        if kernel.empty:
            continue
        state = "at init" if not epochs else f"after {int(epochs)} epochs at lr {float(lr):g}"
        text = f"{_network_label(str(arch), int(depth), int(width), readout)}, {state}: {kernel.mean():.1%}"
        if not net.empty:
            text += f" (the network itself: {net.mean():.1%})"
        parts.append(text)
    if not parts:
        return ""
    return ("**Kernel regression with the pNTK of all 5000 images** (test accuracy, means over seeds). "
            + "; ".join(parts) + ".")


FIGURE = c.FigureSpec(
    order=45,
    name=NAME,
    experiment=EXPERIMENT,
    title="pNTK kernel regression on all of mnist5k, at initialisation and after training, against the network",
    caption=(
        "Test accuracy of ridge regression (λ = 10⁻³·mean diagonal) with the 5000×5000 pNTK of "
        "each network, computed blocked (4000 train / 1000 test images of mnist5k), beside the "
        "test accuracy of the network itself: at initialisation (where the network is at chance "
        "but its kernel is not) and after 10 epochs of SGD on the same 4000 images, below and "
        "above the edge of stability (THEORY.md §9). Bars are means over seeds, whiskers span min "
        "to max; dotted: chance. The subtitle gives the blocked pNTK's measured cost against the "
        "size of the eNTK the same regression would need."
    ),
    render=render,
    findings=findings,
)
