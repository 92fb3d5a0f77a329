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
