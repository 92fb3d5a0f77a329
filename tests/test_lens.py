"""Lens packet encoder: persistence, corruption, batch builders, pre-training, resume, embed() dedup.

The traffic is a capture this test writes (web-like TCP sessions, DNS-like UDP exchanges, SYN scans with
RST answers), ingested with the real ``packetclip ingest`` code, so the encoder is tested against the
workspace layout it will meet.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import torch

from _frames import eth, ipv4, tcp, udp
from packetclip.encoders.corruption import (FIELD_SIZES, apply_mask, field_bytes_from_units, field_offsets,
                                            field_unit_range, random_spans)
from packetclip.encoders.data import TrafficCorpus, first_k_packets, load_views, packet_lengths
from packetclip.encoders.lens import DEC_EOS, DEC_SENTINEL0, LensConfig, LensModel
from packetclip.encoders.pretrain import BatchBuilder, PretrainSettings, flow_shapes, flow_weights, pretrain
from packetclip.errors import CheckpointError, PacketClipError

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def tiny_config(**kw) -> LensConfig:
    base = dict(size="tiny", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64, n_sentinels=16)
    base.update(kw)
    return LensConfig(**base)


def fast_settings(**kw) -> PretrainSettings:
    base = dict(steps=8, batch_msp=8, batch_pop=4, batch_htp=4, warmup_steps=2, save_every=0, lr=3e-3)
    base.update(kw)
    return PretrainSettings(**base)


def _write_capture(path, seed: int = 0, n_web: int = 12, n_dns: int = 12, n_scan: int = 12) -> None:
    from packetclip.traffic.writer import PcapWriter

    rng = random.Random(seed)
    packets = []  # (ts_ns, frame)
    t = 1_700_000_000 * 10**9

    def add(src, dst, proto, l4, ttl):
        nonlocal t
        t += rng.randint(1, 50) * 1_000_000
        packets.append((t, eth(0x0800, ipv4(src, dst, proto, l4, ttl=ttl, ident=rng.randrange(65536)))))

    for i in range(n_web):
        c, s, sp = f"10.0.0.{i + 2}", "10.0.1.1", 40000 + i
        cs, ss = rng.randrange(2**32), rng.randrange(2**32)
        request = f"GET /{'x' * rng.randint(1, 30)}.html HTTP/1.1\r\nHost: h{i}\r\n\r\n".encode()
        body = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + bytes(rng.randrange(97, 123) for _ in range(64))
        add(c, s, 6, tcp(sp, 80, cs, 0, SYN, window=29200), 64)
        add(s, c, 6, tcp(80, sp, ss, cs + 1, SYN | ACK, window=65160), 64)
        add(c, s, 6, tcp(sp, 80, cs + 1, ss + 1, ACK, window=502), 64)
        add(c, s, 6, tcp(sp, 80, cs + 1, ss + 1, PSH | ACK, window=502, payload=request), 64)
        add(s, c, 6, tcp(80, sp, ss + 1, cs + 1 + len(request), PSH | ACK, window=509, payload=body), 64)
        add(c, s, 6, tcp(sp, 80, cs + 1 + len(request), ss + 1 + len(body), FIN | ACK, window=502), 64)
    for i in range(n_dns):
        c, s, sp = f"10.0.2.{i + 2}", "10.0.1.53", 50000 + i
        name = b"".join(bytes([len(p)]) + p for p in (bytes(rng.randrange(97, 123) for _ in range(8)), b"lab")) + b"\0"
        query = struct.pack("!HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, 0) + name + b"\0\x01\0\x01"
        for _ in range(rng.randint(2, 3)):
            add(c, s, 17, udp(sp, 53, query), 128)
            add(s, c, 17, udp(53, sp, query[:2] + b"\x81\x80" + query[4:] + b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x04\x0a\0\0\x01"), 128)
    for i in range(n_scan):
        a, v, port = "10.0.3.9", "10.0.1.1", 1000 + 7 * i
        add(a, v, 6, tcp(61000, port, rng.randrange(2**32), 0, SYN, window=1024), 48)
        add(v, a, 6, tcp(port, 61000, 0, rng.randrange(2**32), RST | ACK, window=0), 64)
    packets.sort()
    with PcapWriter(path) as w:
        for ts, frame in packets:
            w.write(ts, frame)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """An ingested capture, split by flow (pre-training reads the train split, evaluation the test split)."""
    from packetclip.traffic.ingest import ingest_captures
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("lens_ws")
    _write_capture(root / "synthetic.pcap")
    ws = ingest_captures([root / "synthetic.pcap"], root / "ws", progress=False).root
    split_workspace(ws, by="flow", test_size=0.3, val_size=0.2, seed=0)
    return ws


@pytest.fixture(scope="module")
def corpus(workspace):
    return TrafficCorpus.from_workspaces([workspace], view_bytes=128, split=None)


# --- workspace loading ---------------------------------------------------------------------------------------
def test_load_views_reads_the_ingest_layout(workspace):
    views, flow_id, direction, ts_ns, file_index = load_views(workspace)
    assert views.dtype == np.uint8 and views.shape[1] == 128
    assert len(views) == len(flow_id) == len(direction) == len(ts_ns) == len(file_index) > 0
    assert set(np.unique(direction)) <= {0, 1}
    assert (views[:, 12:20] == 0).all(), "IPv4 addresses must arrive masked"
    lengths = packet_lengths(views)
    ip_total = (views[:, 2].astype(int) << 8) | views[:, 3]
    np.testing.assert_array_equal(lengths, np.minimum(ip_total, 128))
    ids, firsts, taken = first_k_packets(views, flow_id, 4)
    assert len(ids) == 12 + 12 + 12 and firsts.shape == (len(ids), 4, 128)
    assert taken.min() >= 2 and taken.max() == 4


def test_load_views_bad_workspace_is_one_line_error(tmp_path):
    with pytest.raises(PacketClipError, match="workspace") as info:
        load_views(tmp_path / "nowhere")
    assert "\n" not in str(info.value)


def test_corpus_reads_the_workspace_splits(workspace):
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(workspace)
    parts = {name: TrafficCorpus.from_workspaces([workspace], split=name) for name in ("train", "val", "test")}
    keys = {name: set(c.flows.flow_key.tolist()) for name, c in parts.items()}
    assert keys["train"] == set(ws.split_flow_ids("train").tolist())
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]
    assert sum(len(c) for c in parts.values()) == len(TrafficCorpus.from_workspaces([workspace], split=None))


def test_pretraining_without_splits_is_one_line_error(tmp_path):
    from packetclip.traffic.ingest import ingest_captures

    _write_capture(tmp_path / "c.pcap", n_web=3, n_dns=3, n_scan=3)
    ws = ingest_captures([tmp_path / "c.pcap"], tmp_path / "ws", progress=False).root
    with pytest.raises(PacketClipError, match="packetclip split") as info:
        pretrain([ws], tmp_path / "m", config=tiny_config(), settings=fast_settings(steps=2), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "m").exists()
    result = pretrain([ws], tmp_path / "m", config=tiny_config(), settings=fast_settings(steps=2), progress=True,
                      all_flows=True, max_seconds=600)
    assert result.steps_done == 2 and not result.stopped_early


@pytest.mark.parametrize("kwargs,pattern", [
    ({"max_seconds": -60.0}, "--minutes must be > 0"),
    ({"settings": "steps0"}, "--steps must be at least 1"),
])
def test_nonsense_budgets_are_refused_before_any_work(tmp_path, workspace, kwargs, pattern):
    if kwargs.get("settings") == "steps0":
        with pytest.raises(PacketClipError, match=pattern):
            fast_settings(steps=0)
        return
    with pytest.raises(PacketClipError, match=pattern):
        pretrain([workspace], tmp_path / "m", config=tiny_config(), settings=fast_settings(), progress=False,
                 **kwargs)
    assert not (tmp_path / "m").exists()


def test_missing_workspace_fails_fast_in_one_line(tmp_path):
    import time

    t0 = time.perf_counter()
    with pytest.raises(PacketClipError) as info:
        pretrain([tmp_path / "nonexistent"], tmp_path / "m", config=tiny_config(), progress=False)
    assert time.perf_counter() - t0 < 2.0 and "nonexistent" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "m").exists()


# --- config and checkpoints ---------------------------------------------------------------------------------
def test_save_load_round_trip_safetensors_and_json(tmp_path, workspace):
    torch.manual_seed(1)
    model = LensModel(tiny_config())
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    raw = (tmp_path / "m" / "model.safetensors").read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    assert json.loads(raw[8: 8 + header_len])  # a safetensors JSON header, not a pickle
    assert json.loads((tmp_path / "m" / "config.json").read_text())["d_model"] == 32
    loaded = LensModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    views = load_views(workspace)[0][:50]
    np.testing.assert_array_equal(model.embed(views), loaded.embed(views))
    assert loaded.fingerprint == model.fingerprint


def test_from_pretrained_by_shipped_name_round_trips(tmp_path, workspace):
    """``LensModel.from_pretrained("lens-tiny")`` is the packaged encoder; saved again it loads identically."""
    from packetclip.encoders.pretrained import default_packet_encoder_path

    shipped = LensModel.from_pretrained("lens-tiny")
    assert shipped.fingerprint == LensModel.from_pretrained(default_packet_encoder_path()).fingerprint
    shipped.save_pretrained(tmp_path / "copy")
    again = LensModel.from_pretrained(tmp_path / "copy")
    assert again.fingerprint == shipped.fingerprint
    ws_emb = again.embed_flows(workspace, cache=False)
    assert ws_emb.shape[1] == shipped.embed_dim == shipped.config.k_packets * shipped.config.d_model
    with pytest.raises(CheckpointError, match=r"not a saved model folder \(nor a shipped encoder name: lens-tiny\)"):
        LensModel.from_pretrained(tmp_path / "lens-tiny-nowhere")


def _rewrite(path, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize("case,pattern", [
    ("missing", "missing keys: .*pop_head.weight"),
    ("extra", "unexpected keys: .*surplus"),
    ("shape", r"wrong shape for pos_embed.weight: checkpoint has \[3, 32\]"),
])
def test_checkpoint_mismatch_is_one_line_checkpoint_error(tmp_path, case, pattern):
    LensModel(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    if case == "missing":
        _rewrite(weights, lambda t: t.pop("pop_head.weight"))
    elif case == "extra":
        _rewrite(weights, lambda t: t.update({"surplus": torch.zeros(2)}))
    else:
        _rewrite(weights, lambda t: t.update({"pos_embed.weight": torch.zeros(3, 32)}))
    with pytest.raises(CheckpointError, match=pattern) as info:
        LensModel.from_pretrained(tmp_path)
    message = info.value.one_line()
    assert "\n" not in str(info.value) and str(weights) in message


def test_bad_config_is_checkpoint_error(tmp_path):
    LensModel(tiny_config()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "d_model": 48}))
    with pytest.raises(CheckpointError, match="wrong shape"):
        LensModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "colour": "blue"}))
    with pytest.raises(CheckpointError, match="unknown config keys: colour"):
        LensModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable config"):
        LensModel.from_pretrained(tmp_path)


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path, workspace, capsys):
    from packetclip.cli import main

    LensModel(tiny_config()).save_pretrained(tmp_path)
    _rewrite(tmp_path / "model.safetensors", lambda t: t.pop("htp_head.bias"))
    with pytest.raises(SystemExit) as info:
        main(["encoder", "eval-generation", str(tmp_path), str(workspace)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("packetclip: error:") and "missing keys: htp_head.bias" in err and "\n" not in err


# --- corruption -----------------------------------------------------------------------------------------------
def test_span_corruption_sentinel_structure():
    cfg = tiny_config()
    rng = np.random.default_rng(3)
    units = rng.integers(0, 256, size=(2, 128))
    n_units = np.array([100, 60])
    mask = np.zeros((2, 128), bool)
    for p in range(2):
        mask[p, : n_units[p]] = random_spans(int(n_units[p]), 0.15, 4.0, rng)
        assert mask[p].sum() == round(n_units[p] * 0.15)
    corrupted, target = apply_mask(cfg, units, n_units, mask)
    assert target[0] == DEC_SENTINEL0 and target[-1] == DEC_EOS
    sentinels = [t - DEC_SENTINEL0 for t in target if DEC_SENTINEL0 <= t < cfg.dec_unit0]
    assert sentinels == list(range(len(sentinels)))
    runs = sum(int(np.diff(np.concatenate([[0], mask[p].astype(int), [0]])).clip(0).sum()) for p in range(2))
    assert len(sentinels) == runs
    # every masked unit shows its run's sentinel; the target holds exactly the hidden units, in order
    restored = corrupted.copy()
    body = [t for t in target[:-1]]
    current, queue = None, {}
    for t in body:
        if DEC_SENTINEL0 <= t < cfg.dec_unit0:
            current = t - DEC_SENTINEL0
            queue[current] = []
        else:
            queue[current].append(t - cfg.dec_unit0)
    for s, values in queue.items():
        where = np.argwhere(corrupted == cfg.slot_sentinel0 + s)
        assert len(where) == len(values)
        for (p, j), v in zip(where, values):
            restored[p, j] = v
    np.testing.assert_array_equal(restored, units)
    assert (corrupted[~mask] == units[~mask]).all()


def test_field_masking_targets_the_header_field():
    view = np.zeros((1, 128), np.uint8)
    pkt = ipv4("1.2.3.4", "5.6.7.8", 6, tcp(1, 2, 0, 0, SYN | ACK, window=0x1234), ttl=77)
    view[0, : len(pkt)] = np.frombuffer(pkt, np.uint8)
    lengths = packet_lengths(view)
    offsets = field_offsets(view, lengths)
    assert offsets["ttl"][0] == 8 and offsets["ip_length"][0] == 2
    assert offsets["tcp_flags"][0] == 33 and offsets["tcp_window"][0] == 34 and offsets["udp_length"][0] == -1
    cfg = tiny_config()
    units = view.astype(np.int64)
    mask = np.zeros((1, 128), bool)
    a, b = field_unit_range(cfg, 34, FIELD_SIZES["tcp_window"])
    mask[0, a:b] = True
    _, target = apply_mask(cfg, units, lengths, mask)
    assert target == [DEC_SENTINEL0, cfg.dec_unit0 + 0x12, cfg.dec_unit0 + 0x34, DEC_EOS]
    big = tiny_config(tokenisation="bigram", patch_size=1)
    bigrams = (units[0, :-1] << 8) | units[0, 1:]
    a, b = field_unit_range(big, 34, 2)
    np.testing.assert_array_equal(field_bytes_from_units(big, bigrams[a:b], 34, 2), [0x12, 0x34])


# --- batch builders ----------------------------------------------------------------------------------------------
def test_batch_builders_keep_flows_apart(corpus):
    model = LensModel(tiny_config())
    builder = BatchBuilder(model, corpus, fast_settings())
    fl = corpus.flows
    position = np.empty(len(corpus), np.int64)   # index of each packet within its flow
    for f in range(len(fl)):
        position[fl.packets(f)] = np.arange(fl.count[f])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        msp = builder.msp(rng, 16)
        for rows in msp.rows:
            rows = rows[rows >= 0]
            assert len(set(corpus.flow_key[rows])) == 1
            # consecutive packets, or (generation windows) the packet after earlier ones of its direction
            assert (np.diff(position[rows]) == 1).all() or (corpus.direction[rows] == corpus.direction[rows[-1]]).all()
            assert (np.diff(position[rows]) > 0).all()
        pop = builder.pop(rng, 16)
        for rows, target in zip(pop.rows, pop.target.numpy()):
            present = rows >= 0
            assert len(set(corpus.flow_key[rows[present]])) == 1
            rel = position[rows[present]] - position[rows[present]].min()
            np.testing.assert_array_equal(rel, target[present])
            assert (target[~present] == -100).all()
        htp = builder.htp(rng, 32)
        seg = model.config.htp_segment
        for rows, flows in zip(htp.rows, htp.flows):
            parts = [rows[j * seg: (j + 1) * seg] for j in range(3)]
            parts = [p[p >= 0] for p in parts]
            owners = [set(corpus.flow_key[p]) for p in parts]
            assert all(len(o) == 1 for o in owners)
            assert owners[0] == owners[1], "B+ must come from the anchor's flow"
            assert owners[0] != owners[2], "B- must come from another flow"
            assert not set(parts[0]) & set(parts[1]), "anchor and B+ must not share packets"
            np.testing.assert_array_equal(flows[rows >= 0], corpus.flow_key[rows[rows >= 0]])


def test_order_fields_are_hidden_from_order_and_same_flow_inputs(corpus):
    """Flow-relative seq/ack number the packets of a flow: POP/HTP inputs must not carry them (the shortcut)."""
    from packetclip.encoders.corruption import hide_order_fields

    tcp_rows = np.flatnonzero(corpus.views[:, 9] == 6)
    views = corpus.views[tcp_rows]
    assert views[:, 24:32].any(), "the capture has non-zero relative seq/ack to hide"
    hidden = hide_order_fields(views, corpus.lengths[tcp_rows])
    assert not hidden[:, 24:32].any()
    np.testing.assert_array_equal(np.delete(hidden, np.s_[24:32], axis=1), np.delete(views, np.s_[24:32], axis=1))
    model = LensModel(tiny_config())
    builder = BatchBuilder(model, corpus, fast_settings())
    units, _, present = builder._gather(tcp_rows[:4][None, :], hide_order=True)
    assert present.all() and not units[0, :, 24:32].any()


def test_hard_negatives_share_capture_and_protocol(corpus):
    model = LensModel(tiny_config())
    builder = BatchBuilder(model, corpus, fast_settings(hard_negative_prob=1.0))
    fl = corpus.flows
    proto = corpus.views[fl.order[fl.start], 9]
    rng = np.random.default_rng(0)
    for f in builder.multi[:20]:
        g = builder._other_flow(int(f), rng)
        assert g != f and proto[g] == proto[f] and fl.file_key[g] == fl.file_key[f]
        assert abs(int(builder._hard_pos[g]) - int(builder._hard_pos[f])) <= 8, "a neighbour in time"


def test_flow_context_windows_end_at_the_packet(corpus):
    fl = corpus.flows
    f = int(np.argmax(fl.count))
    packets = fl.packets(f)
    ctx = fl.context(packets, 4)
    np.testing.assert_array_equal(ctx[0], [packets[0], -1, -1, -1])
    np.testing.assert_array_equal(ctx[-1], packets[-4:])
    assert all(row[row >= 0][-1] == p for row, p in zip(ctx, packets))


def test_generation_context_is_the_same_direction_history(corpus):
    fl = corpus.flows
    f = int(np.argmax(fl.count))
    packets = fl.packets(f)
    assert len(set(corpus.direction[packets].tolist())) == 2, "the test needs a two-way flow"
    ctx = corpus.generation_context(packets, 4)
    for row, p in zip(ctx, packets):
        kept = row[row >= 0]
        assert kept[-1] == p
        assert (corpus.direction[kept] == corpus.direction[p]).all()
        pos = np.flatnonzero(packets == p)[0]
        before = packets[max(pos - 16, 0): pos]
        want = before[corpus.direction[before] == corpus.direction[p]][-3:]
        np.testing.assert_array_equal(kept[:-1], want)


def test_generation_windows_in_pretraining_keep_one_direction(corpus):
    model = LensModel(tiny_config())
    builder = BatchBuilder(model, corpus, fast_settings(field_prob=1.0))
    batch = builder.msp(np.random.default_rng(1), 32)
    rows = [r[r >= 0] for r in batch.rows]
    assert all((corpus.direction[r] == corpus.direction[r[-1]]).all() for r in rows)
    assert any(len(r) > 1 for r in rows)
    mixed = BatchBuilder(model, corpus, fast_settings(field_prob=1.0, field_same_direction=False))
    rows = [r[r >= 0] for r in mixed.msp(np.random.default_rng(1), 32).rows]
    assert any(len(set(corpus.direction[r].tolist())) == 2 for r in rows), "consecutive windows mix directions"


def test_generation_mode_hides_one_field_of_the_last_packet(corpus):
    model = LensModel(tiny_config())
    builder = BatchBuilder(model, corpus, fast_settings(field_prob=1.0))
    batch = builder.msp(np.random.default_rng(0), 16)
    slots = batch.enc["slots"].numpy()
    cfg = model.config
    for i, target in enumerate(batch.target.numpy()):
        target = target[target >= 0].tolist()
        assert target.count(DEC_SENTINEL0) == 1 and not any(DEC_SENTINEL0 < t < cfg.dec_unit0 for t in target)
        assert 1 <= len(target) - 2 <= 2, "one field of 1-2 bytes"
        present = batch.rows[i] >= 0
        last = int(present.sum()) - 1
        packet = batch.enc["packet"].numpy()[i]
        masked = (slots[i] >= cfg.slot_sentinel0).any(axis=-1)
        assert set(packet[masked].tolist()) == {last}, "the hidden field sits in the window's last packet"


def test_flow_weights_damp_lookalike_flows(corpus):
    fl = corpus.flows
    first = corpus.views[fl.order[fl.start]]
    udp = first[:, 9] == 17
    scan = (first[:, 9] == 6) & (first[:, 33] == SYN) & (fl.count == 2)
    assert udp.sum() == 12 and scan.sum() == 12
    assert len(np.unique(first[udp], axis=0)) == 12, "DNS flows differ in their bytes (ids, names)"
    shapes = flow_shapes(corpus)
    assert len(np.unique(shapes[scan], axis=0)) == 1
    assert len(np.unique(shapes[udp & (fl.count == 4)], axis=0)) == 1, "...but not in their shape"
    w = flow_weights(corpus)
    np.testing.assert_allclose(w[scan], 1 / np.sqrt(12))
    n4 = int((udp & (fl.count == 4)).sum())
    np.testing.assert_allclose(w[udp & (fl.count == 4)], 1 / np.sqrt(n4))
    assert w.max() <= 1.0 and (w > 0).all()


# --- training ------------------------------------------------------------------------------------------------------
def test_pretraining_reduces_loss(tmp_path, corpus):
    torch.manual_seed(0)
    result = pretrain([], tmp_path, config=tiny_config(), settings=fast_settings(steps=60, warmup_steps=4, lr=1e-2),
                      progress=False, corpus=corpus)
    first = {k: np.mean([h[k] for h in result.history[:5]]) for k in ("total", "msp", "pop", "htp")}
    last = {k: np.mean([h[k] for h in result.history[-5:]]) for k in ("total", "msp", "pop", "htp")}
    assert last["total"] < 0.75 * first["total"], (first, last)
    assert all(last[k] < first[k] for k in ("msp", "pop", "htp")), (first, last)
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    assert LensModel.from_pretrained(tmp_path).config == tiny_config()


def test_resume_reproduces_the_uninterrupted_run(tmp_path, corpus):
    whole = pretrain([], tmp_path / "a", config=tiny_config(), settings=fast_settings(steps=8),
                     progress=False, corpus=corpus)
    part = pretrain([], tmp_path / "b", config=tiny_config(), settings=fast_settings(steps=8), stop_after=4,
                    progress=False, corpus=corpus)
    assert part.steps_done == 4 and part.stopped_early
    ckpt = tmp_path / "b" / "checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors", "optimizer.safetensors",
                                                       "trainer_state.json"]
    resumed = pretrain([], tmp_path / "b", resume=True, progress=False, corpus=corpus)
    assert resumed.steps_done == 8
    for key in ("total", "msp", "pop", "htp"):
        np.testing.assert_allclose([h[key] for h in resumed.history], [h[key] for h in whole.history], rtol=1e-6)
    a = LensModel.from_pretrained(tmp_path / "a").state_dict()
    b = LensModel.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, corpus):
    """Item 15 of issue 17: an interrupt saves the last completed step; resuming gives the uninterrupted run."""
    whole = pretrain([], tmp_path / "a", config=tiny_config(), settings=fast_settings(steps=6),
                     progress=False, corpus=corpus)

    def interrupt(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([], tmp_path / "b", config=tiny_config(), settings=fast_settings(steps=6), progress=False,
                 corpus=corpus, on_step=interrupt)
    state = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 3 and (tmp_path / "b" / "model.safetensors").is_file()
    resumed = pretrain([], tmp_path / "b", resume=True, progress=False, corpus=corpus)
    assert resumed.steps_done == 6
    np.testing.assert_allclose([h["total"] for h in resumed.history], [h["total"] for h in whole.history],
                               rtol=1e-6)


def test_sigint_to_a_pretraining_process_leaves_a_checkpoint(tmp_path, workspace):
    import signal
    import subprocess
    import sys
    import time

    script = (
        # a shell's background job inherits SIGINT ignored, and Python then keeps it ignored: restore Ctrl-C
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys, torch; torch.set_num_threads(1)\n"
        "from packetclip.encoders.lens import LensConfig\n"
        "from packetclip.encoders.pretrain import PretrainSettings, pretrain\n"
        "cfg = LensConfig(size='tiny', d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,"
        " n_sentinels=16)\n"
        "def tick(r):\n"
        "    print('step', r['step'], flush=True)\n"
        "try:\n"
        "    pretrain([sys.argv[1]], sys.argv[2], config=cfg, settings=PretrainSettings(steps=100000, batch_msp=4,"
        " batch_pop=2, batch_htp=2, save_every=0), progress=False, on_step=tick)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    out = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-c", script, str(workspace), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("step 1"):
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, proc.stderr.read()
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] >= 2 and (out / "model.safetensors").is_file()


def test_fresh_run_refuses_to_overwrite_a_checkpoint(tmp_path, corpus):
    from packetclip.errors import PacketClipError

    pretrain([], tmp_path, config=tiny_config(), settings=fast_settings(steps=2), progress=False, corpus=corpus)
    with pytest.raises(PacketClipError, match="--resume"):
        pretrain([], tmp_path, config=tiny_config(), settings=fast_settings(steps=2), progress=False, corpus=corpus)


# --- embed ----------------------------------------------------------------------------------------------------------
def test_embed_dedups_and_is_deterministic(workspace):
    torch.manual_seed(0)
    model = LensModel(tiny_config())
    views, flow_id = load_views(workspace)[:2]
    rows = np.concatenate([np.arange(len(views)), np.arange(20), np.arange(20)])
    batch = views[rows]
    n_unique = len(np.unique(batch, axis=0))
    e1 = model.embed(batch, batch_size=16)
    assert model.config.embed_dim == model.config.k_packets * 32  # default pooling: per-packet states, concatenated
    assert e1.shape == (len(batch), model.config.embed_dim) and e1.dtype == np.float32
    assert not e1[:, 32:].any(), "a single packet fills only the first packet's slot"
    assert model.last_embed_stats == {"rows": len(batch), "forward_rows": n_unique} and n_unique < len(batch)
    np.testing.assert_array_equal(e1[len(views):len(views) + 20], e1[:20])
    np.testing.assert_array_equal(model.embed(batch, batch_size=16), e1)
    e_plain = model.embed(batch, batch_size=7, dedup=False)
    assert model.last_embed_stats["forward_rows"] == len(batch)
    np.testing.assert_allclose(e_plain, e1, atol=1e-5)
    ids, seq = model.embed_views_by_flow(views, flow_id, mode="sequence")
    ids2, mean = model.embed_views_by_flow(views, flow_id, mode="mean")
    np.testing.assert_array_equal(ids, ids2)
    assert seq.shape == mean.shape == (len(np.unique(flow_id)), model.config.embed_dim)
    assert np.isfinite(seq).all() and not np.allclose(seq[0], seq[-1])
    ws_emb = model.embed_flows(workspace, ids, cache=False)
    np.testing.assert_allclose(ws_emb, seq, atol=1e-5)
    some = ids[::-3]
    picked = model.embed_flows(workspace, some, cache=False)
    np.testing.assert_allclose(picked, seq[np.searchsorted(ids, some)], atol=1e-5)
    with pytest.raises(PacketClipError, match="no packets"):
        model.embed_flows(workspace, [int(ids.max()) + 1], cache=False)
    mean_model = LensModel(tiny_config(pooling="mean"))
    assert mean_model.embed(batch[:5]).shape == (5, 32)


def test_eval_generation_reports_fields_and_baseline(tmp_path, workspace, capsys):
    from packetclip.cli import main
    from packetclip.encoders.generation import evaluate_generation

    result = pretrain([workspace], tmp_path, config=tiny_config(), settings=fast_settings(steps=6), progress=False)
    assert set(result.validation) >= {"msp", "pop", "htp"}, "validation losses come from the val split"
    assert (tmp_path / "val_losses.json").is_file()
    model = LensModel.from_pretrained(tmp_path)
    report = evaluate_generation(model, [workspace])
    scores = {s.field: s for s in report.scores}
    assert report.heldout_flows > 0 and scores["ttl"].packets > 0
    for s in report.scores:
        if s.packets:
            assert 0.0 <= s.model_accuracy <= 1.0 and 0.0 <= s.baseline_accuracy <= 1.0
            assert 0.0 <= s.previous_accuracy <= 1.0 and s.model_tolerance >= s.model_accuracy
    summary = report.to_dict()
    assert {"mean_previous", "mean_best_baseline", "min_margin", "tcp_window_model_tol"} <= set(summary)
    assert "tcp_flags_model_tol" not in summary, "flags are scored exactly only"
    try:
        main(["encoder", "eval-generation", str(tmp_path), str(workspace), "--json"])
    except SystemExit as done:  # click exits 0 after a successful command
        assert done.code in (0, None)
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["split"] == "test" and "ttl_model" in last and "ttl_baseline" in last


def test_light_fine_tune_learns_a_separable_task_and_leaves_the_model_alone(corpus):
    from packetclip.evaluate.finetune import FineTuneSettings, fine_tune_probe

    model = LensModel(tiny_config(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    views = np.zeros((120, 2, 32), np.uint8)
    y = np.repeat(np.array(["a", "b", "c"]), 40)
    views[:, 0, :20] = np.select([y == "a", y == "b"], [0x11, 0x77], 0xC3)[:, None]   # the bytes tell the class
    views[:, 0, 0] = 0x45
    views[:, 0, 12:16] = rng.integers(0, 256, (120, 4))                                # and some noise
    score = fine_tune_probe(model, views[::2], y[::2], views[1::2], y[1::2], seed=0,
                            settings=FineTuneSettings(steps=60, batch_size=20))
    assert score.n_classes == 3 and score.n_test == 60
    assert score.macro_f1 > 0.8
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the caller's model is untouched"
    with pytest.raises(PacketClipError, match="at least 2 classes"):
        fine_tune_probe(model, views[:5], ["a"] * 5, views[5:10], y[5:10])
