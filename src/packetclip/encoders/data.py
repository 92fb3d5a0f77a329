"""Packet views out of a workspace, grouped into flows, for the packet encoder.

``packetclip ingest`` writes ``packets.parquet`` with one row per packet in a flow: ``packet_number``,
``file_index``, ``flow_id``, ``direction``, ``ts_ns``, ``length`` and ``view`` (fixed-size binary, the
masked first ``view_bytes`` bytes from the IP header, zero-padded). This module turns that into numpy
arrays and a per-flow index, which is all the encoder needs: it never reads captures itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from packetclip.errors import DatasetFormatError

PACKET_COLUMNS = ("flow_id", "direction", "ts_ns", "file_index", "view")


def load_views(workspace: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(views uint8 [n, L], flow_id int64, direction int8, ts_ns int64, file_index int32)`` of a workspace.

    Rows keep the order ingest wrote them in (capture order), so a stable sort by flow gives each flow's
    packets in time order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(workspace)
    path = root / "packets.parquet" if root.is_dir() else root
    if not path.is_file():
        raise DatasetFormatError("no packets.parquet (create the workspace with `packetclip ingest`)",
                                 path=str(root))
    try:
        names = pq.read_schema(path).names
    except Exception as err:  # pyarrow raises several types for a non-Parquet file
        raise DatasetFormatError(f"not a Parquet file: {' '.join(str(err).split())[:160]}", path=str(path)) from None
    missing = [c for c in PACKET_COLUMNS if c not in names]
    if missing:
        raise DatasetFormatError(f"packet table lacks column(s) {', '.join(missing)}", path=str(path))
    table = pq.read_table(path, columns=list(PACKET_COLUMNS))
    column = table.column("view").combine_chunks()
    if not pa.types.is_fixed_size_binary(column.type):
        raise DatasetFormatError(f"column 'view' must be fixed-size binary, not {column.type}", path=str(path))
    width = column.type.byte_width
    n = len(column)
    if n == 0:
        views = np.zeros((0, width), np.uint8)
    else:
        buf = column.buffers()[1]
        views = np.frombuffer(buf, dtype=np.uint8, count=n * width, offset=column.offset * width).reshape(n, width)

    def col(name, dtype):
        return table.column(name).to_numpy().astype(dtype, copy=False)

    return views, col("flow_id", np.int64), col("direction", np.int8), col("ts_ns", np.int64), col("file_index", np.int32)


def packet_lengths(views: np.ndarray) -> np.ndarray:
    """Bytes of real packet content in each view (views are zero-padded after the IP packet's end).

    Read from the IP header (IPv4 total length, IPv6 40 + payload length, neither is masked); views whose
    header gives no usable length fall back to the last non-zero byte. Always in ``[1, L]``.
    """
    views = np.asarray(views)
    n, width = views.shape
    if n == 0:
        return np.zeros(0, np.int64)
    version = views[:, 0] >> 4
    v4 = np.zeros(n, np.int64)
    v6 = np.zeros(n, np.int64)
    if width >= 4:
        v4 = (views[:, 2].astype(np.int64) << 8) | views[:, 3]
    if width >= 6:
        v6 = 40 + ((views[:, 4].astype(np.int64) << 8) | views[:, 5])
    nonzero = views != 0
    last = np.where(nonzero.any(axis=1), width - np.argmax(nonzero[:, ::-1], axis=1), 1)
    length = np.where((version == 4) & (v4 >= 20), v4, np.where(version == 6, v6, last))
    return np.clip(length, 1, width).astype(np.int64)


@dataclass
class FlowIndex:
    """Packets grouped by flow: flow ``f``'s packets are ``order[start[f] : start[f] + count[f]]`` in time order."""

    flow_key: np.ndarray    # int64, one per flow (sorted)
    start: np.ndarray       # int64
    count: np.ndarray       # int64
    order: np.ndarray       # int64, packet rows sorted by flow, then capture order
    file_key: np.ndarray    # int64, the capture each flow comes from (for hard negatives)

    @classmethod
    def build(cls, flow_key: np.ndarray, file_key: np.ndarray | None = None) -> "FlowIndex":
        flow_key = np.asarray(flow_key, np.int64)
        order = np.argsort(flow_key, kind="stable")
        keys, start, count = np.unique(flow_key[order], return_index=True, return_counts=True)
        file_key = np.zeros(len(flow_key), np.int64) if file_key is None else np.asarray(file_key, np.int64)
        return cls(keys, start.astype(np.int64), count.astype(np.int64), order, file_key[order[start]])

    def __len__(self) -> int:
        return int(self.flow_key.shape[0])

    def packets(self, f: int) -> np.ndarray:
        return self.order[self.start[f]: self.start[f] + self.count[f]]


def first_k_packets(views: np.ndarray, flow_id: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(flow ids, views [n_flows, k, L], packets per flow (<= k))``: each flow's first ``k`` packets.

    Flows with fewer packets get all-zero rows after their last one (the encoder reads those as absent).
    """
    index = FlowIndex.build(flow_id)
    n_flows, width = len(index), views.shape[1]
    out = np.zeros((n_flows, k, width), np.uint8)
    taken = np.minimum(index.count, k)
    for j in range(k):
        has = taken > j
        out[has, j] = views[index.order[index.start[has] + j]]
    return index.flow_key, out, taken


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread, deterministic hash of int64 ids."""
    z = np.asarray(x, np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def heldout_flows(flow_id: np.ndarray, modulus: int = 10, salt: int = 0) -> np.ndarray:
    """Boolean mask of the flows kept out of pre-training (about 1/``modulus`` of them), chosen by flow id.

    Whole flows, never single packets, so ``eval-generation`` measures packets of flows the model never saw.
    ``modulus <= 1`` holds nothing out.
    """
    flow_id = np.asarray(flow_id, np.int64)
    if modulus <= 1:
        return np.zeros(flow_id.shape, bool)
    return (_mix64(flow_id ^ np.int64(salt)) % np.uint64(modulus)) == 0


@dataclass
class TrafficCorpus:
    """Views of one or more workspaces with globally unique flow and capture keys."""

    views: np.ndarray
    lengths: np.ndarray
    flow_key: np.ndarray
    file_key: np.ndarray
    direction: np.ndarray
    flows: FlowIndex

    @classmethod
    def from_workspaces(cls, workspaces: Sequence[str | Path], *, view_bytes: int | None = None,
                        holdout_modulus: int = 10, keep: str = "train",
                        files: Sequence[Sequence[int] | None] | None = None) -> "TrafficCorpus":
        """Load workspaces; ``keep="train"`` drops held-out flows, ``"heldout"`` keeps only them, ``"all"`` both.

        ``files`` optionally restricts each workspace to some captures (their ``file_index`` values), e.g. to
        pre-train on the training captures of a benchmark split only.
        """
        if keep not in ("train", "heldout", "all"):
            raise ValueError(f"keep must be 'train', 'heldout' or 'all', not {keep!r}")
        parts = []
        for w, ws in enumerate(workspaces):
            views, flow_id, direction, _ts, file_index = load_views(ws)
            if view_bytes is not None:
                views = fit_width(views, view_bytes)
            held = heldout_flows(flow_id, holdout_modulus)
            sel = {"train": ~held, "heldout": held, "all": np.ones_like(held)}[keep]
            if files is not None and files[w] is not None:
                sel &= np.isin(file_index, np.asarray(list(files[w]), np.int64))
            key = (np.int64(w) << np.int64(40)) + flow_id[sel]
            parts.append((views[sel], key, (np.int64(w) << np.int64(20)) + file_index[sel].astype(np.int64),
                          direction[sel]))
        if not parts:
            raise DatasetFormatError("no workspace given")
        views = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else np.ascontiguousarray(parts[0][0])
        flow_key = np.concatenate([p[1] for p in parts])
        file_key = np.concatenate([p[2] for p in parts])
        direction = np.concatenate([p[3] for p in parts])
        return cls(views, packet_lengths(views), flow_key, file_key, direction, FlowIndex.build(flow_key, file_key))

    def __len__(self) -> int:
        return int(self.views.shape[0])


def fit_width(views: np.ndarray, width: int) -> np.ndarray:
    """Views cut or zero-padded to ``width`` bytes (the first bytes mean the same whatever the view size)."""
    if views.shape[1] == width:
        return views
    if views.shape[1] > width:
        return views[:, :width]
    out = np.zeros((views.shape[0], width), np.uint8)
    out[:, : views.shape[1]] = views
    return out
