"""Dataset adapters: CICFlowMeter CSVs, nDPI ground truth, and joins onto our flow table."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packetclip.cli import main
from packetclip.errors import DatasetFormatError, PacketClipError
from packetclip.traffic.datasets import (
    CANONICAL_COLUMNS,
    join_labels,
    join_ndpi,
    ndpi_count_agreement,
    read_flow_csv,
    read_ndpi_result,
    read_ndpi_results,
)
from packetclip.traffic.datasets.cic import import_flow_csv
from packetclip.traffic.datasets.join import estimate_time_offset
from packetclip.traffic.labels import mission_of, normalise_label

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CIC_DIR = SHARED / "cicids2017"
NDPI_DIR = SHARED / "ndpi" / "result"

# --------------------------------------------------------------------------------------------------
# CICFlowMeter CSVs
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cic() -> pd.DataFrame:
    if not CIC_DIR.is_dir() or not list(CIC_DIR.glob("*.csv")):
        pytest.skip("../shared/data/cicids2017 not present")
    return read_flow_csv(CIC_DIR, progress=False)


def test_cic_folder_reads_clean(cic):
    files = sorted(CIC_DIR.glob("*.csv"))
    expected_rows = 0
    raw_labels = set()
    for path in files:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader)]
            at = header.index("Label")
            for row in reader:
                expected_rows += 1
                raw_labels.add(row[at])
    assert len(cic) == expected_rows
    assert set(cic["label_raw"]) == raw_labels
    assert set(cic["source_file"]) == {p.name for p in files}

    canonical = set(CANONICAL_COLUMNS) - {"Label"}
    assert canonical <= set(cic.columns)
    assert set(cic.columns) - canonical == {"label_raw", "label", "mission", "source_file"}
    numeric = [c for c in CANONICAL_COLUMNS if c not in {"Flow ID", "Src IP", "Dst IP", "Timestamp", "Label"}]
    values = cic[numeric].to_numpy(dtype=np.float64)
    assert np.isfinite(values).all()
    assert pd.api.types.is_datetime64_any_dtype(cic["Timestamp"])
    assert cic["Timestamp"].notna().all()
    assert cic["Timestamp"].min() >= pd.Timestamp("2017-07-03")
    assert cic["Timestamp"].max() < pd.Timestamp("2017-07-08")

    for raw, label, mission in cic[["label_raw", "label", "mission"]].drop_duplicates().itertuples(index=False):
        assert label == normalise_label(raw)
        assert mission == mission_of(raw) or (mission is None and mission_of(raw) is None)
    by_raw = cic.groupby("label_raw")[["label", "mission"]].first()
    assert tuple(by_raw.loc["DoS Slowloris"]) == ("Slowloris", "DoS")
    assert tuple(by_raw.loc["Portscan"]) == ("Port Scan", "Reconnaissance")
    assert tuple(by_raw.loc["SSH-Patator"]) == ("Dictionary Attack", "Brute Force")
    assert tuple(by_raw.loc["BENIGN"]) == ("Benign", "Benign")
    assert by_raw.loc["Botnet", "mission"] is None or pd.isna(by_raw.loc["Botnet", "mission"])
    report = cic.attrs["packetclip_report"]
    assert report["rows"] == len(cic) and len(report["files"]) == len(files)


def test_single_file_and_chunking_agree(tmp_path):
    header = ("Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Packet,"
              "Flow Bytes/s,Label\n")
    rows = []
    for i in range(25):
        rate = "Infinity" if i % 7 == 0 else f"{i * 1.5}"
        rows.append(f"f{i},10.0.0.{i},{1000 + i},10.0.1.1,80,6,2023-01-0{1 + i % 5} 10:00:{i:02d}.5,{i},{i + 1},"
                    f"{rate},{'Benign' if i % 2 else 'SYN Flood'}\n")
    path = tmp_path / "aci.csv"
    path.write_text(header + "".join(rows))
    whole = read_flow_csv(path, progress=False)
    chunked = read_flow_csv(path, progress=False, chunksize=4)
    pd.testing.assert_frame_equal(whole.astype(str), chunked.astype(str))
    assert whole["Flow Bytes/s"].tolist()[:2] == [0.0, 1.5]
    assert whole.attrs["packetclip_report"]["nonfinite_by_column"] == {"Flow Bytes/s": 4}
    assert whole["Timestamp"].iloc[3] == pd.Timestamp("2023-01-04 10:00:03.5")
    assert set(whole["mission"]) == {"Benign", "DoS"}


def test_original_cic_ids2017_header_variants(tmp_path):
    # As published: leading spaces, long names, a duplicated Fwd Header Length, a raw 0x96 byte (cp1252 en dash) in labels.
    header = (" Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
              " Flow Duration, Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets,"
              " Fwd Header Length, Min Packet Length, CWE Flag Count, Avg Fwd Segment Size,"
              " Fwd Avg Bytes/Bulk,Init_Win_bytes_forward, act_data_pkt_fwd, min_seg_size_forward,"
              "Flow Bytes/s, Flow Packets/s, Fwd Header Length, Label\n")
    row1 = ("a,192.168.10.5,5000,8.8.8.8,53,17,3/7/2017 8:55,0,1,0,40,20,40,0,40.0,0,-1,1,20,"
            "Infinity,Infinity,20,BENIGN\n")
    row2 = ("b,192.168.10.5,5001,8.8.8.8,80,6,5/7/2017 1:05:06 PM,10,2,1,80,40,40,1,40.0,0,8192,1,20,"
            "NaN,,40,Web Attack \x96 Brute Force\n")
    path = tmp_path / "Thursday-WorkingHours.pcap_ISCX.csv"
    path.write_bytes(header.encode("ascii") + row1.encode("ascii") + row2.encode("latin-1"))
    df = read_flow_csv(path, progress=False)
    expected = {"Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp", "Flow Duration",
                "Total Fwd Packet", "Total Bwd packets", "Total Length of Fwd Packet", "Fwd Header Length",
                "Packet Length Min", "CWR Flag Count", "Fwd Segment Size Avg", "Fwd Bytes/Bulk Avg",
                "FWD Init Win Bytes", "Fwd Act Data Pkts", "Fwd Seg Size Min", "Flow Bytes/s", "Flow Packets/s",
                "label_raw", "label", "mission", "source_file"}
    assert set(df.columns) == expected
    assert df["FWD Init Win Bytes"].tolist() == [-1, 8192]
    assert df["Total Bwd packets"].tolist() == [0, 1]
    assert df["Flow Bytes/s"].tolist() == [0.0, 0.0]
    assert df["Timestamp"].tolist() == [pd.Timestamp("2017-07-03 08:55"), pd.Timestamp("2017-07-05 13:05:06")]
    assert df["label"].tolist() == ["Benign", "Web Attack - Brute Force"]
    assert df["mission"].tolist() == ["Benign", "Brute Force"]
    report = df.attrs["packetclip_report"]
    assert report["nonfinite_filled"] == 4
    assert report["duplicate_columns_dropped"] == [f"{path.name}:Fwd Header Length"]
    assert report["renamed_columns"]["Init_Win_bytes_forward"] == "FWD Init Win Bytes"


def test_cse_cic_ids2018_and_python_cicflowmeter_variants(tmp_path):
    header = "Dst Port,Protocol,Timestamp,Flow Duration,Tot Fwd Pkts,Tot Bwd Pkts,Flow Byts/s,Init Fwd Win Byts,Label\n"
    body = ("80,6,14/02/2018 08:31:01,100,3,2,12.5,65535,FTP-BruteForce\n"
            + header +  # CSE-CIC-IDS2018 repeats its header inside the data
            "22,6,02/03/2018 10:00:00,5,1,1,inf,-1,SSH-Bruteforce\n")
    (tmp_path / "2018.csv").write_text(header + body)
    snake = "src_ip,dst_ip,src_port,dst_port,protocol,timestamp,tot_fwd_pkts,flow_byts_s,pkt_size_avg,label\n"
    snake += "10.0.0.1,10.0.0.2,4444,22,6,2023-05-01 12:00:00,3,1.0,60,Dictionary Attack\n"
    (tmp_path / "pycic.csv").write_text(snake)
    df = read_flow_csv(tmp_path, progress=False)
    first = df[df["source_file"] == "2018.csv"]
    assert first["Total Fwd Packet"].tolist() == [3, 1]
    assert first["Timestamp"].tolist() == [pd.Timestamp("2018-02-14 08:31:01"), pd.Timestamp("2018-03-02 10:00:00")]
    assert first["label"].tolist() == ["Dictionary Attack", "Dictionary Attack"]
    assert df.attrs["packetclip_report"]["repeated_header_rows_dropped"] == 1
    second = df[df["source_file"] == "pycic.csv"].iloc[0]
    assert (second["Src IP"], second["Dst Port"], second["Average Packet Size"]) == ("10.0.0.1", 22, 60)
    assert second["mission"] == "Brute Force"


def test_label_column_override_and_candidates(tmp_path):
    path = tmp_path / "unsw.csv"
    path.write_text("dur,proto,attack_cat\n1.0,tcp,Reconnaissance\n")
    assert read_flow_csv(path, progress=False)["label_raw"].tolist() == ["Reconnaissance"]
    other = tmp_path / "custom.csv"
    other.write_text("Flow Duration,Verdict\n5,BENIGN\n")
    assert read_flow_csv(other, label_column="Verdict", progress=False)["label"].tolist() == ["Benign"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"Flow Duration,Total Fwd Packet\n1,2\n", "no label column (looked for Label, label"),
        (bytes(range(256)) * 8, "binary data"),
        (b"", "empty file"),
        (b"just one column\n", "header has 1 column"),
        (b'Label,a\n"unterminated,1\n2,3\n', "cannot parse CSV"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError) as err:
        read_flow_csv(path, progress=False)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in err.value.one_line()


def test_missing_path_and_empty_dir(tmp_path):
    with pytest.raises(DatasetFormatError, match="no such file"):
        read_flow_csv(tmp_path / "nope.csv", progress=False)
    with pytest.raises(DatasetFormatError, match="no CSV files"):
        read_flow_csv(tmp_path, progress=False)


def test_cli_csv_without_label_column_exits_2(tmp_path, capsys):
    path = tmp_path / "flows_without_label.csv"
    path.write_text("Flow Duration,Total Fwd Packet\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["import-csv", str(path), "--out", str(tmp_path / "ws")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "flows_without_label.csv" in err and "no label column" in err
    assert "Traceback" not in err


_ACI_HEADER = "Src IP,Dst IP,Protocol,Flow Duration,Total Fwd Packet,Total Bwd packets,Label\n"


def test_cli_import_csv_writes_workspace(tmp_path):
    path = tmp_path / "aci.csv"
    path.write_text(_ACI_HEADER + "10.0.0.1,10.0.0.2,6,5,1,0,Port Scan\n10.0.0.3,10.0.0.2,17,7,1,1,Benign\n")
    main_exit = None
    try:
        main(["import-csv", str(path), "--out", str(tmp_path / "ws")])
    except SystemExit as exc:
        main_exit = exc.code
    assert main_exit in (None, 0)
    flows = pd.read_parquet(tmp_path / "ws" / "flows.parquet")
    assert flows["flow_id"].tolist() == [0, 1]
    assert flows["mission"].tolist() == ["Reconnaissance", "Benign"]


def test_import_csv_workspace_has_a_manifest_and_opens_like_any_other(tmp_path):
    from packetclip.traffic.workspace import Workspace

    first, second = tmp_path / "a.csv", tmp_path / "more"
    first.write_text(_ACI_HEADER + "10.0.0.1,10.0.0.2,6,5,1,0,Port Scan\n")
    second.mkdir()
    (second / "b.csv").write_text(_ACI_HEADER + "10.0.0.3,10.0.0.2,17,7,1,1,Benign\n10.0.0.4,10.0.0.2,17,7,1,1,Benign\n")
    _, df = import_flow_csv([first, second], tmp_path / "ws", progress=False)   # files and folders, as ingest
    ws = Workspace.open(tmp_path / "ws")
    assert ws.kind == "csv" and ws.manifest["totals"]["flows"] == len(df) == 3
    assert ws.check() == {"flows.parquet": 3}
    rows = dict(ws.summary_rows())
    assert rows["kind"] == "csv" and rows["flows"] == "3" and rows["flows by protocol"] == "UDP 2, TCP 1"
    assert ws.labelled_flows()["label"].tolist() == ["Port Scan", "Benign", "Benign"]
    with pytest.raises(PacketClipError, match="already holds a workspace"):
        import_flow_csv(first, tmp_path / "ws", progress=False)
    import_flow_csv(first, tmp_path / "ws", progress=False, overwrite=True)
    assert Workspace.open(tmp_path / "ws").check() == {"flows.parquet": 1}


@pytest.mark.parametrize("content, message", [
    (_ACI_HEADER, "no flow rows"),                                        # header only
    ("foo,bar,Label\n1,2,Benign\n", "no column(s) Flow Duration, Total Fwd Packet, Total Bwd packets, Protocol"),
])
def test_cli_import_csv_refuses_header_only_and_non_cicflowmeter(tmp_path, capsys, content, message):
    path = tmp_path / "odd.csv"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["import-csv", str(path), "--out", str(tmp_path / "ws")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "odd.csv" in err and "Traceback" not in err
    assert not (tmp_path / "ws" / "flows.parquet").exists()


_VALID_CSV = (
    "Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Flow Bytes/s,Label\n"
    "x,10.0.0.1,1,10.0.0.2,2,6,2017-07-07 12:59:21.088203,5,Infinity,BENIGN\n"
    "y,10.0.0.3,3,10.0.0.4,4,17,7/7/2017 8:59,6,1.5,DoS Hulk - Attempted\n"
).encode()


def _mutate(base: bytes, edits) -> bytes:
    data = bytearray(base)
    for position, kind, value in edits:
        if not data:
            data.extend(value)
            continue
        at = position % len(data)
        if kind == 0:
            data[at] = value[0] if value else 0
        elif kind == 1:
            data[at:at] = value
        elif kind == 2:
            del data[at: at + 1 + len(value)]
        else:
            data = data[:at]
    return bytes(data)


_EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3), st.binary(max_size=6)), max_size=8)
_CSVISH = st.text(alphabet=st.sampled_from(list('Label,Infinity-NaN"\n\r 0123456789.:/ABCxyz\x00\ufffd')), max_size=400)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_EDITS.map(lambda e: _mutate(_VALID_CSV, e)), st.binary(max_size=600),
                 _CSVISH.map(lambda t: t.encode("utf-8"))))
def test_read_flow_csv_fuzz_only_own_errors(scratch, data):
    path = scratch / "fuzz.csv"
    path.write_bytes(data)
    try:
        df = read_flow_csv(path, progress=False, chunksize=2)
    except PacketClipError:
        return
    assert {"label_raw", "label", "mission", "source_file"} <= set(df.columns)


# --------------------------------------------------------------------------------------------------
# nDPI ground truth
# --------------------------------------------------------------------------------------------------


def _ndpi_files() -> list[Path]:
    files = sorted(NDPI_DIR.glob("*.out")) if NDPI_DIR.is_dir() else []
    if not files:
        pytest.skip("../shared/data/ndpi/result not present")
    return files


def test_every_ndpi_result_parses():
    files = _ndpi_files()
    df = read_ndpi_results(files, progress=False)
    # Independent count: lines that start like a flow and carry a [proto: ...] field.
    flow_line = re.compile(rb"^\t\d+\t\S.*\[proto: ")
    expected = sum(1 for f in files for line in f.read_bytes().split(b"\n") if flow_line.match(line))
    assert len(df) == expected
    assert df.attrs["packetclip_report"] == {"files": len(files), "flows": expected, "unparsed_lines": 0}
    assert df["capture"].nunique() <= len(files)
    assert df[["c2s_packets", "s2c_packets", "src_port", "dst_port"]].notna().all().all()
    assert df["encrypted"].notna().all()
    tcp_udp = df[df["proto"].isin(["TCP", "UDP"])]
    assert tcp_udp["ip_proto"].isin([6, 17]).all()
    assert (df.loc[~df["bidirectional"], "s2c_packets"] == 0).all()


def _row(df: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(df), dtype=bool)
    for column, value in where.items():
        mask &= (df[column] == value).to_numpy(dtype=bool)
    assert mask.sum() == 1, where
    return df[mask].iloc[0]


def test_known_ndpi_lines_exactly():
    _ndpi_files()
    syn = read_ndpi_result(NDPI_DIR / "synscan.pcap.out")
    row = _row(syn, flow_index=1, undetected=False)
    assert row[["capture", "proto", "ip_proto", "src_ip", "src_port", "dst_ip", "dst_port"]].tolist() == [
        "synscan.pcap", "TCP", 6, "172.16.0.8", 36050, "64.13.134.52", 22]
    assert row[["app_master", "app", "category", "encrypted", "confidence"]].tolist() == [
        "SSH", "SSH", "RemoteAccess", True, "Match by port"]
    assert row[["c2s_packets", "c2s_bytes", "s2c_packets", "s2c_bytes", "risks", "hostname"]].tolist() == [
        1, 58, 4, 240, "", ""]

    chrome = read_ndpi_result(NDPI_DIR / "443-chrome.pcap.out")
    assert len(chrome) == 1
    row = chrome.iloc[0]
    assert row[["src_ip", "src_port", "dst_ip", "dst_port", "bidirectional", "app", "encrypted"]].tolist() == [
        "178.62.197.130", 443, "192.168.1.13", 53059, False, "TLS", True]
    assert row["risks"] == "Susp Entropy; Unidirectional Traffic"
    assert row[["c2s_packets", "c2s_bytes", "s2c_packets", "s2c_bytes"]].tolist() == [1, 1506, 0, 0]

    kxun = read_ndpi_result(NDPI_DIR / "1kxun.pcap.out")
    row = _row(kxun, flow_index=1, undetected=False)
    assert row[["app_master", "app", "category", "hostname"]].tolist() == [
        "HTTP", "1kxun", "Streaming", "mangaweb.1kxun.mobi"]
    assert row[["c2s_packets", "c2s_bytes", "s2c_packets", "s2c_bytes"]].tolist() == [7, 4845, 73, 178280]
    v6 = _row(kxun, flow_index=34, undetected=False)
    assert v6[["proto", "src_ip", "src_port", "dst_ip", "dst_port", "app", "hostname"]].tolist() == [
        "UDP", "fe80::9bd:81dd:2fdc:5750", 1900, "ff02::c", 1900, "SSDP", "[ff02::c]:1900"]
    assert v6[["c2s_packets", "c2s_bytes"]].tolist() == [16, 8921]
    undetected = _row(kxun, flow_index=2, undetected=True)
    assert undetected[["src_ip", "dst_ip", "dst_port", "app"]].tolist() == [
        "2001:b030:214:100:c2a0:bbff:fe73:eb47", "ff02::1", 62976, "Unknown"]

    tunnel = read_ndpi_result(NDPI_DIR / "4in4tunnel.pcap.out")
    row = _row(tunnel, flow_index=1, undetected=True)
    assert row[["vlan", "src_ip", "dst_port", "c2s_packets", "c2s_bytes"]].tolist() == [
        505, "10.10.100.25", 17000, 5, 850]

    capwap = read_ndpi_result(NDPI_DIR / "capwap_data.pcapng.out")
    row = _row(capwap, flow_index=1)
    assert row[["tunnel", "vlan", "app_master", "app", "encrypted"]].tolist() == [
        "CAPWAP", 4, "TLS", "GoogleServices", True]


_NDPI_SAMPLE = (
    "DPI Packets (TCP):\t4\t(4.00 pkts/flow)\n\n"
    "\t1\tTCP 10.0.0.1:1234 <-> 10.0.0.2:80 [proto: 7/HTTP][IP: 0/Unknown][ClearText][Confidence: DPI]"
    "[cat: Web/5][5 pkts/500 bytes <-> 4 pkts/4000 bytes][Hostname/SNI: example.org][Plen Bins: 0,0]\n"
    "\t2\tUDP [2001:db8::1]:5353 -> [ff02::fb]:5353 [proto: 8/MDNS][IP: 0/Unknown][ClearText]"
    "[cat: Network/14][3 pkts/300 bytes -> 0 pkts/0 bytes][Risk: ** Unidirectional Traffic **]\n"
    "\t3\tTCP 10.0.0.3:443 -> 10.0.0.1:5555 [proto: 91/TLS][IP: 0/Unknown][Encrypted][cat: Web/5]"
    "[1 pkts/1506 bytes -> 0 pkts/0 bytes]\n"
    "\n\t4\tTCP this-is-broken -> nothing\n"
)


def test_ndpi_unparseable_lines_are_counted(tmp_path):
    path = tmp_path / "x.pcap.out"
    path.write_text(_NDPI_SAMPLE + "\t7\tTCP 10.0.0.1:99999999 -> 1.2.3.4:5 [proto: 7/HTTP]\n")
    df = read_ndpi_result(path)
    assert len(df) == 3
    assert df.attrs["packetclip_report"]["unparsed_lines"] == 2
    assert df["capture"].unique().tolist() == ["x.pcap"]
    (tmp_path / "empty.pcap.out").write_text("")
    assert len(read_ndpi_result(tmp_path / "empty.pcap.out")) == 0
    (tmp_path / "junk.pcap.out").write_text("hello\nworld\n")
    with pytest.raises(DatasetFormatError, match="not ndpiReader output"):
        read_ndpi_result(tmp_path / "junk.pcap.out")
    with pytest.raises(DatasetFormatError, match="cannot read"):
        read_ndpi_result(tmp_path / "missing.pcap.out")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_EDITS.map(lambda e: _mutate(_NDPI_SAMPLE.encode(), e)), st.binary(max_size=600),
                 st.text(alphabet=st.sampled_from(list("\t\n []:/<->0123456789.TCPUDproto:pkts bytes*")),
                         max_size=400).map(str.encode)))
def test_read_ndpi_result_fuzz_only_own_errors(scratch, data):
    path = scratch / "fuzz.pcap.out"
    path.write_bytes(data)
    try:
        df = read_ndpi_result(path)
    except PacketClipError:
        return
    assert list(df.columns)[:3] == ["capture", "flow_index", "undetected"]


# --------------------------------------------------------------------------------------------------
# Joins onto our flow table
# --------------------------------------------------------------------------------------------------


def _our_flows(rows) -> pd.DataFrame:
    columns = ["capture", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp",
               "Total Fwd Packet", "Total Bwd packets"]
    df = pd.DataFrame(rows, columns=columns)
    df.insert(0, "flow_id", np.arange(len(df)))
    return df


@pytest.fixture()
def ndpi_sample(tmp_path) -> pd.DataFrame:
    path = tmp_path / "x.pcap.out"
    path.write_text(_NDPI_SAMPLE)
    return read_ndpi_result(path)


def test_join_ndpi_orientation_segments_and_counts(ndpi_sample):
    t0 = pd.Timestamp("2024-01-01 00:00:00")
    flows = _our_flows([
        ("in/x.pcap", "10.0.0.2", 80, "10.0.0.1", 1234, 6, t0, 2, 3),                 # reversed, segment 1
        ("in/x.pcap", "10.0.0.1", 1234, "10.0.0.2", 80, 6, t0 + pd.Timedelta(10, "s"), 2, 2),  # segment 2
        ("in/x.pcap", "2001:0db8:0:0::1", 5353, "ff02::fb", 5353, 17, t0, 3, 0),     # IPv6, other spelling
        ("in/x.pcap", "10.0.0.1", 5555, "10.0.0.3", 443, 6, t0, 0, 1),               # reversed one-way
        ("in/x.pcap", "10.9.9.9", 1, "10.9.9.8", 2, 6, t0, 1, 1),                    # not in nDPI
        ("y.pcap", "10.0.0.1", 1234, "10.0.0.2", 80, 6, t0, 5, 4),                   # other capture
    ])
    joined = join_ndpi(flows, ndpi_sample)
    assert joined["ndpi_matched"].tolist() == [True, True, True, True, False, False]
    assert joined["ndpi_app"].tolist()[:4] == ["HTTP", "HTTP", "MDNS", "TLS"]
    assert joined["ndpi_category"].tolist()[:4] == ["Web", "Web", "Network", "Web"]
    assert joined["ndpi_encrypted"].tolist()[:4] == [False, False, False, True]
    assert joined["ndpi_hostname"].iloc[0] == "example.org"
    assert joined["ndpi_same_direction"].tolist() == [False, True, True, False, False, False]
    assert joined["ndpi_fwd_packets"].tolist()[:4] == [4, 5, 3, 0]
    assert joined["ndpi_bwd_packets"].tolist()[:4] == [5, 4, 0, 1]
    assert joined["ndpi_fwd_bytes"].iloc[0] == 4000
    assert joined["ndpi_segments"].tolist() == [2, 2, 1, 1, 0, 0]
    assert joined["ndpi_fwd_packets"].isna().tolist()[4:] == [True, True]
    report = joined.attrs["packetclip_report"]
    assert (report["flows_matched"], report["flows_unmatched"]) == (4, 2)
    assert (report["ndpi_flows_matched"], report["ndpi_flows_unmatched"]) == (3, 0)

    agreement = ndpi_count_agreement(joined)
    assert agreement == {"ndpi_flows": 3, "equal_both_directions": 3, "fraction_equal": 1.0, "split_into_segments": 1}
    flows.loc[1, "Total Fwd Packet"] = 3
    assert ndpi_count_agreement(join_ndpi(flows, ndpi_sample))["equal_both_directions"] == 2


def test_join_ndpi_vlan_duplicates(tmp_path):
    line = ("\t{i}\tTCP 10.1.3.68:47025 <-> 74.125.130.188:443 [VLAN: {v}][proto: 91/TLS][Encrypted][cat: Web/5]"
            "[{c} pkts/630 bytes <-> 1 pkts/150 bytes]\n")
    path = tmp_path / "v.pcap.out"
    path.write_text("".join(line.format(i=i, v=v, c=c) for i, v, c in ((1, 4, 3), (2, 3, 2))))
    ndpi = read_ndpi_result(path)
    t0 = pd.Timestamp("2024-01-01")
    rows = [("v.pcap", "10.1.3.68", 47025, "74.125.130.188", 443, 6, t0 + pd.Timedelta(s, "s"), c, 1)
            for s, c in ((0, 3), (5, 2))]
    flows = _our_flows(rows)
    plain = join_ndpi(flows, ndpi)
    assert plain["ndpi_ambiguous"].tolist() == [True, True]
    assert plain["ndpi_fwd_packets"].tolist() == [3, 2]
    flows["vlan"] = [3, 4]
    exact = join_ndpi(flows, ndpi)
    assert exact["ndpi_ambiguous"].tolist() == [False, False]
    assert exact["ndpi_fwd_packets"].tolist() == [2, 3]
    assert exact.attrs["packetclip_report"]["used_vlan"] is True


def test_join_ndpi_needs_capture_for_several_files(ndpi_sample):
    other = ndpi_sample.copy()
    other["capture"] = "z.pcap"
    flows = _our_flows([("x.pcap", "10.0.0.1", 1234, "10.0.0.2", 80, 6, pd.Timestamp("2024-01-01"), 5, 4)])
    with pytest.raises(DatasetFormatError, match="no 'capture' column"):
        join_ndpi(flows.drop(columns=["capture"]), pd.concat([ndpi_sample, other], ignore_index=True))
    single = join_ndpi(flows.drop(columns=["capture"]), ndpi_sample)
    assert single["ndpi_matched"].tolist() == [True]


def _nulls_as_none(values: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in values]


def test_join_labels_by_tuple_and_time():
    t0 = 1_500_000_000.0   # our capture clock, epoch seconds (UTC)
    local = -3 * 3600       # the labelled table wrote local time (UTC-3), as CIC-IDS2017 did
    labelled = pd.DataFrame({
        "Src IP": ["10.0.0.1", "10.0.0.5", "10.0.0.7"],
        "Src Port": [1234, 999, 53],
        "Dst IP": ["10.0.0.2", "10.0.0.6", "10.0.0.8"],
        "Dst Port": [80, 22, 5000],
        "Protocol": [6, 6, 17],
        "Timestamp": [pd.Timestamp(t + local, unit="s").isoformat() for t in (t0 + 0.5, t0 + 100, t0 + 400)],
        "Flow Duration": [1_000_000, 60_000_000, 0],
        "Label": ["DoS Hulk", "SSH-Patator", "BENIGN"],
    })
    ours = pd.DataFrame({
        "flow_id": [0, 1, 2, 3, 4],
        "Src IP": ["10.0.0.2", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.9"],
        "Src Port": [80, 999, 22, 53, 1],
        "Dst IP": ["10.0.0.1", "10.0.0.6", "10.0.0.5", "10.0.0.8", "10.0.0.1"],
        "Dst Port": [1234, 22, 999, 5000, 2],
        "Protocol": [6, 6, 6, 17, 6],
        "Timestamp": [t0, t0 + 130, t0 + 95, t0 + 300, t0],
        "Flow Duration": [1_000_000, 1_000_000, 20_000_000, 1_000_000, 5],
    })
    assert estimate_time_offset(ours, labelled) == local
    joined = join_labels(ours, labelled, time_tolerance_s=2.0, time_offset_s="auto")
    assert _nulls_as_none(joined["label"]) == ["DoS Hulk", "Dictionary Attack", "Dictionary Attack", None, None]
    assert _nulls_as_none(joined["mission"]) == ["DoS", "Brute Force", "Brute Force", None, None]
    assert joined["label_match"].tolist() == ["start", "inside", "overlap", "", ""]
    assert joined["label_time_diff_s"].iloc[0] == pytest.approx(0.5)
    report = joined.attrs["packetclip_report"]
    assert (report["flows_matched"], report["flows_unmatched"]) == (3, 2)
    assert (report["labelled_flows_used"], report["labelled_flows_unused"]) == (2, 1)
    assert report["time_offset_s"] == local
    unshifted = join_labels(ours, labelled, time_tolerance_s=2.0)
    assert unshifted.attrs["packetclip_report"]["flows_matched"] == 0
    with pytest.raises(DatasetFormatError, match="no label column"):
        join_labels(ours, labelled.drop(columns=["Label"]))
