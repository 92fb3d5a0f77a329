"""Mission graphs to dense tensors, once per model (issue 11, deliverable 1).

For every mission graph: the node order (level by level, in the graph's own order), one row-normalised
adjacency ``[N_l, N_{l-1}]`` per level ``l >= 1`` (parent -> child), and the node words embedded by the
aligned text side (``[N, E]``, L2-normalised). The GNN then passes messages as a few dense matmuls over a
``(batch x time)`` stack, never per sample.

A graph is refused with one line (:class:`ReasoningGraphError`) when it has a cycle, an empty level, an edge that
names a word that is not one of its nodes ("unknown word"), or a word the text side cannot embed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.knowledge.graph import EMBEDDING_ID, SENSOR_ID, GraphValidationError, MissionGraph


class ReasoningGraphError(PacketClipError):
    """A mission graph the reasoning model cannot use (cycle, empty level, unknown word)."""


@dataclass
class GraphTensors:
    """One mission graph as arrays: ``words[l]``/``techniques[l]`` per level, ``adjacency[l-1]`` for level ``l``
    (``[N_l, N_{l-1}]``, rows sum to 1), ``vectors[l]`` (``[N_l, E]`` aligned text vectors)."""

    mission: str
    words: list[list[str]]
    techniques: list[list[str]]
    adjacency: list[np.ndarray]
    vectors: list[np.ndarray]

    @property
    def n_levels(self) -> int:
        return len(self.words)

    def node_list(self) -> list[tuple[int, str, str]]:
        """``(level, word, technique)`` in model order (the order of :attr:`MissionGNN` node activations)."""
        return [(lv, w, t) for lv, (ws, ts) in enumerate(zip(self.words, self.techniques)) for w, t in zip(ws, ts)]


def check_graph(graph: MissionGraph) -> MissionGraph:
    """Validate ``graph`` for reasoning; every failure is one :class:`ReasoningGraphError` line."""
    where = f"{graph.mission} graph"
    ids = {n.id for n in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in ids and end not in (SENSOR_ID, EMBEDDING_ID):
                word = end.split(":", 1)[-1]
                raise ReasoningGraphError(f"{where}: edge {src} -> {dst} names unknown word {word!r} (not a node)")
    levels = sorted({n.level for n in graph.nodes if isinstance(n.level, int)})
    if levels and levels != list(range(levels[-1] + 1)):
        missing = sorted(set(range(levels[-1] + 1)) - set(levels))
        raise ReasoningGraphError(f"{where}: level {missing[0]} is empty (levels must be contiguous)")
    try:
        graph.validate()
    except GraphValidationError as err:
        raise ReasoningGraphError(err.detail if hasattr(err, "detail") else str(err)) from None
    return graph


def graph_tensors(graph: MissionGraph, embed_words: Callable[[Sequence[str]], np.ndarray]) -> GraphTensors:
    """The dense form of one validated graph; ``embed_words`` maps words to aligned text vectors ``[n, E]``."""
    check_graph(graph)
    levels = graph.levels()
    words = [[n.word for n in lv] for lv in levels]
    techniques = [[n.provenance for n in lv] for lv in levels]
    index = [{n.id: i for i, n in enumerate(lv)} for lv in levels]
    adjacency = []
    for lv in range(1, len(levels)):
        a = np.zeros((len(levels[lv]), len(levels[lv - 1])), np.float32)
        for src, dst in graph.edges:
            if src in index[lv - 1] and dst in index[lv]:
                a[index[lv][dst], index[lv - 1][src]] = 1.0
        a /= np.maximum(a.sum(1, keepdims=True), 1.0)
        adjacency.append(a)
    vectors = []
    for lv_words in words:
        v = np.asarray(embed_words(lv_words), np.float32)
        if v.shape[0] != len(lv_words) or not np.all(np.isfinite(v)):
            raise ReasoningGraphError(f"{graph.mission} graph: the text side could not embed its words")
        norms = np.linalg.norm(v, axis=1)
        if np.any(norms < 1e-8):
            bad = lv_words[int(np.argmin(norms))]
            raise ReasoningGraphError(f"{graph.mission} graph: unknown word {bad!r} (the text side gives it no vector)")
        vectors.append(v / norms[:, None])
    return GraphTensors(graph.mission, words, techniques, adjacency, vectors)


def tensors_to_dict(gt: GraphTensors) -> dict:
    """JSON-able structure (vectors are saved as safetensors by the model, not here)."""
    return {"mission": gt.mission, "words": gt.words, "techniques": gt.techniques,
            "adjacency": [a.tolist() for a in gt.adjacency]}
