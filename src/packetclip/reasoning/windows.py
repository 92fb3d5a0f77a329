"""What a time step is (issue 11, deliverable 2): past-only windows of flows.

The aligned traffic embedding is per flow (the encoder reads a flow's first packets), so one step is one flow,
and a flow's window is the ``A - 1`` flows before it in its *sequence* plus itself. The sequence is chosen by
``mode``:

- ``global``: every flow of a capture set, in start-time order (the paper's single global stream);
- ``dst``: the flows received by the same destination host;
- ``src``: the flows opened by the same source host;
- ``flow``: the flow alone (a window of one step: no temporal context).

Windows only look back, so a streaming caller can score a flow the moment it is embedded
(:class:`packetclip.reasoning.bundle.StreamScorer` keeps the last ``A - 1`` steps per sequence key). Windows are
right-padded (the flow scored is at position ``length - 1``); with a causal mask, padding never leaks in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError

TIME_STEPS = ("src", "dst", "global", "flow")
MAX_GAP_S = 600.0


def sequence_keys(flows: pd.DataFrame, mode: str, *, prefix: str = "") -> np.ndarray:
    """One key per flow: flows with the same key form one time-ordered sequence."""
    if mode not in TIME_STEPS:
        raise PacketClipError(f"time step must be one of {', '.join(TIME_STEPS)}, not {mode!r}")
    n = len(flows)
    if mode == "global":
        return np.full(n, prefix or "all", dtype=object)
    column = {"src": "Src IP", "dst": "Dst IP"}.get(mode)
    if mode == "flow" or column not in flows.columns:
        return np.array([f"{prefix}#{i}" for i in flows["flow_id"].to_numpy()], dtype=object)
    return (prefix + "|" + flows[column].astype(str)).to_numpy(dtype=object)


def log_gap(seconds: np.ndarray | float) -> np.ndarray:
    """The time feature of a step: ``log1p`` of the seconds since the sequence's previous step (capped)."""
    return np.log1p(np.clip(np.asarray(seconds, np.float64), 0.0, MAX_GAP_S)).astype(np.float32)


def _sequences(keys: np.ndarray, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (key, time, row): ``order``, ``first`` (a sequence starts here) and ``seq_start`` (where each
    sorted row's sequence starts)."""
    n = len(keys)
    codes = pd.factorize(pd.Series(keys, dtype=object))[0]
    order = np.lexsort((np.arange(n), np.asarray(times_ns, np.int64), codes))
    sorted_codes = codes[order]
    first = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if n else np.zeros(0, bool)
    seq_start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    return order, first, seq_start


def past_windows(keys: np.ndarray, times_ns: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every flow (in the given row order): ``idx [n, window]`` row indices of its window (right-padded with
    -1, the flow itself last), ``lengths [n]``, and ``gaps [n]`` (per-row time feature)."""
    n = len(keys)
    order, first, seq_start = _sequences(keys, times_ns)
    t = np.asarray(times_ns, np.int64)[order]
    gap_s = np.where(first, MAX_GAP_S, np.r_[0, np.diff(t)] / 1e9)
    gaps = np.empty(n, np.float32)
    gaps[order] = log_gap(gap_s)
    pos = np.arange(n)
    start = np.maximum(seq_start, pos - window + 1)
    lengths_sorted = pos - start + 1
    grid = start[:, None] + np.arange(window)[None, :]
    valid = grid <= pos[:, None]
    idx_sorted = np.where(valid, order[np.minimum(grid, max(n - 1, 0))], -1)
    idx = np.empty((n, window), np.int64)
    lengths = np.empty(n, np.int64)
    idx[order] = idx_sorted
    lengths[order] = lengths_sorted
    return idx, lengths, gaps


def train_chunks(keys: np.ndarray, times_ns: np.ndarray, window: int, *, offset: int = 0) -> np.ndarray:
    """Non-overlapping chunks of each sequence (``[m, window]`` row indices, right-padded with -1), so every flow is
    trained on once per epoch with 0..A-1 steps of history; ``offset`` shifts chunk borders between epochs."""
    n = len(keys)
    order, first, seq_start = _sequences(keys, times_ns)
    rel = np.arange(n) - seq_start + (offset % window)
    new_chunk = first | (rel % window == 0)
    chunk_id = np.cumsum(new_chunk) - 1
    chunk_pos = np.arange(n) - np.maximum.accumulate(np.where(new_chunk, np.arange(n), 0))
    out = np.full((int(chunk_id[-1]) + 1 if n else 0, window), -1, np.int64)
    out[chunk_id, chunk_pos] = order
    return out
