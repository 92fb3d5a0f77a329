"""The synthetic lab (``packetclip lab synth``): classes, labels, valid packets, determinism, CLI.

One short capture is generated once for the module; the checks below parse its pcap with a small
independent reader (``struct`` only) so that they do not share code with the generator or the ingest.
"""

from __future__ import annotations

import hashlib
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.lab.synth import SynthLab, parse_duration
from packetclip.traffic.labels import FINE_CLASSES, mission_of

DURATION_S = 40.0
SEED = 11


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    SynthLab(duration_s=DURATION_S, seed=SEED).generate(out, progress=False)
    return out


# -- an independent pcap reader and checksum code ---------------------------------------------------


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp in µs, frame) for every record of a classic little-endian µs pcap."""
    buf = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", buf, 0)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    out, pos = [], 24
    while pos < len(buf):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", buf, pos)
        assert caplen == wirelen <= snaplen and usec < 1_000_000
        out.append((sec * 1_000_000 + usec, buf[pos + 16: pos + 16 + caplen]))
        pos += 16 + caplen
    assert pos == len(buf)
    return out


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def parse_ip(frame: bytes):
    """(version, src, dst, proto, ip header, l4 bytes) of an Ethernet frame; VLAN tags are not used by the lab."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        assert ip[0] >> 4 == 4 and 20 <= ihl <= total <= len(ip)
        return 4, ip[12:16], ip[16:20], ip[9], ip[:ihl], ip[ihl:total]
    assert ethertype == 0x86DD, hex(ethertype)
    plen = struct.unpack_from("!H", ip, 4)[0]
    assert ip[0] >> 4 == 6 and 40 + plen <= len(ip)
    return 6, ip[8:24], ip[24:40], ip[6], ip[:40], ip[40: 40 + plen]


