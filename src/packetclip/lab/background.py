"""A user's own benign captures as background of a synthetic lab capture (``lab synth --background``).

A detector trained on the lab alone has only seen the lab's small IoT network as "normal". With
``--background`` the user's captures of their own network join the lab capture as Benign traffic:

- **re-addressed**: every host gets one address for the whole run (the same in every background
  capture): private, link-local and shared (CGNAT) IPv4 hosts move into free addresses of the lab's
  LAN subnet, public IPv4 peers to seeded public addresses (they stay "the Internet"), IPv6 hosts to
  seeded addresses of the same scope; multicast, broadcast and unspecified addresses stay as they are.
  Each local host gets its own MAC; frames to and from the Internet carry the lab gateway's MAC, as the
  lab's own frames do. Addresses inside ICMP errors are rewritten too.
- **checksums recomputed**: IPv4 header, TCP, UDP (a zero UDP/IPv4 checksum stays zero), ICMP, ICMPv6.
  Payloads are kept byte for byte (a DNS answer still names the user's addresses).
- **re-timed**: each capture keeps its own packet timing, shifted to a seeded start inside the lab
  capture; a capture longer than the lab is cut to a seeded window of the lab's length.
- **bounded by a share**: when the background would make up more than ``share`` of the packets, each
  capture keeps a seeded contiguous run of its packets so that the share holds (never repeated packets).

Frames the lab cannot re-address faithfully are left out and counted (in the episodes table's params):
non-IP frames (ARP, LLDP: they carry addresses outside IP headers), IP fragments (the transport checksum
spans fragments), packets cut by the snap length (their checksum cannot be recomputed) and tunnels' inner
headers are kept as payload (only the outer header is re-addressed).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.lab.network import OUIS, Network, random_public_ip
from packetclip.lab.packets import inet_checksum
from packetclip.lab.wire import ROLE_BENIGN, Trace

_LOCAL_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                                                "100.64.0.0/10")]
_LOCAL_OUIS = tuple(sorted(OUIS))
_ERROR_TYPES_V4 = (3, 4, 5, 11, 12)
_ERROR_TYPES_V6 = (1, 2, 3, 4)


@dataclass
class BackgroundCapture:
    """One user capture, re-addressed and re-timed: its trace and what happened to its packets."""

    path: Path
    trace: Trace
    start_s: float
    end_s: float
    packets_read: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    window_s: tuple[float, float] = (0.0, 0.0)      # the part of the original capture kept (seconds from its start)

    def params(self) -> dict:
        return {"source": self.path.name, "packets_read": self.packets_read, "packets": len(self.trace),
                "left_out": self.left_out, "window_s": [round(w, 6) for w in self.window_s]}


class AddressMap:
    """One new address (and MAC) per original host, the same across all background captures of a run."""

    def __init__(self, net: Network, rng: random.Random):
        self.net = net
        self.rng = rng
        taken = {h.ip for h in net.local_hosts} | {h.ip for h in net.cloud} | {net.dns_upstream.ip, net.ntp_server.ip}
        self._free_lan = [bytes([*net.subnet, n]) for n in range(2, 255) if bytes([*net.subnet, n]) not in taken]
        rng.shuffle(self._free_lan)
        self._taken = taken
        self._map: dict[bytes, bytes] = {}
        self._mac: dict[bytes, bytes] = {}
        self._v6_prefix = bytes([0xFD, *(rng.randrange(256) for _ in range(5))])

    def local(self, new: bytes) -> bool:
        if len(new) == 4:
            return new[:3] == bytes(self.net.subnet)
        return new[0] == 0xFE or new[0] & 0xFE == 0xFC

    def address(self, old: bytes) -> bytes:
        new = self._map.get(old)
        if new is None:
            new = self._new_address(old)
            self._map[old] = new
        return new

    def _new_address(self, old: bytes) -> bytes:
        ip = ipaddress.ip_address(old)
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback or old == b"\xff\xff\xff\xff":
            return old
        if len(old) == 4:
            if any(ip in n for n in _LOCAL_V4):
                if old[3] == 255:                        # a subnet's broadcast: the lab subnet's
                    return bytes([*self.net.subnet, 255])
                if not self._free_lan:
                    raise PacketClipError(f"the background captures have more local hosts than the lab subnet "
                                          f"{'.'.join(map(str, self.net.subnet))}.0/24 has free addresses; "
                                          "use fewer captures")
                return self._free_lan.pop()
            while True:
                new = random_public_ip(self.rng)
                if new not in self._taken and new not in self._map.values():
                    self._taken.add(new)
                    return new
        iid = bytes(self.rng.randrange(256) for _ in range(8))
        if ip.is_link_local:
            return b"\xfe\x80" + b"\x00" * 6 + iid
        if ip.is_private:
            return self._v6_prefix + bytes([0, self.rng.randrange(256)]) + iid
        return bytes([0x2A, self.rng.randrange(256), *(self.rng.randrange(256) for _ in range(6))]) + iid

    def mac(self, new: bytes) -> bytes:
        """The MAC a frame to/from ``new`` carries on the lab LAN (the gateway's for Internet hosts)."""
        if len(new) == 4:
            if new == b"\xff\xff\xff\xff" or new == bytes([*self.net.subnet, 255]):
                return b"\xff" * 6
            if 224 <= new[0] < 240:
                return bytes([1, 0, 0x5E, new[1] & 0x7F, new[2], new[3]])
        elif new[0] == 0xFF:
            return b"\x33\x33" + new[12:]
        if not self.local(new):
            return self.net.gateway.mac
        mac = self._mac.get(new)
        if mac is None:
            a, b, c = OUIS[self.rng.choice(_LOCAL_OUIS)]
            mac = bytes([a, b, c, self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(256)])
            self._mac[new] = mac
        return mac


def check_share(share: float) -> None:
    if not 0.0 < share <= 1.0:
        raise PacketClipError(f"--background-share must be within (0, 1], not {share}")


def _l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytearray, at: int) -> None:
    segment[at: at + 2] = b"\x00\x00"
    if len(src) == 4:
        pseudo = struct.pack("!4s4sBBH", src, dst, 0, proto, len(segment))
    else:
        pseudo = struct.pack("!16s16sIxxxB", src, dst, len(segment), proto)
    csum = inet_checksum(pseudo + bytes(segment))
    if proto == 17 and csum == 0:
        csum = 0xFFFF
    segment[at: at + 2] = struct.pack("!H", csum)


