"""Natural-language search over the flows of a workspace: a sentence in, the most similar flows out.

A query is not only matched through the text head. A query about "unsolicited datagrams ... answered with
unreachable errors" scored 0: in MiniLM's space it sits nearer to benign descriptions of UDP lookups than to the
flood's own descriptions, and the text head keeps that. So the query is also matched by its words (BM25, where
rare words weigh most) against the workspace's descriptions (their observation part only,
:func:`packetclip.language.faithfulness.checked_text`: no label, no concept clauses); the flows of the
``ANCHORS`` best-matching descriptions are pseudo-relevant, and the query vector becomes the normalised sum of
its own shared-space vector and those flows' centroid (Rocchio-style feedback). Every flow is still ranked by
its traffic vector, so undescribed flows are found.

The index is every flow's shared-space vector (the alignment's traffic head over the frozen traffic
embeddings), stored in the workspace's ``search`` folder as safetensors keyed by the alignment's fingerprint
(a changed flow table makes it stale and it is rebuilt). A query is embedded by the text encoder and the text
head; the answer is an exact inner-product top-k over all vectors (numpy, ~0.1 s per million flows at
d=384). Past about 10 M flows this brute-force scan and its float32 matrix (1.5 GB per 1 M flows) stop being
practical: we would move to an approximate index, FAISS IVF-PQ (``IndexIVFPQ`` with ~sqrt(n) lists and
48-byte codes, trained on a sample, searched with nprobe 16-64) or an HNSW graph for lower latency, persisted
in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.workspace import Workspace

TUPLE_COLUMNS = ("Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol")
ANCHORS = 20   # descriptions whose flows feed back into a query (0: the text head alone)


def model_fingerprint(model) -> str:
    """Identity of an alignment (its config and every tensor)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


