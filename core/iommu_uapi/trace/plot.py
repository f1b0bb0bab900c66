"""Figures from sweep rows (the ``plot`` extra: matplotlib).

* ``hit-rate`` - IOTLB hit rate against IOTLB entries, one line per workload (and backend when
  there are several);
* ``walk`` - page-table reads per DMA against walk-cache entries, one line per workload.

The format follows the output's suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["FIGURES", "plot"]

#: By figure kind: (x column, y column, x label, y label, title).
FIGURES: dict[str, tuple[str, str, str, str, str]] = {
    "hit-rate": ("iotlb_entries", "iotlb_hit_rate", "IOTLB entries",
                 "IOTLB hit rate", "IOTLB hit rate vs IOTLB size"),
    "walk": ("walk_entries", "table_reads_mean", "walk-cache entries (per level)",
             "page-table reads per DMA (mean)", "Walk cost vs walk-cache size"),
}


def plot(rows: Sequence[dict[str, Any]], outputs: Sequence[str | os.PathLike[str]], *,
         kind: str = "hit-rate", title: str | None = None) -> int:
    """Draw figure ``kind`` from ``rows`` into every file of ``outputs``; returns the number of
    lines drawn. Rows without a value on the x axis (unbounded caches) are left out."""
    if kind not in FIGURES:
        raise ValueError(f"no figure {kind!r}; known: {', '.join(FIGURES)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_col, y_col, x_label, y_label, default_title = FIGURES[kind]
    backends = {row["backend"] for row in rows}
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        x, y = row.get(x_col), row.get(y_col)
        if x in (None, "") or y in (None, ""):
            continue
        label = str(row["workload"])
        if len(backends) > 1:
            label += f" ({row['backend']})"
        lines[label].append((float(x), float(y)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in lines.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if kind == "hit-rate":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or default_title)
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    for out in outputs:
        fig.savefig(out)
    plt.close(fig)
    return len(lines)
