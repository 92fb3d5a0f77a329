"""CLI contract: every command documents an example, and user errors are one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from packetclip.cli import app


def _all_commands(typer_app: typer.Typer, prefix=()):
    group = typer.main.get_command(typer_app)
    stack = [(prefix, group)]
    while stack:
        path, cmd = stack.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                stack.append((path + (name,), sub))
        else:
            yield path, cmd


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packetclip.cli", *args], capture_output=True, text=True, timeout=300)


def test_every_command_has_help_with_example():
    commands = list(_all_commands(app))
    assert len(commands) >= 3
    for path, cmd in commands:
        assert cmd.help and "Example:" in cmd.help, f"`packetclip {' '.join(path)}` help has no Example: line"


def test_missing_capture_is_one_line_exit_2(tmp_path):
    result = run_cli("ingest", str(tmp_path / "nope.pcap"), "--out", str(tmp_path / "ws"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.pcap" in lines[0] and "Traceback" not in result.stderr


def test_info_on_non_workspace_is_one_line_exit_2(tmp_path):
    result = run_cli("info", str(tmp_path))
    assert result.returncode == 2
    assert "not a packetclip workspace" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["no-such-command"], ["ingest"]])
def test_usage_errors_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def _pcap_header(linktype: int = 1) -> bytes:
    import struct

    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


@pytest.mark.parametrize("name,content,needle", [
    ("empty.pcap", b"", "empty file"),
    ("truncated.pcap", _pcap_header()[:10], "truncated"),
    ("garbage.pcap", bytes(range(7, 107)), "not a pcap"),
    ("unknown_link.pcap", _pcap_header(999) + bytes.fromhex("01000000000000001400000014000000") + b"\x45" + bytes(19),
     "link type 999"),
])
def test_unreadable_capture_is_one_line_naming_the_file_exit_2(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("ingest", str(path), "--out", str(tmp_path / "ws"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and needle in lines[0] and "offset" in lines[0]


def test_one_bad_capture_among_good_ones_is_reported_not_fatal(tmp_path):
    from packetclip.traffic.writer import PcapWriter

    good = tmp_path / "good.pcap"
    frame = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c0001000040110000c0a80001c0a80002") + bytes.fromhex("0035003500080000")
    with PcapWriter(good) as writer:
        writer.write(1_000_000_000, frame)
    (tmp_path / "bad.pcap").write_bytes(b"garbage!")
    result = run_cli("ingest", str(good), str(tmp_path / "bad.pcap"), "--out", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    assert "bad.pcap" in result.stdout and "workspace:" in result.stdout
