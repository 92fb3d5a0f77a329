"""Pre-training Lens on unlabelled traffic: one multi-task loss over three objectives.

- **Masked Span Prediction** (MSP): T5 span corruption of one packet or a window of up to ``k`` packets of a
  flow; the decoder reconstructs the hidden bytes. A share of single-packet examples hide named header
  fields instead (TTL, IP length, TCP flags/window, UDP length): the generation task, trained here and
  measured by :mod:`packetclip.encoders.generation`.
- **Packet Order Prediction** (POP): up to ``k`` consecutive packets of one flow, shuffled; each packet's
  pooled states predict its original position.
- **Homologous Traffic Prediction** (HTP): an anchor segment of a flow, a disjoint segment of the same
  flow and one of another flow (half of the time from the same capture, so "different capture" is not a
  shortcut), encoded separately. A binary head on two pooled encodings says whether they are homologous;
  the same question asked against every segment of the batch (InfoNCE over projected pooled encodings)
  makes the pooled embedding itself carry what tells flows apart.

Flows are drawn with :func:`flow_weights`, which stops floods (thousands of look-alike flows) from
taking over the batches.

Every step draws its examples from ``numpy.random.default_rng((seed, step))`` and runs under a local torch
RNG seeded with ``(seed, step)`` (the caller's RNG is left as it was), so a run resumed from a checkpoint
(model, AdamW state, step and history, saved as safetensors + JSON) produces exactly the losses an
uninterrupted run would. Ctrl-C saves such a checkpoint before it stops the run.

Which flows: the **train** split of each workspace's splits (``packetclip split``), the split
probes, alignment and reasoning use too; validation losses are measured on the **val** split. A workspace
without splits is refused in one line unless the caller passes ``all_flows=True`` (then nothing is held out,
and a warning says so).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from packetclip.encoders.corruption import (FIELD_SIZES, apply_mask, field_offsets, field_unit_range,
                                            hide_order_fields, pad_targets, random_spans)
from packetclip.encoders.base import local_seed
from packetclip.encoders.data import TrafficCorpus, open_packet_workspace
from packetclip.encoders.lens import LensConfig, LensModel, _device
from packetclip.errors import CheckpointError, PacketClipError
from packetclip.util.progress import Progress

log = logging.getLogger("packetclip")

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_WEIGHTS = "optimizer.safetensors"
LOSS_PNG = "loss_curves.png"
HISTORY_JSON = "losses.json"
VAL_JSON = "val_losses.json"


@dataclass
class PretrainSettings:
    """Optimisation and sampling hyper-parameters; all of them are stored with a checkpoint.

    Shortcut closers (all on by default; ``False`` / ``0`` reproduce the earlier objectives for ablations):
    ``hide_order_fields`` zeroes flow-relative TCP seq/ack and the ICMP echo sequence in POP and HTP inputs
    (:func:`~packetclip.encoders.corruption.hide_order_fields`); ``hard_negative_prob`` is the share of HTP
    negatives drawn from the same capture *and* protocol, among the flows nearest in time to the anchor's;
    ``field_context`` trains generation as it is evaluated: one field of the last packet of a window of up
    to ``k`` consecutive packets of a flow (else: one packet, any subset of its fields); with
    ``field_same_direction`` the window is the packet after its latest earlier packets *in the same
    direction* (:meth:`~packetclip.encoders.data.TrafficCorpus.generation_context`), which is what the model
    needs to copy a sender's TTL or window when addresses are masked.

    ``batch_msp`` is small on purpose: the decoder makes span prediction ~3x the cost of the encoder-only
    objectives, and on a CPU budget more steps matter more than a bigger span batch. Measured with
    ``tiny`` on 4 minutes of one CPU thread (lab probe, benchmarks/encoder_quality.py task, macro-F1):
    batch_msp=32 -> 204 steps, 0.52; batch_msp=8 -> 554 steps, 0.65 (random init: 0.46).
    """

    steps: int = 2000
    batch_msp: int = 8
    batch_pop: int = 16
    batch_htp: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 250
    noise_density: float = 0.15
    mean_span: float = 4.0
    field_prob: float = 0.3
    single_packet_prob: float = 0.5
    weight_msp: float = 1.0
    weight_pop: float = 1.0
    weight_htp: float = 1.0
    weight_nce: float = 1.0
    temperature: float = 0.1
    val_batches: int = 4
    hide_order_fields: bool = True
    hard_negative_prob: float = 0.75
    field_context: bool = True
    field_same_direction: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise PacketClipError(f"--steps must be at least 1, got {self.steps!r}")
        for name in ("batch_msp", "batch_pop", "batch_htp", "warmup_steps", "save_every", "val_batches"):
            if getattr(self, name) < 0:
                raise PacketClipError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise PacketClipError(f"--lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.hard_negative_prob <= 1.0:
            raise PacketClipError(f"hard_negative_prob must be in [0, 1], got {self.hard_negative_prob!r}")

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(self.steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Batch:
    """Encoder inputs, the target, and which flow each packet slot came from (``-1`` = empty slot)."""

    enc: dict
    target: torch.Tensor
    flows: np.ndarray
    rows: np.ndarray
    enc_b: dict | None = None   # HTP: the same-flow segment, encoded separately
    enc_c: dict | None = None   # HTP: the other-flow segment


class BatchBuilder:
    """Draws MSP / POP / HTP batches from a corpus. Examples never mix flows except HTP negatives."""

    def __init__(self, model: LensModel, corpus: TrafficCorpus, settings: PretrainSettings):
        self.model = model
        self.cfg = model.config
        self.corpus = corpus
        self.settings = settings
        flows = corpus.flows
        self.multi = np.flatnonzero(flows.count >= 2)
        if len(flows) == 0:
            raise PacketClipError("no packets to pre-train on (is the workspace empty?)")
        if len(self.multi) == 0:
            raise PacketClipError("pre-training needs flows with at least 2 packets; the workspace has none")
        weight = flow_weights(corpus)
        self._cdf_all = np.cumsum(weight) / weight.sum()
        self._cdf_multi = np.cumsum(weight[self.multi]) / weight[self.multi].sum()
        by_file = np.argsort(flows.file_key, kind="stable")
        files, fstart, fcount = np.unique(flows.file_key[by_file], return_index=True, return_counts=True)
        self._by_file, self._file_start, self._file_count = by_file, fstart, fcount
        self._file_of_flow = np.searchsorted(files, flows.file_key)
        first = corpus.views[flows.order[flows.start]]
        version = first[:, 0] >> 4
        proto = np.where(version == 4, first[:, 9], np.where(version == 6, first[:, 6], 255)).astype(np.int64)
        group = self._file_of_flow.astype(np.int64) * 256 + proto       # (capture, protocol), then time
        self._hard_order = np.lexsort((flows.flow_key, group))
        self._hard_group = group[self._hard_order]
        self._hard_pos = np.empty(len(flows), np.int64)
        self._hard_pos[self._hard_order] = np.arange(len(flows))

    # --- helpers ------------------------------------------------------------------------------------
    def _flows(self, rng, size: int, multi: bool) -> np.ndarray:
        """Flow indices drawn with :func:`flow_weights` (from flows with >= 2 packets when ``multi``)."""
        cdf = self._cdf_multi if multi else self._cdf_all
        picked = np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)
        return self.multi[picked] if multi else picked

    def _gather(self, rows: np.ndarray, hide_order: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Units, unit counts and presence of packet rows ``[B, m]`` (``-1`` = absent); ``hide_order`` zeroes
        the fields that number packets within a flow (see :func:`hide_order_fields`)."""
        present = rows >= 0
        safe = np.where(present, rows, 0)
        views = self.corpus.views[safe]
        lengths = np.where(present, self.corpus.lengths[safe], 0)
        if hide_order:
            shape = views.shape
            views = hide_order_fields(views.reshape(-1, shape[-1]), lengths.reshape(-1)).reshape(shape)
        units, n_units = self.model.units(views, lengths)
        return units, np.where(present, n_units, 0), present

    def _window(self, f: int, m: int, rng) -> np.ndarray:
        fl = self.corpus.flows
        start = int(rng.integers(0, fl.count[f] - m + 1))
        return fl.order[fl.start[f] + start: fl.start[f] + start + m]

    def _finish(self, rows, present, units, n_units, target, flows) -> Batch:
        enc = self.model.tokenise(units, n_units, present)
        return Batch(enc, torch.as_tensor(target), flows, rows)

    # --- objectives ---------------------------------------------------------------------------------
    def msp(self, rng: np.random.Generator, size: int) -> Batch:
        s, cfg, fl = self.settings, self.cfg, self.corpus.flows
        k = cfg.k_packets
        rows = np.full((size, k), -1, np.int64)
        flow_of = np.full((size, k), -1, np.int64)
        fields_mode = np.zeros(size, bool)
        last = np.zeros(size, np.int64)   # the slot whose fields field mode hides
        for i, f in enumerate(self._flows(rng, size, multi=False)):
            if s.field_context and rng.random() < s.field_prob:   # a packet and the ones before it
                fields_mode[i] = True
                row = fl.packets(int(f))[int(rng.integers(0, fl.count[f]))]
                window = (self.corpus.generation_context(np.array([row]), k) if s.field_same_direction
                          else fl.context(np.array([row]), k))[0]
                m = int((window >= 0).sum())
                rows[i, :m] = window[:m]
                last[i] = m - 1
            else:
                m = 1 if rng.random() < s.single_packet_prob else int(min(k, fl.count[f]))
                rows[i, :m] = self._window(int(f), m, rng)
                fields_mode[i] = not s.field_context and m == 1 and rng.random() < s.field_prob
            flow_of[i, :m] = fl.flow_key[f]
        units, n_units, present = self._gather(rows)
        target_rows = rows[np.arange(size), last]
        offsets = field_offsets(self.corpus.views[target_rows], self.corpus.lengths[target_rows])
        targets = []
        for i in range(size):
            mask = np.zeros(units.shape[1:], bool)
            chosen = [name for name in FIELD_SIZES if offsets[name][i] >= 0] if fields_mode[i] else []
            if chosen:
                if s.field_context:   # exactly one field, as the generation task asks for it
                    pick = np.zeros(len(chosen), bool)
                else:
                    pick = rng.random(len(chosen)) < 0.5
                pick[rng.integers(len(chosen))] = True
                for name, on in zip(chosen, pick):
                    if on:
                        a, b = field_unit_range(cfg, int(offsets[name][i]), FIELD_SIZES[name])
                        mask[last[i], a:b] = True
            else:
                for p in np.flatnonzero(present[i]):
                    mask[p, : n_units[i, p]] = random_spans(int(n_units[i, p]), s.noise_density, s.mean_span, rng)
            units[i], target = apply_mask(cfg, units[i], n_units[i], mask)
            targets.append(target)
        return self._finish(rows, present, units, n_units, pad_targets(targets), flow_of)

    def pop(self, rng: np.random.Generator, size: int) -> Batch:
        cfg, fl = self.cfg, self.corpus.flows
        k = cfg.k_packets
        rows = np.full((size, k), -1, np.int64)
        flow_of = np.full((size, k), -1, np.int64)
        target = np.full((size, k), -100, np.int64)
        for i, f in enumerate(self._flows(rng, size, multi=True)):
            m = int(min(k, fl.count[f]))
            window = self._window(int(f), m, rng)
            perm = rng.permutation(m)
            rows[i, :m] = window[perm]
            target[i, :m] = perm
            flow_of[i, :m] = fl.flow_key[f]
        units, n_units, present = self._gather(rows, hide_order=self.settings.hide_order_fields)
        return self._finish(rows, present, units, n_units, target, flow_of)

    def htp(self, rng: np.random.Generator, size: int) -> Batch:
        """Triples of segments: anchor A, B+ from A's flow (disjoint packets), B- from another flow.

        ``rows``/``flows`` hold A, B+ and B- side by side (``htp_segment`` slots each); ``enc``, ``enc_b``
        and ``enc_c`` encode them separately.
        """
        cfg, fl = self.cfg, self.corpus.flows
        seg = cfg.htp_segment
        rows = np.full((size, 3 * seg), -1, np.int64)
        flow_of = np.full((size, 3 * seg), -1, np.int64)
        for i, f in enumerate(self._flows(rng, size, multi=True)):
            f = int(f)
            n = int(fl.count[f])
            s = min(seg, n // 2)
            packets = fl.packets(f)
            a, b = self._two_windows(n, s, rng)
            g = self._other_flow(f, rng)
            parts = [(packets[a: a + s], f), (packets[b: b + s], f),
                     (self._window(g, min(s, int(fl.count[g])), rng), g)]
            for j, (segment, owner) in enumerate(parts):
                rows[i, j * seg: j * seg + len(segment)] = segment
                flow_of[i, j * seg: j * seg + len(segment)] = fl.flow_key[owner]
        encs = []
        for j in range(3):
            u, nu, pr = self._gather(rows[:, j * seg: (j + 1) * seg], hide_order=self.settings.hide_order_fields)
            encs.append(self.model.tokenise(u, nu, pr))
        return Batch(encs[0], torch.ones(size), flow_of, rows, enc_b=encs[1], enc_c=encs[2])

    @staticmethod
    def _two_windows(n: int, s: int, rng) -> tuple[int, int]:
        """Start of two non-overlapping windows of ``s`` packets in a flow of ``n`` (random order)."""
        for _ in range(8):
            a, b = rng.integers(0, n - s + 1, size=2)
            if abs(int(a) - int(b)) >= s:
                return int(a), int(b)
        return (0, n - s) if rng.random() < 0.5 else (n - s, 0)

    def _other_flow(self, f: int, rng) -> int:
        """A different flow: with ``hard_negative_prob`` one of the 8 flows nearest in time (flow keys are
        numbered in order of first packet) with the same capture and protocol; else half of the time any flow
        of the same capture, half any flow at all. Same-protocol neighbours remove the "other protocol /
        other capture" shortcut the same-flow head otherwise learns first."""
        fl = self.corpus.flows
        if rng.random() < self.settings.hard_negative_prob:
            pos = self._hard_pos[f]
            group = self._hard_group
            lo, hi = max(pos - 8, 0), min(pos + 9, len(group))
            near = [int(self._hard_order[p]) for p in range(lo, hi) if p != pos and group[p] == group[pos]]
            if near:
                return near[int(rng.integers(len(near)))]
        file = self._file_of_flow[f]
        if rng.random() < 0.5 and self._file_count[file] > 1:
            j = int(rng.integers(0, self._file_count[file] - 1))
            g = int(self._by_file[self._file_start[file] + j])
            if g == f:
                g = int(self._by_file[self._file_start[file] + self._file_count[file] - 1])
            return g
        if len(fl) < 2:
            raise PacketClipError("homologous traffic prediction needs at least 2 flows")
        g = int(rng.integers(0, len(fl) - 1))
        return g + 1 if g >= f else g


def flow_shapes(corpus: TrafficCorpus, n_packets: int = 4) -> np.ndarray:
    """A coarse "shape" per flow: ``uint8 [n_flows, 4 * n_packets + 1]``.

    For each of the first ``n_packets`` packets: present, direction, IP protocol, TCP flags (ICMP type), and
    the log2 bucket of its length; plus the flow's packet-count bucket (1, 2, 3-4, 5-8, 9+). Payload bytes,
    identifiers and exact lengths are left out on purpose: a flood with random IDs, payloads or sizes
    (hping3, random DNS names) is one shape, not thousands of distinct flows.
    """
    fl = corpus.flows
    n = len(fl)
    cols = [np.minimum(np.ceil(np.log2(np.maximum(fl.count, 1))), 4).astype(np.uint8)]
    width = corpus.views.shape[1]
    for j in range(n_packets):
        has = fl.count > j
        rows = fl.order[fl.start + np.minimum(j, np.maximum(fl.count - 1, 0))]
        v = corpus.views[rows]
        version = v[:, 0] >> 4
        proto = np.where(version == 4, v[:, 9], np.where(version == 6, v[:, 6], 0)).astype(np.int64)
        l4 = np.where(version == 4, (v[:, 0] & 15).astype(np.int64) * 4, 40)
        flag_at = np.where(proto == 6, l4 + 13, l4)
        ok = flag_at < width
        flags = np.where(ok, v[np.arange(n), np.minimum(flag_at, width - 1)], 0)
        flags = np.where(np.isin(proto, (1, 6, 58)), flags, 0)
        length = np.ceil(np.log2(np.maximum(corpus.lengths[rows], 1))).astype(np.uint8)
        cols += [has.astype(np.uint8), np.where(has, corpus.direction[rows], 0).astype(np.uint8),
                 np.where(has, proto, 0).astype(np.uint8), np.where(has, flags, 0).astype(np.uint8),
                 np.where(has, length, 0).astype(np.uint8)]
    return np.ascontiguousarray(np.stack(cols, axis=1)) if n else np.zeros((0, 1 + 5 * n_packets), np.uint8)


def flow_weights(corpus: TrafficCorpus) -> np.ndarray:
    """Sampling weight per flow: ``1 / sqrt(flows of the same shape)`` (see :func:`flow_shapes`).

    A flood or scan contributes tens of thousands of look-alike flows; uniform sampling would spend nearly
    every step on them, while this keeps them present but lets the varied traffic be seen. (An earlier
    key, the first packet's first 40 bytes, let floods with random ICMP/DNS ids through as thousands of
    "distinct" flows: in a 5-minute lab capture an ICMP and a DNS flood took ~90 % of the samples.)
    """
    fl = corpus.flows
    if len(fl) == 0:
        return np.zeros(0)
    key = flow_shapes(corpus)
    _, inverse, counts = np.unique(key.view(np.dtype((np.void, key.shape[1]))).ravel(), return_inverse=True,
                                   return_counts=True)
    return 1.0 / np.sqrt(counts[inverse.ravel()])


def step_losses(model: LensModel, builder: BatchBuilder, settings: PretrainSettings, step: int) -> dict:
    """The three objectives (tensors with grad) and their accuracies for one step's seeded batches.

    An objective whose weight (or batch size) is 0 is not computed at all; its entries are 0.
    """
    rng = np.random.default_rng((settings.seed, step))
    device = model.device
    zero = torch.zeros((), device=device)
    out = {"msp": zero, "pop": zero, "htp": zero, "htp_nce": zero, "pop_acc": zero, "htp_acc": zero}
    total = zero
    if settings.weight_msp > 0 and settings.batch_msp > 0:
        msp = builder.msp(rng, settings.batch_msp)
        out["msp"] = model.span_loss(msp.enc, msp.target)
        total = total + settings.weight_msp * out["msp"]
    if settings.weight_pop > 0 and settings.batch_pop > 0:
        pop = builder.pop(rng, settings.batch_pop)
        k = model.config.k_packets
        pop_logits = model.pop_head(model.pool_packets(model.encoder_states(pop.enc), pop.enc, k))
        target = pop.target.to(device)
        out["pop"] = F.cross_entropy(pop_logits.reshape(-1, k), target.reshape(-1), ignore_index=-100)
        with torch.no_grad():
            valid = target >= 0
            out["pop_acc"] = (pop_logits.argmax(-1)[valid] == target[valid]).float().mean()
        total = total + settings.weight_pop * out["pop"]
    if settings.weight_htp > 0 and settings.batch_htp > 0:
        htp = builder.htp(rng, settings.batch_htp)
        anchor, same, other = (model.pool(model.encoder_states(e), e) for e in (htp.enc, htp.enc_b, htp.enc_c))
        htp_logit = torch.cat([model.htp_logit(anchor, same), model.htp_logit(anchor, other)])
        htp_target = torch.cat([torch.ones(len(anchor), device=device), torch.zeros(len(anchor), device=device)])
        out["htp"] = F.binary_cross_entropy_with_logits(htp_logit, htp_target)
        # the same question against every segment of the batch: which one is from my flow? (InfoNCE)
        za = F.normalize(model.htp_proj(anchor), dim=-1)
        zb = F.normalize(model.htp_proj(torch.cat([same, other])), dim=-1)
        out["htp_nce"] = F.cross_entropy(za @ zb.T / settings.temperature, torch.arange(len(anchor), device=device))
        with torch.no_grad():
            out["htp_acc"] = ((htp_logit > 0).float() == htp_target).float().mean()
        total = total + settings.weight_htp * (out["htp"] + settings.weight_nce * out["htp_nce"])
    if total is zero:
        raise PacketClipError("every pre-training objective has weight 0")
    out["total"] = total
    return out


def make_optimizer(model: LensModel, settings: PretrainSettings) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.ndim >= 2 and "embed" not in name and "shared" not in name else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98))


