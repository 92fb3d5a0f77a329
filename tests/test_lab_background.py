"""lab synth --background: a user's benign captures re-addressed into the lab subnet and re-timed."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.lab.packets import inet_checksum
from packetclip.lab.synth import SynthLab
from packetclip.traffic.decode import decode_batch
from packetclip.traffic.pcap import open_capture

NDPI = Path("/work/shared/data/ndpi/pcap")
CURL, DNS = NDPI / "443-curl.pcap", NDPI / "dns.pcap"
pytestmark = pytest.mark.skipif(not (CURL.exists() and DNS.exists()), reason="needs ../shared/data/ndpi")


def _synth(out: Path, seed: int = 3, ingest: bool = True, share: float = 1.0):
    return SynthLab(duration_s=10, seed=seed, classes=("Benign", "OS Scan"), background=(str(CURL), str(DNS)),
                    background_share=share).generate(out, progress=False, ingest=ingest)


def _ip_packets(pcap: Path):
    """(packet number, IP bytes) of every IP packet, in capture order."""
    for batch in open_capture(pcap):
        decode_batch(batch)
        for i in range(len(batch)):
            if batch.ip_version[i] in (4, 6) and batch.l3_off[i] >= 0:
                start = int(batch.offset[i]) + int(batch.l3_off[i])
                yield (batch.first_packet_number + i,
                       batch.data[start: start + int(batch.ip_len[i])].tobytes(), int(batch.ip_hdr_len[i]))


def _transport_ok(ip: bytes, hdr: int) -> bool:
    proto = ip[9]
    seg = ip[hdr:]
    if proto == 17 and seg[6:8] == b"\x00\x00":
        return True
    if proto in (6, 17):
        return inet_checksum(struct.pack("!4s4sBBH", ip[12:16], ip[16:20], 0, proto, len(seg)) + seg) == 0
    if proto == 1:
        return inet_checksum(seg) == 0
    return True


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    out = tmp_path_factory.mktemp("bg")
    return _synth(out / "a")


def test_background_is_benign_readdressed_with_valid_checksums_and_kept_payloads(lab):
    episodes = pd.read_parquet(lab.episodes)
    bg = episodes[episodes["scenario"] == "background"]
    assert bg["tool"].tolist() == [f"user capture {CURL.name}", f"user capture {DNS.name}"]
    assert (bg["label"] == "Benign").all() and (bg["packets"] > 0).all()
    curl = json.loads(bg["params"].iloc[0])
    assert curl["packets"] == curl["packets_read"] == 109 and not curl["left_out"], "share 1.0 keeps a short capture"
    packet_labels = pd.read_parquet(lab.packet_labels)
    mine = set(packet_labels.loc[packet_labels["episode"].isin(bg["episode"]), "packet_number"])
    assert (packet_labels.loc[packet_labels["packet_number"].isin(mine), "label"] == "Benign").all()
    subnet = ipaddress.ip_network(".".join(map(str, SynthLab(duration_s=10, seed=3).network().subnet)) + ".0/24")
    payloads = []
    for number, ip, hdr in _ip_packets(lab.pcap):
        if number not in mine or ip[0] >> 4 != 4:
            continue
        assert inet_checksum(ip[:hdr]) == 0, "IPv4 header checksum"
        assert _transport_ok(ip, hdr), f"transport checksum of packet {number}"
        for addr in (ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])):
            assert addr in subnet or not addr.is_private or addr.is_multicast, addr
        payloads.append(ip[hdr + (ip[hdr + 12] >> 4) * 4:] if ip[9] == 6 else ip[hdr + 8:])
    originals = [ip[hdr + (ip[hdr + 12] >> 4) * 4:] for _, ip, hdr in _ip_packets(CURL)]
    assert all(p in payloads for p in originals if p), "every TCP payload of the user's capture is kept"
    # one address per host: the curl capture's two hosts are two lab hosts
    lab_addrs = {(ip[12:16], ip[16:20]) for n, ip, _ in _ip_packets(lab.pcap) if n in mine and ip[9] == 6}
    assert len({a for pair in lab_addrs for a in pair}) == 2


def test_background_rereads_through_ingest_without_skips(lab):
    manifest = json.loads((lab.out_dir / "manifest.json").read_text())
    capture = manifest["captures"][0]
    assert capture["error"] is None and capture["skipped_records"] == 0 and capture["bad_link_packets"] == 0
    flows = pd.read_parquet(lab.flows)
    labels = pd.read_parquet(lab.flow_labels)
    assert (labels["purity"] == 1.0).all()
    assert set(flows["label"].astype(str)) == {"Benign", "OS Scan"}


def test_background_is_byte_identical_per_seed_and_bounded_by_share(lab, tmp_path):
    again = _synth(tmp_path / "b", ingest=False)
    assert again.pcap.read_bytes() == lab.pcap.read_bytes()
    assert pd.read_parquet(again.packet_labels).equals(pd.read_parquet(lab.packet_labels))
    other = _synth(tmp_path / "c", seed=4, ingest=False, share=0.05)
    assert other.pcap.read_bytes() != lab.pcap.read_bytes()
    pl = pd.read_parquet(other.packet_labels)
    ep = pd.read_parquet(other.episodes)
    bg = pl["episode"].isin(ep.loc[ep["scenario"] == "background", "episode"])
    assert 0 < bg.mean() <= 0.05 + 1e-3
    assert np.all(np.diff(pl["ts_ns"].to_numpy()) >= 0)


def test_bad_background_capture_is_one_line_and_exit_2(tmp_path, capsys):
    from packetclip.cli import main

    bad = tmp_path / "notes.pcap"
    bad.write_text("this is not a capture\n")
    for path in (bad, tmp_path / "missing.pcap"):
        with pytest.raises(SystemExit) as code:
            main(["lab", "synth", "--out", str(tmp_path / "out"), "--duration", "10s", "--background", str(path)])
        assert code.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("packetclip: error:") and path.name in err
    assert not (tmp_path / "out" / "capture.pcap").exists()


def test_readdress_maps_hosts_once_fixes_checksums_and_icmp_errors():
    import random as _random

    from packetclip.lab.background import AddressMap, readdress
    from packetclip.lab.packets import icmp_message, ip4, ipv4, ipv6, udp_datagram
    from packetclip.lab.synth import SynthLab as _Lab

    net = _Lab(duration_s=10, seed=1).network()
    amap = AddressMap(net, _random.Random(0))
    client, server, peer = ip4("192.168.7.20"), ip4("192.168.7.1"), ip4("93.184.216.34")
    query = ipv4(client, server, 17, udp_datagram(client, server, 40000, 53, b"\x12\x34payload"))
    error = ipv4(server, client, 1, icmp_message(3, 3, 0, query[:28]))
    out_q, src_mac, dst_mac = readdress(query, 20, 17, amap)
    out_e, _, _ = readdress(error, 20, 1, amap)
    lan = bytes(net.subnet)
    assert out_q[12:15] == lan and out_q[16:19] == lan and out_q[12:16] != out_q[16:20]
    assert out_e[12:16] == out_q[16:20] and out_e[16:20] == out_q[12:16], "one address per host"
    assert out_e[40:44] == out_q[12:16] and out_e[44:48] == out_q[16:20], "addresses inside the ICMP error too"
    assert inet_checksum(out_q[:20]) == inet_checksum(out_e[:20]) == inet_checksum(out_e[28:48]) == 0
    assert _transport_ok(out_q, 20) and _transport_ok(out_e, 20) and out_q[28:] == query[28:]
    assert src_mac != dst_mac and net.gateway.mac not in (src_mac, dst_mac)
    out_p, _, to_gw = readdress(ipv4(client, peer, 17, udp_datagram(client, peer, 1, 2, b"x")), 20, 17, amap)
    assert out_p[12:16] == out_q[12:16] and not ipaddress.ip_address(out_p[16:20]).is_private
    assert to_gw == net.gateway.mac, "frames to the Internet go through the lab gateway"
    v6a, v6b = bytes.fromhex("fe80" + "00" * 6 + "0211223344556677"), bytes.fromhex("2001" + "0db8" + "11" * 12)
    seg = udp_datagram(v6a, v6b, 5353, 5353, b"mdns")
    out6, _, _ = readdress(ipv6(v6a, v6b, 17, seg), 40, 17, amap)
    assert out6[8:10] == b"\xfe\x80" and out6[8:24] != v6a and out6[24:40] != v6b
    pseudo = out6[8:40] + struct.pack("!IxxxB", len(out6) - 40, 17)
    assert inet_checksum(pseudo + out6[40:]) == 0
    fragment = bytearray(query)
    fragment[6:8] = b"\x20\x00"                       # more fragments
    assert readdress(bytes(fragment), 20, 17, amap) == "ip_fragment"
