"""Put ground truth onto our own flow table: nDPI application labels, and any labelled flow table.

Both joins match on the bidirectional 5-tuple: (protocol, {endpoint A, endpoint B}) with the two
endpoints in either orientation, because who is "source" differs between tools. IP addresses are
compared in canonical text form (``ipaddress``), so ``2a00:0::1`` and ``2a00::1`` match and
IPv4-mapped IPv6 addresses match their IPv4 form.

Our flow table (from ``packetclip ingest``) has the CICFlowMeter columns ``Src IP``, ``Src Port``,
``Dst IP``, ``Dst Port``, ``Protocol``, ``Timestamp``, ``Flow Duration`` (µs), ``Total Fwd Packet``,
``Total Bwd packets`` plus ``flow_id`` and ``capture``/``file_index``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError
from packetclip.traffic.datasets.cic import parse_timestamp_column
from packetclip.traffic.labels import mission_of, normalise_label

_FLOW_KEY_COLUMNS = ("Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol")
_NDPI_OUT = {
    "app_master": "ndpi_app_master",
    "app": "ndpi_app",
    "category": "ndpi_category",
    "encrypted": "ndpi_encrypted",
    "hostname": "ndpi_hostname",
    "risks": "ndpi_risks",
    "flow_index": "ndpi_flow_index",
    "undetected": "ndpi_undetected",
}


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{what} lacks column(s): {', '.join(missing)}")


def _canonical_ips(values: pd.Series) -> pd.Series:
    """Canonical text of each address (parsed once per distinct value); unparseable ones lower-cased."""
    text = values.astype("string").str.strip().str.strip("[]")
    uniques = text.dropna().unique()
    mapping = {}
    for raw in uniques:
        try:
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            mapping[raw] = address.compressed
        except ValueError:
            mapping[raw] = raw.lower()
    return text.map(mapping).fillna("").astype(object)


def _ports(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").fillna(0).astype("int64")


def _unordered_key(src_ip, src_port, dst_ip, dst_port):
    """(lo endpoint, hi endpoint, swapped) where swapped means src is the 'hi' side."""
    a = src_ip + "|" + src_port.astype(str)
    b = dst_ip + "|" + dst_port.astype(str)
    swapped = (a > b).to_numpy()
    lo = np.where(swapped, b, a)
    hi = np.where(swapped, a, b)
    return lo, hi, swapped


def _capture_names(values: pd.Series) -> pd.Series:
    names = values.astype("string").fillna("")
    uniques = names.unique()
    mapping = {u: Path(str(u)).name for u in uniques}
    return names.map(mapping).astype(object)


def _vlan_column(flows: pd.DataFrame) -> str | None:
    for name in ("vlan", "VLAN", "Vlan", "vlan_id"):
        if name in flows.columns:
            return name
    return None


def join_ndpi(flows: pd.DataFrame, ndpi: pd.DataFrame, *, use_vlan: bool | None = None) -> pd.DataFrame:
    """Add nDPI's application, category, encryption flag and packet counts to our flows.

    Matching: same capture file (``capture`` in both, compared by file name; ignored when ``flows``
    has no ``capture`` and ``ndpi`` covers one capture), same IP protocol, same two endpoints in
    either orientation, and same VLAN when ``use_vlan`` (default: when ``flows`` has a vlan column).

    nDPI keeps one flow per 5-tuple for the whole capture, while our flow meter ends flows on FIN/RST
    and timeouts; so one nDPI flow can cover several of our flows ("segments"). Every segment gets
    the nDPI labels, ``ndpi_segments`` says how many segments share the nDPI flow, and
    ``ndpi_fwd_packets``/``ndpi_bwd_packets`` are nDPI's whole-conversation counts aligned to OUR
    forward/backward direction (c2s is forward when nDPI's first endpoint is our Src). Sum the segments
    to compare counts (:func:`ndpi_count_agreement`). When nDPI itself has several flows with one key
    (the same 5-tuple on different VLANs, without a VLAN column to tell them apart) our segments are
    paired with them in order of time and ``ndpi_ambiguous`` is set.

    Added columns: ``ndpi_matched``, ``ndpi_app_master``, ``ndpi_app``, ``ndpi_category``,
    ``ndpi_encrypted``, ``ndpi_hostname``, ``ndpi_risks``, ``ndpi_fwd_packets``, ``ndpi_bwd_packets``,
    ``ndpi_fwd_bytes``, ``ndpi_bwd_bytes``, ``ndpi_same_direction`` (nDPI's first endpoint is our Src),
    ``ndpi_segments``, ``ndpi_row`` (row of ``ndpi``),
    ``ndpi_flow_index``, ``ndpi_undetected``, ``ndpi_ambiguous``. Counts of matched/unmatched flows on
    both sides are in ``attrs["packetclip_report"]``.
    """
    _require(flows, _FLOW_KEY_COLUMNS, "flow table")
    _require(ndpi, ("capture", "ip_proto", "src_ip", "src_port", "dst_ip", "dst_port"), "nDPI table")

    vlan_col = _vlan_column(flows)
    if use_vlan is None:
        use_vlan = vlan_col is not None
    if use_vlan and vlan_col is None:
        raise DatasetFormatError("use_vlan=True but the flow table has no vlan column")

    ours = pd.DataFrame(index=flows.index)
    ours["_row"] = np.arange(len(flows))
    ours["_proto"] = pd.to_numeric(flows["Protocol"], errors="coerce").fillna(-1).astype("int64").to_numpy()
    src_ip, dst_ip = _canonical_ips(flows["Src IP"]), _canonical_ips(flows["Dst IP"])
    src_port, dst_port = _ports(flows["Src Port"]), _ports(flows["Dst Port"])
    ours["_lo"], ours["_hi"], ours["_swapped"] = _unordered_key(src_ip, src_port, dst_ip, dst_port)

    theirs = pd.DataFrame(index=ndpi.index)
    theirs["ndpi_row"] = np.arange(len(ndpi))
    theirs["_proto"] = pd.to_numeric(ndpi["ip_proto"], errors="coerce").fillna(-2).astype("int64").to_numpy()
    n_src_ip, n_dst_ip = _canonical_ips(ndpi["src_ip"]), _canonical_ips(ndpi["dst_ip"])
    n_src_port, n_dst_port = _ports(ndpi["src_port"]), _ports(ndpi["dst_port"])
    theirs["_lo"], theirs["_hi"], theirs["_swapped"] = _unordered_key(n_src_ip, n_src_port, n_dst_ip, n_dst_port)

    keys = ["_proto", "_lo", "_hi"]
    captures = _capture_names(ndpi["capture"])
    if "capture" in flows.columns:
        ours["_capture"] = _capture_names(flows["capture"]).to_numpy()
        theirs["_capture"] = captures.to_numpy()
        keys.insert(0, "_capture")
    elif captures.nunique() > 1:
        raise DatasetFormatError(
            "the flow table has no 'capture' column, so nDPI results of several captures cannot be matched"
        )
    if use_vlan:
        ours["_vlan"] = pd.to_numeric(flows[vlan_col], errors="coerce").fillna(0).astype("int64").to_numpy()
        vlan = ndpi["vlan"] if "vlan" in ndpi.columns else pd.Series(0, index=ndpi.index)
        theirs["_vlan"] = pd.to_numeric(vlan, errors="coerce").fillna(0).astype("int64").to_numpy()
        keys.append("_vlan")

    # Order our segments in time within each key, nDPI's flows in listing order.
    if "Timestamp" in flows.columns:
        start = parse_timestamp_column(flows["Timestamp"])
        ours["_t"] = start.to_numpy().astype("datetime64[ns]").astype("int64")
    else:
        ours["_t"] = ours["_row"]
    order = ["undetected", "flow_index"] if {"undetected", "flow_index"} <= set(ndpi.columns) else []
    theirs["_order"] = np.arange(len(ndpi))
    if order:
        theirs["_order"] = (ndpi["undetected"].fillna(False).astype(int) * 10**12
                            + pd.to_numeric(ndpi["flow_index"], errors="coerce").fillna(0)).to_numpy()
    ours = ours.sort_values(["_t", "_row"], kind="stable")
    ours["_rank"] = ours.groupby(keys, sort=False).cumcount()
    theirs = theirs.sort_values("_order", kind="stable")
    theirs["_rank"] = theirs.groupby(keys, sort=False).cumcount()
    theirs["_n_ndpi"] = theirs.groupby(keys, sort=False)["_rank"].transform("size")

    counts = theirs[keys + ["_n_ndpi"]].drop_duplicates(keys)
    ours = ours.merge(counts, on=keys, how="left")
    ours["_n_ndpi"] = ours["_n_ndpi"].fillna(0).astype("int64")
    ours["_target"] = np.minimum(ours["_rank"], np.maximum(ours["_n_ndpi"] - 1, 0))
    merged = ours.merge(
        theirs.drop(columns=["_order", "_n_ndpi"]).rename(columns={"_rank": "_target", "_swapped": "_n_swapped"}),
        on=keys + ["_target"],
        how="left",
    ).sort_values("_row")
    matched = merged["ndpi_row"].notna().to_numpy()
    ndpi_row = merged["ndpi_row"].to_numpy()

    out = flows.copy()
    out["ndpi_matched"] = matched
    positions = np.where(matched, ndpi_row, -1).astype("int64")
    picked = ndpi.reset_index(drop=True).reindex(positions).reset_index(drop=True)
    for src, dst in _NDPI_OUT.items():
        if src in picked.columns:
            values = picked[src].astype(object).to_numpy(copy=True)
            values[~matched] = None
            out[dst] = values
    # nDPI's first endpoint is ours Src when the orientations agree.
    same = (merged["_swapped"].to_numpy() == merged["_n_swapped"].fillna(False).to_numpy().astype(bool))
    same_exact = (src_ip.to_numpy() == dst_ip.to_numpy()) & (src_port.to_numpy() == dst_port.to_numpy())
    same = same | same_exact
    for ours_name, c2s, s2c in (("packets", "c2s_packets", "s2c_packets"), ("bytes", "c2s_bytes", "s2c_bytes")):
        if c2s not in picked.columns:
            continue
        a = pd.to_numeric(picked[c2s], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        b = pd.to_numeric(picked[s2c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        fwd = np.where(same, a, b)
        bwd = np.where(same, b, a)
        out[f"ndpi_fwd_{ours_name}"] = pd.array(np.where(matched, fwd, np.nan), dtype="Float64").astype("Int64")
        out[f"ndpi_bwd_{ours_name}"] = pd.array(np.where(matched, bwd, np.nan), dtype="Float64").astype("Int64")
    out["ndpi_same_direction"] = np.where(matched, same, False)
    out["ndpi_row"] = pd.array(np.where(matched, ndpi_row, np.nan), dtype="Float64").astype("Int64")
    segments = out.loc[matched, "ndpi_row"].value_counts()
    out["ndpi_segments"] = out["ndpi_row"].map(segments).fillna(0).astype("int64")
    out["ndpi_ambiguous"] = (merged["_n_ndpi"].to_numpy() > 1) & matched

    matched_ndpi = int(out.loc[matched, "ndpi_row"].nunique())
    out.attrs = dict(flows.attrs)
    out.attrs["packetclip_report"] = {
        "flows": len(flows),
        "flows_matched": int(matched.sum()),
        "flows_unmatched": int((~matched).sum()),
        "ndpi_flows": len(ndpi),
        "ndpi_flows_matched": matched_ndpi,
        "ndpi_flows_unmatched": len(ndpi) - matched_ndpi,
        "flows_ambiguous": int(out["ndpi_ambiguous"].sum()),
        "used_vlan": bool(use_vlan),
    }
    return out


def ndpi_count_agreement(joined: pd.DataFrame, *, protocols=(6, 17)) -> dict:
    """How often our per-direction packet counts equal nDPI's, per matched nDPI flow.

    Each of our segments is first turned to nDPI's orientation (``ndpi_same_direction``), then the
    segments of one nDPI flow are summed (nDPI does not split conversations) and compared with nDPI's
    c2s/s2c counts. Returns the number of matched nDPI flows of the given IP protocols, how many agree
    in both directions, that fraction, and how many nDPI flows we split into several segments.
    """
    _require(joined, ("ndpi_row", "ndpi_same_direction", "ndpi_fwd_packets", "ndpi_bwd_packets",
                      "Total Fwd Packet", "Total Bwd packets", "Protocol"), "joined flow table")
    rows = joined[joined["ndpi_row"].notna()]
    rows = rows[pd.to_numeric(rows["Protocol"], errors="coerce").isin(list(protocols))]
    if rows.empty:
        return {"ndpi_flows": 0, "equal_both_directions": 0, "fraction_equal": float("nan"),
                "split_into_segments": 0}
    same = rows["ndpi_same_direction"].to_numpy(dtype=bool)
    ours_fwd = pd.to_numeric(rows["Total Fwd Packet"], errors="coerce").fillna(0).to_numpy()
    ours_bwd = pd.to_numeric(rows["Total Bwd packets"], errors="coerce").fillna(0).to_numpy()
    nd_fwd = rows["ndpi_fwd_packets"].astype("float64").to_numpy()
    nd_bwd = rows["ndpi_bwd_packets"].astype("float64").to_numpy()
    table = pd.DataFrame({
        "row": rows["ndpi_row"].to_numpy(),
        "c2s": np.where(same, ours_fwd, ours_bwd),
        "s2c": np.where(same, ours_bwd, ours_fwd),
        "n_c2s": np.where(same, nd_fwd, nd_bwd),
        "n_s2c": np.where(same, nd_bwd, nd_fwd),
    })
    agg = table.groupby("row").agg(c2s=("c2s", "sum"), s2c=("s2c", "sum"), n_c2s=("n_c2s", "first"),
                                   n_s2c=("n_s2c", "first"), segments=("c2s", "size"))
    equal = (agg["c2s"] == agg["n_c2s"]) & (agg["s2c"] == agg["n_s2c"])
    return {
        "ndpi_flows": int(len(agg)),
        "equal_both_directions": int(equal.sum()),
        "fraction_equal": float(equal.mean()),
        "split_into_segments": int((agg["segments"] > 1).sum()),
    }


def estimate_time_offset(flows: pd.DataFrame, labelled: pd.DataFrame, *, step_s: float = 900.0) -> float:
    """The clock offset (seconds, labelled minus ours) that most 5-tuple matches agree on.

    Labelled datasets often write local time (CIC-IDS2017: UTC-3) while captures are in UTC. Each
    5-tuple seen in both tables votes with its first time difference, rounded to ``step_s``; the most
    common vote wins (0.0 when nothing matches).
    """
    a = _time_keyed(flows, "flow table").drop_duplicates(["_proto", "_lo", "_hi"])
    b = _time_keyed(labelled, "labelled table").drop_duplicates(["_proto", "_lo", "_hi"])
    both = a.merge(b, on=["_proto", "_lo", "_hi"], suffixes=("_a", "_b"))
    both = both[(both["_t_a"] != _NAT) & (both["_t_b"] != _NAT)]
    if both.empty:
        return 0.0
    diff = (both["_t_b"] - both["_t_a"]).to_numpy(dtype="float64") / 1e9
    votes = np.round(diff / step_s) * step_s
    values, counts = np.unique(votes, return_counts=True)
    return float(values[np.argmax(counts)])


_NAT = np.iinfo("int64").min


def _time_keyed(df: pd.DataFrame, what: str) -> pd.DataFrame:
    _require(df, _FLOW_KEY_COLUMNS + ("Timestamp",), what)
    keyed = pd.DataFrame(index=df.index)
    keyed["_row"] = np.arange(len(df))
    keyed["_proto"] = pd.to_numeric(df["Protocol"], errors="coerce").fillna(-1).astype("int64").to_numpy()
    keyed["_lo"], keyed["_hi"], _ = _unordered_key(_canonical_ips(df["Src IP"]), _ports(df["Src Port"]),
                                                    _canonical_ips(df["Dst IP"]), _ports(df["Dst Port"]))
    start = parse_timestamp_column(df["Timestamp"])
    keyed["_t"] = start.to_numpy().astype("datetime64[ns]").astype("int64")
    if "Flow Duration" in df.columns:
        duration_ns = pd.to_numeric(df["Flow Duration"], errors="coerce").fillna(0).clip(lower=0).to_numpy() * 1e3
    else:
        duration_ns = np.zeros(len(df))
    keyed["_end"] = np.where(keyed["_t"] == _NAT, _NAT, keyed["_t"] + duration_ns.astype("int64"))
    return keyed


def join_labels(
    flows: pd.DataFrame,
    labelled: pd.DataFrame,
    *,
    time_tolerance_s: float = 2.0,
    time_offset_s: float | str = 0.0,
    label_column: str | None = None,
) -> pd.DataFrame:
    """Give our flows the labels of a labelled flow table made from the same capture.

    Both tables need ``Src IP``, ``Src Port``, ``Dst IP``, ``Dst Port``, ``Protocol`` and
    ``Timestamp`` (flow start; ``Flow Duration`` in µs is used when present). The labelled table's label
    is ``label`` (then ``Label``/``label_raw``) unless ``label_column`` says otherwise. Its timestamps are
    shifted by ``-time_offset_s`` first (``"auto"``: :func:`estimate_time_offset`).

    A flow of ours takes the label of a labelled flow with the same 5-tuple (either orientation) found by,
    in turn: (1) the nearest start time within ``time_tolerance_s``; (2) the latest labelled flow that
    started before ours and had not ended (± tolerance) when ours started; (3) the first labelled flow that
    started after ours, while ours was still running (± tolerance). Each of our flows gets at most one
    label; one labelled flow may label several of ours (the tools cut flows differently).

    Adds ``label_raw``, ``label``, ``mission`` (``None`` where unmatched), ``label_match``
    (``"start"``, ``"inside"``, ``"overlap"`` or ``""``) and ``label_time_diff_s``. The report in
    ``attrs["packetclip_report"]`` counts matched/unmatched flows on both sides and the offset used.
    """
    label_col = _pick_label_column(labelled, label_column)
    offset = estimate_time_offset(flows, labelled) if time_offset_s == "auto" else float(time_offset_s)
    tol = int(round(float(time_tolerance_s) * 1e9))
    shift = int(round(offset * 1e9))

    ours = _time_keyed(flows, "flow table")
    theirs = _time_keyed(labelled, "labelled table")
    labelled_start = theirs["_t"].to_numpy(copy=True)
    valid = theirs["_t"] != _NAT
    theirs.loc[valid, "_t"] -= shift
    theirs.loc[valid, "_end"] -= shift
    theirs = theirs[valid].rename(columns={"_row": "_lrow", "_end": "_lend"})
    theirs["_lt"] = theirs["_t"]
    by = ["_proto", "_lo", "_hi"]

    result_row = np.full(len(ours), -1, dtype="int64")
    how = np.full(len(ours), "", dtype=object)
    pending = ours[ours["_t"] != _NAT]

    def attempt(left: pd.DataFrame, direction: str, tolerance: int | None, accept, name: str) -> pd.DataFrame:
        if left.empty or theirs.empty:
            return left
        got = pd.merge_asof(
            left.sort_values("_t"), theirs.sort_values("_t"), on="_t", by=by,
            direction=direction, tolerance=None if tolerance is None else pd.Timedelta(tolerance, "ns").value,
        )
        ok = got["_lrow"].notna().to_numpy()
        if accept is not None:
            ok = ok & accept(got)
        rows = got.loc[ok, "_row"].to_numpy(dtype="int64")
        result_row[rows] = got.loc[ok, "_lrow"].to_numpy(dtype="int64")
        how[rows] = name
        return left[~left["_row"].isin(rows)]

    pending = attempt(pending, "nearest", tol, None, "start")
    pending = attempt(pending, "backward", None, lambda g: (g["_t"] <= g["_lend"] + tol).to_numpy(), "inside")
    pending = attempt(pending, "forward", None, lambda g: (g["_lt"] <= g["_end"] + tol).to_numpy(), "overlap")

    matched = result_row >= 0
    raw = labelled[label_col].astype(object).to_numpy()
    out = flows.copy()
    picked = np.where(matched, raw[np.where(matched, result_row, 0)] if len(raw) else None, None)
    uniques = {value for value in picked[matched]}
    canonical = {value: normalise_label(str(value)) for value in uniques}
    missions = {value: mission_of(str(value)) for value in uniques}
    out["label_raw"] = picked
    out["label"] = np.array([canonical[v] if m else None for v, m in zip(picked, matched)], dtype=object)
    out["mission"] = np.array([missions[v] if m else None for v, m in zip(picked, matched)], dtype=object)
    out["label_match"] = how
    t_ours = ours["_t"].to_numpy()
    t_theirs = np.full(len(ours), _NAT, dtype="int64")
    t_theirs[matched] = labelled_start[result_row[matched]] - shift
    out["label_time_diff_s"] = np.where(matched, (t_theirs - t_ours) / 1e9, np.nan)
    out.attrs = dict(flows.attrs)
    used = np.unique(result_row[matched])
    out.attrs["packetclip_report"] = {
        "flows": len(flows),
        "flows_matched": int(matched.sum()),
        "flows_unmatched": int((~matched).sum()),
        "matched_by": {name: int((how == name).sum()) for name in ("start", "inside", "overlap")},
        "labelled_flows": len(labelled),
        "labelled_flows_used": int(len(used)),
        "labelled_flows_unused": int(len(labelled) - len(used)),
        "time_offset_s": offset,
        "time_tolerance_s": float(time_tolerance_s),
    }
    return out


def _pick_label_column(labelled: pd.DataFrame, label_column: str | None) -> str:
    candidates = (label_column,) if label_column else ("label", "Label", "label_raw")
    for name in candidates:
        if name in labelled.columns:
            return name
    raise DatasetFormatError(f"labelled table has no label column (looked for {', '.join(candidates)})")


NDPI_LABEL_LEVELS: dict[str, str] = {
    "master": "ndpi_app_master",    # the protocol nDPI recognised: HTTP, TLS, DNS, Kerberos ...
    "app": "ndpi_app",              # the application when nDPI names one (Outlook, 1kxun), else the protocol
    "category": "ndpi_category",    # nDPI's category: Web, Streaming, Network ...
}
_NDPI_FLOW_COLUMNS = ("flow_id", "capture", *_FLOW_KEY_COLUMNS, "Timestamp", "vlan")


def label_ndpi(workspace, results, *, level: str = "master", progress: bool = True) -> tuple[Path, pd.DataFrame]:
    """Label a workspace's flows with nDPI's verdict and write them as the workspace's labels.

    ``results``: a folder of ndpiReader outputs named ``<capture>.out`` (as in ``shared/data/ndpi/result``), or
    a list of such files; only those of the workspace's own captures are read. Flows are matched with
    :func:`join_ndpi`. ``level`` picks the label: ``master`` (the protocol: HTTP, TLS, DNS; default, since a
    few dozen classes train and describe better than hundreds of applications), ``app`` or ``category``.
    nDPI labels have no mission. Flows nDPI does not list get no label row (an unlabelled flow, not a class).

    Returns the labels path and table (flow_id, label, mission, the nDPI columns); the join's counts are in
    ``table.attrs["packetclip_report"]``.
    """
    from packetclip.traffic.datasets.ndpi import read_ndpi_results
    from packetclip.traffic.workspace import Workspace

    if level not in NDPI_LABEL_LEVELS:
        raise DatasetFormatError(f"--level must be one of {', '.join(NDPI_LABEL_LEVELS)}, not {level!r}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    flows = ws.flows(list(_NDPI_FLOW_COLUMNS))
    _require(flows, ("flow_id", "capture", *_FLOW_KEY_COLUMNS), "the workspace's flow table")
    captures = sorted(set(_capture_names(flows["capture"])))
    files = _ndpi_files_for(results, captures)
    ndpi = read_ndpi_results(files, progress=progress)
    joined = join_ndpi(flows, ndpi)
    column = NDPI_LABEL_LEVELS[level]
    matched = joined[joined["ndpi_matched"].to_numpy(dtype=bool)]
    label = matched[column].astype(object)
    if level == "app":
        label = label.where(label.notna() & (label != ""), matched["ndpi_app_master"])
    keep = label.notna() & (label.astype(str).str.strip() != "")
    extra = [c for c in ("ndpi_app_master", "ndpi_app", "ndpi_category", "ndpi_encrypted", "ndpi_hostname",
                         "ndpi_risks", "ndpi_undetected") if c in matched.columns]
    table = pd.DataFrame({"flow_id": matched["flow_id"].to_numpy(np.int64), "label": label.astype(str).to_numpy(),
                          "mission": None})
    for c in extra:
        table[c] = matched[c].to_numpy()
    table = table[keep.to_numpy()].reset_index(drop=True)
    for c in table.columns:
        if c in ("ndpi_encrypted", "ndpi_undetected"):
            table[c] = pd.array(table[c].tolist(), dtype="boolean")
        elif c != "flow_id":
            table[c] = table[c].astype("string")
    path = ws.write_labels(table)
    table.attrs["packetclip_report"] = {**joined.attrs.get("packetclip_report", {}), "result_files": len(files),
                                        "labelled_flows": int(len(table)), "level": level}
    return path, table


def _ndpi_files_for(results, captures: list[str]) -> list[Path]:
    """The ndpiReader outputs of ``captures``: ``<capture>.out`` in each given folder, and the given files that
    are theirs (all given files when none is named after a capture)."""
    items = [results] if isinstance(results, (str, Path)) else list(results)
    wanted = {f"{name}.out" for name in captures}
    found: list[Path] = []
    given: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found.extend(item / name for name in sorted(wanted) if (item / name).is_file())
        elif item.is_file():
            given.append(item)
        else:
            raise DatasetFormatError("no such nDPI result file or folder", path=str(item))
    found.extend(p for p in given if p.name in wanted)
    if not found and given:
        found = given
    if not found:
        shown = ", ".join(sorted(wanted)[:3]) + (" ..." if len(wanted) > 3 else "")
        where = str(items[0]) if len(items) == 1 else None
        raise DatasetFormatError(f"no ndpiReader result for any capture of this workspace (looked for {shown})",
                                 path=where)
    return list(dict.fromkeys(found))