def readdress(packet: bytes, hdr_len: int, proto: int, amap: AddressMap) -> tuple[bytes, bytes, bytes] | str:
    """(new IP packet, src MAC, dst MAC), or the reason the packet is left out."""
    pkt = bytearray(packet)
    v4 = pkt[0] >> 4 == 4
    if v4:
        if struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF:
            return "ip_fragment"
        src, dst = amap.address(bytes(pkt[12:16])), amap.address(bytes(pkt[16:20]))
        pkt[12:16], pkt[16:20] = src, dst
        pkt[10:12] = b"\x00\x00"
        pkt[10:12] = struct.pack("!H", inet_checksum(bytes(pkt[:hdr_len])))
    else:
        if proto == 44:
            return "ip_fragment"
        src, dst = amap.address(bytes(pkt[8:24])), amap.address(bytes(pkt[24:40]))
        pkt[8:24], pkt[24:40] = src, dst
    seg = pkt[hdr_len:]
    if proto == 6 and len(seg) >= 20:
        _l4_checksum(src, dst, 6, seg, 16)
    elif proto == 17 and len(seg) >= 8:
        if v4 and seg[6:8] == b"\x00\x00":
            pass                                         # "no checksum" stays so
        else:
            _l4_checksum(src, dst, 17, seg, 6)
    elif proto == 1 and v4 and len(seg) >= 8:
        if seg[0] in _ERROR_TYPES_V4 and len(seg) >= 28 and seg[8] >> 4 == 4:
            inner_len = (seg[8] & 0x0F) * 4
            seg[20:24], seg[24:28] = amap.address(bytes(seg[20:24])), amap.address(bytes(seg[24:28]))
            if len(seg) >= 8 + inner_len:
                seg[18:20] = b"\x00\x00"
                seg[18:20] = struct.pack("!H", inet_checksum(bytes(seg[8: 8 + inner_len])))
        seg[2:4] = b"\x00\x00"
        seg[2:4] = struct.pack("!H", inet_checksum(bytes(seg)))
    elif proto == 58 and not v4 and len(seg) >= 8:
        if seg[0] in _ERROR_TYPES_V6 and len(seg) >= 48 and seg[8] >> 4 == 6:
            seg[16:32], seg[32:48] = amap.address(bytes(seg[16:32])), amap.address(bytes(seg[32:48]))
        _l4_checksum(src, dst, 58, seg, 2)
    return bytes(pkt[:hdr_len]) + bytes(seg), amap.mac(src), amap.mac(dst)


