"""Flow-table encoder: CICFlowMeter columns in, masked-feature pre-training, embed(), strict persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from packetclip.encoders.flowtable import CICFLOW_FEATURES, FlowTableConfig, FlowTableEncoder, feature_matrix
from packetclip.errors import CheckpointError, DatasetFormatError


def flow_table(n: int, seed: int) -> pd.DataFrame:
    """Two behaviours with correlated columns (so masked features are predictable from the others),
    CIC-style column names with the original leading spaces on some, plus Infinity/NaN cells."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    packets = np.where(kind == 0, rng.integers(1, 4, n), rng.integers(20, 200, n)).astype(float)
    size = np.where(kind == 0, rng.normal(60, 5, n), rng.normal(900, 80, n))
    duration = packets * np.where(kind == 0, 1e3, 5e4) * rng.uniform(0.8, 1.2, n)
    data = {name: rng.normal(0, 1, n) for name in CICFLOW_FEATURES}
    data.update({"Total Fwd Packet": packets, "Total Bwd packets": packets * 0.8, "Flow Duration": duration,
                 "Fwd Packet Length Mean": size, "Packet Length Mean": size * 0.95,
                 "Total Length of Fwd Packet": packets * size, "Flow Bytes/s": packets * size / (duration * 1e-6),
                 "Protocol": np.where(kind == 0, 17.0, 6.0), "SYN Flag Count": np.where(kind == 0, 0.0, 1.0)})
    df = pd.DataFrame(data)
    df["Flow Bytes/s"] = df["Flow Bytes/s"].astype(object)
    df.loc[df.index[:3], "Flow Bytes/s"] = "Infinity"
    df.loc[df.index[3:5], "Flow IAT Std"] = np.nan
    df = df.rename(columns={"Flow Duration": " Flow Duration", "Protocol": " Protocol"})
    df["Label"] = np.where(kind == 0, "dns", "bulk")
    df["Dst Port"] = np.where(kind == 0, 53, 443)
    return df


def small(**kw) -> FlowTableConfig:
    base = dict(d_token=16, n_layers=1, n_heads=2, embed_dim=24, epochs=3, batch_size=64, lr=3e-3, seed=0)
    base.update(kw)
    return FlowTableConfig(**base)


def test_fit_embed_and_pretraining_learns():
    torch.manual_seed(0)
    train, test = flow_table(400, seed=1), flow_table(200, seed=2)
    raw = feature_matrix(train, small().feature_names)
    assert raw.shape == (400, len(CICFLOW_FEATURES)) and np.isinf(raw).any() and np.isnan(raw).any()
    assert "Dst Port" not in small().feature_names and "Dst Port" in small(include_dst_port=True).feature_names

    untrained = FlowTableEncoder(small(epochs=0)).fit(train)
    enc = FlowTableEncoder(small()).fit(train)
    assert len(enc.loss_history_) == 3 and enc.loss_history_[-1]["total"] < enc.loss_history_[0]["total"]
    assert enc.reconstruction_error(test) < untrained.reconstruction_error(test)
    emb = enc.embed(test, batch_size=37)
    assert emb.shape == (200, 24) and emb.dtype == np.float32 and np.isfinite(emb).all()
    np.testing.assert_array_equal(enc.embed(test), emb)  # eval mode: no dropout, deterministic
    z = enc.normalized_features(test)
    assert np.isfinite(z).all() and np.abs(z).max() <= enc.config.soft_clip + 1e-5

    mlp = FlowTableEncoder(small(arch="mlp", mlp_hidden=32)).fit(train)
    assert mlp.embed(test).shape == (200, 24)


def test_save_load_round_trip_and_mismatches_are_one_line(tmp_path):
    train = flow_table(200, seed=3)
    enc = FlowTableEncoder(small(epochs=1)).fit(train)
    saved = enc.save_pretrained(tmp_path / "ft")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    back = FlowTableEncoder.from_pretrained(saved)
    np.testing.assert_allclose(back.embed(train), enc.embed(train), atol=1e-6)

    cfg = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**cfg, "d_token": 32}))
    with pytest.raises(CheckpointError, match="wrong shape") as err:
        FlowTableEncoder.from_pretrained(saved)
    assert "\n" not in err.value.one_line()
    (saved / "config.json").write_text(json.dumps({**cfg, "n_layers": 2}))
    with pytest.raises(CheckpointError, match="missing keys"):
        FlowTableEncoder.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({**cfg, "colour": "blue"}))
    with pytest.raises(CheckpointError, match="unknown config keys: colour"):
        FlowTableEncoder.from_pretrained(saved)
    with pytest.raises(CheckpointError):
        FlowTableEncoder.from_pretrained(tmp_path / "absent")


def test_bad_tables_are_one_line_errors():
    enc = FlowTableEncoder(small(epochs=0)).fit(flow_table(50, seed=4))
    with pytest.raises(DatasetFormatError, match="lacks feature columns: Flow Duration") as err:
        enc.embed(flow_table(10, seed=5).drop(columns=[" Flow Duration"]))
    assert "\n" not in err.value.one_line()
    with pytest.raises(DatasetFormatError, match="at least 2 rows"):
        FlowTableEncoder(small()).fit(flow_table(1, seed=6))
