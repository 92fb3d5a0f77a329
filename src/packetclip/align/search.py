"""Natural-language search over the flows of a workspace: a sentence in, the most similar flows out.

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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.workspace import Workspace

TUPLE_COLUMNS = ("Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol")


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

    def query(self, vector: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(flow_ids, similarities)`` of the ``top`` nearest flows, best first."""
        if top < 1:
            raise PacketClipError("--top must be at least 1")
        sims = self.vectors @ np.asarray(vector, np.float32).reshape(-1)
        top = min(top, len(sims))
        best = np.argpartition(-sims, top - 1)[:top] if top < len(sims) else np.arange(len(sims))
        best = best[np.argsort(-sims[best], kind="stable")]
        return self.flow_ids[best], sims[best]


def search(model, traffic_side, text_side, workspace: Workspace, query: str, *, top: int = 20,
           index: SearchIndex | None = None) -> pd.DataFrame:
    """The ``top`` flows nearest to ``query``: flow_id, 5-tuple, start time, class (if known), similarity,
    and the flow's first description (if the workspace has descriptions)."""
    if not query or not query.strip():
        raise PacketClipError("the search query is empty")
    model.check_text_encoder(text_side.fingerprint)
    index = index or SearchIndex.build(model, traffic_side, workspace)
    qvec = model.text_vectors(text_side.embed([query.strip()]))[0]
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