# --- checkpoints -------------------------------------------------------------------------------------------
def save_checkpoint(directory: Path, model: LensModel, optimizer: torch.optim.Optimizer, settings: PretrainSettings,
                    step: int, history: list[dict], workspaces: Sequence[str]) -> Path:
    """Model + AdamW state + step + history as safetensors + JSON, written atomically.

    No RNG state is stored: every step seeds its own generators from ``(seed, step)``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    save_file(tensors, str(tmp / OPTIMIZER_WEIGHTS), metadata={"format": "pt"})
    trainer = {"step": step, "settings": asdict(settings), "param_groups": opt["param_groups"],
               "scalar_state": scalars, "history": history, "workspaces": [str(w) for w in workspaces]}
    (tmp / TRAINER_STATE).write_text(json.dumps(trainer))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def load_checkpoint(directory: Path, model_config: LensConfig | None = None, device="cpu"):
    """``(model, optimizer, settings, step, history)`` from a checkpoint directory (model on ``device``)."""
    from packetclip.encoders import _weights

    directory = Path(directory)
    state_path = directory / TRAINER_STATE
    if not state_path.is_file():
        raise CheckpointError(f"no {TRAINER_STATE}: not a pre-training checkpoint", path=str(directory))
    try:
        trainer = json.loads(state_path.read_text())
        known = {f.name for f in fields(PretrainSettings)}
        settings = PretrainSettings(**{k: v for k, v in trainer["settings"].items() if k in known})
        step, history = int(trainer["step"]), list(trainer["history"])
        groups, scalars = trainer["param_groups"], trainer["scalar_state"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"unreadable trainer state: {err}", path=str(state_path)) from None
    model = LensModel.from_pretrained(directory, device=device)
    if model_config is not None and model_config.to_dict() != model.config.to_dict():
        raise CheckpointError("checkpoint was trained with a different model config (size/tokenisation/...)",
                              path=str(directory))
    optimizer = make_optimizer(model, settings)
    tensors = _weights.read_safetensors(directory / OPTIMIZER_WEIGHTS)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, extra in scalars.items():
        state.setdefault(int(pid), {}).update(extra)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"optimizer state does not match the model: {err}", path=str(directory)) from None
    return model, optimizer, settings, step, history


# --- training ----------------------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    out_dir: Path
    steps_done: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    validation: dict = field(default_factory=dict)   # mean losses on val-split flows at the end ({} if none)


def pretrain(workspaces: Sequence[str | Path], out_dir: str | Path, *, config: LensConfig | None = None,
             settings: PretrainSettings | None = None, resume: bool = False, overwrite: bool = False,
             max_seconds: float | None = None, stop_after: int | None = None, steps_override: int | None = None,
             progress: bool = True, corpus: TrafficCorpus | None = None, val_corpus: TrafficCorpus | None = None,
             flow_ids: Sequence[Sequence[int] | None] | None = None, all_flows: bool = False,
             device: str = "cpu", on_step: Callable[[dict], None] | None = None) -> PretrainResult:
    """Pre-train (or resume) a Lens model on the train-split packets of ``workspaces``; write it to ``out_dir``.

    ``out_dir`` receives the final model (``config.json`` + ``model.safetensors``, loadable with
    ``LensModel.from_pretrained(out_dir)``), ``checkpoint/`` (resumable state, refreshed every
    ``save_every`` steps, on ``max_seconds`` and on Ctrl-C), ``losses.json``, ``val_losses.json`` and
    ``loss_curves.png``. ``resume=True`` continues from ``out_dir/checkpoint`` with the stored settings
    (``settings.steps`` may extend the run). ``max_seconds`` stops early (saving everything) when the
    wall-clock budget is spent; ``stop_after`` stops after that many steps of this call (an interruption on
    purpose); ``steps_override`` sets the total of a resumed run (the cosine schedule then stretches).

    Flows: each workspace's train split, or ``flow_ids`` (one entry per workspace); ``all_flows=True`` uses
    every flow of a workspace without splits (warned). ``corpus`` / ``val_corpus`` replace the loading.
    ``on_step(record)`` is called after every step. A ``KeyboardInterrupt`` (Ctrl-C, or raised by
    ``on_step``) saves the checkpoint and the model of the last completed step, then propagates.
    (An interrupt that lands inside the optimiser update itself -- milliseconds of each step -- may save
    that step half-applied; resume then continues from those weights.)
    """
    out = Path(out_dir)
    ckpt = out / CHECKPOINT_DIR
    started = time.perf_counter()
    if max_seconds is not None and not max_seconds > 0:
        raise PacketClipError(f"--minutes must be > 0, got {max_seconds / 60:g}")
    if steps_override is not None and steps_override < 1:
        raise PacketClipError(f"--steps must be at least 1, got {steps_override}")
    if stop_after is not None and stop_after < 0:
        raise PacketClipError(f"stop_after must be >= 0, got {stop_after}")
    dev = _device(device)
    # every input is checked before any work: output folder, workspaces, splits
    if resume:
        if not ckpt.is_dir():
            raise PacketClipError("nothing to resume: no checkpoint/ in the output folder", path=str(out))
        view_bytes = LensConfig.load(ckpt).view_bytes
    else:
        if ckpt.exists() and not overwrite:
            raise PacketClipError("output folder already holds a checkpoint; pass --resume to continue it "
                                  "or choose another --out", path=str(out))
        if out.exists() and not out.is_dir():
            raise PacketClipError("output exists and is not a folder", path=str(out))
        settings = settings or PretrainSettings()
        config = config or LensConfig()
        view_bytes = config.view_bytes
    if corpus is None:
        if not workspaces:
            raise PacketClipError("no workspace given to pre-train on")
        corpus = TrafficCorpus.from_workspaces(workspaces, view_bytes=view_bytes, split="train",
                                               flow_ids=flow_ids, all_flows=all_flows)
        if val_corpus is None and flow_ids is None and not all_flows:
            val_corpus = _val_corpus(workspaces, view_bytes)
    if resume:
        model, optimizer, stored, step, history = load_checkpoint(ckpt, config, device=dev)
        if settings is not None:
            differs = [k for k, v in asdict(settings).items() if k != "steps" and asdict(stored)[k] != v]
            if differs:
                raise PacketClipError(f"--resume with different settings ({', '.join(differs)}) than the checkpoint",
                                      path=str(ckpt))
            stored.steps = settings.steps
        settings = stored
        if steps_override is not None:
            settings.steps = int(steps_override)
    else:
        model = LensModel(config, seed=settings.seed).to(dev)
        optimizer = make_optimizer(model, settings)
        step, history = 0, []
    builder = BatchBuilder(model, corpus, settings)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    model.train()
    stopped_early = interrupted = False
    first_step = step
    try:
        with Progress("pretrain", settings.steps, enabled=progress) as bar:
            bar.set(step)
            while step < settings.steps:
                if (max_seconds is not None and time.perf_counter() - started > max_seconds) or \
                        (stop_after is not None and step - first_step >= stop_after):
                    stopped_early = True
                    break
                with local_seed(settings.seed * 1_000_003 + step):   # dropout, if any: seeded per step
                    for group in optimizer.param_groups:
                        group["lr"] = settings.lr_at(step)
                    losses = step_losses(model, builder, settings, step)
                    optimizer.zero_grad(set_to_none=True)
                    losses["total"].backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                    record = {"step": step, "lr": settings.lr_at(step)}
                    record.update({k: float(v.detach()) for k, v in losses.items()})
                    optimizer.step()
                step += 1
                history.append(record)
                if max_seconds is not None:   # the bar ends where the time budget will, not at --steps
                    elapsed = time.perf_counter() - started
                    per_step = elapsed / max(step - first_step, 1)
                    bar.set_total(min(settings.steps, step + int(max(max_seconds - elapsed, 0) / per_step)))
                bar.set(step, f"pretrain msp {record['msp']:.3f} pop {record['pop']:.3f} htp {record['htp']:.3f}")
                if settings.save_every and step % settings.save_every == 0 and step < settings.steps:
                    save_checkpoint(ckpt, model, optimizer, settings, step, history, workspaces)
                if on_step is not None:
                    on_step(record)
    except KeyboardInterrupt:
        interrupted = stopped_early = True
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # never leave an empty output folder behind
        raise
    model.eval()
    save_checkpoint(ckpt, model, optimizer, settings, step, history, workspaces)
    model.save_pretrained(out)
    (out / HISTORY_JSON).write_text(json.dumps(history))
    if history:
        plot_loss_curves(history, out / LOSS_PNG)
    if interrupted:
        log.warning("interrupted at step %d of %d; checkpoint saved in %s (continue with --resume)",
                    step, settings.steps, ckpt)
        raise KeyboardInterrupt
    validation = {}
    if val_corpus is not None and len(val_corpus):
        validation = validation_losses(model, val_corpus, settings)
        (out / VAL_JSON).write_text(json.dumps({"step": step, **validation}))
    return PretrainResult(out, step, history, time.perf_counter() - started, stopped_early, validation)


def _val_corpus(workspaces: Sequence, view_bytes: int) -> TrafficCorpus | None:
    """Packets of the val-split flows (None when no workspace has any)."""
    try:
        corpus = TrafficCorpus.from_workspaces(workspaces, view_bytes=view_bytes, split="val")
    except PacketClipError as err:
        log.info("no validation losses: %s", err)
        return None
    return corpus if len(corpus) else None


def validation_losses(model: LensModel, corpus: TrafficCorpus, settings: PretrainSettings) -> dict:
    """Mean losses and accuracies over ``settings.val_batches`` fixed batches of ``corpus`` (no gradient).

    The batches depend only on the seed, so values are comparable between runs and checkpoints.
    """
    try:
        builder = BatchBuilder(model, corpus, settings)
    except PacketClipError as err:
        log.info("no validation losses: %s", err)
        return {}
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        with torch.no_grad():
            for i in range(max(settings.val_batches, 0)):
                with local_seed(settings.seed + 7_777_777 + i):
                    losses = step_losses(model, builder, settings, (1 << 40) + i)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
    finally:
        model.train(was_training)
    n = max(settings.val_batches, 1)
    return {k: v / n for k, v in sums.items()}


def pretrain_default(workspaces: str | Path | Sequence[str | Path], out_dir: str | Path, *, minutes: float = 3.0,
                     size: str = "tiny", seed: int = 0, progress: bool = True, all_flows: bool = False,
                     device: str = "cpu") -> PretrainResult:
    """The demo's recipe: pre-train a ``size`` model for about ``minutes`` of wall-clock time.

    The step count is fixed up front from a short timing run (so the learning-rate schedule completes
    within the budget); a hard stop at 1.2x the budget guards against a slower machine.

    Measured on the demo's lab workspace (``SynthLab(duration_s=300, seed=7)``: 131k packets, 43k flows),
    one torch thread on a shared 2-core machine, ``minutes=3``: 411 steps, 153 s of training, 166 s in all;
    then embedding all 43k flows (16k distinct inputs) took 40 s. On the
    ``benchmarks/encoder_quality.py`` lab task that model scores 0.832 macro-F1 against 0.810 for its
    random initialisation and 0.812 for a byte histogram.
    """
    if isinstance(workspaces, (str, Path)):
        workspaces = [workspaces]
    if not minutes > 0:
        raise PacketClipError(f"--minutes must be > 0, got {minutes:g}")
    config = LensConfig(size=size)
    settings = PretrainSettings(seed=seed)
    corpus = TrafficCorpus.from_workspaces(workspaces, view_bytes=config.view_bytes, split="train",
                                           all_flows=all_flows)
    val_corpus = None if all_flows else _val_corpus(workspaces, config.view_bytes)
    per_step = time_steps(config, settings, corpus, device=device)
    budget = minutes * 60.0
    settings.steps = int(max(50, min(50_000, budget * 0.9 / per_step)))
    settings.warmup_steps = max(10, min(settings.warmup_steps, settings.steps // 10))
    settings.save_every = max(50, settings.steps // 5)
    return pretrain(workspaces, out_dir, config=config, settings=settings, overwrite=True,
                    max_seconds=budget * 1.2, progress=progress, corpus=corpus, val_corpus=val_corpus,
                    device=device)


def time_steps(config: LensConfig, settings: PretrainSettings, corpus: TrafficCorpus, n: int = 3,
               device: str = "cpu") -> float:
    """Seconds per training step of this config on this machine (throwaway model, one warm-up step)."""
    model = LensModel(config, seed=settings.seed).to(_device(device))
    model.train()
    optimizer = make_optimizer(model, settings)
    builder = BatchBuilder(model, corpus, settings)
    times = []
    with local_seed(settings.seed):
        for step in range(n + 1):
            t0 = time.perf_counter()
            losses = step_losses(model, builder, settings, 10_000_000 + step)
            optimizer.zero_grad()
            losses["total"].backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def plot_loss_curves(history: list[dict], path: str | Path) -> Path:
    """PNG of the three objectives' losses per step (raw and smoothed) plus the two accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("msp", None, "Masked span prediction (decoder CE)"),
              ("pop", "pop_acc", "Packet order prediction"),
              ("htp", "htp_acc", "Homologous traffic prediction")]
    for ax, (key, acc, title) in zip(axes, panels):
        values = np.array([h[key] for h in history])
        ax.plot(steps, values, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(steps, _ema(values), color="tab:blue", lw=1.6, label="loss")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if acc:
            twin = ax.twinx()
            twin.plot(steps, _ema(np.array([h[acc] for h in history])), color="tab:orange", lw=1.2, label="accuracy")
            twin.set_ylim(0, 1)
            twin.set_ylabel("accuracy (smoothed)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ema(values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    out = np.empty_like(values, dtype=np.float64)
    acc = values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out
