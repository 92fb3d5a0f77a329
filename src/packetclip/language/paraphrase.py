"""Step 4 of a description: paraphrasing the template draft, offline by rules or with a chat LLM.

Every paraphraser turns a :class:`Draft` into a :class:`Paraphrase`. ``rules`` is deterministic given
its seed (synonyms, sentence order, active/passive voice, connectives). ``LLMParaphraser`` asks a chat
backend, validates the answer (:func:`validate_paraphrase`: the label words and every number of the draft
kept, no new numbers, length bounds, no refusal or boilerplate) and falls back to ``rules`` when the answer
fails, recording why. LLM answers are cached on disk (:class:`ParaphraseCache`), so a rerun is identical
and makes no model call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.language import templates as T
from packetclip.language.facts import numbers_in


def prefix_for(label: str) -> str:
    """The paper's fixed opening sentence (step 5); none for an unlabelled flow (``label`` "")."""
    return f"A network traffic of {label}." if label else ""


@dataclass
class Draft:
    """The template text of one description (steps 2 and 3), before paraphrasing."""

    label: str
    sentences: list[str]
    concepts: list[str] = field(default_factory=list)     # KG concepts woven into the last sentence
    key_concepts: list[str] = field(default_factory=list)  # the mission's key concepts, appended at the end
    has_concept_sentence: bool = False

    @property
    def body(self) -> str:
        return " ".join(self.sentences)

    @property
    def text(self) -> str:
        """What an LLM is asked to rewrite: the opening sentence and the body."""
        return f"{prefix_for(self.label)} {self.body}".strip()

    @property
    def numbers(self) -> list[float]:
        return numbers_in(self.body)


@dataclass(frozen=True)
class Paraphrase:
    body: str                       # the paraphrased body, without the opening sentence
    backend: str                    # who wrote it: "rules", "smollm2", "openai"
    fallback: bool = False          # an LLM answer failed validation (or was empty) and rules wrote it
    reason: str | None = None       # why the LLM answer was rejected
    cached: bool = False


class Paraphraser:
    """Turns drafts into paraphrases. ``seed`` fixes every choice."""

    name = "paraphraser"

    def paraphrase(self, draft: Draft, *, seed: int) -> Paraphrase:
        raise NotImplementedError

    def paraphrase_many(self, drafts: Sequence[Draft], seeds: Sequence[int],
                        progress: Callable[[int], None] | None = None) -> list[Paraphrase]:
        out = []
        for draft, seed in zip(drafts, seeds):
            out.append(self.paraphrase(draft, seed=seed))
            if progress is not None:
                progress(1)
        return out


# ---- rules ---------------------------------------------------------------------------------------

_SYNONYM_INDEX: dict[str, tuple[str, ...]] = {}
for _group in T.SYNONYM_GROUPS:
    for _member in _group:
        _SYNONYM_INDEX.setdefault(_member, _group)
_SYNONYM_RE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(m) for m in sorted(_SYNONYM_INDEX, key=len, reverse=True))
                         + r")(?![\w-])")
_VOICE = [(re.compile(p), r) for p, r in T.VOICE_RULES]
_SINGULAR_SUBJECT = re.compile(r"^(1 packet(?: \([^)]*\))?) are ")


def _lower_first(sentence: str) -> str:
    """Lower-case a sentence's first letter unless its first word is an acronym or a name ("TCP", "nDPI")."""
    word = sentence.split(" ", 1)[0].rstrip(",:;")
    if word == "A" or (len(word) > 1 and word[0].isupper() and word[1:].islower()):
        return sentence[0].lower() + sentence[1:]
    return sentence


def _upper_first(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] if sentence else sentence


