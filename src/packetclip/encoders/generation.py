"""The generation task: hide a header field of a packet and let the Lens decoder write it back.

For each field (:data:`packetclip.encoders.corruption.FIELD_SIZES`: TTL / hop limit, IP length, TCP flags,
TCP window, UDP length) and each sampled packet of a **held-out flow** (the workspace's test split, or a
corpus the caller holds out), the model reads the packet with the up to ``k - 1`` latest packets of its flow
before it in the same direction (:meth:`~packetclip.encoders.data.TrafficCorpus.generation_context`: the
history the previous-packet baseline reads, as views mask the addresses that would tell directions apart)
with only that field hidden, and generates it greedily. Scores per field:

- **exact match** of all the field's bytes;
- **within tolerance** (:data:`FIELD_TOLERANCE`) for the numeric fields: IP/UDP length within 8 bytes or
  5 %, TCP window within 10 %, TTL within 4; TCP flags only exact.

Baselines: the field's **most frequent** value among training packets, and the **previous packet** of the
same flow in the same direction (the most frequent value when there is none).

Why TCP flags once scored 0.000: pre-training hid a random *subset* of a packet's fields, and flags (byte
13 of TCP) and window (14-15) are adjacent, so masked flags usually came merged with the window into one
3-byte run; given flags alone the decoder answered with a window-shaped run (first byte 0x00, so exact match
0). Pre-training now hides exactly one field, in the last packet of a context window, as evaluated here.

A view stops at the packet's end, so for packets shorter than the view the IP length can be read off the
input length; ``ip_length_long`` scores it only on packets at least as long as the view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from packetclip.encoders.corruption import (FIELD_SIZES, apply_mask, field_bytes_from_units, field_offsets,
                                            field_unit_range)
from packetclip.encoders.data import TrafficCorpus
from packetclip.encoders.lens import LensModel
from packetclip.errors import PacketClipError
from packetclip.util.progress import Progress

#: Numeric tolerance per field: ``(absolute, relative)``; a prediction counts when within either. None: exact.
FIELD_TOLERANCE: dict[str, tuple[int, float] | None] = {
    "ttl": (4, 0.0), "ip_length": (8, 0.05), "tcp_flags": None, "tcp_window": (0, 0.10), "udp_length": (8, 0.05),
}


@dataclass
class FieldScore:
    field: str
    packets: int
    model_accuracy: float
    baseline_accuracy: float          # most frequent training value
    baseline_value: str
    previous_accuracy: float = float("nan")      # previous packet of the flow, same direction
    model_tolerance: float = float("nan")
    baseline_tolerance: float = float("nan")
    previous_tolerance: float = float("nan")

    @property
    def best_baseline(self) -> float:
        return float(np.nanmax([self.baseline_accuracy, self.previous_accuracy]))


@dataclass
class GenerationReport:
    scores: list[FieldScore] = field(default_factory=list)
    heldout_flows: int = 0
    heldout_packets: int = 0
    split: str = "test"

    def to_dict(self) -> dict:
        out = {"split": self.split, "heldout_flows": self.heldout_flows, "heldout_packets": self.heldout_packets}
        for s in self.scores:
            out[f"{s.field}_model"] = round(s.model_accuracy, 4)
            out[f"{s.field}_baseline"] = round(s.baseline_accuracy, 4)
            out[f"{s.field}_previous"] = round(s.previous_accuracy, 4)
            if FIELD_TOLERANCE.get(s.field.replace("_long", "")) is not None:
                out[f"{s.field}_model_tol"] = round(s.model_tolerance, 4)
                out[f"{s.field}_baseline_tol"] = round(s.baseline_tolerance, 4)
                out[f"{s.field}_previous_tol"] = round(s.previous_tolerance, 4)
            out[f"{s.field}_n"] = s.packets
        main = [s for s in self.scores if s.field in FIELD_SIZES and s.packets]
        if main:
            out["mean_model"] = round(float(np.mean([s.model_accuracy for s in main])), 4)
            out["mean_baseline"] = round(float(np.mean([s.baseline_accuracy for s in main])), 4)
            out["mean_previous"] = round(float(np.mean([s.previous_accuracy for s in main])), 4)
            out["mean_best_baseline"] = round(float(np.mean([s.best_baseline for s in main])), 4)
            out["min_margin"] = round(float(min(s.model_accuracy - s.best_baseline for s in main)), 4)
        return out


def holdout_modulus_of(checkpoint: str | Path, default: int | None = None) -> int | None:
    """Deprecated: pre-training no longer has its own hold-out rule (the workspace's splits decide)."""
    return default


def _sample(corpus: TrafficCorpus, per_flow: int, max_packets: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of at most ``per_flow`` packets per flow, at most ``max_packets`` in all (floods do not dominate)."""
    fl = corpus.flows
    rows = []
    for f in range(len(fl)):
        packets = fl.packets(f)
        rows.append(packets if len(packets) <= per_flow else rng.choice(packets, per_flow, replace=False))
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if len(rows) > max_packets:
        rows = rng.choice(rows, max_packets, replace=False)
    return np.sort(rows)


def generate_field(model: LensModel, windows: np.ndarray, lengths: np.ndarray, starts: np.ndarray, name: str,
                   batch_size: int = 256) -> np.ndarray:
    """Generated bytes ``[n, size]`` of field ``name`` of each input's last packet, only that field hidden.

    ``windows``: views ``[n, L]`` (one packet each) or ``[n, m, L]`` (a packet after its flow's earlier
    ones; all-zero rows after the last packet); ``lengths`` likewise ``[n]`` or ``[n, m]``; ``starts``: the
    field's first byte in the last packet.
    """
    cfg = model.config
    size = FIELD_SIZES[name]
    windows, lengths = np.asarray(windows), np.asarray(lengths)
    if windows.ndim == 2:
        windows, lengths = windows[:, None, :], lengths[:, None]
    present = windows.any(axis=2)
    present[:, 0] = True
    last = present.sum(axis=1) - 1
    out = np.zeros((len(windows), size), np.int64)
    for s in range(0, len(windows), batch_size):
        sl = slice(s, s + batch_size)
        v, ln, st, pr, la = windows[sl], lengths[sl], starts[sl], present[sl], last[sl]
        units, n_units = model.units(v, ln)
        n_units = np.where(pr, n_units, 0)
        spans = []
        for i in range(len(v)):
            a, b = field_unit_range(cfg, int(st[i]), size)
            mask = np.zeros(units.shape[1:], bool)
            mask[la[i], a:b] = True
            units[i], _ = apply_mask(cfg, units[i], n_units[i], mask)
            spans.append(b - a)
        enc = model.tokenise(units, n_units, pr)
        tokens = model.greedy_decode(enc, 1 + max(spans)).cpu().numpy()
        generated = tokens[:, 1:] - cfg.dec_unit0
        generated = np.where((generated >= 0) & (generated < cfg.unit_vocab), generated, -(1 << 20))
        for i in range(len(v)):
            got = field_bytes_from_units(cfg, generated[i], int(st[i]), size)
            out[s + i] = np.where(got >= 0, got, -1)
    return out


def evaluate_generation(model: LensModel, workspaces: Sequence[str | Path], *, split: str = "test",
                        per_flow: int = 20, max_packets: int = 3000, seed: int = 0, batch_size: int = 256,
                        progress: bool = False, holdout_modulus: int | None = None) -> GenerationReport:
    """Per-field scores on packets of ``split`` flows (default test), next to the most-frequent baseline
    (learned on the train split) and the previous-packet baseline. ``holdout_modulus`` is ignored (deprecated)."""
    if split == "train":
        raise PacketClipError("evaluate generation on the val or test split, not on the flows pre-training used")
    view_bytes = model.config.view_bytes
    test = TrafficCorpus.from_workspaces(workspaces, view_bytes=view_bytes, split=split)
    train = TrafficCorpus.from_workspaces(workspaces, view_bytes=view_bytes, split="train")
    return evaluate_generation_corpus(model, test, train, split=split, per_flow=per_flow, max_packets=max_packets,
                                      seed=seed, batch_size=batch_size, progress=progress)


def evaluate_generation_corpus(model: LensModel, test: TrafficCorpus, train: TrafficCorpus, *, split: str = "test",
                               per_flow: int = 20, max_packets: int = 3000, seed: int = 0, batch_size: int = 256,
                               progress: bool = False) -> GenerationReport:
    """:func:`evaluate_generation` on corpora the caller holds out (``test``) and trains baselines on (``train``)."""
    if len(test) == 0:
        raise PacketClipError(f"no {split} flows with packets to evaluate generation on")
    k = model.config.k_packets
    rng = np.random.default_rng(seed)
    rows = _sample(test, per_flow, max_packets, rng)
    views, lengths = test.views[rows], test.lengths[rows]
    context = test.generation_context(rows, k)
    present = context >= 0
    safe = np.where(present, context, 0)
    windows = np.where(present[..., None], test.views[safe], 0).astype(np.uint8)
    window_lengths = np.where(present, test.lengths[safe], 0)
    offsets = field_offsets(views, lengths)
    previous = _previous_same_direction(test, rows, context)
    prev_safe = np.maximum(previous, 0)
    prev_offsets = field_offsets(test.views[prev_safe], test.lengths[prev_safe])
    train_rows = rng.choice(len(train), min(len(train), 200_000), replace=False) if len(train) else np.zeros(0, int)
    train_offsets = field_offsets(train.views[train_rows], train.lengths[train_rows])
    report = GenerationReport(heldout_flows=len(test.flows), heldout_packets=len(rows), split=split)
    tasks = [(name, name, np.ones(len(rows), bool)) for name in FIELD_SIZES]
    tasks.append(("ip_length_long", "ip_length", lengths >= model.config.view_bytes))
    with Progress("eval-generation (fields)", len(tasks), enabled=progress) as bar:
        for label, name, subset in tasks:
            size = FIELD_SIZES[name]
            idx = np.flatnonzero((offsets[name] >= 0) & subset)
            truth = _field_values(views[idx], offsets[name][idx], size)
            base_value, base_pred = _most_frequent(train.views[train_rows], train_offsets[name], size)
            base = np.broadcast_to(base_pred, truth.shape)
            has_prev = (previous[idx] >= 0) & (prev_offsets[name][idx] >= 0)
            prev = np.array(base, copy=True)
            if has_prev.any():
                prev[has_prev] = _field_values(test.views[previous[idx][has_prev]],
                                               prev_offsets[name][idx][has_prev], size)
            if len(idx):
                predicted = generate_field(model, windows[idx], window_lengths[idx], offsets[name][idx], name,
                                           batch_size)
            else:
                predicted = np.zeros((0, size), np.int64)
            report.scores.append(FieldScore(
                label, len(idx), _exact(predicted, truth), _exact(base, truth), base_value, _exact(prev, truth),
                _within(name, predicted, truth), _within(name, base, truth), _within(name, prev, truth)))
            bar.advance(1)
    return report


def _previous_same_direction(corpus: TrafficCorpus, rows: np.ndarray, context: np.ndarray) -> np.ndarray:
    """For each row, the latest earlier packet of its flow in the same direction (``-1``: none): the slot
    before the row in its generation context, so the baseline and the model read the same history."""
    if context.shape[1] < 2:
        context = corpus.generation_context(rows, 2)
    filled = (context >= 0).sum(axis=1)
    return np.where(filled >= 2, context[np.arange(len(rows)), np.maximum(filled - 2, 0)], -1)


def _exact(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float((predicted == truth).all(axis=1).mean()) if len(truth) else float("nan")


def _within(name: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    """Share of predictions within the field's tolerance (exact for fields without one)."""
    tol = FIELD_TOLERANCE.get(name)
    if tol is None or not len(truth):
        return _exact(predicted, truth)
    as_int = lambda a: (np.asarray(a, np.int64) * (256 ** np.arange(a.shape[1])[::-1])).sum(axis=1)  # noqa: E731
    p, t = as_int(np.maximum(predicted, 0)), as_int(truth)
    bad = (np.asarray(predicted) < 0).any(axis=1)
    return float(((np.abs(p - t) <= np.maximum(tol[0], tol[1] * t)) & ~bad).mean())


def _field_values(views: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    cols = starts[:, None] + np.arange(size)[None, :]
    return np.take_along_axis(views, cols, axis=1).astype(np.int64) if len(views) else np.zeros((0, size), np.int64)


def _most_frequent(train_views, train_starts, size) -> tuple[str, np.ndarray]:
    """Most frequent training value of the field (``-1`` bytes when the field never occurs)."""
    ok = train_starts >= 0
    if not ok.any():
        return "-", np.full(size, -1, np.int64)
    values = _field_values(train_views[ok], train_starts[ok], size)
    uniq, counts = np.unique(values, axis=0, return_counts=True)
    best = uniq[np.argmax(counts)]
    return "0x" + "".join(f"{int(b):02x}" for b in best), best