def _read(path: Path) -> tuple[list[tuple[int, bytes, int, int]], dict[str, int], int]:
    """(ts_ns, IP packet, header length, protocol) of every IP packet, what was left out, packets read."""
    from packetclip.traffic.decode import decode_batch
    from packetclip.traffic.pcap import open_capture

    if not path.is_file():
        raise PacketClipError("no such background capture", path=str(path))
    out: list[tuple[int, bytes, int, int]] = []
    left = {"non_ip": 0, "truncated": 0}
    read = 0
    for batch in open_capture(path):
        decode_batch(batch)
        read += len(batch)
        data = batch.data
        for i in range(len(batch)):
            version = int(batch.ip_version[i])
            off = int(batch.l3_off[i])
            if version not in (4, 6) or off < 0:
                left["non_ip"] += 1
                continue
            ip_len = int(batch.ip_len[i])
            avail = int(batch.caplen[i]) - off
            if ip_len > avail or ip_len < int(batch.ip_hdr_len[i]):
                left["truncated"] += 1
                continue
            start = int(batch.offset[i]) + off
            out.append((int(batch.ts_ns[i]), data[start: start + ip_len].tobytes(), int(batch.ip_hdr_len[i]),
                        int(batch.proto[i])))
    if not out:
        raise PacketClipError("background capture holds no IP packets the lab can use", path=str(path))
    out.sort(key=lambda r: r[0])
    return out, left, read


def read_background(paths: list[str | Path]) -> list[tuple[Path, list, dict[str, int], int]]:
    """Every capture's IP packets, read before the lab makes anything: a missing, unreadable or IP-less
    capture is refused (PacketClipError, one line) up front."""
    if not paths:
        return []
    return [(Path(p), *_read(Path(p))) for p in paths]


def place_background(captures: list[tuple[Path, list, dict[str, int], int]], net: Network, rng: random.Random, *,
                     duration_s: float, lab_packets: int, share: float) -> list[BackgroundCapture]:
    """Cut, re-address and re-time what :func:`read_background` read, for a lab capture of ``duration_s``.

    ``share`` bounds the background's part of all packets (lab + background); 1.0 keeps every packet.
    """
    check_share(share)
    window_ns = int(round(duration_s * 1e9))
    read_captures, captures = captures, []
    for p, rows, left, read in read_captures:
        left = dict(left)
        first = rows[0][0]
        span = rows[-1][0] - first
        cut = 0
        if span > window_ns:                         # a window of the lab's length, starting at a packet
            starts = [r[0] - first for r in rows if r[0] - first <= span - window_ns]
            cut = starts[rng.randrange(len(starts))]
        kept = [r for r in rows if cut <= r[0] - first < cut + window_ns]
        left["outside_window"] = len(rows) - len(kept)
        captures.append([p, kept, left, read, first])
    total = sum(len(c[1]) for c in captures)
    allowed = total if share >= 1.0 else int(share / (1.0 - share) * lab_packets)
    if total > allowed:
        q = allowed / total
        for c in captures:
            n = max(1, int(len(c[1]) * q))
            start = rng.randint(0, len(c[1]) - n)
            c[2]["over_share"] = len(c[1]) - n
            c[1] = c[1][start: start + n]
    amap = AddressMap(net, rng)
    result = []
    for path, rows, left, read, first in captures:
        ts0, ts1 = rows[0][0], rows[-1][0]
        offset = rng.randint(0, max(0, window_ns - (ts1 - ts0)))
        ts, frames = [], []
        for t, packet, hdr_len, proto in rows:
            done = readdress(packet, hdr_len, proto, amap)
            if isinstance(done, str):
                left[done] = left.get(done, 0) + 1
                continue
            ip, src_mac, dst_mac = done
            ts.append(offset + t - ts0)
            frames.append(dst_mac + src_mac + (b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd") + ip)
        if not frames:
            raise PacketClipError("background capture holds no IP packets the lab can use", path=str(path))
        frames = [f + b"\x00" * (60 - len(f)) if len(f) < 60 else f for f in frames]
        offsets = np.zeros(len(frames) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(f) for f in frames])
        trace = Trace(np.asarray(ts, dtype=np.int64), offsets, b"".join(frames), np.full(len(frames), ROLE_BENIGN,
                                                                                          dtype=np.int8))
        result.append(BackgroundCapture(path, trace, ts[0] / 1e9, ts[-1] / 1e9, read,
                                        {k: v for k, v in left.items() if v},
                                        ((rows[0][0] - first) / 1e9, (rows[-1][0] - first) / 1e9)))
    return result
