"""Matplotlib figures as deterministic PNG bytes, and the names users read, shared by
post-analysis and the report.

1. Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas attached
   explicitly, never through pyplot's global state or the configured backend, so nothing leaks
   between figures or threads and no display is needed.
2. Every figure is drawn inside :func:`style`: a fixed font, sizes and colours, and mathtext
   off (a symbol such as ``A$B`` is text, never a formula).
3. :func:`png` writes with the ``Software`` metadata removed and a fixed dpi: the same inputs
   give the same bytes.
4. Colours say one thing each: long = :data:`LONG`, short = :data:`SHORT`, a method keeps its
   colour in every chart (:func:`method_colors`), a cluster keeps its colour in every chart
   (:func:`cluster_color`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

LONG = "#1a9850"
SHORT = "#d73027"
BENCHMARK = "#555555"
INK = "#222222"
GRID = "#dddddd"
DPI = 110
_METHOD_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                   "#bcbd22")
_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.edgecolor": "#999999",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": GRID,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "text.color": INK,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "text.parse_math": False,
    "path.simplify": True,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Rule 2: the house style for every figure drawn inside."""
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]
        yield


def figure(width_in: float, height_in: float) -> Figure:
    """A new figure on the Agg canvas (rule 1)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """Rule 3: the figure as PNG bytes, without the time-varying metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """Rule 4: one colour per method, in the given order."""
    return {m: _METHOD_PALETTE[i % len(_METHOD_PALETTE)] for i, m in enumerate(methods)}


def cluster_color(cluster: int) -> tuple[float, float, float, float]:
    """Rule 4: the colour of cluster `cluster` (tab20, cycling past 20)."""
    cmap = colormaps["tab20"]
    return tuple(cmap((2 * cluster) % 20 + (cluster // 10) % 2))  # type: ignore[return-value]


def heatmap(ax: Axes, corr: Sequence[Sequence[float]], labels: Sequence[str],
            clusters: Sequence[int] | None = None, label_size: float = 7.0) -> AxesImage:
    """A correlation heatmap (−1 blue … +1 red) on `ax`, with a box around each run of equal
    `clusters` along the diagonal; returns the image for a colour bar."""
    from matplotlib.patches import Rectangle

    n = len(labels)
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=label_size)
    ax.set_yticks(range(n), labels, fontsize=label_size)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if clusters is not None:
        start = 0
        for i in range(1, n + 1):
            if i == n or clusters[i] != clusters[start]:
                ax.add_patch(Rectangle((start - 0.5, start - 0.5), i - start, i - start,
                                       fill=False, edgecolor=INK, linewidth=1.2))
                start = i
    return image


def no_data(ax: Axes, message: str) -> None:
    """Say on the axes why there is nothing to draw (never an empty frame)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="#777777", wrap=True)
    ax.set_axis_off()


METHOD_LABELS = {
    "hrp": "hierarchical risk parity",
    "min_var": "minimum variance",
    "max_sharpe": "maximum Sharpe ratio",
    "equal_weight": "equal weight (capped)",
    "risk_parity": "equal risk contribution",
}


def atom_names(weights: pd.DataFrame) -> dict[str, str]:
    """atom → what a user reads (weights.csv rows): its symbol, plus the direction when the
    symbol is held both ways."""
    rows = weights.drop_duplicates("atom")
    counts = rows["symbol"].value_counts()
    return {str(r.atom): f"{r.symbol} {r.direction}" if counts[r.symbol] > 1 else str(r.symbol)
            for r in rows.itertuples(index=False)}


def method_label(method: str) -> str:
    """The friendly name shown beside a method's own name (the name of weights.csv)."""
    return METHOD_LABELS.get(method, "")
