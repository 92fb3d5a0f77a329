"""Host context of flows (packetclip.language.context): hand-computed counts on a small table, its join into
descriptions, and tables without addresses or times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from packetclip.language.context import CONTEXT_COLUMNS, add_host_context, has_context_inputs, host_context
from packetclip.language.describe import Describer, StaticConcepts
from packetclip.language.facts import numbers_in
from packetclip.language.workspace import describe_workspace

S = 1_000_000_000  # ns per second


def small_table() -> pd.DataFrame:
    """Source A probes host V (3 ports) and talks to W; B talks to V; A comes back in the next 10-s window;
    one row has no source address."""
    rows = [
        # flow_id, src, dst, dport, start s, duration us, fwd pkts, bwd pkts, rst
        (1, "10.0.0.1", "10.0.0.9", 22, 0.0, 0, 1, 0, 0),
        (2, "10.0.0.1", "10.0.0.9", 23, 1.0, 1_000, 1, 1, 1),
        (3, "10.0.0.1", "10.0.0.9", 80, 2.0, 500_000, 2, 0, 0),
        (4, "10.0.0.1", "10.0.0.7", 80, 3.0, 2_000_000, 3, 5, 0),
        (5, "10.0.0.2", "10.0.0.9", 80, 4.0, 0, 1, 2, 0),
        (6, "10.0.0.1", "10.0.0.9", 22, 12.0, 0, 1, 0, 0),
        (7, None, "10.0.0.9", 22, 5.0, 0, 1, 0, 0),
    ]
    df = pd.DataFrame(rows, columns=["flow_id", "Src IP", "Dst IP", "Dst Port", "start", "Flow Duration",
                                     "Total Fwd Packet", "Total Bwd packets", "RST Flag Count"])
    df["first_ts_ns"] = (df.pop("start") * S).astype("int64") + 1_700_000_000 * S
    return df


def test_host_context_matches_hand_computed_counts():
    ctx = host_context(small_table(), window_s=10).set_index("flow_id")
    assert list(ctx.columns) == list(CONTEXT_COLUMNS)
    a_v = ctx.loc[1]
    # Source A in window 0: flows 1-4, hosts V and W, ports 22, 23, 80.
    assert (a_v["ctx_src_flows"], a_v["ctx_src_hosts"], a_v["ctx_src_ports"]) == (4, 2, 3)
    # Pair A->V: flows 1-3 on 3 ports, 2 of 3 unanswered, 1 of 3 reset, 1+1+2 packets over 0 s .. 2.5 s.
    assert (a_v["ctx_pair_flows"], a_v["ctx_pair_ports"], a_v["ctx_pair_pkts"]) == (3, 3, 4)
    assert a_v["ctx_pair_noreply"] == pytest.approx(2 / 3) and a_v["ctx_pair_reset"] == pytest.approx(1 / 3)
    assert a_v["ctx_pair_span_us"] == pytest.approx(2_500_000) and a_v["ctx_pair_pps"] == pytest.approx(1.6)
    # Destination V in window 0: flows 1, 2, 3, 5 (flow 7 has no source) from A and B; 1 and 3 unanswered.
    assert (a_v["ctx_dst_flows"], a_v["ctx_dst_srcs"], a_v["ctx_dst_noreply"]) == (4, 2, 0.5)
    assert a_v["ctx_window_s"] == 10
    # Every flow of the pair shares the pair's figures.
    assert ctx.loc[[1, 2, 3], "ctx_pair_flows"].tolist() == [3, 3, 3]
    # Pair A->W: one flow of 3 packets over its own 2 s.
    assert (ctx.loc[4, "ctx_pair_flows"], ctx.loc[4, "ctx_pair_pps"], ctx.loc[4, "ctx_dst_srcs"]) == (1, 1.5, 1)
    # B's single instantaneous flow: its 1 packet over the 1-ms floor.
    assert (ctx.loc[5, "ctx_src_flows"], ctx.loc[5, "ctx_pair_pps"]) == (1, 1000.0)
    # Flow 6 is in the next window, alone.
    assert ctx.loc[6, ["ctx_src_flows", "ctx_pair_flows", "ctx_dst_flows", "ctx_dst_srcs"]].tolist() == [1, 1, 1, 1]
    # No source address: no context.
    assert ctx.loc[7, list(CONTEXT_COLUMNS)].isna().all()


def test_timestamp_column_gives_the_same_context_as_first_ts_ns():
    table = small_table()
    by_ns = host_context(table)
    stamped = table.drop(columns="first_ts_ns").assign(Timestamp=pd.to_datetime(table["first_ts_ns"], unit="ns"))
    by_time = host_context(stamped)
    pd.testing.assert_frame_equal(by_ns, by_time)
    # CSV-style text timestamps too, and without a flow_id the result follows the rows.
    texts = stamped.assign(Timestamp=stamped["Timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S.%f")).drop(columns="flow_id")
    by_text = host_context(texts)
    assert by_text.index.equals(texts.index)
    np.testing.assert_allclose(by_text.to_numpy(dtype=float), by_ns.drop(columns="flow_id").to_numpy(dtype=float))


def test_tables_without_addresses_or_times_are_left_as_they_are():
    table = small_table()
    for missing in (["Src IP"], ["Dst IP"], ["Dst Port"], ["first_ts_ns"]):
        bare = table.drop(columns=missing)
        assert not has_context_inputs(bare)
        assert add_host_context(bare) is bare
        with pytest.raises(ValueError):
            host_context(bare)
    joined = add_host_context(table)
    assert len(joined) == len(table) and set(CONTEXT_COLUMNS) <= set(joined.columns)
    assert add_host_context(joined) is joined
    with pytest.raises(ValueError):
        host_context(table, window_s=0)


def _swarm(n_sources: int = 120) -> pd.DataFrame:
    """``n_sources`` forged sources each sending one unanswered-by-them handshake request to one server in 2 s,
    plus one ordinary client's answered DNS lookup."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_sources):
        rows.append({"flow_id": i, "label": "SYN Flood", "Src IP": f"172.16.{i // 250}.{i % 250}",
                     "Dst IP": "192.168.1.10", "Src Port": 1024 + i, "Dst Port": 80, "Protocol": 6,
                     "first_ts_ns": int((1_700_000_000 + rng.random() * 2) * S), "Flow Duration": 300,
                     "Total Fwd Packet": 1, "Total Bwd packets": 1, "Total Length of Fwd Packet": 0,
                     "Total Length of Bwd Packet": 0, "SYN Flag Count": 2, "ACK Flag Count": 1,
                     "FWD Init Win Bytes": 64, "Flow Packets/s": 6_666.0, "Flow Bytes/s": 0.0})
    rows.append({"flow_id": 999, "label": "Benign", "Src IP": "192.168.1.50", "Dst IP": "192.168.1.1",
                 "Src Port": 5353, "Dst Port": 53, "Protocol": 17, "first_ts_ns": 1_700_000_001 * S,
                 "Flow Duration": 900, "Total Fwd Packet": 1, "Total Bwd packets": 1,
                 "Total Length of Fwd Packet": 40, "Total Length of Bwd Packet": 120})
    return pd.DataFrame(rows)


