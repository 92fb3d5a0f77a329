"""Flow-table rows -> natural-language descriptions, in PacketCLIP's steps (paper Fig. 2, §3.1).

1. read the row's facts (:mod:`packetclip.language.facts`);
2. template sentences that embed the column values: first, when the table has addresses and times, the
   flow's host context (:mod:`packetclip.language.context`: a flood packet is one of thousands that hit the
   same target from thousands of addresses, a probe one of a hundred to different ports of one host), then
   what the exchange amounts to when its counts,
   flags and service make that clear (a half-open handshake, a login dialogue, an empty probe...) and why
   that matters, then the service and one of the feature families (volume, rate, timing, flags, direction),
   several templates per situation, all drawn with a per-row seed;
3. concepts sampled from the label's mission knowledge graph woven into a sentence (Benign has no graph,
   so no concepts); concepts the flow contradicts (a protocol it does not use, "flood" for a trickle) are
   left out and those it shows or fits are drawn more often;
4. a paraphrase (:mod:`packetclip.language.paraphrase`: ``rules`` offline, or an LLM with validation);
5. the final text ``"A network traffic of {label}. {paraphrase} Concepts: {key concepts}."``, the
   concepts suffix only for attack traffic, as in the paper: the mission's key concepts that the flow does
   not contradict, those it fits first.

``Describer(backend="rules", per_flow=3, seed=0).describe(flows)`` returns one row per description. Flows
without a label column are described label-free: steps 1, 2 and 4 only (no concepts, no opening sentence),
with ``label`` "" and ``mission`` None in the result.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError, PacketClipError
from packetclip.language import templates as T
from packetclip.language.context import add_host_context
from packetclip.language.facts import COLUMNS, REQUIRED, FlowFacts, resolve_columns
from packetclip.language.paraphrase import Draft, Paraphraser, RulesParaphraser, get_paraphraser, prefix_for


# ---- concept sources -------------------------------------------------------------------------------


class ConceptSource(Protocol):
    """Where step 3 gets its concepts: the words of a mission's graph with their level (0 = key concept)."""

    def pool(self, mission: str) -> list[tuple[str, int]]: ...

    def key_concepts(self, mission: str) -> list[str]: ...


class KnowledgeConcepts:
    """The mission knowledge graphs of :mod:`packetclip.knowledge` (offline ATT&CK graphs by default)."""

    def __init__(self, seed: int = 0, *, graphs: Mapping[str, Any] | None = None, cache_dir: str | None = None):
        self.seed = seed
        self.cache_dir = cache_dir
        self._graphs: dict[str, Any] = dict(graphs or {})

    def graph(self, mission: str):
        if mission not in self._graphs:
            from packetclip.knowledge import load_default_graph

            self._graphs[mission] = load_default_graph(mission, seed=self.seed, cache_dir=self.cache_dir)
        return self._graphs[mission]

    def pool(self, mission: str) -> list[tuple[str, int]]:
        return [(n.word, int(n.level)) for n in self.graph(mission).nodes]

    def key_concepts(self, mission: str) -> list[str]:
        return list(self.graph(mission).key_concepts())


class StaticConcepts:
    """Concepts given directly: ``{mission: [key concepts, ...]}`` or ``{mission: [(word, level), ...]}``."""

    def __init__(self, concepts: Mapping[str, Sequence[Any]]):
        self._pools: dict[str, list[tuple[str, int]]] = {}
        for mission, words in concepts.items():
            self._pools[mission] = [(w, 0) if isinstance(w, str) else (str(w[0]), int(w[1])) for w in words]

    def pool(self, mission: str) -> list[tuple[str, int]]:
        return list(self._pools.get(mission, []))

    def key_concepts(self, mission: str) -> list[str]:
        return [w for w, level in self._pools.get(mission, []) if level == 0]


RELEVANCE_BOOST = 8.0


def _relevant(facts: FlowFacts) -> set[str]:
    return {w for meaning, _ in facts.interpretation() for w in T.RELEVANT_CONCEPTS.get(meaning, ())}


