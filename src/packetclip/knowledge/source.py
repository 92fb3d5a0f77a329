"""The one interface every knowledge source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from packetclip.errors import PacketClipError
from packetclip.knowledge.graph import MissionGraph


class KnowledgeSource(ABC):
    """Builds a mission's knowledge graph: V key concepts, then N levels of associated words.

    ``n_key`` is V, ``n_levels`` is N (expansion iterations, so the graph has N+1 concept levels),
    ``per_node`` the associated words asked for each concept; ``seed`` makes the result reproducible.
    """

    name: str = "source"

    @abstractmethod
    def build(self, mission: str, *, n_key: int = 6, n_levels: int = 2, per_node: int = 2,
              seed: int = 0) -> MissionGraph:
        """Return a validated graph for ``mission`` (dos, reconnaissance or brute-force)."""


def get_source(name: str, **kwargs) -> KnowledgeSource:
    """``attack`` (offline, MITRE ATT&CK v15) or ``llm`` (chat backend with ATT&CK fallback)."""
    if name == "attack":
        from packetclip.knowledge.attack import AttackSource

        return AttackSource(**kwargs)
    if name == "llm":
        from packetclip.knowledge.llm import LLMSource

        return LLMSource(**kwargs)
    raise PacketClipError(f"unknown knowledge source {name!r}; expected attack or llm")