class RulesParaphraser(Paraphraser):
    """Offline, deterministic lexical and structural variation of a draft.

    Per draft, seeded: active/passive rewrites of known sentence shapes, sentence reordering (the service
    sentence usually stays first, the concept sentence usually last), synonym substitution, and merging
    neighbouring sentences with connectives. Numbers are never touched.
    """

    name = "rules"

    def __init__(self, p_voice: float = 0.4, p_synonym: float = 0.5, p_merge: float = 0.3, p_shuffle: float = 0.6):
        self.p_voice = p_voice
        self.p_synonym = p_synonym
        self.p_merge = p_merge
        self.p_shuffle = p_shuffle

    def paraphrase(self, draft: Draft, *, seed: int) -> Paraphrase:
        return Paraphrase(body=self.rewrite(draft, seed), backend=self.name)

    def rewrite(self, draft: Draft, seed: int) -> str:
        rng = np.random.default_rng([abs(int(seed)), 0x5EED])
        sentences = [self._voice(s, rng) for s in draft.sentences]
        concept = sentences.pop() if draft.has_concept_sentence and sentences else None
        head, rest = sentences[:1], sentences[1:]
        if rest and rng.random() < self.p_shuffle:
            rest = [rest[i] for i in rng.permutation(len(rest))]
        if head and rest and rng.random() < 0.25:        # the service sentence moves behind another one
            at = int(rng.integers(1, len(rest) + 1))
            rest.insert(at, head.pop())
        ordered = head + rest
        if concept is not None:
            ordered.insert(len(ordered) if rng.random() < 0.8 else int(rng.integers(1, len(ordered) + 1)), concept)
        ordered = [self._synonyms(s, rng) for s in ordered]
        return " ".join(self._merge(ordered, rng))

    def _voice(self, sentence: str, rng: np.random.Generator) -> str:
        if rng.random() >= self.p_voice:
            return sentence
        for pattern, replacement in _VOICE:
            if pattern.match(sentence):
                out = _upper_first(pattern.sub(replacement, sentence, count=1))
                return _SINGULAR_SUBJECT.sub(r"\1 is ", out)
        return sentence

    def _synonyms(self, sentence: str, rng: np.random.Generator) -> str:
        def pick(match: re.Match) -> str:
            word = match.group(1)
            if rng.random() >= self.p_synonym:
                return word
            group = _SYNONYM_INDEX[word]
            return group[int(rng.integers(len(group)))]

        return _upper_first(_SYNONYM_RE.sub(pick, sentence))

    def _merge(self, sentences: list[str], rng: np.random.Generator) -> list[str]:
        out: list[str] = []
        for sentence in sentences:
            if out and out[-1].endswith(".") and rng.random() < self.p_merge:
                joiner = T.CONNECTIVES[int(rng.integers(len(T.CONNECTIVES)))]
                out[-1] = out[-1][:-1] + joiner + _lower_first(sentence)
            else:
                # "Associated concepts: ..." reads badly after an opener; other sentences may take one.
                if out and rng.random() < 0.15 and not sentence.startswith("Associated"):
                    opener = T.OPENERS[int(rng.integers(len(T.OPENERS)))]
                    sentence = opener + _lower_first(sentence) if opener else sentence
                out.append(sentence)
        return out


# ---- validation ----------------------------------------------------------------------------------

_BOILERPLATE = re.compile(
    r"\b(as an ai|language model|i cannot|i can't|i can not|i'm sorry|i am sorry|sorry,|i apologi[sz]e|"
    r"i'm unable|i am unable|cannot assist|can't assist|rewritten (?:text|description|version)|"
    r"paraphrased (?:text|description|version)|here is|here's|let me know|hope this helps|certainly[,!]|"
    r"sure[,!]|original text|in different words)\b", re.I)
_PREAMBLE = re.compile(r"^\s*(?:sure|certainly|okay|ok)?[ ,!.]*(?:here(?: is|'s)[^:\n]{0,80}|rewritten[^:\n]{0,40}|"
                       r"paraphrase[^:\n]{0,40}):\s*", re.I)
MAX_CHARS = 1200


def clean_answer(answer: str) -> str:
    """Formatting only: a 'Here is ...:' preamble, wrapping quotes and line breaks go; content stays."""
    text = _PREAMBLE.sub("", answer.strip())
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        text = text[1:-1].strip()
    return text


