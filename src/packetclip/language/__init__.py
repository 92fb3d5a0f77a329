"""language stage: flow-table rows -> natural-language descriptions (templates, mission-graph concepts,
paraphrases by rules or by a chat LLM), chat backends, and a small OpenAI-compatible server.

Typical use::

    from packetclip.language import Describer
    descriptions = Describer(backend="rules", per_flow=3, seed=0).describe(flows)
"""

from __future__ import annotations

from packetclip.language.chat import ChatBackend, ChatCompletion, get_chat_backend
from packetclip.language.describe import (
    ConceptSource,
    Describer,
    KnowledgeConcepts,
    StaticConcepts,
    build_draft,
    describe_flows,
    final_text,
)
from packetclip.language.paraphrase import (
    Draft,
    LLMParaphraser,
    Paraphrase,
    ParaphraseCache,
    Paraphraser,
    RulesParaphraser,
    get_paraphraser,
    validate_paraphrase,
)

__all__ = [
    "ChatBackend", "ChatCompletion", "get_chat_backend",
    "ConceptSource", "Describer", "KnowledgeConcepts", "StaticConcepts", "build_draft", "describe_flows",
    "final_text", "Draft", "LLMParaphraser", "Paraphrase", "ParaphraseCache", "Paraphraser", "RulesParaphraser",
    "get_paraphraser", "validate_paraphrase",
]
