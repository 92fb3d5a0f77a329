"""The LLM knowledge source: MissionGNN's prompting procedure, with ATT&CK as the safety net.

Step 1 asks for V single-word key concepts of the mission; step 2 asks, for every concept of the last
level, for associated single words that avoid all words used so far, N times. Answers are parsed
leniently (lists, bullets, numbering, preambles) and validated strictly (one lowercase word, not a
stopword, not a variant of a word already in the graph). A call is retried with a new seed when too
few words survive; what is still missing is filled from the ATT&CK vocabulary of the mission, and
those nodes carry the technique id instead of ``"llm"``, so a graph always shows what the LLM said.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from packetclip.errors import PacketClipError
from packetclip.knowledge import text as textmod
from packetclip.knowledge.attack import AttackSource, Candidate, LayeredBuilder, _check_sizes
from packetclip.knowledge.graph import MissionGraph
from packetclip.knowledge.missions import mission_spec
from packetclip.knowledge.source import KnowledgeSource

SYSTEM_PROMPT = ("You are a network security expert. You answer only with a comma-separated list of "
                 "single lowercase English words, with no explanations.")
KEY_PROMPT = ("List {n} single-word key concepts of {phrase} attacks on computer networks. "
              "Answer with exactly {n} words separated by commas.")
ASSOCIATED_PROMPT = ("List {n} single words associated with \"{word}\" in the context of {phrase} attacks "
                     "on computer networks. Do not use these words: {avoid}. "
                     "Answer with exactly {n} words separated by commas.")

# One worked exchange before each question shows the answer format; small models (SmolLM2-135M) otherwise
# answer with sentences or repeat the question. Its subject (phishing) is outside the three missions, and its
# words are never accepted as concepts.
EXAMPLE_KEY = ("List 4 single-word key concepts of phishing attacks on computer networks. "
               "Answer with exactly 4 words separated by commas.", "email, link, lure, bait")
EXAMPLE_ASSOCIATED = ("List 2 single words associated with \"email\" in the context of phishing attacks on "
                      "computer networks. Do not use these words: email, link, lure, bait. "
                      "Answer with exactly 2 words separated by commas.", "attachment, inbox")
EXAMPLE_WORDS = frozenset({"email", "link", "lure", "bait", "attachment", "inbox", "phishing"})

_ITEM_SPLIT = re.compile(r"[,;\n|/]+|\s+-\s+|\s+and\s+")
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\(?\d{1,3}[.)\]:]|\(?[a-z][.)]\s)\s*", re.I)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")
# "Here are five key concepts: a, b" -> "a, b"; a one-word head ("Flood: explanation") is an item, not a preamble.
_PREAMBLE = re.compile(r"^\s*\S+\s+\S+[^:\n]{0,120}:\s*(?=\S)")


def parse_word_list(answer: str, *, limit: int, exclude_keys: set[str] | None = None) -> list[str]:
    """Single-word concepts from a chat answer, in order, at most ``limit``.

    Accepts "a, b, c", bullet/numbered lists, "Here are ...: a, b", "Flood: explanation" items;
    rejects multi-word items, stopwords, numbers, over-long tokens, duplicates and variants of
    ``exclude_keys`` (see :func:`packetclip.knowledge.text.variant_key`).
    """
    if not isinstance(answer, str):
        return []
    exclude = set(exclude_keys or ())
    body = answer.replace("\r", "\n")
    out: list[str] = []
    for line in body.split("\n"):
        line = _PREAMBLE.sub("", _BULLET.sub("", line.strip()))
        for item in _ITEM_SPLIT.split(line):
            item = _BULLET.sub("", item)
            item = _PAREN.sub(" ", item)
            item = item.split(":")[0]
            item = item.strip().strip("\"'`*_.!?").lower()
            raw = re.findall(r"[a-z0-9]+", item)
            if len(raw) != 1 or not textmod.WORD_RE.match(raw[0]) or len(item.split()) != 1:
                continue
            word = textmod.singular(raw[0])
            if (word in textmod.STOPWORDS or not 2 <= len(word) <= textmod.MAX_CONCEPT_LEN
                    or textmod.variant_key(word) in exclude):
                continue
            exclude.add(textmod.variant_key(word))
            out.append(word)
            if len(out) == limit:
                return out
    return out


def merge_with_fallback(builder: LayeredBuilder, parent: str | None, llm_words: list[str],
                        fallback: list[Candidate], need: int) -> tuple[int, int]:
    """Offer the LLM's words (provenance ``"llm"``), then ATT&CK candidates until ``need`` are placed.

    ``parent`` is ``None`` for key concepts. Returns (LLM words placed, fallback words placed).
    """
    placed_llm = placed_fallback = 0
    for word in llm_words:
        if placed_llm == need:
            break
        placed_llm += builder.offer(parent, word, "llm") != "rejected"
    for cand in fallback:
        if placed_llm + placed_fallback >= need:
            break
        placed_fallback += builder.offer(parent, cand.word, cand.provenance, share=False) == "new"
    return placed_llm, placed_fallback


def _count(stats: dict[str, Any], placed: tuple[int, int]) -> None:
    stats["llm_words"] += placed[0]
    stats["fallback_words"] += placed[1]


class LLMSource(KnowledgeSource):
    """Mission graphs from a chat model (``smollm2`` offline, or any OpenAI-compatible server)."""

    name = "llm"

    def __init__(self, backend: Any = "smollm2", *, backend_kwargs: dict[str, Any] | None = None,
                 retries: int = 2, fallback: AttackSource | None = None, max_tokens: int = 64,
                 on_call: Callable[[str], None] | None = None):
        self.backend = backend
        self.backend_kwargs = dict(backend_kwargs or {})
        self.retries = retries
        self.fallback = fallback or AttackSource(temperature=0.0)
        self.max_tokens = max_tokens
        self.on_call = on_call
        self._chat = None

    def chat_backend(self):
        if self._chat is None:
            if isinstance(self.backend, str):
                try:
                    from packetclip.language.chat import get_chat_backend
                except ImportError as err:
                    raise PacketClipError(f"no chat backends available ({err}); use --source attack") from None
                self._chat = get_chat_backend(self.backend, **self.backend_kwargs)
            else:
                self._chat = self.backend
        return self._chat

    @staticmethod
    def messages(prompt: str, example: tuple[str, str]) -> list[dict[str, str]]:
        """System prompt, the worked example (question and answer), then the question."""
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": example[0]},
                {"role": "assistant", "content": example[1]}, {"role": "user", "content": prompt}]

    def _ask(self, prompt: str, need: int, exclude: set[str], seed: int, stats: dict[str, Any],
             example: tuple[str, str] = EXAMPLE_KEY) -> list[str]:
        """Best parse over up to 1 + retries calls; the first call is greedy, retries sample."""
        chat = self.chat_backend()
        best: list[str] = []
        messages = self.messages(prompt, example)
        exclude = set(exclude) | {textmod.variant_key(w) for w in EXAMPLE_WORDS}
        for attempt in range(1 + self.retries):
            stats["calls"] += 1
            if self.on_call is not None:
                self.on_call(prompt)
            try:
                answer = chat.chat(messages, max_tokens=self.max_tokens, temperature=0.0 if attempt == 0 else 0.8,
                                   seed=seed * 101 + attempt)
            except (PacketClipError, OSError, RuntimeError, ValueError, TimeoutError) as err:
                stats["errors"].append(f"{type(err).__name__}: {err}"[:200])
                continue
            words = parse_word_list(answer, limit=need, exclude_keys=exclude)
            if len(words) > len(best):
                best = words
            if len(best) >= need:
                break
            stats["retries"] += 1
        return best

    def build(self, mission: str, *, n_key: int = 6, n_levels: int = 2, per_node: int = 2,
              seed: int = 0) -> MissionGraph:
        spec = mission_spec(mission)
        _check_sizes(n_key, n_levels, per_node)
        vocab = self.fallback.vocabulary(spec.key)
        builder = LayeredBuilder(spec.key, vocab.banned_keys)
        stats: dict[str, Any] = {"calls": 0, "retries": 0, "errors": [], "llm_words": 0, "fallback_words": 0}

        words = self._ask(KEY_PROMPT.format(n=n_key, phrase=spec.phrase), n_key, set(builder.used_keys), seed, stats)
        _count(stats, merge_with_fallback(builder, None, words, vocab.ranked(), n_key))
        builder.close_level()

        call = 0
        for _ in range(n_levels):
            for parent, _prov in builder.levels[-1]:
                call += 1
                avoid = ", ".join([w for lvl in builder.levels for w, _ in lvl][-40:])
                prompt = ASSOCIATED_PROMPT.format(n=per_node, word=parent, phrase=spec.phrase, avoid=avoid)
                # Words already drafted at this level may come again (a shared child); earlier levels may not.
                exclude = set(builder.used_keys) | {textmod.variant_key(parent)}
                words = self._ask(prompt, per_node, exclude, seed + 7919 * call, stats, EXAMPLE_ASSOCIATED)
                fallback = vocab.associated(parent) + vocab.ranked()
                _count(stats, merge_with_fallback(builder, parent, words, fallback, per_node))
            if not builder.close_level():
                break

        chat = self.chat_backend()
        meta = {
            "seed": seed, "n_key": n_key, "n_levels": n_levels, "per_node": per_node,
            "backend": getattr(chat, "name", str(self.backend)), "label": spec.label,
            "prompts": {"system": SYSTEM_PROMPT, "key": KEY_PROMPT, "associated": ASSOCIATED_PROMPT,
                        "examples": [list(EXAMPLE_KEY), list(EXAMPLE_ASSOCIATED)]},
            "llm_calls": stats["calls"], "llm_retries": stats["retries"], "llm_errors": stats["errors"][:10],
            "llm_words": stats["llm_words"], "fallback_words": stats["fallback_words"],
            "fallback_source": f"attack {self.fallback.corpus.version}",
        }
        source = f"llm:{getattr(chat, 'name', self.backend)}"
        return builder.graph(source=source, meta=meta).validate()
