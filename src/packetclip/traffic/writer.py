"""Writing classic pcap files: used by the lab, the demo and tests that need captures with known bytes."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D


class PcapWriter:
    """Append packets to a classic pcap file (little-endian, µs or ns timestamps).

    Timestamps are integer nanoseconds so that what a test writes is exactly what it reads back.
    """

    def __init__(self, path: str | Path, linktype: int = LINKTYPE_ETHERNET, *, nanosecond: bool = False,
                 snaplen: int = 262144):
        self.path = Path(path)
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self._fh: BinaryIO = open(self.path, "wb")
        magic = _MAGIC_NS if nanosecond else _MAGIC_US
        self._fh.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        self.count = 0

    def write(self, ts_ns: int, frame: bytes, wirelen: int | None = None) -> None:
        sec, frac = divmod(int(ts_ns), 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        data = frame[: self.snaplen]
        self._fh.write(struct.pack("<IIII", sec, frac, len(data), len(frame) if wirelen is None else wirelen))
        self._fh.write(data)
        self.count += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