@dataclass
class SearchIndex:
    """Normalised flow vectors of one workspace under one alignment."""

    flow_ids: np.ndarray      # int64 [n]
    vectors: np.ndarray       # float32 [n, d]

    @classmethod
    def build(cls, model, traffic_side, workspace: Workspace, *, rebuild: bool = False) -> "SearchIndex":
        """Load the persisted index, or embed every flow and persist it (``rebuild`` forces the latter)."""
        from safetensors.numpy import load_file, save_file

        model.check_traffic_encoder(traffic_side.fingerprint, where=str(workspace.root))
        name = f"{workspace.path('search').name}/{model_fingerprint(model)}.safetensors"
        path = workspace.root / name
        if path.is_file() and not rebuild and not workspace.is_stale(name):
            try:
                data = load_file(str(path))
                return cls(data["flow_id"], data["vector"])
            except Exception:  # a damaged index is simply rebuilt
                pass
        ids = workspace.flow_ids()
        vectors = model.traffic_vectors(traffic_side.embed(workspace, ids)).astype(np.float32)
        with workspace.atomic(name) as tmp:
            save_file({"flow_id": ids, "vector": np.ascontiguousarray(vectors)}, str(tmp),
                      metadata={"traffic_encoder": traffic_side.fingerprint})
        workspace.record_inputs(name)   # the flow and packet tables it was computed from
        return cls(ids, vectors)

    def anchors(self, workspace: Workspace) -> "Lexicon | None":
        """A BM25 lexicon over the observation part of the workspace's descriptions (one per flow); None when
        the workspace has none. Built in memory (a few thousand short texts take well under a second)."""
        if getattr(self, "_lexicon", None) is not None:
            return self._lexicon
        try:
            desc = workspace.descriptions()
        except PacketClipError:
            return None
        desc = desc.drop_duplicates("flow_id")
        if desc.empty:
            return None
        from packetclip.language.faithfulness import checked_text

        self._lexicon = Lexicon(desc["flow_id"].to_numpy(np.int64), [checked_text(str(t)) for t in desc["text"]])
        return self._lexicon

    def expand(self, query_vector: np.ndarray, query: str, lexicon: "Lexicon | None", k: int = ANCHORS) -> np.ndarray:
        """The query's shared-space vector plus the centroid of the flows whose descriptions best match the
        query's words (BM25), normalised (see the module docstring)."""
        q = np.asarray(query_vector, np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        if lexicon is None or k < 1:
            return q
        ids = lexicon.best(query, k)
        rows = np.isin(self.flow_ids, ids)
        if not rows.any():
            return q
        centroid = self.vectors[rows].mean(0)
        out = q + centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        return (out / max(float(np.linalg.norm(out)), 1e-12)).astype(np.float32)

    def query(self, vector: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(flow_ids, similarities)`` of the ``top`` nearest flows, best first."""
        if top < 1:
            raise PacketClipError("--top must be at least 1")
        sims = self.vectors @ np.asarray(vector, np.float32).reshape(-1)
        top = min(top, len(sims))
        best = np.argpartition(-sims, top - 1)[:top] if top < len(sims) else np.arange(len(sims))
        best = best[np.argsort(-sims[best], kind="stable")]
        return self.flow_ids[best], sims[best]


_WORD = re.compile(r"[a-z]+")
_STOP = frozenset("a an the of to and or with in on for by from that this its it is are be as at one many".split())


def words(text: str) -> list[str]:
    """Lower-case words without stop words, lightly stemmed (plural s), for BM25."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP or len(w) < 3:
            continue
        out.append(w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w)
    return out


class Lexicon:
    """BM25 (k1 1.2, b 0.75) over short texts, each belonging to a flow: ``best(query, k)`` -> flow ids.

    Rare words ("unreachable", "handshake") weigh more than common ones ("traffic", "host"), which dense
    sentence similarity does not guarantee: a query about datagrams answered with unreachable errors sits, in
    MiniLM's space, nearer to benign descriptions of UDP lookups than to the flood's own descriptions."""

    def __init__(self, flow_ids: np.ndarray, texts: list[str], k1: float = 1.2, b: float = 0.75):
        from scipy.sparse import csr_matrix

        self.flow_ids = np.asarray(flow_ids, np.int64)
        docs = [words(t) for t in texts]
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, doc in enumerate(docs):
            counts: dict[int, int] = {}
            for w in doc:
                j = vocab.setdefault(w, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            rows.extend([i] * len(counts))
            cols.extend(counts)
            vals.extend(counts.values())
        self.vocab = vocab
        n = len(docs)
        lengths = np.array([len(d) for d in docs], np.float32)
        rows_a, cols_a = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        tf = np.asarray(vals, np.float32)
        df = np.bincount(cols_a, minlength=max(1, len(vocab)))
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * lengths / max(float(lengths.mean()), 1e-6))
        self.weights = csr_matrix((tf * (k1 + 1) / (tf + norm[rows_a]), (rows_a, cols_a)),
                                  shape=(n, max(1, len(vocab))))   # sparse: one row per text

    def best(self, query: str, k: int) -> np.ndarray:
        """Flow ids of the ``k`` best-scoring texts (only texts sharing a word with the query)."""
        terms = sorted({self.vocab[w] for w in words(query) if w in self.vocab})
        if not terms:
            return np.zeros(0, np.int64)
        scores = np.asarray(self.weights[:, terms] @ self.idf[terms]).reshape(-1)
        k = min(k, int((scores > 0).sum()))
        if k < 1:
            return np.zeros(0, np.int64)
        top = np.argpartition(-scores, k - 1)[:k]
        return self.flow_ids[top]


def search(model, traffic_side, text_side, workspace: Workspace, query: str, *, top: int = 20,
           index: SearchIndex | None = None, anchors: int = ANCHORS) -> pd.DataFrame:
    """The ``top`` flows nearest to ``query``: flow_id, 5-tuple, start time, class (if known), similarity,
    and the flow's first description (if the workspace has descriptions). ``anchors``: how many matching
    descriptions feed their flows back into the query (0: the text head alone)."""
    if not query or not query.strip():
        raise PacketClipError("the search query is empty")
    model.check_text_encoder(text_side.fingerprint)
    index = index or SearchIndex.build(model, traffic_side, workspace)
    qvec = model.text_vectors(text_side.embed([query.strip()]))[0]
    if anchors:
        qvec = index.expand(qvec, query, index.anchors(workspace), anchors)
    ids, sims = index.query(qvec, top)
    flows = workspace.labelled_flows(columns=["flow_id", *TUPLE_COLUMNS, "first_ts_ns"])
    flows = flows.drop_duplicates("flow_id").set_index("flow_id")
    out = flows.reindex(ids).reset_index()
    out["similarity"] = sims.astype(float)
    if "first_ts_ns" in out.columns:
        out["time"] = pd.to_datetime(out["first_ts_ns"], unit="ns", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        out = out.drop(columns=["first_ts_ns"])
    out["description"] = ""
    try:
        desc = workspace.descriptions()
        first = desc.drop_duplicates("flow_id").set_index("flow_id")["text"]
        out["description"] = first.reindex(ids).fillna("").to_numpy()
    except PacketClipError:
        pass
    return out
