"""language stage: flow-table rows -> natural-language descriptions (templates, mission-graph concepts,
paraphrases by rules or by a chat LLM), chat backends, and a small OpenAI-compatible server.

Typical use::

    from packetclip.language import Describer, describe_workspace, write_mission_figures
    descriptions = Describer(backend="rules", per_flow=3, seed=0).describe(flows)
    path, table = describe_workspace("ws/", Describer("rules", per_flow=3), limit=3000)
    write_mission_figures(table, "report/figures")      # Figure 6: word cloud + top-10 words per mission
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
from packetclip.language.figures import write_mission_figures
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
from packetclip.language.workspace import describe_workspace, load_labelled_flows

__all__ = [
    "ChatBackend", "ChatCompletion", "get_chat_backend",
    "ConceptSource", "Describer", "KnowledgeConcepts", "StaticConcepts", "build_draft", "describe_flows",
    "final_text", "Draft", "LLMParaphraser", "Paraphrase", "ParaphraseCache", "Paraphraser", "RulesParaphraser",
    "get_paraphraser", "validate_paraphrase", "describe_workspace", "load_labelled_flows", "write_mission_figures",
]
