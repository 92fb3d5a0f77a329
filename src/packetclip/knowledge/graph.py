"""The mission knowledge graph: a layered DAG of single-word attack concepts (MissionGNN / PacketCLIP §3.2).

Level 0 holds the mission's key concepts; level i holds words associated with level i-1 and with no
overlap with any earlier level. A sensor node feeds every key concept and the last level feeds one
embedding node, so the reasoning GNN can pass messages sensor -> concepts -> embedding. Every concept
keeps its provenance: the ATT&CK technique id it was drawn from, or ``"llm"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.knowledge.text import WORD_RE

FORMAT_NAME = "packetclip.mission-graph"
FORMAT_VERSION = 1

SENSOR_ID = "__sensor__"
EMBEDDING_ID = "__embedding__"

WORD_PATTERN = WORD_RE
PROVENANCE_PATTERN = re.compile(r"^(llm|T\d{4}(\.\d{3})?)$")


class GraphValidationError(PacketClipError):
    """A mission graph breaks a structural rule (cycle, level skip, duplicate or multi-word concept, size)."""


@dataclass(frozen=True)
class GraphBounds:
    """Size limits a valid graph must respect; loose by default, tightened by callers that need to."""

    min_key: int = 1
    max_key: int = 64
    min_levels: int = 1
    max_levels: int = 10
    max_level_width: int = 512
    max_nodes: int = 2048
    min_word_len: int = 2
    max_word_len: int = 32


@dataclass(frozen=True)
class ConceptNode:
    """One concept: a single lowercase word at a level, with where it came from."""

    id: str
    word: str
    level: int
    provenance: str


def concept_id(word: str, level: int) -> str:
    return f"L{level}:{word}"


@dataclass
class MissionGraph:
    """A validated-on-demand layered DAG of concepts for one mission.

    ``edges`` holds every edge, including sensor -> key concept and last level -> embedding, so that
    GraphML/JSON exports are the whole graph the GNN sees.
    """

    mission: str
    nodes: list[ConceptNode]
    edges: list[tuple[str, str]]
    source: str = "attack"
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_levels(
        cls,
        mission: str,
        levels: Sequence[Sequence[tuple[str, str]]],
        links: Iterable[tuple[str, str]],
        *,
        source: str,
        meta: dict[str, Any] | None = None,
    ) -> "MissionGraph":
        """Build from per-level ``(word, provenance)`` lists and parent->child word links.

        Adds the sensor and embedding edges. Links are between words at consecutive levels.
        """
        nodes: list[ConceptNode] = []
        level_of: dict[str, int] = {}
        for level, items in enumerate(levels):
            for word, provenance in items:
                nodes.append(ConceptNode(concept_id(word, level), word, level, provenance))
                level_of.setdefault(word, level)
        edges: list[tuple[str, str]] = [(SENSOR_ID, concept_id(w, 0)) for w, _ in levels[0]] if levels else []
        for parent, child in links:
            if parent not in level_of or child not in level_of:
                raise GraphValidationError(f"link {parent!r} -> {child!r} names a word that is not a node")
            edges.append((concept_id(parent, level_of[parent]), concept_id(child, level_of[child])))
        if levels:
            last = len(levels) - 1
            edges.extend((concept_id(w, last), EMBEDDING_ID) for w, _ in levels[-1])
        return cls(mission=mission, nodes=nodes, edges=edges, source=source, meta=dict(meta or {}))

    # ---- queries used by the description generator and the GNN ---------------------------------

    @property
    def n_levels(self) -> int:
        """Number of concept levels (key concepts count as level 0)."""
        return 1 + max((n.level for n in self.nodes), default=-1)

    def levels(self) -> list[list[ConceptNode]]:
        out: list[list[ConceptNode]] = [[] for _ in range(self.n_levels)]
        for node in self.nodes:
            out[node.level].append(node)
        return out

    def key_concepts(self) -> list[str]:
        """The level-0 words, in rank order."""
        return [n.word for n in self.nodes if n.level == 0]

    def concepts(self, level: int | None = None) -> list[str]:
        """All concept words level by level, or the words of one level."""
        if level is None:
            return [n.word for n in sorted(self.nodes, key=lambda n: n.level)]
        return [n.word for n in self.nodes if n.level == level]

    def concept_provenance(self, word: str) -> str:
        """The ATT&CK technique id (or ``"llm"``) a concept was drawn from."""
        for node in self.nodes:
            if node.word == word:
                return node.provenance
        raise KeyError(f"{word!r} is not a concept of the {self.mission} graph")

    def sample_concepts(self, rng: np.random.Generator, k: int, *, level: int | None = None) -> list[str]:
        """``k`` distinct concepts drawn with the caller's seeded generator.

        Key concepts are the mission's core, so a level-l word is drawn with weight 1/(l+1).
        Asking for more words than there are returns them all, in sampled order.
        """
        pool = [n for n in self.nodes if level is None or n.level == level]
        if k <= 0 or not pool:
            return []
        weights = np.array([1.0 / (1 + n.level) for n in pool])
        picks = rng.choice(len(pool), size=min(k, len(pool)), replace=False, p=weights / weights.sum())
        return [pool[i].word for i in picks]

    def parents(self, word: str) -> list[str]:
        ids = {n.id: n.word for n in self.nodes}
        target = next((n.id for n in self.nodes if n.word == word), None)
        return [ids[s] for s, d in self.edges if d == target and s in ids]

    def children(self, word: str) -> list[str]:
        ids = {n.id: n.word for n in self.nodes}
        source = next((n.id for n in self.nodes if n.word == word), None)
        return [ids[d] for s, d in self.edges if s == source and d in ids]

    def techniques(self) -> list[str]:
        """Distinct technique ids among the provenances, sorted."""
        return sorted({n.provenance for n in self.nodes if n.provenance != "llm"})

    # ---- validation -----------------------------------------------------------------------------

    def validate(self, bounds: GraphBounds | None = None) -> "MissionGraph":
        """Check every structural rule; raise :class:`GraphValidationError` naming the first broken one."""
        bounds = bounds or GraphBounds()
        where = f"{self.mission} graph"
        if not self.nodes:
            raise GraphValidationError(f"{where}: has no concepts")
        by_id: dict[str, ConceptNode] = {}
        seen_words: dict[str, int] = {}
        for node in self.nodes:
            if node.id in (SENSOR_ID, EMBEDDING_ID) or node.id in by_id:
                raise GraphValidationError(f"{where}: duplicate node id {node.id!r}")
            if not isinstance(node.word, str) or not WORD_PATTERN.match(node.word):
                raise GraphValidationError(f"{where}: {node.word!r} is not a single lowercase word")
            if not bounds.min_word_len <= len(node.word) <= bounds.max_word_len:
                raise GraphValidationError(
                    f"{where}: {node.word!r} length is outside {bounds.min_word_len}..{bounds.max_word_len}")
            if node.word in seen_words:
                raise GraphValidationError(
                    f"{where}: word {node.word!r} appears at levels {seen_words[node.word]} and {node.level}")
            if not isinstance(node.level, int) or node.level < 0:
                raise GraphValidationError(f"{where}: {node.word!r} has invalid level {node.level!r}")
            if not isinstance(node.provenance, str) or not PROVENANCE_PATTERN.match(node.provenance):
                raise GraphValidationError(f"{where}: {node.word!r} has invalid provenance {node.provenance!r}")
            seen_words[node.word] = node.level
            by_id[node.id] = node

        levels = self.levels()
        last = len(levels) - 1
        for level, members in enumerate(levels):
            if not members:
                raise GraphValidationError(f"{where}: level {level} is empty (levels must be contiguous)")
            if len(members) > bounds.max_level_width:
                raise GraphValidationError(f"{where}: level {level} has {len(members)} > {bounds.max_level_width} nodes")
        if not bounds.min_key <= len(levels[0]) <= bounds.max_key:
            raise GraphValidationError(
                f"{where}: {len(levels[0])} key concepts, expected {bounds.min_key}..{bounds.max_key}")
        if not bounds.min_levels <= len(levels) <= bounds.max_levels:
            raise GraphValidationError(
                f"{where}: {len(levels)} levels, expected {bounds.min_levels}..{bounds.max_levels}")
        if len(self.nodes) > bounds.max_nodes:
            raise GraphValidationError(f"{where}: {len(self.nodes)} > {bounds.max_nodes} nodes")

        _check_acyclic(self.edges, where)

        seen_edges: set[tuple[str, str]] = set()
        for src, dst in self.edges:
            if (src, dst) in seen_edges:
                raise GraphValidationError(f"{where}: duplicate edge {src} -> {dst}")
            seen_edges.add((src, dst))
            if src == SENSOR_ID:
                if dst not in by_id or by_id[dst].level != 0:
                    raise GraphValidationError(f"{where}: sensor must feed key concepts only, not {dst!r}")
                continue
            if dst == EMBEDDING_ID:
                if src not in by_id or by_id[src].level != last:
                    raise GraphValidationError(f"{where}: only the last level may feed the embedding, not {src!r}")
                continue
            if src not in by_id or dst not in by_id:
                raise GraphValidationError(f"{where}: edge {src} -> {dst} names an unknown node")
            a, b = by_id[src], by_id[dst]
            if b.level != a.level + 1:
                raise GraphValidationError(
                    f"{where}: edge {a.word} (level {a.level}) -> {b.word} (level {b.level}) skips or reverses levels")

        fed_by_sensor = {d for s, d in seen_edges if s == SENSOR_ID}
        feeds_embedding = {s for s, d in seen_edges if d == EMBEDDING_ID}
        has_parent = {d for s, d in seen_edges if s != SENSOR_ID}
        has_child = {s for s, d in seen_edges if d != EMBEDDING_ID}
        for node in self.nodes:
            if node.level == 0 and node.id not in fed_by_sensor:
                raise GraphValidationError(f"{where}: key concept {node.word!r} has no edge from the sensor")
            if node.level > 0 and node.id not in has_parent:
                raise GraphValidationError(f"{where}: {node.word!r} (level {node.level}) has no parent")
            if node.level == last and node.id not in feeds_embedding:
                raise GraphValidationError(f"{where}: {node.word!r} (last level) does not feed the embedding")
            if node.level < last and node.id not in has_child:
                raise GraphValidationError(f"{where}: {node.word!r} (level {node.level}) leads nowhere")
        return self

    # ---- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "mission": self.mission,
            "source": self.source,
            "meta": self.meta,
            "sensor": SENSOR_ID,
            "embedding": EMBEDDING_ID,
            "nodes": [{"id": n.id, "word": n.word, "level": n.level, "provenance": n.provenance} for n in self.nodes],
            "edges": [[s, d] for s, d in self.edges],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The graph as JSON text (our versioned format); written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=True) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Any, *, path: str | Path | None = None, bounds: GraphBounds | None = None) -> "MissionGraph":
        def bad(message: str) -> PacketClipError:
            return PacketClipError(f"not a packetclip mission graph: {message}", path=path)

        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise bad(f"missing \"format\": \"{FORMAT_NAME}\"")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION or version < 1:
            raise bad(f"unsupported version {version!r} (this packetclip reads up to {FORMAT_VERSION})")
        mission, source, meta = data.get("mission"), data.get("source", ""), data.get("meta", {})
        if not isinstance(mission, str) or not isinstance(source, str) or not isinstance(meta, dict):
            raise bad("mission/source/meta have the wrong type")
        raw_nodes, raw_edges = data.get("nodes"), data.get("edges")
        if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
            raise bad("nodes and edges must be lists")
        nodes = []
        for i, item in enumerate(raw_nodes):
            if not isinstance(item, dict):
                raise bad(f"node {i} is not an object")
            nid, word, level, prov = item.get("id"), item.get("word"), item.get("level"), item.get("provenance")
            if not (isinstance(nid, str) and isinstance(word, str) and isinstance(prov, str)
                    and isinstance(level, int) and not isinstance(level, bool)):
                raise bad(f"node {i} needs string id/word/provenance and an integer level")
            nodes.append(ConceptNode(nid, word, level, prov))
        edges = []
        for i, item in enumerate(raw_edges):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise bad(f"edge {i} is not a [source, target] pair of ids")
            edges.append((item[0], item[1]))
        graph = cls(mission=mission, nodes=nodes, edges=edges, source=source, meta=meta)
        try:
            return graph.validate(bounds)
        except GraphValidationError as err:
            raise GraphValidationError(err.detail, path=path) from None

    @classmethod
    def from_json(cls, source: str | Path, *, bounds: GraphBounds | None = None) -> "MissionGraph":
        """Read and validate a graph: ``source`` is JSON text (``str``) or a file (``Path``)."""
        path = None
        text = source
        if isinstance(source, Path):
            path = source
            try:
                raw = path.read_bytes()
            except OSError as err:
                raise PacketClipError(f"cannot read: {err.strerror or err}", path=path) from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PacketClipError("not UTF-8 text", path=path, offset=err.start) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PacketClipError(f"not valid JSON: {err.msg}", path=path, offset=err.pos) from None
        except RecursionError:
            raise PacketClipError("JSON nested too deeply", path=path) from None
        return cls.from_dict(data, path=path, bounds=bounds)

    @classmethod
    def load(cls, path: str | Path, *, bounds: GraphBounds | None = None) -> "MissionGraph":
        """Read and validate a graph file written by :meth:`to_json`."""
        return cls.from_json(Path(path), bounds=bounds)

    def to_networkx(self):
        """A ``networkx.DiGraph`` with sensor/concept/embedding nodes and word/level/provenance attributes."""
        import networkx as nx

        g = nx.DiGraph(mission=self.mission, source=self.source, format=FORMAT_NAME, version=FORMAT_VERSION)
        g.add_node(SENSOR_ID, kind="sensor", word="sensor", level=-1, provenance="")
        for n in self.nodes:
            g.add_node(n.id, kind="concept", word=n.word, level=n.level, provenance=n.provenance)
        g.add_node(EMBEDDING_ID, kind="embedding", word="embedding", level=self.n_levels, provenance="")
        g.add_edges_from(self.edges)
        return g

    def write_graphml(self, path: str | Path) -> Path:
        import networkx as nx

        path = Path(path)
        nx.write_graphml(self.to_networkx(), path)
        return path

    def write_png(self, path: str | Path, *, title: str | None = None) -> Path:
        from packetclip.knowledge.draw import draw_graph

        return draw_graph(self, path, title=title)

    def summary(self) -> dict[str, Any]:
        return {
            "mission": self.mission,
            "source": self.source,
            "levels": self.n_levels,
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "key_concepts": self.key_concepts(),
        }


def _check_acyclic(edges: Sequence[tuple[str, str]], where: str) -> None:
    """Kahn's algorithm; the level rule already forbids cycles, this guards graphs built by hand."""
    succ: dict[str, list[str]] = {}
    indeg: dict[str, int] = {}
    for s, d in edges:
        succ.setdefault(s, []).append(d)
        indeg[d] = indeg.get(d, 0) + 1
        indeg.setdefault(s, 0)
    queue = [n for n, k in indeg.items() if k == 0]
    visited = 0
    while queue:
        n = queue.pop()
        visited += 1
        for d in succ.get(n, ()):
            indeg[d] -= 1
            if indeg[d] == 0:
                queue.append(d)
    if visited != len(indeg):
        stuck = sorted(n for n, k in indeg.items() if k > 0)[:3]
        raise GraphValidationError(f"{where}: has a cycle through {', '.join(stuck)}")
