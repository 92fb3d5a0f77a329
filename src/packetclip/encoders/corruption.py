"""Masking for the Lens decoder tasks: T5 span corruption and header-field masking, at unit (byte) level.

Both produce the same thing: the encoder's units with masked runs replaced by sentinel slot values
(run ``i`` -> sentinel ``i``) and a decoder target ``<s_0> units of run 0 <s_1> units of run 1 ... </s>``.
Span corruption picks runs at random (T5: noise density 0.15, mean span length as configured); field
masking hides named header fields so that the decoder *generates* them (the generation task).
"""

from __future__ import annotations

import numpy as np

from packetclip.encoders.lens import DEC_EOS, DEC_SENTINEL0, LensConfig

#: Header fields the generation task hides, with their size in bytes. Offsets come from :func:`field_offsets`.
FIELD_SIZES: dict[str, int] = {"ttl": 1, "ip_length": 2, "tcp_flags": 1, "tcp_window": 2, "udp_length": 2}


def field_offsets(views: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Start byte of each field in each view (``-1`` where the packet has no such field inside its view).

    ``ttl`` is the IPv4 TTL or IPv6 hop limit, ``ip_length`` the IPv4 total length or IPv6 payload length;
    TCP/UDP fields are found after the IPv4 header (IHL) or the fixed IPv6 header (no extension headers),
    and not in non-first fragments.
    """
    v = np.asarray(views)
    n, width = v.shape
    lengths = np.asarray(lengths, np.int64)
    out: dict[str, np.ndarray] = {}
    if width < 20:
        return {name: np.full(n, -1, np.int64) for name in FIELD_SIZES}
    version = v[:, 0] >> 4
    ipv4, ipv6 = version == 4, version == 6
    ihl = (v[:, 0] & 15).astype(np.int64) * 4
    frag_offset = ((v[:, 6].astype(np.int64) & 0x1F) << 8) | v[:, 7]
    proto = np.where(ipv4, v[:, 9], np.where(ipv6, v[:, 6] if width > 6 else -1, -1)).astype(np.int64)
    l4 = np.where(ipv4 & (ihl >= 20) & (frag_offset == 0), ihl, np.where(ipv6, 40, -1))
    starts = {
        "ttl": np.where(ipv4, 8, np.where(ipv6, 7, -1)),
        "ip_length": np.where(ipv4, 2, np.where(ipv6, 4, -1)),
        "tcp_flags": np.where((proto == 6) & (l4 > 0), l4 + 13, -1),
        "tcp_window": np.where((proto == 6) & (l4 > 0), l4 + 14, -1),
        "udp_length": np.where((proto == 17) & (l4 > 0), l4 + 4, -1),
    }
    for name, start in starts.items():
        start = start.astype(np.int64)
        ok = (start >= 0) & (start + FIELD_SIZES[name] <= lengths)
        out[name] = np.where(ok, start, -1)
    return out


def hide_order_fields(views: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Copy of ``views`` with the fields that number packets inside a flow zeroed (for POP and HTP inputs).

    Ingest keeps TCP seq/ack *flow-relative*, so they count bytes from the flow's start: sorting packets by
    ``seq + ack`` recovers their order, and a segment's acks continue the other segment's seqs. The same
    holds for the ICMP/ICMPv6 echo sequence number. Measured on the lab + ndpi train captures of
    ``benchmarks/lens.py`` (POP batches as the trainer draws them), the rule "rank by seq + ack" alone puts
    51 % of packet slots right; with these bytes hidden 31 %, i.e. no better than a fixed guess. Zeroing
    them in the POP/HTP inputs closes that shortcut; span prediction and embeddings still see them.
    """
    v = np.array(views, np.uint8, copy=True)
    n, width = v.shape
    if n == 0 or width < 20:
        return v
    lengths = np.asarray(lengths, np.int64)
    version = v[:, 0] >> 4
    ipv4, ipv6 = version == 4, version == 6
    ihl = (v[:, 0] & 15).astype(np.int64) * 4
    frag_offset = ((v[:, 6].astype(np.int64) & 0x1F) << 8) | v[:, 7]
    proto = np.where(ipv4, v[:, 9], np.where(ipv6, v[:, 6], -1)).astype(np.int64)
    l4 = np.where(ipv4 & (ihl >= 20) & (frag_offset == 0), ihl, np.where(ipv6, 40, -1))
    icmp_type = v[np.arange(n), np.clip(l4, 0, width - 1)]
    echo = ((proto == 1) & np.isin(icmp_type, (0, 8))) | ((proto == 58) & np.isin(icmp_type, (128, 129)))
    spans = [(proto == 6, 4, 12), (echo, 6, 8)]   # TCP seq + ack; ICMP echo sequence number
    for rows_of, a, b in spans:
        for row in np.flatnonzero(rows_of & (l4 > 0)):
            lo, hi = int(l4[row]) + a, min(int(l4[row]) + b, int(lengths[row]), width)
            if lo < hi:
                v[row, lo:hi] = 0
    return v


def field_unit_range(config: LensConfig, start: int, size: int) -> tuple[int, int]:
    """Units to hide so that bytes ``[start, start+size)`` cannot be read (bigrams overlap their neighbours)."""
    if config.tokenisation == "byte":
        return start, start + size
    return max(start - 1, 0), start + size


def field_bytes_from_units(config: LensConfig, units: np.ndarray, start: int, size: int) -> np.ndarray:
    """Recover a field's bytes from the units of its masked run (inverse of :func:`field_unit_range`)."""
    units = np.asarray(units, np.int64)
    if config.tokenisation == "byte":
        return units[..., :size]
    first = 1 if start > 0 else 0
    return (units[..., first: first + size] >> 8) & 0xFF


def random_spans(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """T5's noise mask: about ``density * length`` masked units in runs of mean ``mean_span``."""
    if length <= 1:
        return np.zeros(length, bool)
    n_noise = int(min(max(round(length * density), 1), length - 1))
    n_spans = int(max(min(round(n_noise / mean_span), n_noise, length - n_noise), 1))

    def split(total: int, parts: int) -> np.ndarray:
        cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else np.zeros(0, int)
        return np.diff(np.concatenate([[0], cuts, [total]]))

    noise = split(n_noise, n_spans)
    keep = split(length - n_noise, n_spans)
    mask = np.zeros(length, bool)
    pos = 0
    for k_len, n_len in zip(keep, noise):
        pos += k_len
        mask[pos: pos + n_len] = True
        pos += n_len
    if rng.random() < 0.5:  # T5 always starts with kept units; also allow a masked start
        mask = mask[::-1].copy()
    return mask


def apply_mask(config: LensConfig, units: np.ndarray, n_units: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Replace masked runs of ``units [m, U]`` by sentinels; return the new units and the decoder target.

    Runs never cross packets; runs beyond ``n_sentinels`` are left visible.
    """
    units = np.array(units, np.int64, copy=True)
    target: list[int] = []
    sentinel = 0
    unit0 = config.dec_unit0
    for p in range(units.shape[0]):
        row = mask[p, : n_units[p]]
        if not row.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            if sentinel >= config.n_sentinels:
                break
            target.append(DEC_SENTINEL0 + sentinel)
            target.extend((units[p, a:b] + unit0).tolist())
            units[p, a:b] = config.slot_sentinel0 + sentinel
            sentinel += 1
    target.append(DEC_EOS)
    return units, target


def pad_targets(targets: list[list[int]]) -> np.ndarray:
    """Decoder labels ``[B, T]`` padded with -100 (ignored by the loss)."""
    width = max(len(t) for t in targets)
    out = np.full((len(targets), width), -100, np.int64)
    for i, t in enumerate(targets):
        out[i, : len(t)] = t
    return out