def fitting_key_concepts(keys: Sequence[str], facts: FlowFacts) -> list[str]:
    """The mission's key concepts that this flow does not contradict, those it shows or fits first (rank
    order kept within each group): ``flood`` is left out for a flow that trickles, ``amplification`` for one
    whose reply is not larger than its request. Never empty: when the flow contradicts them all, all stay."""
    relevant = _relevant(facts)
    kept = [(0 if facts.supports(w) or w in relevant else 1, i, w) for i, w in enumerate(keys)
            if facts.supports(w) is not False]
    return [w for _, _, w in sorted(kept)] or list(keys)


def choose_concepts(pool: Sequence[tuple[str, int]], facts: FlowFacts, rng: np.random.Generator, k: int,
                    *, exclude: Sequence[str] = ()) -> list[str]:
    """``k`` concepts of a mission for this flow: level-l words weigh 1/(l+1); words the flow shows
    (``syn`` on a flow with SYN flags) or that fit what it was read to be (``password`` for a login
    dialogue, see ``templates.RELEVANT_CONCEPTS``) weigh ``RELEVANCE_BOOST`` times more; words the flow
    contradicts, and ``exclude`` (the key concepts the text already lists), are left out."""
    relevant = _relevant(facts)
    skip = set(exclude)
    words, weights = [], []
    for word, level in pool:
        evidence = facts.supports(word)
        if evidence is False or word in skip:
            continue
        words.append(word)
        weights.append((RELEVANCE_BOOST if evidence or word in relevant else 1.0) / (1 + level))
    if not words or k <= 0:
        return []
    p = np.asarray(weights) / np.sum(weights)
    picks = rng.choice(len(words), size=min(k, len(words)), replace=False, p=p)
    return [words[i] for i in picks]


def _join_words(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


# ---- drafts ----------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def build_draft(facts: FlowFacts, label: str, rng: np.random.Generator, *, concepts: list[str] | None = None,
                key_concepts: list[str] | None = None, families: tuple[int, int] = (1, 2),
                p_service: float = 0.25, p_implication: float = 0.8, p_context_implication: float = 0.2,
                p_context_skip_family: float = 0.8) -> Draft:
    """Steps 2-3 for one flow.

    The draft opens with the flow's host context when ``facts`` has one worth saying
    (``FlowFacts.context_reading()``: what its source and destination did in the same window); the flow's
    own sentences follow more tersely then (the implication with probability ``p_context_implication``, the
    feature family skipped with probability ``p_context_skip_family``). Then what the exchange amounts to (when the flow makes that clear), followed with
    probability ``p_implication`` by what such behaviour does, then the service sentence (always when there
    is no such reading, else with probability ``p_service``), nDPI's application when known, a number of
    the other feature families drawn by salience (uniform in ``[families[0], families[1])``), and the
    concept sentence.
    """
    fields = facts.fields()
    sentences = []
    context = facts.context_reading()
    if context is not None:
        sentences.append(_pick(rng, T.CONTEXT[context]).format(**fields))
    meanings = facts.interpretation()
    if meanings:
        weights = np.array([w for _, w in meanings])
        meaning = meanings[int(rng.choice(len(meanings), p=weights / weights.sum()))][0]
        reading = _pick(rng, T.INTERPRETATION[meaning]).format(**fields)
        if meaning in T.IMPLICATION and rng.random() < (p_implication if context is None else p_context_implication):
            # One unit, so that reordering never puts "this way" before what it refers to.
            reading += " " + _pick(rng, T.IMPLICATION[meaning]).format(**fields)
        sentences.append(reading)
    if not meanings or rng.random() < p_service:
        sentences.append(_pick(rng, T.SERVICE[facts.service_situation()]).format(**fields))
    if facts.app and rng.random() < 0.7:
        sentences.append(_pick(rng, T.SERVICE["app"]).format(**fields))
    if facts.encrypted and rng.random() < 0.5:
        sentences.append(_pick(rng, T.SERVICE["encrypted"]))

    situations = facts.situations()
    names = list(situations)
    salience = np.array([max(w for _, w in situations[n]) for n in names])
    n_families = min(len(names), int(rng.integers(families[0], families[1])))
    if context is not None and rng.random() < p_context_skip_family:
        n_families = 0   # the context sentence already says what matters; keep the text focused
    chosen = rng.choice(len(names), size=n_families, replace=False, p=salience / salience.sum())
    for index in chosen:
        options = situations[names[int(index)]]
        weights = np.array([w for _, w in options])
        situation = options[int(rng.choice(len(options), p=weights / weights.sum()))][0]
        sentences.append(_pick(rng, T.FAMILIES[names[int(index)]][situation]).format(**fields))

    has_concepts = bool(concepts)
    if has_concepts:
        sentences.append(_pick(rng, T.CONCEPTS).format(concepts=_join_words(concepts)))
    return Draft(label=label, sentences=sentences, concepts=list(concepts or []),
                 key_concepts=list(key_concepts or []), has_concept_sentence=has_concepts)


