"""The column layout that flows from the capture reader to the flow meter and packet views.

Everything is numpy arrays of equal length (one entry per packet) so that the hot loops run in numba
over whole batches instead of Python objects per packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ``status`` values written by the decoder.
STATUS_OK = 0          # IPv4/IPv6 decoded (transport may still be "other")
STATUS_NOT_IP = 1      # ARP, LLDP, ... : counted, not part of any flow
STATUS_TRUNCATED = 2   # frame too short for the headers it claims
STATUS_BAD_LINK = 3    # unknown / unsupported link type

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# TCP flag bits as in the header (byte 13), plus NS from byte 12 as bit 8.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100


@dataclass
class PacketBatch:
    """A batch of raw frames plus their decoded header fields.

    ``data`` holds the raw bytes; frame ``i`` is ``data[offset[i] : offset[i] + caplen[i]]``.
    Addresses are 128-bit, split in two uint64 (IPv4 is stored IPv4-mapped: hi=0, lo=0xFFFF_xxxxxxxx),
    so v4 and v6 share one code path. Ports are 0 for protocols without ports.
    """

    data: np.ndarray                 # uint8, the buffer the frames live in
    offset: np.ndarray               # int64, frame start in ``data``
    caplen: np.ndarray               # int32, bytes captured
    wirelen: np.ndarray              # int32, bytes on the wire
    ts_ns: np.ndarray                # int64, capture timestamp in ns since the epoch
    linktype: np.ndarray             # uint16, per packet (pcapng may mix interfaces)
    file_index: int = 0              # which input capture this batch came from
    first_packet_number: int = 0     # index of this batch's first packet within its capture
    # Decoded fields, filled by ``packetclip.traffic.decode.decode_batch``.
    status: np.ndarray = field(default=None)      # uint8 STATUS_*
    l3_off: np.ndarray = field(default=None)      # int32, IP header start relative to frame start (-1: none)
    ip_version: np.ndarray = field(default=None)  # uint8 4/6/0
    proto: np.ndarray = field(default=None)       # uint8 IP protocol / IPv6 final next-header
    src_hi: np.ndarray = field(default=None)      # uint64
    src_lo: np.ndarray = field(default=None)      # uint64
    dst_hi: np.ndarray = field(default=None)      # uint64
    dst_lo: np.ndarray = field(default=None)      # uint64
    sport: np.ndarray = field(default=None)       # uint16
    dport: np.ndarray = field(default=None)       # uint16
    ip_len: np.ndarray = field(default=None)      # int32, IP total length from the header (v6: 40+payload len)
    ip_hdr_len: np.ndarray = field(default=None)  # int16, incl. IPv6 extension headers
    l4_hdr_len: np.ndarray = field(default=None)  # int16, TCP data offset*4, UDP 8, ICMP 8, other 0
    payload_len: np.ndarray = field(default=None) # int32, transport payload bytes (from IP lengths, not caplen)
    tcp_flags: np.ndarray = field(default=None)   # uint16, see FIN..NS
    tcp_window: np.ndarray = field(default=None)  # uint16, raw window field
    ttl: np.ndarray = field(default=None)         # uint8, TTL / hop limit
    icmp_type: np.ndarray = field(default=None)   # int16, -1 when not ICMP
    icmp_code: np.ndarray = field(default=None)   # int16, -1 when not ICMP

    def __len__(self) -> int:
        return int(self.offset.shape[0])
