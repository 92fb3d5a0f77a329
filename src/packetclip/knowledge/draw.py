"""A readable picture of a mission graph: sensor on the left, one column per level, embedding on the right."""

from __future__ import annotations

from pathlib import Path

from packetclip.knowledge.graph import EMBEDDING_ID, SENSOR_ID, MissionGraph

_LEVEL_COLOURS = ("#f4a261", "#e9c46a", "#a8dadc", "#90be6d", "#cdb4db", "#ffafcc", "#bde0fe")


def _column_positions(graph: MissionGraph) -> dict[str, tuple[float, float]]:
    """x = column, y in [0, 1]; each level ordered by its parents' mean height to limit crossings."""
    levels = graph.levels()
    parents: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        parents.setdefault(dst, []).append(src)
    pos: dict[str, tuple[float, float]] = {SENSOR_ID: (0.0, 0.5)}
    tallest = max(len(level) for level in levels)

    def spread(ids: list[str], column: float) -> None:
        n = len(ids)
        span = n / max(tallest, 1)
        for i, nid in enumerate(ids):
            y = 0.5 if n == 1 else 0.5 + span * (0.5 - i / (n - 1)) * (n - 1) / n
            pos[nid] = (column, y)

    spread([n.id for n in levels[0]], 1.0)
    for depth in range(1, len(levels)):
        def barycentre(nid: str) -> float:
            ys = [pos[p][1] for p in parents.get(nid, []) if p in pos]
            return -sum(ys) / len(ys) if ys else 0.0

        ordered = sorted((n.id for n in levels[depth]), key=lambda nid: (barycentre(nid), nid))
        spread(ordered, float(depth + 1))
    pos[EMBEDDING_ID] = (float(len(levels) + 1), 0.5)
    return pos


def draw_graph(graph: MissionGraph, path: str | Path, *, title: str | None = None, dpi: int = 120) -> Path:
    """Write the graph as a PNG (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    path = Path(path)
    levels = graph.levels()
    pos = _column_positions(graph)
    tallest = max(len(level) for level in levels)
    width = 2.4 * (len(levels) + 2) + 1.0
    height = max(4.5, 0.55 * tallest + 1.6)
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.9))
    x_min, x_max = -0.6, len(levels) + 1.6
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(-0.06, 1.06)
    ax.axis("off")

    # Data units per character of a 10 pt label, so edges start and end at the boxes' sides.
    per_char = (x_max - x_min) / (0.98 * width) * (10 * 0.6 / 72)
    labels = {n.id: n.word for n in graph.nodes} | {SENSOR_ID: "sensor", EMBEDDING_ID: "embedding"}

    def half_width(nid: str) -> float:
        return 0.5 * per_char * (len(labels[nid]) + 2.0)

    segments, tips = [], []
    for src, dst in graph.edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        end = (x1 - half_width(dst) - 0.02, y1)
        segments.append(((x0 + half_width(src), y0), end))
        tips.append(end)
    ax.add_collection(LineCollection(segments, colors="#5c677d", linewidths=0.7, alpha=0.55, zorder=1))
    ax.scatter([t[0] for t in tips], [t[1] for t in tips], marker=">", s=10, color="#5c677d", alpha=0.8,
               zorder=2, linewidths=0)

    nodes = {n.id: n for n in graph.nodes}
    # Provenance sits just under its own box: half a 10 pt box plus a little, in data units.
    below = (8.5 / 72 + 0.02) * (1.12 / (0.9 * height))
    for nid, (x, y) in pos.items():
        if nid in (SENSOR_ID, EMBEDDING_ID):
            ax.text(x, y, labels[nid], ha="center", va="center", fontsize=10, color="white", fontweight="bold",
                    zorder=3, bbox=dict(boxstyle="round,pad=0.45", fc="#264653", ec="#264653"))
            continue
        node = nodes[nid]
        colour = _LEVEL_COLOURS[node.level % len(_LEVEL_COLOURS)]
        ax.text(x, y, node.word, ha="center", va="center", fontsize=10, zorder=3,
                fontweight="bold" if node.level == 0 else "normal",
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="#44475a", lw=0.6))
        ax.text(x, y - below, node.provenance, ha="center", va="top", fontsize=6.5, color="#555555", zorder=3)

    for depth in range(len(levels)):
        caption = "key concepts" if depth == 0 else f"level {depth}"
        ax.text(depth + 1, 1.045, caption, ha="center", va="bottom", fontsize=9, color="#333333")
    label = graph.meta.get("label", graph.mission)
    fig.suptitle(title or f"Mission knowledge graph: {label} (source: {graph.source}, "
                          f"seed {graph.meta.get('seed', '?')}) — {len(graph.nodes)} concepts; "
                          f"grey: provenance", fontsize=12)
    fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 3})
    return path
