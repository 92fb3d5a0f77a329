"""Episode traces and stateful TCP connections.

A :class:`Wire` collects the frames of one episode (timestamp, bytes, sender role) as the LAN mirror port
would see them. A :class:`TcpConn` keeps the state real stacks keep — initial sequence numbers, seq/ack
progression, negotiated options (timestamps, SACK, window scaling), delayed ACKs, MSS segmentation,
FIN/ACK or RST teardown — so that every connection in a lab capture is one a dissector follows without
complaint. Times are float seconds from the capture start; round-trip times are as seen from the mirror
port (a server on the Internet answers after the WAN RTT, a LAN client after a few hundred µs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from packetclip.lab.network import Host, Network
from packetclip.lab.packets import (ACK, FIN, OPT_NOP, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PSH, RST,
                                    SYN, ethernet, icmp_message, icmpv6_message, ip_packet, opt_timestamp,
                                    tcp_segment, udp_datagram)

ROLE_BENIGN = 0      # packet of benign traffic
ROLE_ATTACKER = 1    # sent by (or on behalf of, when spoofed) the attacker
ROLE_VICTIM = 2      # sent by the victim (answers to the attack)
ROLE_OTHER = 3       # part of an attack episode, sent by a third party (e.g. the gateway's ICMP errors)
ROLE_NAMES = ("benign", "attacker", "victim", "other")


class Wire:
    """The frames of one episode, in the order they were produced (sorted by time at :meth:`finish`)."""

    def __init__(self, net: Network, rng: random.Random, *, attackers: tuple[bytes, ...] = (),
                 victims: tuple[bytes, ...] = ()):
        self.net = net
        self.rng = rng
        self.attackers = set(attackers)
        self.victims = set(victims)
        self.attack = bool(attackers or victims)
        self.ts: list[int] = []
        self.frames: list[bytes] = []
        self.roles: list[int] = []
        self._ip_id: dict[bytes, int] = {}
        self.conns: list["TcpConn"] = []

    def __len__(self) -> int:
        return len(self.frames)

    # -- roles and IP IDs --------------------------------------------------------------------------------

    def role_of(self, src_ip: bytes) -> int:
        if not self.attack:
            return ROLE_BENIGN
        if src_ip in self.attackers:
            return ROLE_ATTACKER
        if src_ip in self.victims:
            return ROLE_VICTIM
        return ROLE_OTHER

    def next_ip_id(self, src_ip: bytes) -> int:
        cur = self._ip_id.get(src_ip)
        if cur is None:
            cur = self.rng.randrange(65536)
        cur = (cur + 1) & 0xFFFF
        self._ip_id[src_ip] = cur
        return cur

    # -- emitting ----------------------------------------------------------------------------------------

    def emit(self, t: float, src: Host, dst: Host, proto: int, l4: bytes, *, ttl: int | None = None,
             ident: int | None = None, df: bool = True, tos: int = 0, src_ip: bytes | None = None,
             dst_ip: bytes | None = None, src_mac: bytes | None = None, role: int | None = None) -> None:
        s_ip = src_ip or src.ip
        d_ip = dst_ip or dst.ip
        if ident is None:
            ident = self.next_ip_id(s_ip)
        ethertype, packet = ip_packet(s_ip, d_ip, proto, l4, ttl=src.ttl if ttl is None else ttl, ident=ident,
                                      df=df, tos=tos)
        smac, dmac = self.net.l2(src, dst)
        self.ts.append(int(round(t * 1e6)) * 1000)   # µs resolution: exactly what a µs pcap stores
        self.frames.append(ethernet(dmac, src_mac or smac, ethertype, packet))
        self.roles.append(self.role_of(s_ip) if role is None else role)

    def tcp(self, t: float, src: Host, dst: Host, sport: int, dport: int, seq: int, ack: int, flags: int,
            window: int, options: bytes = b"", payload: bytes = b"", urgent: int = 0, **ip) -> None:
        s_ip = ip.get("src_ip") or src.ip
        d_ip = ip.get("dst_ip") or dst.ip
        seg = tcp_segment(s_ip, d_ip, sport, dport, seq, ack, flags, window, options, payload, urgent)
        self.emit(t, src, dst, PROTO_TCP, seg, **ip)

    def udp(self, t: float, src: Host, dst: Host, sport: int, dport: int, payload: bytes, **ip) -> None:
        s_ip = ip.get("src_ip") or src.ip
        d_ip = ip.get("dst_ip") or dst.ip
        self.emit(t, src, dst, PROTO_UDP, udp_datagram(s_ip, d_ip, sport, dport, payload), **ip)

    def icmp(self, t: float, src: Host, dst: Host, icmp_type: int, code: int, rest: int, payload: bytes,
             **ip) -> None:
        s_ip = ip.get("src_ip") or src.ip
        d_ip = ip.get("dst_ip") or dst.ip
        if len(s_ip) == 16:
            self.emit(t, src, dst, PROTO_ICMPV6, icmpv6_message(s_ip, d_ip, icmp_type, code, rest, payload), **ip)
        else:
            self.emit(t, src, dst, PROTO_ICMP, icmp_message(icmp_type, code, rest, payload), **ip)

    def icmp_unreachable(self, t: float, src: Host, dst: Host, code: int, original_ip_packet: bytes, **ip) -> None:
        """ICMP destination unreachable quoting the offending packet (Linux quotes up to 576 bytes total)."""
        quote = original_ip_packet[: 576 - 28]
        self.icmp(t, src, dst, 3, code, 0, quote, df=False, **ip)

    # -- result ------------------------------------------------------------------------------------------

    def finish(self) -> "Trace":
        for conn in self.conns:
            conn.flush_acks()
        self.conns = []
        ts = np.asarray(self.ts, dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        lengths = np.fromiter((len(f) for f in self.frames), dtype=np.int64, count=len(self.frames))
        blob = b"".join(self.frames[i] for i in order)
        offsets = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(lengths[order], out=offsets[1:])
        trace = Trace(ts[order], offsets, blob, np.asarray(self.roles, dtype=np.int8)[order])
        self.ts, self.frames, self.roles = [], [], []
        return trace


@dataclass
class Trace:
    """One episode's frames, time-ordered and packed (one bytes blob + offsets: little Python overhead)."""

    ts_ns: np.ndarray
    offsets: np.ndarray
    blob: bytes
    roles: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def frame(self, i: int) -> bytes:
        return self.blob[self.offsets[i]: self.offsets[i + 1]]


