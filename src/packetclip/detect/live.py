"""A live interface as a :class:`~packetclip.traffic.stream.PacketSource`: a Linux AF_PACKET socket.

No extra dependency (the standard ``socket`` module); frames are gathered into a
:class:`~packetclip.traffic.batch.PacketBatch` until ``batch_packets`` frames or ``batch_ms`` milliseconds,
whichever comes first, so a quiet link still gets its alerts within ``batch_ms``. Timestamps are the wall
clock at receipt; each batch's ``read_wall`` is its first frame's receipt (``time.perf_counter``), so the
detector's alert latency counts the time a packet waited for its batch to fill. Needs root or CAP_NET_RAW; a missing interface or missing rights is a
:class:`LiveCaptureError` (one line, exit 2 in the CLI), raised by :meth:`InterfaceSource.open` before any
work starts.
"""

from __future__ import annotations

import errno
import socket
import time

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.traffic.batch import PacketBatch

ETH_P_ALL = 0x0003
# ARPHRD_* hardware types → pcap link types (Ethernet header for Ethernet and loopback, raw IP for tunnels)
_LINKTYPE = {1: 1, 772: 1, 65534: 101, 776: 101, 778: 101}


class LiveCaptureError(PacketClipError):
    """The interface does not exist, or capturing on it is not permitted."""


class InterfaceSource:
    """Packets of interface ``interface`` (``duration_s`` / ``max_packets``: stop after that much)."""

    def __init__(self, interface: str, *, batch_packets: int = 1024, batch_ms: float = 20.0,
                 duration_s: float | None = None, max_packets: int | None = None, snaplen: int = 65535):
        self.interface = str(interface)
        self.name = f"live:{self.interface}"
        self.path = self.name
        self.batch_packets = int(batch_packets)
        self.batch_s = float(batch_ms) / 1e3
        self.duration_s = duration_s
        self.max_packets = max_packets
        self.snaplen = int(snaplen)
        self.sock: socket.socket | None = None
        self.packets = 0

    def open(self) -> "InterfaceSource":
        """Open the socket now (so a bad interface or missing rights fail before anything else)."""
        if self.sock is not None:
            return self
        if not hasattr(socket, "AF_PACKET"):
            raise LiveCaptureError("live capture needs Linux (AF_PACKET sockets)")
        try:
            socket.if_nametoindex(self.interface)
        except OSError:
            raise LiveCaptureError(f"no such network interface: {self.interface}") from None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise LiveCaptureError(f"capturing on {self.interface} needs root (or CAP_NET_RAW)") from None
        try:
            sock.bind((self.interface, 0))
        except OSError as err:
            sock.close()
            if err.errno in (errno.ENODEV, errno.ENXIO):
                raise LiveCaptureError(f"no such network interface: {self.interface}") from None
            raise LiveCaptureError(f"cannot capture on {self.interface}: {err.strerror}") from None
        sock.settimeout(self.batch_s)
        self.sock = sock
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __iter__(self):
        self.open()
        started = time.monotonic()
        buf = bytearray(self.snaplen)
        view = memoryview(buf)
        number = 0
        try:
            while True:
                frames, ts, wire, links = [], [], [], []
                first_wall = None
                deadline = time.monotonic() + self.batch_s
                while len(frames) < self.batch_packets:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.sock.settimeout(left)
                    try:
                        n, addr = self.sock.recvfrom_into(buf, self.snaplen, socket.MSG_TRUNC)
                    except (socket.timeout, BlockingIOError):
                        break
                    if first_wall is None:
                        first_wall = time.perf_counter()
                        # a batch is due ``batch_ms`` after its first frame, not after the previous batch
                        deadline = time.monotonic() + self.batch_s
                    ts.append(time.time_ns())
                    caplen = min(n, self.snaplen)
                    frames.append(bytes(view[:caplen]))
                    wire.append(n)
                    links.append(_LINKTYPE.get(addr[3], 1) if len(addr) > 3 else 1)
                if frames:
                    caplens = np.fromiter((len(f) for f in frames), np.int32, len(frames))
                    offsets = np.zeros(len(frames), np.int64)
                    offsets[1:] = np.cumsum(caplens[:-1])
                    batch = PacketBatch(data=np.frombuffer(b"".join(frames), np.uint8), offset=offsets,
                                        caplen=caplens, wirelen=np.asarray(wire, np.int32),
                                        ts_ns=np.asarray(ts, np.int64), linktype=np.asarray(links, np.uint16),
                                        first_packet_number=number)
                    batch.read_wall = first_wall
                    number += len(frames)
                    self.packets = number
                    yield batch
                if self.max_packets is not None and number >= self.max_packets:
                    return
                if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                    return
        finally:
            self.close()