def final_text(label: str, body: str, key_concepts: Sequence[str]) -> str:
    """Step 5: the opening sentence, the paraphrase, and the key concepts (attack traffic only). An
    unlabelled flow (``label`` empty) has no opening sentence: its text is what the flow did, nothing more."""
    text = f"{prefix_for(label)} {body.strip()}".strip() if label else body.strip()
    if key_concepts:
        text += f" Concepts: {', '.join(key_concepts)}."
    return text


def row_key(value: Any) -> int:
    """A stable integer for a row id (flow ids are ints; anything else is hashed with CRC-32)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) & 0x7FFFFFFFFFFFFFFF
    return zlib.crc32(str(value).encode())


# ---- the describer ---------------------------------------------------------------------------------


def _mission(label: str) -> str | None:
    """The label's mission ("Benign" included), None when it has none."""
    from packetclip.traffic.labels import mission_of

    return mission_of(label)


class Describer:
    """Descriptions of labelled flows, ``per_flow`` per row, deterministic for a given ``seed``.

    ``backend``: ``rules`` (offline, default), ``smollm2`` (offline SmolLM2) or ``openai`` (an
    OpenAI-compatible server; ``chat_options`` base_url/model/api_key). ``concepts``: a
    :class:`ConceptSource` (default: the offline mission knowledge graphs). ``n_concepts``: concepts woven
    into each draft (a range ``(lo, hi)`` is drawn per description). ``cache_dir``: where LLM answers are
    cached (default ``$PACKETCLIP_CACHE/language``). ``paraphrase_options``: max_tokens, temperature,
    batch_size of the LLM paraphraser. ``host_context``: join each flow's host context
    (:func:`packetclip.language.context.add_host_context`: what its source and destination did in the same
    window) when the table has addresses and times and no context columns yet; compute it on the whole table
    before sampling flows (``describe_workspace`` does), since a sample misses most neighbours.
    """

    def __init__(self, backend: str | Paraphraser = "rules", per_flow: int = 3, seed: int = 0, *,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 concepts: ConceptSource | None = None, n_concepts: int | tuple[int, int] = (2, 3),
                 label_col: str = "label", chat=None, chat_options: Mapping[str, Any] | None = None,
                 paraphrase_options: Mapping[str, Any] | None = None, host_context: bool = True):
        if isinstance(per_flow, bool) or not isinstance(per_flow, (int, np.integer)) or per_flow < 1:
            raise PacketClipError(f"--texts-per-flow must be a positive integer, not {per_flow!r}")
        self.backend = backend
        self.per_flow = int(per_flow)
        self.seed = int(seed)
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.concepts = concepts
        self.n_concepts = (n_concepts, n_concepts) if isinstance(n_concepts, int) else tuple(n_concepts)
        self.label_col = label_col
        self.chat = chat
        self.chat_options = dict(chat_options or {})
        self.paraphrase_options = dict(paraphrase_options or {})
        self.host_context = bool(host_context)
        self._paraphraser: Paraphraser | None = None

    @property
    def paraphraser(self) -> Paraphraser:
        if self._paraphraser is None:
            if isinstance(self.backend, Paraphraser):
                self._paraphraser = self.backend
            else:
                self._paraphraser = get_paraphraser(self.backend, cache_dir=self.cache_dir, use_cache=self.use_cache,
                                                    chat=self.chat, **self.paraphrase_options, **self.chat_options)
        return self._paraphraser

    @property
    def concept_source(self) -> ConceptSource:
        if self.concepts is None:
            self.concepts = KnowledgeConcepts(seed=self.seed)
        return self.concepts

    def drafts(self, flows: pd.DataFrame, progress: Callable[[int], None] | None = None
               ) -> tuple[pd.DataFrame, list[Draft], list[int]]:
        """Steps 1-3 for every (row, k): the index frame, the drafts and the per-description seeds.

        A table without the label column is described label-free: every row, label "" and no mission (so no
        concepts). A labelled table skips its rows whose label is empty."""
        labelled = self.label_col in flows.columns
        if self.host_context:
            flows = add_host_context(flows)
        cols = resolve_columns(flows.columns)
        missing = [fact for fact in REQUIRED if fact not in cols]
        if missing:
            names = ", ".join(COLUMNS[m][0] for m in missing)
            raise DatasetFormatError(f"flow table lacks the CICFlowMeter column(s) {names}")
        id_col = "flow_id" if "flow_id" in flows.columns else None
        ids = flows[id_col].to_numpy() if id_col else np.arange(len(flows))
        if labelled:
            labels = flows[self.label_col].astype("string").fillna("").str.strip().to_numpy()
        else:
            labels = np.full(len(flows), "", dtype=object)
        from packetclip.traffic.labels import normalise_label

        records = flows[[c for c in set(cols.values())]].to_dict("records")
        index_rows, drafts, seeds = [], [], []
        missions: dict[str, str | None] = {}
        for flow_id, raw_label, record in zip(ids, labels, records):
            if labelled and not raw_label:
                continue
            label = normalise_label(raw_label) if labelled else ""
            if label not in missions:
                missions[label] = _mission(label) if labelled else None
            mission = missions[label]
            facts = FlowFacts.from_row(record, cols)
            key = row_key(flow_id)
            for k in range(self.per_flow):
                rng = np.random.default_rng([self.seed & 0x7FFFFFFF, key, k])
                chosen, keys = [], []
                if mission not in (None, "Benign"):
                    source = self.concept_source
                    n = int(rng.integers(self.n_concepts[0], self.n_concepts[1] + 1))
                    keys = fitting_key_concepts(source.key_concepts(mission), facts)
                    chosen = choose_concepts(source.pool(mission), facts, rng, n, exclude=keys)
                draft = build_draft(facts, label, rng, concepts=chosen, key_concepts=keys)
                drafts.append(draft)
                seeds.append(int(rng.integers(0, 2**31 - 1)))
                index_rows.append((flow_id, k, label, mission))
            if progress is not None:
                progress(self.per_flow)
        index = pd.DataFrame(index_rows, columns=[id_col or "row", "k", "label", "mission"])
        return index, drafts, seeds

    def describe(self, flows: pd.DataFrame, progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None) -> pd.DataFrame:
        """One row per description: flow_id (or row), k, label, mission, text, backend, fallback, reason, draft."""
        if on_total is not None:
            if self.label_col in flows.columns:
                rows = int((flows[self.label_col].astype("string").fillna("").str.strip() != "").sum())
            else:
                rows = len(flows)
            on_total(rows * self.per_flow)
        # Progress follows the slow step: drafting for the rules paraphraser, the model calls for an LLM.
        cheap = isinstance(self.paraphraser, RulesParaphraser)
        index, drafts, seeds = self.drafts(flows, progress=progress if cheap else None)
        results = self.paraphraser.paraphrase_many(drafts, seeds, progress=None if cheap else progress)
        out = index.copy()
        out["text"] = [final_text(d.label, r.body, d.key_concepts) for d, r in zip(drafts, results)]
        out["backend"] = [r.backend for r in results]
        out["fallback"] = [r.fallback for r in results]
        out["reason"] = [r.reason or "" for r in results]
        out["draft"] = [d.body for d in drafts]
        return out


def describe_flows(flows: pd.DataFrame, *, backend: str = "rules", per_flow: int = 3, seed: int = 0,
                   **kwargs: Any) -> pd.DataFrame:
    """Shortcut for ``Describer(backend, per_flow, seed, **kwargs).describe(flows)``."""
    return Describer(backend, per_flow, seed, **kwargs).describe(flows)
