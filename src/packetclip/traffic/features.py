"""CICFlowMeter feature columns from the flow meter's accumulators, vectorised over all finished flows at once.

The numba core (:mod:`packetclip.traffic.flows`) keeps only sums, shifted sums of squares, minima, maxima and
counters per flow; every mean, deviation, rate and ratio is derived here, once per flow, with numpy. The
semantics of each column are documented in :mod:`packetclip.traffic.flows`.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from packetclip.traffic import flows as fl


def _div(num, den, empty=0.0):
    """num / den elementwise, ``empty`` where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(empty))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _m2(n, s1, s2):
    """Sum of squared deviations from shifted sums: s1 = sum(x - k), s2 = sum((x - k)^2)."""
    n = n.astype(np.float64)
    s1 = s1.astype(np.float64)
    m2 = s2.astype(np.float64) - _div(s1 * s1, n)
    return np.maximum(m2, 0.0)


def _sample_std(n, m2):
    var = _div(m2, n - 1)
    var = np.where(n > 1, var, 0.0)
    return np.sqrt(var), var


def _text_ips(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    """128-bit addresses (IPv4-mapped for v4) -> text; each distinct address is formatted once."""
    hi = hi.astype(np.uint64, copy=False)
    lo = lo.astype(np.uint64, copy=False)
    if hi.size == 0:
        return pa.array([], pa.string())
    lo_codes, lo_uniq = pd.factorize(lo)
    if (hi == 0).all():
        codes, u_hi, u_lo = lo_codes, np.zeros(lo_uniq.size, np.uint64), lo_uniq.astype(np.uint64)
    else:
        hi_codes, _ = pd.factorize(hi)
        key = hi_codes.astype(np.int64) * lo_uniq.size + lo_codes
        _, where, codes = np.unique(key, return_index=True, return_inverse=True)
        u_hi, u_lo = hi[where], lo[where]
    v4 = (u_hi == 0) & ((u_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    octets = [pa.array(((u_lo >> np.uint64(shift)) & np.uint64(255)).astype(np.int64)) for shift in (24, 16, 8, 0)]
    text = pc.binary_join_element_wise(*[pc.take(_OCTETS, o) for o in octets], ".")
    if not v4.all():
        v6 = [ipaddress.IPv6Address((int(h) << 64) | int(low)).compressed
              for h, low in zip(u_hi[~v4].tolist(), u_lo[~v4].tolist())]
        text = pc.replace_with_mask(text, pa.array(~v4), pa.array(v6, pa.string()))
    return pc.take(text, pa.array(codes))


_OCTETS = pa.array([str(i) for i in range(256)], pa.string())


def cic_columns(T: np.ndarray) -> dict[str, object]:
    """All CIC feature columns plus our own columns for finished flows.

    ``T`` holds the meter's state layout transposed: one contiguous int64 row per state field, one column per
    flow (float fields are read through a float64 view of the same memory).
    """
    T = np.ascontiguousarray(T, dtype=np.int64)
    TF = T.view(np.float64)
    c: dict[str, object] = {}

    def I(f):  # noqa: E743 - short accessor keeps the formulas below readable
        return T[f]

    fwd_is_a = I(fl.F_FWD_IS_A) == 1
    k = T.view(np.uint64)
    meta = I(fl.K_META)
    proto = (meta >> 32) & 0xFF
    a_port = (meta >> 16) & 0xFFFF
    b_port = meta & 0xFFFF
    src_hi = np.where(fwd_is_a, k[fl.K_A_HI], k[fl.K_B_HI])
    src_lo = np.where(fwd_is_a, k[fl.K_A_LO], k[fl.K_B_LO])
    dst_hi = np.where(fwd_is_a, k[fl.K_B_HI], k[fl.K_A_HI])
    dst_lo = np.where(fwd_is_a, k[fl.K_B_LO], k[fl.K_A_LO])
    sport = np.where(fwd_is_a, a_port, b_port).astype(np.int64)
    dport = np.where(fwd_is_a, b_port, a_port).astype(np.int64)
    src_ip = _text_ips(src_hi, src_lo)
    dst_ip = _text_ips(dst_hi, dst_lo)
    flow_text = pc.binary_join_element_wise(src_ip, dst_ip, pc.cast(pa.array(sport), pa.string()),
                                            pc.cast(pa.array(dport), pa.string()),
                                            pc.cast(pa.array(proto), pa.string()), "-")
    string = pd.StringDtype("pyarrow", na_value=np.nan)       # pandas 3 default "str"

    first_ns = I(fl.F_FIRST_NS)
    last_ns = I(fl.F_LAST_NS)
    first_us = first_ns // 1000
    last_us = last_ns // 1000
    duration = last_us - first_us
    F, B = fl.FWD, fl.BWD
    nf = I(F + fl.D_N)
    nb = I(B + fl.D_N)
    n = nf + nb
    bf = I(F + fl.D_BYTES)
    bb = I(B + fl.D_BYTES)

    c["Flow ID"] = pd.arrays.ArrowStringArray(flow_text, dtype=string)
    c["Src IP"] = pd.arrays.ArrowStringArray(src_ip, dtype=string)
    c["Src Port"] = sport
    c["Dst IP"] = pd.arrays.ArrowStringArray(dst_ip, dtype=string)
    c["Dst Port"] = dport
    c["Protocol"] = proto.astype(np.int64)
    c["Timestamp"] = first_us.astype("datetime64[us]")
    c["Flow Duration"] = duration
    c["Total Fwd Packet"] = nf
    c["Total Bwd packets"] = nb
    c["Total Length of Fwd Packet"] = bf
    c["Total Length of Bwd Packet"] = bb

    m2_f = _m2(nf, I(F + fl.D_S1), I(F + fl.D_S2))
    m2_b = _m2(nb, I(B + fl.D_S1), I(B + fl.D_S2))
    mean_f = _div(bf, nf)
    mean_b = _div(bb, nb)
    for side, base, cnt, mean, m2 in (("Fwd", F, nf, mean_f, m2_f), ("Bwd", B, nb, mean_b, m2_b)):
        c[f"{side} Packet Length Max"] = np.where(cnt > 0, I(base + fl.D_MAX), 0)
        c[f"{side} Packet Length Min"] = np.where(cnt > 0, I(base + fl.D_MIN), 0)
        c[f"{side} Packet Length Mean"] = mean
        c[f"{side} Packet Length Std"] = _sample_std(cnt, m2)[0]

    seconds = duration / 1e6
    c["Flow Bytes/s"] = _div(bf + bb, seconds, empty=-1.0)
    c["Flow Packets/s"] = _div(n, seconds, empty=-1.0)

    def iat_block(count, kf, s1f, s2f, minf, maxf):
        total = I(kf) * count + I(s1f)
        mean = _div(total, count)
        std = _sample_std(count, _m2(count, I(s1f), TF[s2f]))[0]
        has = count > 0
        return (np.where(has, total, 0), np.where(has, mean, 0.0), np.where(has, std, 0.0),
                np.where(has, I(maxf), 0), np.where(has, I(minf), 0))

    _, mean, std, mx, mn = iat_block(np.maximum(n - 1, 0), fl.F_IAT_K, fl.F_IAT_S1, fl.G_IAT_S2,
                                     fl.F_IAT_MIN, fl.F_IAT_MAX)
    c["Flow IAT Mean"], c["Flow IAT Std"], c["Flow IAT Max"], c["Flow IAT Min"] = mean, std, mx, mn
    for side, base, cnt in (("Fwd", F, nf), ("Bwd", B, nb)):
        tot, mean, std, mx, mn = iat_block(np.maximum(cnt - 1, 0), base + fl.D_IAT_K, base + fl.D_IAT_S1,
                                           base + fl.DG_IAT_S2, base + fl.D_IAT_MIN, base + fl.D_IAT_MAX)
        c[f"{side} IAT Total"], c[f"{side} IAT Mean"], c[f"{side} IAT Std"] = tot, mean, std
        c[f"{side} IAT Max"], c[f"{side} IAT Min"] = mx, mn

    for flag, off in (("PSH", fl.D_PSH), ("URG", fl.D_URG), ("RST", fl.D_RST)):
        c[f"Fwd {flag} Flags"] = I(F + off)
        c[f"Bwd {flag} Flags"] = I(B + off)
    c["Fwd Header Length"] = I(F + fl.D_HDR)
    c["Bwd Header Length"] = I(B + fl.D_HDR)
    c["Fwd Packets/s"] = _div(nf, seconds)
    c["Bwd Packets/s"] = _div(nb, seconds)

    fmin, bmin = I(F + fl.D_MIN), I(B + fl.D_MIN)
    min_all = np.where(nf > 0, np.where(nb > 0, np.minimum(fmin, bmin), fmin), bmin)
    max_all = np.maximum(np.where(nf > 0, I(F + fl.D_MAX), 0), np.where(nb > 0, I(B + fl.D_MAX), 0))
    mean_all = _div(bf + bb, n)
    delta = mean_f - mean_b
    m2_all = m2_f + m2_b + delta * delta * _div(nf.astype(np.float64) * nb, n)
    std_all, var_all = _sample_std(n, m2_all)
    c["Packet Length Min"] = np.where(n > 0, min_all, 0)
    c["Packet Length Max"] = max_all
    c["Packet Length Mean"] = mean_all
    c["Packet Length Std"] = std_all
    c["Packet Length Variance"] = var_all
    for name, f in (("FIN", fl.F_C_FIN), ("SYN", fl.F_C_SYN), ("RST", fl.F_C_RST), ("PSH", fl.F_C_PSH),
                    ("ACK", fl.F_C_ACK), ("URG", fl.F_C_URG), ("CWR", fl.F_C_CWR), ("ECE", fl.F_C_ECE)):
        c[f"{name} Flag Count"] = I(f)
    c["Down/Up Ratio"] = _div(nb, nf)
    c["Average Packet Size"] = mean_all
    c["Fwd Segment Size Avg"] = mean_f
    c["Bwd Segment Size Avg"] = mean_b

    for side, base in (("Fwd", F), ("Bwd", B)):
        states, pkts = I(base + fl.D_BULK_STATES), I(base + fl.D_BULK_PKTS)
        size, dur = I(base + fl.D_BULK_SIZE), I(base + fl.D_BULK_DUR)
        c[f"{side} Bytes/Bulk Avg"] = np.floor(_div(size, states)).astype(np.int64)
        c[f"{side} Packet/Bulk Avg"] = np.floor(_div(pkts, states)).astype(np.int64)
        c[f"{side} Bulk Rate Avg"] = np.floor(_div(size, dur / 1e6)).astype(np.int64)

    safe_n = np.maximum(n, 1)
    c["Subflow Fwd Packets"] = nf // safe_n
    c["Subflow Fwd Bytes"] = bf // safe_n
    c["Subflow Bwd Packets"] = nb // safe_n
    c["Subflow Bwd Bytes"] = bb // safe_n
    c["FWD Init Win Bytes"] = I(F + fl.D_WIN)
    c["Bwd Init Win Bytes"] = I(B + fl.D_WIN)
    c["Fwd Act Data Pkts"] = I(F + fl.D_ACT)
    c["Fwd Seg Size Min"] = np.where(nf > 0, I(F + fl.D_SEGMIN), 0)

    for side, cnt_f, sum_f, s2_f, min_f, max_f in (
            ("Active", fl.F_ACT_N, fl.F_ACT_SUM, fl.G_ACT_S2, fl.F_ACT_MIN, fl.F_ACT_MAX),
            ("Idle", fl.F_IDLE_N, fl.F_IDLE_SUM, fl.G_IDLE_S2, fl.F_IDLE_MIN, fl.F_IDLE_MAX)):
        cnt = I(cnt_f)
        total = I(sum_f)
        m2 = np.maximum(TF[s2_f] - _div(total.astype(np.float64) ** 2, cnt), 0.0)
        c[f"{side} Mean"] = _div(total, cnt)
        c[f"{side} Std"] = _sample_std(cnt, m2)[0]
        c[f"{side} Max"] = np.where(cnt > 0, I(max_f), 0)
        c[f"{side} Min"] = np.where(cnt > 0, I(min_f), 0)

    c["ICMP Code"] = I(fl.F_ICMP_CODE)
    c["ICMP Type"] = I(fl.F_ICMP_TYPE)
    c["Total TCP Flow Time"] = np.where(proto == fl.PROTO_TCP, last_us - I(fl.F_CHAIN_NS) // 1000, 0)

    c["flow_id"] = I(fl.F_FLOW_ID).copy()
    c["file_index"] = I(fl.F_FILE).astype(np.int32)
    c["first_ts_ns"] = first_ns.copy()
    c["last_ts_ns"] = last_ns.copy()
    c["end_reason"] = pd.Categorical.from_codes(I(fl.F_END).astype(np.int8), categories=list(fl.END_REASONS))
    c["ip_version"] = I(fl.F_IPVER).astype(np.int8)
    return c