def label_words(label: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", label.lower())


def _has_number(value: float, pool: Sequence[float]) -> bool:
    return any(abs(value - p) <= 1e-9 * max(1.0, abs(p)) for p in pool)


def validate_paraphrase(candidate: str, source: str, label: str) -> str | None:
    """Why an LLM paraphrase of ``source`` is unusable, or None when it is fine.

    Rules: not empty; no refusal or chatbot boilerplate; every word of ``label`` kept; ends like a sentence
    (not cut off by the token limit); no sentence repeated; every number of ``source`` kept (formatting
    may differ: '4,100' == '4100', '35.0' == '35'); no number that ``source`` lacks; length within
    [0.4, 2.0] x the source (and at most 1,200 characters).
    """
    if not isinstance(candidate, str) or not candidate.strip():
        return "empty answer"
    text = candidate.strip()
    if _BOILERPLATE.search(text):
        return "refusal or boilerplate"
    lowered = set(re.findall(r"[a-z0-9]+", text.lower()))
    missing = [w for w in label_words(label) if w not in lowered]
    if missing:
        return f"label word dropped: {missing[0]}"
    if not re.search(r"[.!?][\"')\]]?$", text):
        return "truncated"
    sentences = [" ".join(x.lower().split()) for x in re.split(r"(?<=[.!?;])\s+", text) if len(x.split()) >= 3]
    if len(sentences) != len(set(sentences)):
        return "repetition"
    wanted, got = numbers_in(source), numbers_in(text)
    for value in wanted:
        if not _has_number(value, got):
            return f"number dropped: {value:g}"
    for value in got:
        if not _has_number(value, wanted):
            return f"new number: {value:g}"
    if len(text) > min(MAX_CHARS, 2.0 * len(source) + 20):
        return "too long"
    if len(text) < 0.4 * len(source):
        return "too short"
    return None


def strip_opening(text: str, label: str) -> str:
    """Drop leading sentences that only restate the label ("The network traffic of X.", "X:", "X."),
    since the final text adds the canonical opening itself."""
    words = set(label_words(label))
    while True:
        match = re.match(r"^\s*([^.:!?]{0,120}?[.:!?])\s*", text)
        if not match:
            return text.strip()
        head = match.group(1)
        tokens = re.findall(r"[a-z0-9]+", head.lower())
        filler = {"a", "an", "the", "network", "traffic", "of", "this", "is", "flow"}
        if tokens and words <= set(tokens) and set(tokens) <= words | filler:
            text = text[match.end():]
        else:
            return text.strip()


# ---- cache ---------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$PACKETCLIP_CACHE/language`` when that variable is set, else ``~/.cache/packetclip/language``."""
    from packetclip.util.cache import cache_dir

    return cache_dir("language")


class ParaphraseCache:
    """LLM answers on disk, keyed by sha256 of (backend + model, messages, sampling settings, seed).

    ``hits`` / ``misses`` count lookups, so callers (and tests) can see that a rerun made no model call.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / "paraphrases.sqlite"
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
                             "answer TEXT NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as err:
            raise PacketClipError(f"cannot open the paraphrase cache: {err}", path=str(self.directory)) from None

    @staticmethod
    def key(identity: str, messages: Sequence[dict], *, max_tokens: int, temperature: float, seed: int) -> str:
        blob = json.dumps({"backend": identity, "messages": list(messages), "max_tokens": max_tokens,
                           "temperature": temperature, "seed": seed}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0]

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Store (key, backend identity, answer) rows."""
        if items:
            self._db.executemany("INSERT OR REPLACE INTO answers (key, backend, answer) VALUES (?, ?, ?)", list(items))
            self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()


# ---- LLM -----------------------------------------------------------------------------------------

SYSTEM_PROMPT = ("You rewrite short technical descriptions of network traffic in your own words. "
                 "Keep the traffic label and every number with its unit exactly as written. "
                 "Do not add numbers or facts. Answer with the rewritten description only.")
USER_PROMPT = "Rewrite this description in different words:\n\n{text}"


class LLMParaphraser(Paraphraser):
    """Paraphrases with a chat backend; invalid answers fall back to ``rules`` (``fallback=True``).

    Greedy decoding (``temperature=0``, the default) lets drafts be sent in batches to backends that batch
    (SmolLM2); with ``temperature > 0`` each draft is sampled alone with its own seed.
    """

    def __init__(self, chat, *, cache: ParaphraseCache | None = None, fallback: Paraphraser | None = None,
                 max_tokens: int = 160, temperature: float = 0.0, batch_size: int = 8):
        self.chat = chat
        self.name = getattr(chat, "name", "llm")
        self.cache = cache
        self.fallback = fallback or RulesParaphraser()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.batch_size = max(1, int(batch_size))
        self.model_calls = 0

    def messages(self, draft: Draft) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_PROMPT.format(text=draft.text)}]

    def _key(self, draft: Draft, seed: int) -> str:
        return ParaphraseCache.key(self.chat.identity(), self.messages(draft), max_tokens=self.max_tokens,
                                   temperature=self.temperature, seed=seed)

    def paraphrase(self, draft: Draft, *, seed: int) -> Paraphrase:
        return self.paraphrase_many([draft], [seed])[0]

    def paraphrase_many(self, drafts: Sequence[Draft], seeds: Sequence[int],
                        progress: Callable[[int], None] | None = None) -> list[Paraphrase]:
        answers: list[str | None] = [None] * len(drafts)
        cached = [False] * len(drafts)
        keys = [self._key(d, s) for d, s in zip(drafts, seeds)]
        todo = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                answers[i], cached[i] = hit, True
            else:
                todo.append(i)
        if progress is not None and len(todo) < len(drafts):
            progress(len(drafts) - len(todo))
        step = self.batch_size if self.temperature == 0 else 1
        batcher = getattr(self.chat, "chat_batch", None)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            conversations = [self.messages(drafts[i]) for i in chunk]
            if batcher is not None and len(chunk) > 1:
                texts = batcher(conversations, max_tokens=self.max_tokens, temperature=self.temperature,
                                seed=int(seeds[chunk[0]]))
            else:
                texts = [self.chat.chat(conversations[0], max_tokens=self.max_tokens, temperature=self.temperature,
                                        seed=int(seeds[chunk[0]]))]
            self.model_calls += len(chunk)
            for i, text in zip(chunk, texts):
                answers[i] = text
            if self.cache is not None:
                self.cache.put_many([(keys[i], self.chat.identity(), answers[i]) for i in chunk])
            if progress is not None:
                progress(len(chunk))
        return [self._finish(d, s, a or "", c) for d, s, a, c in zip(drafts, seeds, answers, cached)]

    def _finish(self, draft: Draft, seed: int, answer: str, cached: bool) -> Paraphrase:
        text = clean_answer(answer)
        reason = validate_paraphrase(text, draft.text, draft.label)
        if reason is not None:
            rules = self.fallback.paraphrase(draft, seed=seed)
            return Paraphrase(body=rules.body, backend=self.fallback.name, fallback=True, reason=reason, cached=cached)
        body = strip_opening(text, draft.label)
        if not body or validate_paraphrase(f"{prefix_for(draft.label)} {body}", draft.text, draft.label) is not None:
            rules = self.fallback.paraphrase(draft, seed=seed)
            return Paraphrase(body=rules.body, backend=self.fallback.name, fallback=True,
                              reason="nothing but the opening sentence", cached=cached)
        return Paraphrase(body=body, backend=self.name, cached=cached)


def get_paraphraser(backend: str = "rules", *, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    chat=None, max_tokens: int = 160, temperature: float = 0.0, batch_size: int = 8,
                    **chat_kwargs) -> Paraphraser:
    """``rules`` (offline, default), ``smollm2`` or ``openai`` (chat options such as base_url in ``chat_kwargs``;
    ``chat`` passes a ready backend object instead)."""
    key = str(backend).strip().lower()
    if key == "rules":
        return RulesParaphraser()
    if key not in ("smollm2", "openai"):
        raise PacketClipError(f"unknown paraphrase backend {backend!r}; expected one of: rules, smollm2, openai")
    if chat is None:
        from packetclip.language.chat import get_chat_backend

        chat = get_chat_backend(key, **chat_kwargs)
    cache = ParaphraseCache(cache_dir) if use_cache else None
    return LLMParaphraser(chat, cache=cache, max_tokens=max_tokens, temperature=temperature, batch_size=batch_size)