def pseudo_header(version: int, src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if version == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


@pytest.fixture(scope="module")
def frames(lab) -> list[tuple[int, bytes]]:
    return read_pcap(lab / "capture.pcap")


# -- classes and labels -----------------------------------------------------------------------------


def test_all_ten_classes_in_flow_labels(lab):
    labels = pd.read_parquet(lab / "labels.parquet")
    counts = labels["label"].value_counts()
    assert set(counts.index) == set(FINE_CLASSES)
    assert (counts > 0).all()
    assert (labels["mission"] == [mission_of(x) for x in labels["label"]]).all()
    # roles: attack flows name their attacker, benign flows do not
    attack = labels[labels["label"] != "Benign"]
    assert (attack["attacker"].str.len() > 0).all()


def test_capture_reingests_without_skips(lab, frames):
    import json

    from packetclip.traffic.pcap import open_capture

    manifest = json.loads((lab / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["packets"] == len(frames)
    assert totals["skipped_records"] == 0 and totals["captures_with_errors"] == 0
    assert totals["flow_packets"] == totals["packets"]          # every lab packet is IP and in a flow
    # and the reader on its own, once more
    reader = open_capture(lab / "capture.pcap")
    n = sum(len(batch) for batch in reader)
    assert n == len(frames)
    assert reader.stats.skipped_records == 0 and reader.stats.truncated_at is None
    packet_labels = pd.read_parquet(lab / "packet_labels.parquet")
    assert len(packet_labels) == len(frames)
    assert (packet_labels["packet_number"].to_numpy() == np.arange(len(frames))).all()
    episodes = pd.read_parquet(lab / "episodes.parquet")
    assert int(episodes["packets"].sum()) == len(frames)
    # timestamps in labels are those of the pcap records
    ts_us = np.array([t for t, _ in frames], dtype=np.int64)
    assert (packet_labels["ts_ns"].to_numpy() == ts_us * 1000).all()
    assert (np.diff(ts_us) >= 0).all()


def test_per_class_flow_counts_match_labels(lab):
    flows = pd.read_parquet(lab / "flows.parquet")
    labels = pd.read_parquet(lab / "labels.parquet")
    assert len(flows) == len(labels) and set(flows["flow_id"]) == set(labels["flow_id"])
    assert flows["label"].notna().all()
    assert flows["label"].value_counts().to_dict() == labels["label"].value_counts().to_dict()
    # packets per flow: the flow meter's counts equal the labelled packets of each flow
    merged = flows.merge(labels[["flow_id", "packets"]], on="flow_id")
    assert (merged["Total Fwd Packet"] + merged["Total Bwd packets"] == merged["packets"]).all()
    # recompute every flow's class from the packet labels, independently of the generator's own code
    pk = pd.read_parquet(lab / "packets.parquet", columns=["packet_number", "flow_id"])
    pl = pd.read_parquet(lab / "packet_labels.parquet", columns=["packet_number", "label"])
    joined = pk.merge(pl, on="packet_number")
    joined["label"] = joined["label"].astype(str)
    expected = {}
    for flow_id, group in joined.groupby("flow_id"):
        attack = group["label"][group["label"] != "Benign"]
        expected[flow_id] = attack.value_counts().idxmax() if len(attack) else "Benign"
    got = labels.set_index("flow_id")["label"].to_dict()
    assert got == expected
    # flows are not a mix of classes: almost every flow's packets all come from one class
    assert (labels["purity"] == 1.0).mean() > 0.99


# -- valid packets ----------------------------------------------------------------------------------


def test_checksums_verify(frames):
    counts = defaultdict(int)
    for _, frame in frames:
        assert len(frame) >= 60                                  # Ethernet minimum (padded)
        version, src, dst, proto, header, l4 = parse_ip(frame)
        if version == 4:
            assert ones_complement_sum(header) == 0xFFFF, "IPv4 header checksum"
        if proto == 6:
            assert ones_complement_sum(pseudo_header(version, src, dst, 6, len(l4)) + l4) == 0xFFFF, "TCP checksum"
        elif proto == 17:
            assert struct.unpack_from("!H", l4, 4)[0] == len(l4)
            assert struct.unpack_from("!H", l4, 6)[0] != 0 or version == 4
            if struct.unpack_from("!H", l4, 6)[0]:
                assert ones_complement_sum(pseudo_header(version, src, dst, 17, len(l4)) + l4) == 0xFFFF, "UDP checksum"
        elif proto == 1:
            assert ones_complement_sum(l4) == 0xFFFF, "ICMP checksum"
        elif proto == 58:
            assert ones_complement_sum(pseudo_header(version, src, dst, 58, len(l4)) + l4) == 0xFFFF, "ICMPv6 checksum"
        counts[proto] += 1
    assert counts[6] > 0 and counts[17] > 0 and counts[1] > 0


def _tcp_packets(frames):
    out = []
    for i, (ts, frame) in enumerate(frames):
        version, src, dst, proto, _, l4 = parse_ip(frame)
        if proto != 6:
            continue
        sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", l4, 0)
        hlen = (off_flags >> 12) * 4
        out.append((i, ts, src, sport, dst, dport, seq, ack, off_flags & 0x1FF, len(l4) - hlen))
    return out


SYN, ACK, RST, FIN = 0x02, 0x10, 0x04, 0x01
M32 = 0xFFFFFFFF


def _closest(history: list, number: int) -> int:
    """Index of the connection whose client ISN ``number`` (a client seq or a server ack) lies just after."""
    return min(range(len(history)), key=lambda k: (number - history[k][0][6]) & M32)


def test_tcp_handshakes_and_sequence_numbers(frames):
    """Every connection the lab opens with a SYN that carries data starts SYN, SYN/ACK, ACK with the right
    seq/ack relation, then its sequence numbers advance by exactly the bytes sent and nothing is ACKed
    before it was sent; answered half-open probes are reset with the right sequence number."""
    conns: dict[tuple, list] = {}          # (client, cport, server, sport) -> list of connections (lists)
    for pkt in _tcp_packets(frames):
        _, _, src, sport, dst, dport, seq, ack, flags, plen = pkt
        fwd, rev = (src, sport, dst, dport), (dst, dport, src, sport)
        if flags & SYN and not flags & ACK:
            history = conns.setdefault(fwd, [])
            same = [c for c in history if c[0][6] == seq]
            if same:
                same[-1].append(pkt)       # SYN retransmission (same ISN)
            else:
                history.append([pkt])
        elif fwd in conns:
            # client side: the connection whose sequence space the segment is in (raw-packet tools such as
            # hping3 can reuse a 4-tuple while a kernel connection on it is still open)
            conns[fwd][_closest(conns[fwd], seq)].append(pkt)
        elif rev in conns:
            history = conns[rev]
            history[_closest(history, ack) if flags & ACK else -1].append(pkt)
    completed = half_open = 0
    for key, history in conns.items():
        for conn in history:
            client = key[:2]
            isn_c = conn[0][6]
            synacks = [p for p in conn if p[8] & (SYN | ACK) == SYN | ACK and p[7] == (isn_c + 1) & M32]
            has_data = any(p[9] > 0 for p in conn if not p[8] & SYN)    # hping3 -S -d puts data on SYNs
            if not synacks:
                assert not has_data, f"data without a handshake: {key}"
                continue
            isn_s = synacks[0][6]
            after = [p for p in conn if p[0] > synacks[0][0] and not (p[8] & SYN)]
            if not after:
                continue
            first_client = next((p for p in after if p[2:4] == client), None)
            if first_client is None:
                continue
            if first_client[8] & RST and not first_client[8] & ACK:
                # nmap-style half-open probe: the scanner's kernel resets with seq = ISN + 1
                assert first_client[6] == (isn_c + 1) & M32
                assert not has_data, key
                half_open += 1
                continue
            if not has_data:
                continue
            assert first_client[8] & (SYN | ACK | RST | FIN) == ACK, f"third packet of {key} is not an ACK"
            assert first_client[6] == (isn_c + 1) & M32 and first_client[7] == (isn_s + 1) & M32
            assert first_client[0] > synacks[0][0] > conn[0][0]
            completed += 1
            # sequence progression and causality per direction
            next_seq = {True: (isn_c + 1) & M32, False: (isn_s + 1) & M32}
            sent_end = {True: (isn_c + 1) & M32, False: (isn_s + 1) & M32}
            segments = {True: set(), False: set()}
            fins = set()
            for p in after:
                from_client = p[2:4] == client
                if p[8] & RST or (len(fins) == 2 and from_client in fins and not p[8] & FIN and p[9] == 0
                                  and p[6] != next_seq[from_client]):
                    break        # reset, or the connection is over and its 4-tuple reused (e.g. an nmap probe)
                if p[8] & FIN:
                    fins.add(from_client)
                if p[6] != next_seq[from_client] and p[9] > 0:
                    # a retransmission: exactly a segment sent before
                    assert (p[6], p[9]) in segments[from_client], f"sequence gap in {key}"
                    continue
                assert p[6] == next_seq[from_client], f"sequence gap in {key}"
                if p[9]:
                    segments[from_client].add((p[6], p[9]))
                advance = p[9] + (1 if p[8] & FIN else 0)
                next_seq[from_client] = (p[6] + advance) & M32
                sent_end[from_client] = next_seq[from_client]
                if p[8] & ACK:
                    peer_end = sent_end[not from_client]
                    base = (isn_s if from_client else isn_c) + 1
                    assert (p[7] - base) & M32 <= (peer_end - base) & M32, f"ACK of unsent data in {key}"
    assert completed > 20 and half_open > 0


# -- determinism ------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs(lab, tmp_path):
    again = SynthLab(duration_s=DURATION_S, seed=SEED).generate(tmp_path / "again", progress=False, ingest=False)
    assert _digest(again.pcap) == _digest(lab / "capture.pcap")
    assert (pd.read_parquet(again.packet_labels).equals(pd.read_parquet(lab / "packet_labels.parquet")))
    assert (pd.read_parquet(again.episodes).equals(pd.read_parquet(lab / "episodes.parquet")))
    other = SynthLab(duration_s=DURATION_S, seed=SEED + 1).generate(tmp_path / "other", progress=False, ingest=False)
    assert _digest(other.pcap) != _digest(lab / "capture.pcap")


# -- CLI and bad input ------------------------------------------------------------------------------


def test_parse_duration():
    assert parse_duration("90") == 90.0
    assert parse_duration("10m") == 600.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("1h") == 3600.0
    from packetclip.errors import PacketClipError

    for bad in ("", "10x", "m", "-5s", "ten minutes"):
        with pytest.raises(PacketClipError):
            parse_duration(bad)


def test_cli_synth(tmp_path):
    from packetclip.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["lab", "synth", "--out", str(out), "--duration", "12s", "--seed", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "capture.pcap").is_file() and (out / "labels.parquet").is_file()
    assert "Port Scan" in res.output and "flows" in res.output


@pytest.mark.parametrize("duration", ["10x", "0s"])
def test_cli_bad_duration_is_one_line_exit_2(tmp_path, duration):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "packetclip.cli", "lab", "synth", "--out", str(tmp_path / "x"),
                           "--duration", duration], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("packetclip: error:") and "duration" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x" / "capture.pcap").exists()


def test_draw_lab_traffic(lab, tmp_path):
    from packetclip.lab.figures import draw_lab_traffic

    png = draw_lab_traffic(lab, tmp_path / "traffic.png", max_points=500)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 300_000
    from packetclip.errors import PacketClipError

    with pytest.raises(PacketClipError):
        draw_lab_traffic(tmp_path, tmp_path / "none.png")


# -- the lab as a workspace -------------------------------------------------------------------------


def test_lab_is_a_checked_workspace_of_kind_lab(lab):
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(lab)
    assert ws.kind == "lab" and ws.manifest["lab"]["config"]["seed"] == SEED
    counts = ws.check()
    assert counts["flows.parquet"] == len(ws.flow_ids()) > 0
    labels = ws.labels()
    assert labels is not None and set(labels["label"]) == set(FINE_CLASSES)


@pytest.mark.parametrize("duration_s", [12.0, 40.0])
def test_capture_spans_the_requested_duration(tmp_path, duration_s):
    """Sessions still open at the end used to run on (2m gave 168 s, 1s gave 7 s); the capture is cut there."""
    res = SynthLab(duration_s=duration_s, seed=SEED).generate(tmp_path / "span", progress=False, ingest=False)
    ts = np.array([t for t, _ in read_pcap(res.pcap)], dtype=np.int64)
    span_s = (ts.max() - int(SynthLab(duration_s=duration_s).config.start_unix * 1e6)) / 1e6
    assert duration_s - 1.0 <= span_s <= duration_s
    episodes = pd.read_parquet(res.episodes)
    assert episodes["packets"].sum() == len(ts) and (episodes["end_s"] <= duration_s).all()
    assert set(episodes.loc[episodes["packets"] > 0, "label"]) == set(FINE_CLASSES)


def test_too_short_duration_is_refused_with_the_minimum():
    from packetclip.errors import PacketClipError
    from packetclip.lab.synth import MIN_DURATION_S

    with pytest.raises(PacketClipError, match=rf"too short.*at least {MIN_DURATION_S:g}s"):
        SynthLab(duration_s=1.0)


def test_non_empty_folder_is_refused_unless_overwrite(tmp_path):
    from packetclip.errors import PacketClipError

    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PacketClipError, match="not empty.*--overwrite"):
        SynthLab(duration_s=12.0, seed=SEED).generate(out, progress=False, ingest=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    res = SynthLab(duration_s=12.0, seed=SEED).generate(out, progress=False, ingest=False, overwrite=True)
    assert res.pcap.is_file()
