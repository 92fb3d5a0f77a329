"""Ingest never leaves half-written data: a killed ingest leaves the previous workspace intact, re-ingest needs
``overwrite``, an unwritable ``--out`` is one line naming the folder, damaged captures are named (file, offset)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from packetclip.errors import PacketClipError
from packetclip.lab.synth import SynthLab
from packetclip.traffic.ingest import IngestSettings, damaged_captures, ingest_captures, summary_rows
from packetclip.traffic.workspace import Workspace, WorkspaceError
from packetclip.traffic.writer import LINKTYPE_ETHERNET, PcapWriter

ROOT = Path(__file__).resolve().parents[1]

KILLED_INGEST = """
import sys
from pathlib import Path
from packetclip.traffic.ingest import IngestSettings, ingest_captures
cap, out, copies = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ingest_captures([cap] * copies, out, settings=IngestSettings(view_packets=None), progress=False, overwrite=True)
"""


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """A few minutes of lab traffic (about 100k packets)."""
    out = tmp_path_factory.mktemp("lab")
    return SynthLab(duration_s=180.0, seed=9).generate(out, progress=False, ingest=False).pcap


def _small_capture(path: Path) -> Path:
    frame = (b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
             b"\x45\x00\x00\x1c\x00\x01\x00\x00\x40\x11\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02"
             b"\x04\xd2\x00\x35\x00\x08\x00\x00")
    with PcapWriter(path, LINKTYPE_ETHERNET, nanosecond=False) as w:
        for i in range(5):
            w.write(1_600_000_000 * 10**9 + i * 10**6, frame, len(frame))
    return path


def test_killed_ingest_leaves_the_previous_workspace(capture, tmp_path):
    out = tmp_path / "ws"
    old = ingest_captures([_small_capture(tmp_path / "small.pcap")], out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    old_flows = old.flows()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(capture), str(out), "8"], env=env,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [p for p in out.iterdir() if p.name.startswith(".") and ".tmp-" in p.name]
        if any(p.stat().st_size > 2_000_000 for p in temps):      # row groups are being written
            started = True
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert started and proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    # every table in place is the old one, byte for byte; the workspace opens and checks as before
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name
    ws = Workspace.open(out)
    ws.check()
    pd.testing.assert_frame_equal(ws.flows(), old_flows)
    for path in out.glob("*.parquet"):
        pq.ParquetFile(path)                                      # no partial table under a real name


def test_reingest_refuses_without_overwrite(tmp_path):
    cap = _small_capture(tmp_path / "small.pcap")
    out = tmp_path / "ws"
    ingest_captures([cap], out, progress=False)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(WorkspaceError, match="overwrite"):
        ingest_captures([cap], out, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    ws = ingest_captures([cap], out, progress=False, overwrite=True, settings=IngestSettings(write_packets=False))
    assert ws.check() and not ws.has_packets()                    # no packets of the old run left behind


def test_reingest_refused_by_the_cli_with_exit_2(tmp_path):
    cap = _small_capture(tmp_path / "small.pcap")
    out = tmp_path / "ws"
    cmd = [sys.executable, "-c", "import sys; from packetclip.cli import main; main(sys.argv[1:])",
           "ingest", str(cap), "--out", str(out), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "overwrite" in lines[0] and str(out) in lines[0]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a 0o555 folder anyway; test_unwritable_output_simulated covers it")
def test_read_only_out_folder_is_one_line_naming_it(tmp_path):
    cap = _small_capture(tmp_path / "small.pcap")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PacketClipError) as err:
            ingest_captures([cap], ro, progress=False)
        assert str(ro) in err.value.one_line() and "\n" not in str(err.value)
    finally:
        ro.chmod(0o755)


def test_unwritable_output_simulated(tmp_path, monkeypatch):
    """Where the test runs as root a read-only folder does not stop writes; refuse the temporary file instead."""
    import packetclip.traffic.ingest as ingest

    cap = _small_capture(tmp_path / "small.pcap")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ingest.pq, "ParquetWriter", refuse)
    out = tmp_path / "ws"
    with pytest.raises(PacketClipError) as err:
        ingest_captures([cap], out, progress=False)
    line = err.value.one_line()
    assert str(out) in line and "Permission denied" in line and "\n" not in str(err.value)
    assert not any(out.iterdir())                                 # nothing half-written left


def test_damaged_captures_are_named_with_their_offset(tmp_path):
    good = _small_capture(tmp_path / "good.pcap")
    data = good.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: 24 + 16 + 42 + 16 + 10])                 # second record cut in the middle
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello, not a capture")
    ws = ingest_captures([good, cut, junk], tmp_path / "ws", progress=False)
    lines = damaged_captures(ws)
    assert len(lines) == 2
    assert lines[0].startswith(str(cut)) and "offset" in lines[0]
    assert lines[1].startswith(str(junk))
    rows = dict((v, k) for k, v in summary_rows(ws))
    assert rows[lines[0]] == "damaged capture" and rows[lines[1]] == "damaged capture"
    protocols = dict(summary_rows(ws))["flows by protocol"]
    assert protocols.startswith("UDP ")
