"""Training an alignment, apart from the model (open_clip's ``open_clip_train`` split): only the two heads and
the temperature learn, on embeddings computed once by the frozen encoders.

Defaults are the paper's: Adam, lr 5e-4, betas (0.9, 0.8), eps 1e-6, batch 128, 3,000 steps. Batches draw
(flow, description) pairs class-balanced (each class equally likely, then a description of it), from one
seeded ``numpy.random.Generator``, so a run is reproducible and touches no global RNG state. The optimised
loss is the multi-positive InfoNCE by default; both it and CLIP's plain InfoNCE are logged every
``log_every`` steps so they can be compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from packetclip.align.loss import ContrastiveLoss, clip_loss, multi_positive_loss
from packetclip.align.model import AlignConfig, AlignModel
from packetclip.errors import PacketClipError


@dataclass
class TrainSettings:
    """Training knobs (not part of the saved config)."""

    steps: int = 3000
    batch_size: int = 128
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.8)
    eps: float = 1e-6
    multi_positive: bool = True
    balanced: bool = True
    seed: int = 0
    log_every: int = 100
    eval_every: int = 0          # call ``on_eval`` every this many steps (0: never)


@dataclass
class PairData:
    """Cached training pairs: one traffic row per flow, one text row per description."""

    traffic: np.ndarray            # float32 [n_flows, traffic_dim]
    text: np.ndarray               # float32 [n_texts, text_dim]
    flow_row: np.ndarray           # int64 [n_texts]: the traffic row each description belongs to
    groups: np.ndarray             # int64 [n_texts]: class index (pairs of one class are positives)
    classes: list = field(default_factory=list)


def build_pairs(traffic_side, text_side, workspace, descriptions: pd.DataFrame,
                flow_ids: Sequence[int] | np.ndarray | None = None) -> PairData:
    """Embed the described flows (restricted to ``flow_ids``) and their descriptions once."""
    table = descriptions
    if flow_ids is not None:
        table = table[table["flow_id"].isin(np.asarray(flow_ids, np.int64))]
    if table.empty:
        raise PacketClipError("no described flows to train on (run `packetclip describe`, and `packetclip split`)")
    ids, flow_row = np.unique(table["flow_id"].to_numpy(np.int64), return_inverse=True)
    classes = sorted(table["label"].astype(str).unique())
    groups = pd.Categorical(table["label"].astype(str), categories=classes).codes.astype(np.int64)
    return PairData(traffic=traffic_side.embed(workspace, ids), text=text_side.embed(table["text"].tolist()),
                    flow_row=flow_row.astype(np.int64), groups=groups, classes=classes)


def new_model(data: PairData, traffic_side, text_side, *, heads: str = "both", seed: int = 0) -> AlignModel:
    config = AlignConfig(traffic=traffic_side.kind, heads=heads, traffic_dim=int(data.traffic.shape[1]),
                         text_dim=int(data.text.shape[1]), traffic_encoder=traffic_side.describe(),
                         text_encoder=text_side.describe(), seed=seed, classes=list(data.classes))
    model = AlignModel(config)
    model.fit_standardiser(data.traffic)
    return model


def batches(data: PairData, settings: TrainSettings) -> np.ndarray:
    """``int64 [steps, batch]`` description indices, class-balanced when ``settings.balanced``."""
    rng = np.random.default_rng(settings.seed)
    n = len(data.groups)
    p = None
    if settings.balanced:
        counts = np.bincount(data.groups)
        p = 1.0 / counts[data.groups]
        p = p / p.sum()
    return rng.choice(n, size=(settings.steps, min(settings.batch_size, n)), replace=True, p=p)


def adam(params: list, settings: TrainSettings) -> torch.optim.Optimizer:
    """The paper's Adam; the fused kernel (one pass over all parameters per step) where this torch has it."""
    kwargs = {"lr": settings.lr, "betas": tuple(settings.betas), "eps": settings.eps}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, **kwargs)


def train(model: AlignModel, data: PairData, settings: TrainSettings | None = None, *,
          on_eval: Callable[[int, AlignModel], dict] | None = None,
          on_log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model``'s heads and temperature in place; returns the log (step, both losses, scale, seconds,
    and whatever ``on_eval`` returned at its steps; ``on_eval`` also runs at step 0)."""
    s = settings or TrainSettings()
    # Everything that does not change during training is computed once here, not per step: the standardised
    # traffic matrix, each step's traffic rows and groups (one gather over all steps).
    with torch.no_grad():
        traffic = model.standardise(torch.from_numpy(np.ascontiguousarray(data.traffic, np.float32))).contiguous()
    text = torch.from_numpy(np.ascontiguousarray(data.text, np.float32))
    order = torch.from_numpy(batches(data, s))
    step_rows = torch.from_numpy(data.flow_row)[order]
    step_groups = torch.from_numpy(data.groups)[order]
    loss_fn = ContrastiveLoss(multi_positive=s.multi_positive)
    opt = adam(model.trainable_parameters(), s)
    history: list[dict] = []
    t0 = time.perf_counter()
    if on_eval is not None and s.eval_every:
        history.append({"step": 0, **on_eval(0, model)})
    model.train()
    try:
        for step in range(1, s.steps + 1):
            idx, group = order[step - 1], step_groups[step - 1]
            x = model.project_standardised(traffic[step_rows[step - 1]])
            t = model.encode_text(text[idx])
            loss = loss_fn(x, t, model.logit_scale, group)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clamp_()
            if s.log_every and (step % s.log_every == 0 or step == s.steps):
                with torch.no_grad():
                    record = {"step": step, "loss": float(loss),
                              "loss_clip": float(clip_loss(x, t, model.logit_scale)),
                              "loss_multi_positive": float(multi_positive_loss(x, t, model.logit_scale, group)),
                              "logit_scale": float(model.logit_scale.exp()),
                              "seconds": time.perf_counter() - t0}
                history.append(record)
                if on_log is not None:
                    on_log(record)
            if on_eval is not None and s.eval_every and step % s.eval_every == 0:
                model.eval()
                history.append({"step": step, **on_eval(step, model)})
                model.train()
    finally:
        model.eval()
    return history


def fit(traffic_side, text_side, workspace, descriptions: pd.DataFrame, *, flow_ids=None, heads: str = "both",
        settings: TrainSettings | None = None, data: PairData | None = None, **kwargs) -> tuple[AlignModel, list[dict]]:
    """Build pairs (unless ``data`` is given), a fresh model, and train it: ``(model, history)``."""
    settings = settings or TrainSettings()
    data = data or build_pairs(traffic_side, text_side, workspace, descriptions, flow_ids)
    model = new_model(data, traffic_side, text_side, heads=heads, seed=settings.seed)
    return model, train(model, data, settings, **kwargs)
