"""What the console looks up besides live alerts: natural-language search and flow details over a workspace,
the model card, mission knowledge-graph pictures with the concepts of an alert highlighted, and the
``reproduce`` report. Each is built once at server start from paths the operator gave; no request ever names a
file."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from html import escape
from pathlib import Path

import numpy as np

from packetclip.errors import PacketClipError

ATTACK_URL = "https://attack.mitre.org/techniques/{}/"


def attack_url(technique: str | None) -> str | None:
    """``T1499.001`` → its page on attack.mitre.org (sub-techniques are a path segment)."""
    if not technique:
        return None
    return ATTACK_URL.format(technique.replace(".", "/"))


class WorkspaceService:
    """Search and flow details over one workspace, with the alignment remembered by ``align train``."""

    def __init__(self, workspace: str | Path, *, alignment: str | Path | None = None):
        from packetclip.traffic.workspace import Workspace

        self.workspace = Workspace.open(workspace)
        self.alignment = alignment
        # one worker thread owns the models and the text encoder's on-disk cache (sqlite objects are bound to the
        # thread that made them), so requests from any server thread queue here, one at a time
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-search")
        self._loaded = None
        self._descriptions = None
        self._flows = None

    @property
    def name(self) -> str:
        return self.workspace.root.name

    def _load(self):
        """Alignment, traffic and text sides and the search index, loaded once (first search)."""
        if self._loaded is None:
            from packetclip.align.api import default_model, load_for_workspace
            from packetclip.align.search import SearchIndex
            from packetclip.align.sides import TextSide

            ws = self.workspace
            model, side = load_for_workspace(self.alignment or default_model(ws), ws)
            text = TextSide()
            index = SearchIndex.build(model, side, ws)
            text.embed(["warm up the text encoder"])     # its first call loads the model: at start, not per user
            self._loaded = (model, side, text, index)
        return self._loaded

    def check(self) -> None:
        """Fail at start (one line) when the workspace has no alignment to search with."""
        self.worker.submit(self._load).result()

    def search(self, query: str, top: int = 20) -> list[dict]:
        return self.worker.submit(self._search, query, top).result()

    def _search(self, query: str, top: int) -> list[dict]:
        from packetclip.align.search import search

        model, side, text, index = self._load()
        table = search(model, side, text, self.workspace, query, top=top, index=index)
        out = []
        for row in table.to_dict("records"):
            out.append({k: _plain(v) for k, v in row.items()})
        return out

    def flows_table(self):
        if self._flows is None:
            from packetclip.align.search import TUPLE_COLUMNS

            cols = ["flow_id", *TUPLE_COLUMNS, "first_ts_ns", "last_ts_ns", "Total Fwd Packet", "Total Bwd packets"]
            have = set(self.workspace.flow_columns())
            flows = self.workspace.labelled_flows(columns=[c for c in cols if c in have])
            self._flows = flows.drop_duplicates("flow_id").set_index("flow_id")
        return self._flows

    def descriptions(self):
        if self._descriptions is None:
            try:
                self._descriptions = self.workspace.descriptions()
            except PacketClipError:
                self._descriptions = False
        return self._descriptions

    def flow(self, flow_id: int) -> dict | None:
        """One flow of the workspace: its 5-tuple and class, its packet timeline, its descriptions."""
        flows = self.flows_table()
        if flow_id not in flows.index:
            return None
        row = {k: _plain(v) for k, v in flows.loc[flow_id].to_dict().items()}
        views = self.workspace.packet_views([flow_id], first_k=256)
        order = np.argsort(views.ts_ns, kind="stable")
        ts = views.ts_ns[order]
        timeline = {"t_s": ((ts - ts[0]) / 1e9).tolist() if len(ts) else [],
                    "length": ip_lengths(views.views[order]).tolist(),
                    "direction": views.direction[order].astype(int).tolist(), "start_ns": int(ts[0]) if len(ts) else 0}
        desc = self.descriptions()
        texts = [] if desc is False else desc.loc[desc["flow_id"] == flow_id, "text"].tolist()
        return {"flow_id": int(flow_id), "flow": row, "timeline": timeline, "descriptions": texts}


def ip_lengths(views: np.ndarray) -> np.ndarray:
    """IP datagram length of each masked view (lengths are kept by the mask; IPv6: payload + 40)."""
    if not len(views):
        return np.zeros(0, np.int64)
    v = views.astype(np.int64)
    ipv6 = (v[:, 0] >> 4) == 6
    return np.where(ipv6, v[:, 4] * 256 + v[:, 5] + 40, v[:, 2] * 256 + v[:, 3])


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def model_card(model: str | Path | None) -> dict:
    """What the model folder says about itself: a detector model's ``config.json`` or a reasoning bundle's
    ``bundle.json`` (type, classes, thresholds per target FPR, training data, validation figures)."""
    from packetclip.detect.scorer import DEFAULT_MODEL

    folder = DEFAULT_MODEL if model is None else Path(model)
    for name, kind in (("bundle.json", "reasoning bundle"), ("config.json", "detector model")):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise PacketClipError(f"{name} is unreadable ({err})", path=str(path)) from None
            break
    else:
        raise PacketClipError("not a model folder (no config.json or bundle.json)", path=str(folder))
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    card = {"name": "default (shipped in the package)" if model is None else folder.name, "kind": kind,
            "model_type": data.get("model_type") or data.get("format"), "weights_bytes": weights}
    for key in ("classes", "missions", "class_mission", "window_s", "hidden", "features", "threshold", "traffic",
                "host_context", "time_step"):
        if key in data:
            card[key] = data[key]
    if "calibration" in data:
        card["thresholds"] = data["calibration"]
    info = data.get("info") or data.get("meta") or {}
    card["info"] = {k: (v if not isinstance(v, list) or len(v) <= 12 else f"{len(v)} items")
                    for k, v in info.items()} if isinstance(info, dict) else info
    return card


class ReportFiles:
    """The ``reproduce`` report folder given at start: its files listed once, served by name from that list."""

    SUFFIXES = {".html": "text/html", ".png": "image/png", ".svg": "image/svg+xml", ".css": "text/css",
                ".json": "application/json", ".md": "text/markdown", ".csv": "text/csv", ".txt": "text/plain"}

    def __init__(self, folder: str | Path):
        root = Path(folder)
        if root.is_file():
            root = root.parent
        if not (root / "index.html").is_file():
            raise PacketClipError("no index.html in the report folder (write it with `packetclip reproduce`)",
                                  path=str(root))
        self.root = root.resolve()
        self.files: dict[str, Path] = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.is_symlink() and p.suffix.lower() in self.SUFFIXES and len(self.files) < 5000:
                self.files[p.relative_to(self.root).as_posix()] = p

    def lookup(self, name: str) -> tuple[Path, str] | None:
        p = self.files.get(name)
        return None if p is None else (p, self.SUFFIXES[p.suffix.lower()])


@lru_cache(maxsize=8)
def _graph(mission: str):
    from packetclip.knowledge import load_default_graph

    return load_default_graph(mission, seed=0)


def kg_svg(mission: str, highlight: tuple[str, ...] = ()) -> str:
    """The mission's knowledge graph as SVG (the layout of ``knowledge/draw.py``'s picture); nodes whose
    ATT&CK technique is one of ``highlight`` (or a sub-technique of one) are drawn highlighted and link to
    their ATT&CK page."""
    from packetclip.knowledge.draw import _column_positions
    from packetclip.knowledge.graph import EMBEDDING_ID, SENSOR_ID

    graph = _graph(mission)
    pos = _column_positions(graph)
    levels = graph.levels()
    tallest = max(len(level) for level in levels)
    cols = len(levels) + 2
    w, h = 170 * cols + 40, max(260, 34 * tallest + 80)

    def xy(nid):
        x, y = pos[nid]
        return 20 + 85 + x * 170, 40 + (1 - y) * (h - 80)

    hi = set(highlight)

    def lit(technique: str) -> bool:
        return any(technique == t or technique.startswith(t + ".") or t.startswith(technique + ".") for t in hi)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="kg" role="img" '
             f'aria-label="{escape(mission)} knowledge graph">']
    for src, dst in graph.edges:
        (x0, y0), (x1, y1) = xy(src), xy(dst)
        parts.append(f'<line x1="{x0 + 60:.0f}" y1="{y0:.0f}" x2="{x1 - 60:.0f}" y2="{y1:.0f}" class="edge"/>')
    nodes = {n.id: n for n in graph.nodes}
    for nid in pos:
        x, y = xy(nid)
        if nid in (SENSOR_ID, EMBEDDING_ID):
            label, cls, tech = ("sensor" if nid == SENSOR_ID else "embedding"), "node io", None
        else:
            n = nodes[nid]
            tech = n.provenance
            label, cls = n.word, f"node level{min(n.level, 3)}" + (" lit" if lit(tech) else "")
        box = (f'<rect x="{x - 58:.0f}" y="{y - 11:.0f}" width="116" height="22" rx="6" class="{cls}"/>'
               f'<text x="{x:.0f}" y="{y + 4:.0f}" class="label">{escape(label)}</text>')
        if tech:
            box += f'<text x="{x:.0f}" y="{y + 21:.0f}" class="prov">{escape(tech)}</text>'
            box = (f'<a href="{attack_url(tech)}" target="_blank" rel="noopener noreferrer">'
                   f'<title>{escape(label)}: ATT&amp;CK {escape(tech)}</title>{box}</a>')
        parts.append(box)
    parts.append("</svg>")
    return "".join(parts)
