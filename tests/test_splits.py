"""Leakage-safe splits: whole captures or whole flows per split, stratified, seeded."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from packetclip.cli import main
from packetclip.errors import PacketClipError
from packetclip.traffic.splits import (
    SPLITS,
    SplitWarning,
    group_split,
    propagate_split,
    split_summary,
    split_workspace,
)

CLASSES = ["Benign", "Port Scan", "SYN Flood", "Dictionary Attack"]


def _captures(n_captures: int = 60, seed: int = 3) -> pd.DataFrame:
    """Flows of many captures; a third are single-class (like attack captures), the rest mixed."""
    rng = np.random.default_rng(seed)
    parts = []
    flow_base = 0
    for c in range(n_captures):
        n = int(rng.integers(20, 200))
        if c % 3 == 0:
            labels = np.repeat(CLASSES[c % len(CLASSES)], n)
        else:
            labels = rng.choice(CLASSES, p=[0.55, 0.2, 0.15, 0.1], size=n)
        parts.append(pd.DataFrame({"capture": f"cap{c:03d}.pcap", "file_index": c,
                                   "flow_id": flow_base + np.arange(n), "label": labels}))
        flow_base += n
    return pd.concat(parts, ignore_index=True)


def _shares(split: pd.Series, labels: pd.Series) -> pd.DataFrame:
    table = pd.crosstab(labels, split)
    return table.div(table.sum(axis=1), axis=0)


@pytest.mark.parametrize("by, column", [("capture", "capture"), ("flow", "flow_id")])
def test_no_group_on_two_sides(by, column):
    df = _captures()
    split = group_split(df, by=by, seed=0)
    assert split.index.equals(df.index)
    assert set(split.unique()) == set(SPLITS)
    assert (df.assign(split=split).groupby(column)["split"].nunique() == 1).all()


def test_capture_split_keeps_flows_of_a_capture_together_and_is_stratified():
    df = _captures()
    split = group_split(df, by="capture", test_size=0.2, val_size=0.1, seed=0)
    shares = _shares(split, df["label"])
    # 60 captures of uneven size and purity: shares cannot be exact, but stay near the targets.
    assert (shares["test"] - 0.2).abs().max() < 0.08
    assert (shares["val"] - 0.1).abs().max() < 0.08
    assert (shares["train"] - 0.7).abs().max() < 0.1


def test_flow_split_is_stratified_closely():
    df = _captures()
    split = group_split(df, by="flow", test_size=0.2, val_size=0.1, seed=0)
    shares = _shares(split, df["label"])
    assert (shares["test"] - 0.2).abs().max() < 0.01
    assert (shares["val"] - 0.1).abs().max() < 0.01


def test_many_flows_take_the_fast_path_and_stay_exact():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"flow_id": np.arange(30_000), "label": rng.choice(CLASSES, size=30_000, p=[.7, .1, .1, .1])})
    first = group_split(df, by="flow", seed=5)
    again = group_split(df, by="flow", seed=5)
    assert first.equals(again)
    shares = _shares(first, df["label"])
    assert (shares["test"] - 0.2).abs().max() < 0.002
    assert (shares["val"] - 0.1).abs().max() < 0.002


def test_seeded_and_deterministic():
    df = _captures()
    a = group_split(df, by="capture", seed=1)
    b = group_split(df, by="capture", seed=1)
    c = group_split(df.sample(frac=1.0, random_state=9), by="capture", seed=1).reindex(df.index)
    d = group_split(df, by="capture", seed=2)
    assert a.equals(b)
    assert a.equals(c)          # row order does not matter, only data and seed
    assert not a.equals(d)


def test_unlabelled_and_train_test_only():
    df = _captures().drop(columns=["label"])
    split = group_split(df, by="flow", label_col="label", val_size=0.0, test_size=0.25, seed=0)
    assert set(split.unique()) == {"train", "test"}
    assert abs((split == "test").mean() - 0.25) < 0.01


def test_warns_when_a_class_has_too_few_groups():
    df = _captures()
    rare = pd.DataFrame({"capture": "rare.pcap", "file_index": 999, "flow_id": [10**6, 10**6 + 1],
                         "label": "Heartbleed"})
    df = pd.concat([df, rare], ignore_index=True)
    with pytest.warns(SplitWarning, match=r"Heartbleed \(1\)"):
        group_split(df, by="capture", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        group_split(_captures(), by="capture", seed=0)


def test_every_requested_split_gets_a_group_when_possible():
    df = pd.DataFrame({"capture": ["big.pcap"] * 100 + ["a.pcap", "b.pcap"], "flow_id": range(102),
                       "label": ["Benign"] * 102})
    split = group_split(df, by="capture", seed=0)
    assert set(split.unique()) == set(SPLITS)


def test_bad_arguments():
    df = _captures()
    with pytest.raises(PacketClipError):
        group_split(df, by="packet")
    with pytest.raises(PacketClipError):
        group_split(df, test_size=0.6, val_size=0.5)
    with pytest.raises(PacketClipError, match="no 'flow_id'"):
        group_split(df.drop(columns=["flow_id"]), by="flow")
    with pytest.raises(PacketClipError, match="cannot split by capture"):
        group_split(df.drop(columns=["capture", "file_index"]), by="capture")


def test_packet_table_follows_its_flows():
    flows = _captures(n_captures=12)
    flow_split = flows[["file_index", "flow_id"]].assign(split=group_split(flows, by="flow", seed=0).to_numpy())
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(flows), size=5000)
    packets = flows.iloc[picks][["file_index", "flow_id"]].reset_index(drop=True)
    packets.loc[len(packets)] = {"file_index": 0, "flow_id": -1}     # a packet outside any flow
    split = propagate_split(packets, flow_split)
    assert split.iloc[:-1].tolist() == flow_split["split"].to_numpy()[picks].tolist()
    assert pd.isna(split.iloc[-1])
    assert (packets.assign(split=split).iloc[:-1].groupby("flow_id")["split"].nunique() == 1).all()
    conflicting = pd.concat([flow_split, flow_split.head(1).assign(split="zzz")], ignore_index=True)
    with pytest.raises(PacketClipError, match="two different splits"):
        propagate_split(packets, conflicting)


def test_split_workspace_and_cli(tmp_path, capsys):
    flows = _captures(n_captures=15)
    flows["Total Fwd Packet"] = 3
    flows.to_parquet(tmp_path / "flows.parquet")
    written, summary = split_workspace(tmp_path, by="capture", seed=0)
    stored = pd.read_parquet(tmp_path / "splits.parquet")
    assert list(stored.columns) == ["capture", "file_index", "flow_id", "split"]
    assert stored.equals(written.reset_index(drop=True))
    assert summary.loc["total", "total"] == len(flows)
    assert summary.loc["Benign", "total"] == (flows["label"] == "Benign").sum()
    assert sum(summary.attrs["groups_per_split"].values()) == 15

    try:
        main(["split", str(tmp_path), "--by", "flow", "--test-size", "0.3", "--seed", "4"])
    except SystemExit as exc:
        assert exc.code in (None, 0)
    out = capsys.readouterr().out
    assert "split by flow" in out and "Benign" in out and "total" in out
    by_flow = pd.read_parquet(tmp_path / "splits.parquet")
    assert abs((by_flow["split"] == "test").mean() - 0.3) < 0.02

    with pytest.raises(SystemExit) as exit_info:
        main(["split", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_split_summary_counts():
    split = pd.Series(["train", "test", "train", "val"])
    labels = pd.Series(["a", "a", "b", "b"])
    table = split_summary(split, labels)
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert table.loc["a"].tolist() == [1, 0, 1, 2]
    assert table.loc["total"].tolist() == [2, 1, 1, 4]


@pytest.mark.parametrize("table, hint", [
    # an imported CSV: source_file is a per-class/per-day file, not a capture
    (pd.DataFrame({"flow_id": np.arange(40), "source_file": ["a.csv", "b.csv"] * 20,
                   "label": ["Benign", "Port Scan"] * 20}), "no capture column"),
    # one capture: every flow would land in train
    (pd.DataFrame({"flow_id": np.arange(40), "capture": "one.pcap", "file_index": 0,
                   "label": ["Benign", "Port Scan"] * 20}), "holds 1 capture"),
])
def test_split_by_capture_refused_where_there_are_no_captures_to_split(tmp_path, capsys, table, hint):
    table.to_parquet(tmp_path / "flows.parquet")
    with pytest.raises(PacketClipError, match=hint + ".*use --by flow"):
        split_workspace(tmp_path, by="capture")
    with pytest.raises(SystemExit) as exit_info:
        main(["split", str(tmp_path), "--by", "capture"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--by flow" in err and "Traceback" not in err
    assert not (tmp_path / "splits.parquet").exists()
    written, _ = split_workspace(tmp_path, by="flow", seed=0)
    assert set(written["split"]) == set(SPLITS)


def test_split_reads_labels_from_the_workspace_labels_table(tmp_path):
    flows = _captures(n_captures=15)
    flows.drop(columns=["label"]).to_parquet(tmp_path / "flows.parquet")
    flows[["flow_id", "label"]].to_parquet(tmp_path / "labels.parquet")       # as `label ndpi` and the lab write
    _, summary = split_workspace(tmp_path, by="capture", seed=0)
    assert summary.loc["Benign", "total"] == (flows["label"] == "Benign").sum()
