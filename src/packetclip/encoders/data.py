"""Packet views of workspaces, grouped into flows, for the packet encoders.

Views come from :meth:`packetclip.traffic.workspace.Workspace.packet_views` (the masked first ``view_bytes``
bytes of each packet from its IP header on, as ingest wrote them); this module turns them into a per-flow
index, which is all the encoders need: they never read captures or workspace files themselves.

Which flows a pre-training or evaluation corpus holds is the workspace's split (written by ``packetclip split``), the
same one probes, alignment and reasoning use; there is no second hold-out rule here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from packetclip.errors import DatasetFormatError, PacketClipError

log = logging.getLogger("packetclip")

SPLITS = ("train", "val", "test")


def load_views(workspace, flow_ids: Sequence[int] | np.ndarray | None = None,
               first_k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(views uint8 [n, L], flow_id int64, direction int8, ts_ns int64, file_index int32)`` of a workspace
    (a :class:`Workspace` or its folder), optionally of some flows and only their first ``first_k`` packets.

    Rows keep capture order, so a stable sort by flow gives each flow's packets in time order.
    """
    pv = _open(workspace).packet_views(flow_ids, first_k=first_k)
    return pv.views, pv.flow_id, pv.direction, pv.ts_ns, pv.file_index


def _open(workspace):
    from packetclip.traffic.workspace import Workspace

    return workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)


def open_packet_workspace(workspace):
    """Open a workspace that must hold packets; one line naming the problem otherwise (checked before work)."""
    ws = _open(workspace)
    if not ws.has_packets():
        from packetclip.traffic.workspace import WorkspaceError

        raise WorkspaceError("this workspace holds flow rows only (no packet views); packet encoders need a "
                             "workspace made by `packetclip ingest` or `packetclip lab`", path=str(ws.root))
    return ws


def split_flow_ids(workspace, split: str | None, *, all_flows: bool = False) -> np.ndarray | None:
    """Flow ids of ``split`` (train/val/test) from the workspace's splits; None means every flow.

    A workspace without splits is one clear line (run ``packetclip split``), unless ``all_flows`` asks for
    every flow explicitly, which is logged as a warning: nothing is then held out.
    """
    ws = _open(workspace)
    if split is None:
        return None
    if split not in SPLITS:
        raise PacketClipError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if all_flows:
        log.warning("%s: using every flow (no split asked for): nothing is held out for evaluation", ws.root)
        return None
    return ws.split_flow_ids(split)


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

    def context(self, rows: np.ndarray, k: int) -> np.ndarray:
        """``[n, k]`` packet rows: each of ``rows`` preceded by up to ``k - 1`` earlier packets of its flow,
        left-aligned (the packet itself in the last filled slot), ``-1`` after it.

        The generation task hides a field of the last packet; the earlier ones are the context a
        previous-packet baseline also gets.
        """
        rows = np.asarray(rows, np.int64)
        if getattr(self, "_slot_of_row", None) is None:   # computed once: where each row sits in ``order``
            self._slot_of_row = np.empty(len(self.order), np.int64)
            self._slot_of_row[self.order] = np.arange(len(self.order))
            self._flow_start_of_row = np.empty(len(self.order), np.int64)
            self._flow_start_of_row[self.order] = np.repeat(self.start, self.count)
        first_slot = self._flow_start_of_row[rows]
        at = self._slot_of_row[rows] - first_slot
        m = np.minimum(at + 1, k)
        out = np.full((len(rows), k), -1, np.int64)
        for j in range(k):
            has = m > j
            out[has, j] = self.order[first_slot[has] + at[has] - m[has] + 1 + j]
        return out


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
    def from_workspaces(cls, workspaces: Sequence, *, view_bytes: int | None = None, split: str | None = "train",
                        flow_ids: Sequence[Sequence[int] | None] | None = None, all_flows: bool = False,
                        files: Sequence[Sequence[int] | None] | None = None) -> "TrafficCorpus":
        """Packets of the ``split`` flows (train/val/test of each workspace's splits; None: every flow).

        ``flow_ids`` (one entry per workspace, None = use ``split``) picks flows explicitly; ``all_flows``
        uses every flow of a workspace that has no splits (logged). ``files`` optionally restricts each
        workspace to some captures (their ``file_index`` values).
        """
        if flow_ids is not None and len(flow_ids) != len(workspaces):
            raise PacketClipError(f"flow_ids has {len(flow_ids)} entries for {len(workspaces)} workspaces")
        opened = [open_packet_workspace(w) for w in workspaces]
        chosen = [flow_ids[w] if flow_ids is not None and flow_ids[w] is not None
                  else split_flow_ids(ws, split, all_flows=all_flows) for w, ws in enumerate(opened)]
        parts = []
        for w, (ws, ids) in enumerate(zip(opened, chosen)):
            pv = ws.packet_views(None if ids is None else np.asarray(ids, np.int64))
            views, flow_id, direction, file_index = pv.views, pv.flow_id, pv.direction, pv.file_index
            if view_bytes is not None:
                views = fit_width(views, view_bytes)
            sel = np.ones(len(flow_id), bool)
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

    def generation_context(self, rows: np.ndarray, k: int, look_back: int = 16) -> np.ndarray:
        """``[n, k]`` packet rows: each of ``rows`` after up to ``k - 1`` earlier packets of its flow **in the
        same direction** (latest ones, among the ``look_back`` packets before it), left-aligned, ``-1`` after.

        Views mask addresses and ports, so a model cannot tell which earlier packet came from the same
        sender; the previous-packet baseline of the generation task reads that from the flow table. Picking
        the context by direction gives the model the same information (and the baseline's look-back).
        """
        rows = np.asarray(rows, np.int64)
        history = self.flows.context(rows, look_back)
        filled = (history >= 0).sum(axis=1)
        same = (history >= 0) & (self.direction[np.maximum(history, 0)] == self.direction[rows][:, None])
        same &= np.arange(look_back)[None, :] < (filled - 1)[:, None]     # earlier packets only
        out = np.full((len(rows), k), -1, np.int64)
        for i in range(len(rows)):
            earlier = history[i, same[i]][-(k - 1):] if k > 1 else history[i, :0]
            out[i, : len(earlier)] = earlier
            out[i, len(earlier)] = rows[i]
        return out


def fit_width(views: np.ndarray, width: int) -> np.ndarray:
    """Views cut or zero-padded to ``width`` bytes (the first bytes mean the same whatever the view size)."""
    if views.shape[1] == width:
        return views
    if views.shape[1] > width:
        return views[:, :width]
    out = np.zeros((views.shape[0], width), np.uint8)
    out[:, : views.shape[1]] = views
    return out