CONCEPTS = StaticConcepts({"DoS": [("flood", 0), ("exhaustion", 0)]})


def test_descriptions_state_the_host_context_in_plain_words():
    flows = _swarm()
    table = Describer("rules", per_flow=2, seed=0, concepts=CONCEPTS).describe(flows).set_index("flow_id")
    swarm = table.loc[0, "text"].tolist()
    # The flood packet's own row is one handshake request; its context says 120 sources hit the server.
    assert all("120" in t and ("spoofed" in t) for t in swarm), swarm
    benign = " ".join(table.loc[999, "text"].tolist())
    assert "1 flow to 1 host within 10 seconds" in benign, benign
    # Context numbers are part of the draft, so paraphrase validation keeps them.
    for draft, text in zip(table["draft"], table["text"]):
        assert sorted(numbers_in(text.split(" Concepts:")[0].split(". ", 1)[1])) == sorted(numbers_in(draft))
    # Without context the same flows are described from their own row only.
    plain = Describer("rules", per_flow=1, seed=0, concepts=CONCEPTS, host_context=False).describe(flows)
    assert not plain["text"].str.contains("spoofed").any()


def test_describe_workspace_computes_context_before_sampling(tmp_path):
    _swarm().to_parquet(tmp_path / "flows.parquet", index=False)
    describer = Describer("rules", per_flow=1, seed=0, concepts=CONCEPTS)
    _, table = describe_workspace(tmp_path, describer, limit=4)
    attacks = table[table["label"] == "SYN Flood"]["text"]
    # Only 3 flood flows are described, but their context counts all 120 sources of the table.
    assert len(attacks) == 3 and attacks.str.contains("120").all()
