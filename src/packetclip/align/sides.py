"""The two frozen sides of an alignment, behind one small interface each.

A *traffic side* turns flows of a workspace into ``float32 [n, d]``; the three kinds are the rows of the
paper's Table 1:

- ``packet``: the packet encoder (Lens) over each flow's first k masked packets;
- ``packet+context``: that, concatenated with the flow's own CICFlowMeter features and its host context
  (what its source and destination did in the same 10-s window, :mod:`packetclip.language.context`), both
  as signed ``log1p`` values;
- ``flow``: the flow-table encoder's embedding concatenated with its normalised features, for datasets that
  ship only flow CSVs (CIC-IDS2017, ACI-IoT-2023).

Packet embeddings go through the workspace's embedding store, keyed by the encoder's fingerprint. Encoders
follow the common contract (``embed_flows(workspace, flow_ids)``, ``fingerprint``,
:func:`packetclip.encoders.load_encoder`).

The *text side* is the sentence encoder (all-MiniLM-L6-v2 by default) with its on-disk cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.workspace import Workspace


def encoder_fingerprint(encoder) -> str:
    """The encoder's fingerprint (a hash of its config and weights; the common encoder contract)."""
    fp = getattr(encoder, "fingerprint", None)
    if not isinstance(fp, str) or not fp:
        raise PacketClipError(f"{type(encoder).__name__} has no fingerprint: not a packetclip encoder")
    return fp


def load_traffic_encoder(path: str | Path):
    """A traffic encoder saved with ``save_pretrained``, whatever its kind (``load_encoder`` dispatches on
    ``model_type``)."""
    from packetclip.encoders.base import load_encoder

    return load_encoder(Path(path))


# ---- flow-table and host-context features ---------------------------------------------------------

def feature_columns() -> list[str]:
    """The flow's CICFlowMeter columns plus its host-context columns (the ``packet+context`` extras)."""
    from packetclip.encoders.flowtable import CICFLOW_FEATURES
    from packetclip.language.context import CONTEXT_COLUMNS

    return list(CICFLOW_FEATURES) + [c for c in CONTEXT_COLUMNS if c != "ctx_window_s"]


def context_features(flows: pd.DataFrame) -> np.ndarray:
    """Signed ``log1p`` of :func:`feature_columns` (missing columns and non-finite cells are 0)."""
    out = np.zeros((len(flows), len(feature_columns())), np.float32)
    for i, name in enumerate(feature_columns()):
        if name in flows.columns:
            v = pd.to_numeric(flows[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            v = np.where(np.isfinite(v), v, 0.0)
            out[:, i] = np.sign(v) * np.log1p(np.abs(v))
    return out


class TrafficSide:
    """Flows -> frozen traffic embeddings for one Table 1 row. ``encoder``: a Lens model (``packet``,
    ``packet+context``) or a fitted flow-table encoder (``flow``); ``path`` is where it was loaded from (kept in
    the alignment's config so ``align eval`` can load it again)."""

    def __init__(self, kind: str, encoder, *, path: str | Path | None = None):
        from packetclip.align.model import TRAFFIC_KINDS

        if kind not in TRAFFIC_KINDS:
            raise PacketClipError(f"--traffic must be one of {', '.join(TRAFFIC_KINDS)}, not {kind!r}")
        self.kind = kind
        self.encoder = encoder
        self.path = None if path is None else str(Path(path).resolve())
        self._context: dict[str, pd.DataFrame] = {}
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, kind: str, path: str | Path, **kwargs) -> "TrafficSide":
        from packetclip.encoders.pretrained import resolve_encoder

        path = resolve_encoder(path)      # a shipped name ("lens-tiny") is recorded as its packaged folder
        return cls(kind, load_traffic_encoder(path), path=path, **kwargs)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = encoder_fingerprint(self.encoder)
        return self._fingerprint

    def describe(self) -> dict:
        """What the alignment's config records about this side."""
        config = getattr(self.encoder, "config", None)
        return {"fingerprint": self.fingerprint, "path": self.path,
                "model_type": getattr(config, "model_type", None) or type(self.encoder).__name__}

    # --- embeddings ----------------------------------------------------------------------------------
    def embed(self, workspace: Workspace | str | Path, flow_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``float32 [n, d]`` for ``flow_ids`` (in that order)."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        ids = np.asarray(flow_ids, np.int64)
        if self.kind == "flow":
            return self._flow(ws, ids)
        packet = self._packet(ws, ids)
        if self.kind == "packet":
            return packet
        return np.concatenate([packet, context_features(self._flow_rows(ws, ids))], axis=1)

    def _packet(self, ws: Workspace, ids: np.ndarray) -> np.ndarray:
        from packetclip.encoders.base import TrafficEncoder

        enc = self.encoder
        if not isinstance(enc, TrafficEncoder) or hasattr(enc, "normalized_features"):
            raise PacketClipError(f"--traffic {self.kind} needs a packet encoder, not {type(enc).__name__}")
        if not ws.has_packets():
            raise PacketClipError("this workspace has flow rows only (no packets); use --traffic flow",
                                  path=str(ws.root))
        return np.asarray(enc.embed_flows(ws, ids), np.float32)

    def _flow_rows(self, ws: Workspace, ids: np.ndarray) -> pd.DataFrame:
        """The flows' table rows (host context joined, computed once over the whole table)."""
        from packetclip.language.context import add_host_context

        key = str(ws.root.resolve())
        if key not in self._context:
            self._context[key] = add_host_context(ws.flows()).drop_duplicates("flow_id").set_index("flow_id")
        table = self._context[key]
        missing = np.setdiff1d(ids, table.index.to_numpy())
        if missing.size:
            raise PacketClipError(f"{missing.size} flow id(s) are not in the flow table (first: {int(missing[0])})",
                                  path=str(ws.root))
        return table.loc[ids].reset_index()

    def _flow(self, ws: Workspace, ids: np.ndarray) -> np.ndarray:
        enc = self.encoder
        if not hasattr(enc, "normalized_features"):
            raise PacketClipError(f"--traffic flow needs a flow-table encoder, not {type(enc).__name__}")
        rows = self._flow_rows(ws, ids)
        return np.concatenate([enc.embed_flows(ws, ids), enc.normalized_features(rows)], axis=1).astype(np.float32)


class TextSide:
    """Texts -> frozen sentence embeddings (L2-normalised), cached on disk by the text encoder."""

    def __init__(self, encoder=None):
        if encoder is None:
            from packetclip.encoders.text import TextEncoder

            encoder = TextEncoder()
        self.encoder = encoder

    @property
    def fingerprint(self) -> str:
        fp = getattr(self.encoder, "fingerprint", None)
        return fp if isinstance(fp, str) and fp else str(getattr(self.encoder, "model_id", "text"))

    def describe(self) -> dict:
        return {"fingerprint": self.fingerprint, "model": getattr(self.encoder, "model", None)}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if hasattr(self.encoder, "embed_texts"):
            return np.asarray(self.encoder.embed_texts(list(texts)), np.float32)
        return self.encoder.encode(list(texts), normalize=True)

    @property
    def dim(self) -> int:
        return int(self.embed(["dimension"]).shape[1])
