"""knowledge stage: mission knowledge graphs (MissionGNN-style layered concept DAGs) for DoS,
Reconnaissance and Brute Force, from MITRE ATT&CK v15 offline or from a chat LLM.

Typical use::

    from packetclip.knowledge import load_default_graph
    graph = load_default_graph("DoS", seed=0)
    graph.key_concepts(); graph.sample_concepts(np.random.default_rng(0), 3)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from packetclip.knowledge.graph import (
    EMBEDDING_ID,
    SENSOR_ID,
    ConceptNode,
    GraphBounds,
    GraphValidationError,
    MissionGraph,
)
from packetclip.knowledge.missions import MISSIONS, MissionSpec, mission_spec
from packetclip.knowledge.source import KnowledgeSource, get_source

__all__ = [
    "EMBEDDING_ID", "SENSOR_ID", "ConceptNode", "GraphBounds", "GraphValidationError", "MissionGraph",
    "MISSIONS", "MissionSpec", "mission_spec", "KnowledgeSource", "get_source",
    "load_default_graph", "write_graph_files", "build_all", "load_graphs",
]


@lru_cache(maxsize=32)
def _default_graph(mission_key: str, seed: int, cache_dir: str | None) -> MissionGraph:
    from packetclip.knowledge.attack import AttackSource

    return AttackSource(cache_dir=cache_dir).build(mission_key, seed=seed)


def load_default_graph(mission: str, seed: int = 0, *, cache_dir: str | Path | None = None) -> MissionGraph:
    """The offline ATT&CK graph of a mission with default sizes (memoised per process, corpus cached on disk).

    ``mission`` may be a key (``brute-force``) or a label (``Brute Force``). Returns a copy, so callers
    may not change the memoised graph.
    """
    spec = mission_spec(mission)
    graph = _default_graph(spec.key, int(seed), None if cache_dir is None else str(cache_dir))
    return MissionGraph.from_dict(graph.to_dict())


def write_graph_files(graph: MissionGraph, out_dir: str | Path, *, png: bool = True,
                      graphml: bool = True) -> dict[str, Path]:
    """Write ``<mission>.json`` (+ ``.graphml`` and ``.png``) into ``out_dir``; return the paths by kind."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from packetclip.errors import PacketClipError

        raise PacketClipError(f"cannot create output folder: {err.strerror or err}", path=out) from None
    paths = {"json": out / f"{graph.mission}.json"}
    graph.to_json(paths["json"])
    if graphml:
        paths["graphml"] = graph.write_graphml(out / f"{graph.mission}.graphml")
    if png:
        paths["png"] = graph.write_png(out / f"{graph.mission}.png")
    return paths


def build_all(out_dir: str | Path, *, seed: int = 0, source: KnowledgeSource | None = None,
              n_key: int = 6, n_levels: int = 2, per_node: int = 2, png: bool = True,
              graphml: bool = True) -> dict[str, dict[str, Path]]:
    """Build and write the graphs of the three attack missions (the demo's KG pictures)."""
    if source is None:
        from packetclip.knowledge.attack import AttackSource

        source = AttackSource()
    written = {}
    for key in MISSIONS:
        graph = source.build(key, n_key=n_key, n_levels=n_levels, per_node=per_node, seed=seed)
        written[key] = write_graph_files(graph, out_dir, png=png, graphml=graphml)
    return written


def load_graphs(path: str | Path) -> list[MissionGraph]:
    """Every mission graph in a folder (``*.json``) or one graph file; errors name the bad file."""
    from packetclip.errors import PacketClipError

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise PacketClipError("no mission graph (*.json) in this folder", path=path)
    elif path.is_file():
        files = [path]
    else:
        raise PacketClipError("no such file or folder", path=path)
    return [MissionGraph.load(f) for f in files]
