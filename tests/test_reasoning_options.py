"""MissionGNN's optional training devices (normal-confidence regulariser, decaying pseudo-label threshold): off by
default, and each changes what is trained when switched on. Synthetic flows (no lab run) keep this file fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from packetclip.errors import PacketClipError
from packetclip.reasoning.train import ReasoningSettings, build_gnn, default_graphs, fit_gnn, make_flow_data


def _words(words):
    out = []
    for w in words:
        v = np.random.default_rng(sum(map(ord, w))).standard_normal(16).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.fixture(scope="module")
def flows():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 400
    mission = rng.choice(["Benign", "DoS", "Reconnaissance", "Brute Force"], n, p=[0.55, 0.15, 0.15, 0.15])
    rows = pd.DataFrame({"mission": mission, "label": mission, "split": rng.choice(["train", "val"], n, p=[0.8, 0.2]),
                         "first_ts_ns": np.sort(rng.integers(0, 10**11, n)), "ws_index": 0, "capture": "c",
                         "flow_id": np.arange(n), "Src IP": rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3"], n),
                         "Dst IP": "10.0.0.9", "Src Port": 1000, "Dst Port": 80, "Protocol": 6})
    centre = rng.standard_normal((4, 16)).astype(np.float32)
    idx = pd.Categorical(mission, categories=["Benign", "DoS", "Reconnaissance", "Brute Force"]).codes
    emb = centre[idx] + 0.8 * rng.standard_normal((n, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return make_flow_data(rows, emb, ("flow",))


def _train(data, **options):
    s = ReasoningSettings(epochs=1, min_batches=2, window=8, seed=0, **options)
    gnn = build_gnn(default_graphs(0), _words, embed_dim=16, settings=s, fine_classes=sorted(set(data.fine)))
    history = fit_gnn(gnn, data.embeddings, data, s)
    return torch.cat([p.detach().flatten() for p in gnn.parameters()]), history


def test_options_are_off_by_default():
    s = ReasoningSettings()
    assert s.normal_confidence == 0.0 and s.pseudo_label is None


def test_each_option_changes_training(flows):
    base, hist = _train(flows)
    again, _ = _train(flows)
    assert torch.equal(base, again)                 # seeded: a difference below is the option's doing
    assert all(np.isfinite(h["loss"]) for h in hist)
    for option in ({"normal_confidence": 1.0}, {"pseudo_label": (0.9, 0.9)}):
        changed, hist = _train(flows, **option)
        assert not torch.equal(base, changed), option
        assert all(np.isfinite(h["loss"]) for h in hist)


def test_pseudo_label_threshold_must_decay(flows):
    with pytest.raises(PacketClipError, match="decaying"):
        _train(flows, pseudo_label=(0.2, 0.8))