class TcpConn:
    """One TCP connection between ``client`` and ``server`` (side 0 = client, side 1 = server)."""

    def __init__(self, wire: Wire, client: Host, server: Host, sport: int, dport: int, *,
                 rtt_s: float, rtt_c: float = 0.0003, client_ip: bytes | None = None, role_c: int | None = None,
                 role_s: int | None = None, mss: int | None = None):
        self.w = wire
        rng = wire.rng
        self.hosts = (client, server)
        self.ports = ((sport, dport), (dport, sport))
        self.client_ip = client_ip
        self.roles = (role_c, role_s)
        self.rtt = (rtt_c, rtt_s)           # delay before side i answers, as seen at the mirror port
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.rcv = [self.seq[1], self.seq[0]]   # next byte expected from the peer (our ACK number)
        self.peer_tsval = [0, 0]
        self.ts_ok = client.stack.uses_timestamps and server.stack.uses_timestamps
        self.sack_ok = client.stack.sack and server.stack.sack
        self.ws_ok = client.stack.wscale is not None and server.stack.wscale is not None
        self.win = [self._est_window(client), self._est_window(server)]
        self.mss = mss or min(client.stack.mss, server.stack.mss)
        self.seg_payload = self.mss - (12 if self.ts_ok else 0)
        self.ip_kw = ({"src_ip": client_ip} if client_ip else {}, {"dst_ip": client_ip} if client_ip else {})
        self.closed = False
        self.unacked = [0, 0]               # data segments received since our last ACK, per side
        # Delayed ACKs not yet on the wire, per side: (due time, ack number). A segment the side sends
        # before the due time carries the ACK instead (piggybacking), as real stacks do.
        self.pending: tuple[list, list] = ([], [])
        wire.conns.append(self)

    def _est_window(self, host: Host) -> int:
        lo, hi = host.stack.est_window
        if self.ws_ok:
            return self.w.rng.randint(lo, hi)
        return min(65535, host.stack.syn_window)

    def jitter(self, side: int) -> float:
        base = self.rtt[side]
        return base * (0.85 + 0.3 * self.w.rng.random())

    # -- one segment -------------------------------------------------------------------------------------

    def schedule_ack(self, due: float, side: int) -> None:
        """``side`` will ACK what it has received so far at ``due`` unless it sends something first."""
        self.pending[side].append((due, self.rcv[side]))
        self.unacked[side] = 0

    def _flush(self, side: int, until: float | None) -> None:
        pend = self.pending[side]
        if not pend:
            return
        keep = []
        for due, ack_value in pend:
            if until is None or due <= until:
                self._emit(due, side, ACK, b"", None, None, ack_value)
            else:
                keep.append((due, ack_value))
        self.pending[side][:] = keep

    def flush_acks(self) -> None:
        """Put every scheduled ACK on the wire (end of the episode)."""
        self._flush(0, None)
        self._flush(1, None)

    def send(self, t: float, side: int, flags: int, payload: bytes = b"", *, options: bytes | None = None,
             window: int | None = None) -> float:
        self._flush(side, t)
        if flags & ACK:
            self.pending[side].clear()     # this segment carries a newer ACK
        return self._emit(t, side, flags, payload, options, window, None)

    def _emit(self, t: float, side: int, flags: int, payload: bytes, options: bytes | None, window: int | None,
              ack_value: int | None) -> float:
        src, dst = self.hosts[side], self.hosts[1 - side]
        sport, dport = self.ports[side]
        if options is None:
            options = b""
            if self.ts_ok and not flags & RST:
                tsval = src.tsval(t)
                options = OPT_NOP + OPT_NOP + opt_timestamp(tsval, self.peer_tsval[side])
                self.peer_tsval[1 - side] = tsval
        if not flags & ACK:
            ack = 0
        else:
            ack = self.rcv[side] if ack_value is None else ack_value
        win = self.win[side] if window is None else window
        ip_kw = self.ip_kw[0] if side == 0 else self.ip_kw[1]
        self.w.tcp(t, src, dst, sport, dport, self.seq[side], ack, flags, win, options, payload,
                   role=self.roles[side], **ip_kw)
        adv = len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.seq[side] = (self.seq[side] + adv) & 0xFFFFFFFF
        if adv:
            self.rcv[1 - side] = self.seq[side]
        if flags & ACK:
            self.unacked[side] = 0
        return t

    # -- phases ------------------------------------------------------------------------------------------

    def syn(self, t: float) -> float:
        c = self.hosts[0]
        tsval = c.tsval(t)
        opts = c.stack.syn_options(tsval)
        self.peer_tsval[1] = tsval
        self.send(t, 0, SYN, options=opts, window=c.stack.syn_window)
        return t

    def synack(self, t: float) -> float:
        s, c = self.hosts[1], self.hosts[0]
        tsval = s.tsval(t)
        opts = s.stack.synack_options(tsval, self.peer_tsval[1] if c.stack.uses_timestamps else None,
                                      c.stack.sack, c.stack.wscale is not None)
        self.peer_tsval[0] = tsval
        self.send(t, 1, SYN | ACK, options=opts, window=s.stack.synack_window)
        return t

    def handshake(self, t: float) -> float:
        """SYN, SYN/ACK, ACK; returns the time of the client's ACK."""
        self.syn(t)
        t = t + self.jitter(1)
        self.synack(t)
        t = t + self.jitter(0)
        self.send(t, 0, ACK)
        return t

    def data(self, t: float, side: int, payload: bytes, *, rate_bps: float = 200e6, ack: str = "delayed",
             push: bool = True) -> float:
        """Send ``payload`` from ``side`` in MSS-sized segments; the peer ACKs every second segment.

        ``ack``: ``"delayed"`` the peer also ACKs the last segment after its delayed-ACK timer,
        ``"none"`` the caller's next segment from the peer carries the ACK (request/response).
        Returns the time of the last data segment.
        """
        n = len(payload)
        if n == 0:
            return t
        step = self.seg_payload
        peer = 1 - side
        rng = self.w.rng
        pos = 0
        last = t
        seg_count = 0
        while pos < n:
            chunk = payload[pos: pos + step]
            pos += len(chunk)
            flags = ACK | (PSH if (push and pos >= n) else 0)
            self.send(last, side, flags, chunk)
            seg_count += 1
            self.unacked[peer] += 1
            if self.unacked[peer] >= 2 and pos < n:
                self.schedule_ack(last + self.jitter(peer), peer)
            if pos < n:
                last += (len(chunk) + 66) * 8 / rate_bps * (0.9 + 0.2 * rng.random())
        if ack == "delayed" and self.unacked[peer]:
            delay = self.jitter(peer) + (0.04 * rng.random() if self.unacked[peer] == 1 else 0.0)
            self.schedule_ack(last + delay, peer)
        return last

    def exchange(self, t: float, request: bytes, response: bytes, *, server_time: float = 0.001,
                 rate_bps: float = 50e6) -> float:
        """Client request, server response (carrying the ACK), client ACKs; returns the response end time."""
        t = self.data(t, 0, request, ack="none")
        t = t + self.jitter(1) + server_time
        return self.data(t, 1, response, rate_bps=rate_bps, ack="delayed")

    def close(self, t: float, side: int = 0, *, how: str = "fin") -> float:
        """Teardown from ``side``: FIN/ACK both ways then ACK (``how="fin"``) or a RST/ACK (``"rst"``)."""
        if self.closed:
            return t
        self.closed = True
        if how == "rst":
            self.send(t, side, RST | ACK, window=0)
            self._flush(1 - side, t)
            self.pending[1 - side].clear()
            return t
        peer = 1 - side
        self.send(t, side, FIN | ACK)
        t = t + self.jitter(peer)
        self.send(t, peer, FIN | ACK)
        t = t + self.jitter(side)
        self.send(t, side, ACK)
        return t
