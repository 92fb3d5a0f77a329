"""What a new user hits (issue 17): one test per numbered item, each through the command line itself.

Commands run in-process through :func:`packetclip.cli.main` (the real entry point: argument parsing, error
translation and exit codes included), so a traceback would show up in the captured stderr.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import time
from pathlib import Path

import pytest
import typer

from packetclip.cli import app, default_threads, main, use_threads

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CIC = SHARED / "cicids2017"


def cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``packetclip ARGS``."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    """The single error line; fails if there are several lines or a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("packetclip: error")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A 20 s lab workspace (about 5,000 flows, 10 s to make)."""
    out = tmp_path_factory.mktemp("lab") / "lab"
    code, _, err = cli("lab", "synth", "--out", out, "--duration", "20s", "--seed", "7", "-q")
    assert code == 0, err
    return out


def _all_commands(typer_app: typer.Typer):
    group = typer.main.get_command(typer_app)
    stack = [((), group)]
    while stack:
        path, cmd = stack.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            stack.extend((path + (name,), sub) for name, sub in subs.items())
        else:
            yield path, cmd


# --- 1. import-csv takes several files and folders ------------------------------------------------


@pytest.mark.skipif(not CIC.is_dir(), reason="../shared/data/cicids2017 not present")
def test_1_import_csv_takes_several_files_and_folders(tmp_path):
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "Infiltration_36.csv").symlink_to((CIC / "Infiltration_36.csv").resolve())
    code, out, err = cli("import-csv", CIC / "Heartbleed_11.csv", CIC / "Web_Attack_-_XSS_18.csv", folder,
                         "--out", tmp_path / "cic", "-q")
    assert code == 0, err
    assert "from 3 file(s)" in out
    code, out, err = cli("info", tmp_path / "cic")
    assert code == 0, err
    assert "csv" in out


# --- 4. info checks the files, not only the manifest ----------------------------------------------


def test_4_info_reports_a_deleted_or_truncated_table_in_one_line(lab, tmp_path):
    from packetclip.traffic.workspace import Workspace

    gone = tmp_path / "gone"
    shutil.copytree(lab, gone)
    Workspace(gone).path("packets").unlink()
    code, _, err = cli("info", gone)
    assert code == 2 and "packets.parquet" in one_error_line(err)

    cut = tmp_path / "cut"
    shutil.copytree(lab, cut)
    flows = Workspace(cut).path("flows")
    flows.write_bytes(flows.read_bytes()[:1000])
    code, _, err = cli("info", cut)
    assert code == 2 and "flows.parquet" in one_error_line(err)


# --- 5. damaged captures named with their offset; protocols by name -------------------------------


def _frame(proto: int, payload: bytes = b"") -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([224, 0, 0, 1]))
    return bytes(12) + b"\x08\x00" + ip + payload


def test_5_damaged_capture_is_named_with_offset_and_protocols_have_names(tmp_path):
    from packetclip.traffic.writer import PcapWriter

    good = tmp_path / "igmp.pcap"
    with PcapWriter(good) as writer:
        writer.write(1_000_000_000, _frame(2, bytes(8)))            # IGMP
        writer.write(1_001_000_000, _frame(17, bytes.fromhex("0035003500080000")))
    damaged = tmp_path / "damaged.pcap"
    data = good.read_bytes()
    damaged.write_bytes(data + data[24:24 + 30])                      # a last record cut in the middle
    code, out, err = cli("ingest", good, damaged, "--out", tmp_path / "ws", "-q")
    assert code == 0, err
    text = " ".join(out.split())
    assert "damaged.pcap" in text and "offset" in text, out
    code, out, err = cli("info", tmp_path / "ws")
    assert code == 0, err
    assert "IGMP" in out and "damaged.pcap" in " ".join(out.split())


# --- 7, 8, 11: values out of range are one line naming the flag typed -----------------------------


@pytest.mark.parametrize("args,flag", [
    (["llm", "serve", "--port", "99999"], "--port"),                                   # 7
    (["llm", "serve", "--port", "-1"], "--port"),                                      # 7
    (["encoder", "pretrain", "LAB", "--minutes", "-1", "--steps", "5", "--out", "M"], "--minutes"),  # 8
    (["split", "LAB", "--test-size", "1.5"], "--test-size"),                           # 11
    (["split", "LAB", "--test-size", "0.6", "--val-size", "0.5"], "--val-size"),       # 11
    (["kg", "build", "--out", "KG", "--n-key", "99"], "--n-key"),                      # 11
    (["kg", "build", "--out", "KG", "--levels", "9"], "--levels"),                     # 11
    (["describe", "LAB", "--texts-per-flow", "0"], "--texts-per-flow"),                # 11
    (["encoder", "eval-generation", "M", "LAB", "--packets-per-flow", "0"], "--packets-per-flow"),  # 11
    (["describe", "LAB", "--limit", "0"], "--limit"),
    (["encoder", "pretrain", "LAB", "--threads", "0", "--out", "M"], "--threads"),    # 13
])
def test_7_8_11_bad_values_name_the_flag_exit_2(args, flag, lab, tmp_path):
    args = [str(lab) if a == "LAB" else str(tmp_path / a.lower()) if a in ("M", "KG") else a for a in args]
    code, _, err = cli(*args)
    assert code == 2
    assert flag in one_error_line(err)
    assert not (tmp_path / "m").exists()                                              # 8: nothing saved


def test_11_library_messages_name_flags_too():
    from packetclip.errors import PacketClipError
    from packetclip.knowledge.attack import AttackSource

    with pytest.raises(PacketClipError, match="--n-key"):
        AttackSource().build("dos", n_key=0)
    with pytest.raises(PacketClipError, match="--levels"):
        AttackSource().build("dos", n_levels=9)


# --- 12. paths are checked before slow work -------------------------------------------------------


@pytest.mark.parametrize("command", [["encoder", "pretrain"], ["describe"], ["split"], ["info"]])
def test_12_missing_workspace_fails_at_once(command, tmp_path):
    started = time.perf_counter()
    extra = ["--out", str(tmp_path / "m")] if command[0] == "encoder" else []
    code, _, err = cli(*command, "/nonexistent/ws", *extra)
    assert code == 2 and "/nonexistent/ws" in one_error_line(err)
    assert time.perf_counter() - started < 5


def test_12_csv_workspace_has_no_packets_for_pretraining(tmp_path):
    if not CIC.is_dir():
        pytest.skip("../shared/data/cicids2017 not present")
    code, _, err = cli("import-csv", CIC / "Heartbleed_11.csv", "--out", tmp_path / "cic", "-q")
    assert code == 0, err
    code, _, err = cli("encoder", "pretrain", tmp_path / "cic", "--out", tmp_path / "m")
    assert code == 2 and "no packet views" in one_error_line(err)


# --- 13. --threads on every command that runs torch, set by the CLI only -------------------------


def test_13_every_torch_command_has_threads_and_default_is_sane():
    torch_commands = {("encoder", "pretrain"), ("encoder", "eval-generation"), ("describe",), ("kg", "build"),
                      ("llm", "serve"), ("llm", "chat")}
    seen = {path: cmd for path, cmd in _all_commands(app)}
    for path in torch_commands:
        assert any("--threads" in p.opts for p in seen[path].params), path
    import os

    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))
    import torch

    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_13_library_does_not_set_threads_or_global_seed():
    """The chat backend (the one library place that did) no longer touches process-wide torch state."""
    import inspect

    from packetclip.language import chat

    source = inspect.getsource(chat)
    assert "set_num_threads" not in source and "torch.manual_seed" not in source
    assert "os.environ[" not in source and "environ.setdefault" not in source


# --- 14. the total is said before describing; 16. --limit spreads over labels ---------------------


def test_14_16_describe_says_the_total_first_and_spreads_the_limit(lab, tmp_path):
    from packetclip.traffic.workspace import Workspace

    ws = tmp_path / "ws"
    shutil.copytree(lab, ws)
    code, out, err = cli("describe", ws, "--limit", "10", "--texts-per-flow", "2", "-q")
    assert code == 0, err
    assert "describe: 20 descriptions (10 flows x 2)" in err
    table = Workspace.open(ws).descriptions()
    assert len(table) == 20
    assert table["label"].nunique() == 10          # 10 lab classes, one flow each, not the first 10 alphabetically


# --- 17. one convention ---------------------------------------------------------------------------


def test_17_every_command_and_option_is_documented_and_switches_are_x_no_x():
    for path, cmd in _all_commands(app):
        name = " ".join(path)
        assert cmd.help and "Example:" in cmd.help, f"`packetclip {name}` --help has no Example: line"
        for param in cmd.params:
            if param.name == "help":
                continue
            assert getattr(param, "help", None), f"`packetclip {name}` {param.opts} has no help text"
            if getattr(param, "is_flag", False) and param.name not in ("version",):
                assert param.secondary_opts, f"`packetclip {name}` {param.opts} is not a --x/--no-x switch"
            if "--out" in param.opts:
                assert "older" in param.help, f"`packetclip {name}` --out is not described as a folder"
        code, out, err = cli(*path, "-h")
        assert code == 0 and "<bool>" not in out and "Example:" in out, (name, err)


def test_17_version_and_short_help():
    from packetclip import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == __version__
    code, out, _ = cli("-h")
    assert code == 0 and "Commands" in out


@pytest.mark.parametrize("spelling", ["recon", "Reconnaissance", "dos", "DoS", "brute", "bruteforce", "brute_force",
                                      "Brute Force", "BRUTE-FORCE"])
def test_17_mission_spellings(spelling):
    from packetclip.knowledge import mission_spec

    assert mission_spec(spelling).key in ("reconnaissance", "dos", "brute-force")


def test_17_kg_show_reports_the_levels_built(tmp_path):
    code, out, err = cli("kg", "build", "--mission", "recon", "--levels", "1", "--no-png", "--out", tmp_path / "kg")
    assert code == 0, err
    code, out, err = cli("kg", "show", tmp_path / "kg")
    assert code == 0, err
    assert "(--levels 1)" in out and "level 2" not in out


def test_17_describe_out_is_a_folder_and_figures_go_there(lab, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(lab, ws)
    code, _, err = cli("describe", ws, "--limit", "20", "--texts-per-flow", "1", "--out", tmp_path / "exports",
                       "--figures", "-q")
    assert code == 0, err
    assert (tmp_path / "exports").is_dir() and list((tmp_path / "exports").glob("*.png"))
    assert not (ws / "figures").exists()
    not_a_folder = tmp_path / "file.parquet"
    not_a_folder.write_text("x")
    code, _, err = cli("describe", ws, "--limit", "5", "--out", not_a_folder, "-q")
    assert code == 2 and "--out must be a folder" in one_error_line(err)


def test_17_usage_errors_are_one_line():
    for args in (["no-such-command"], ["ingest"], ["describe", "x", "--quiet", "true"]):
        code, _, err = cli(*args)
        assert code == 2
        one_error_line(err)


# --- overwrite (spine issue) and describe on an unlabelled workspace through the CLI --------------


def test_reingest_needs_overwrite(lab, tmp_path):
    code, _, err = cli("lab", "synth", "--out", lab, "--duration", "5s", "-q")
    assert code == 2 and "--overwrite" in one_error_line(err)


def test_3_label_ndpi_then_describe_and_split_see_the_labels(tmp_path):
    pcap = SHARED / "ndpi" / "pcap" / "dns.pcap"
    if not pcap.is_file():
        pytest.skip("../shared/data/ndpi not present")
    code, _, err = cli("ingest", pcap, "--out", tmp_path / "ws", "-q")
    assert code == 0, err
    code, out, err = cli("describe", tmp_path / "ws", "--texts-per-flow", "1", "-q")   # unlabelled: label-free
    assert code == 0, err
    assert "(unlabelled)" in out
    code, out, err = cli("label", "ndpi", tmp_path / "ws", SHARED / "ndpi" / "result")
    assert code == 0, err
    assert "flows labelled" in out and "DNS" in out
    code, out, err = cli("describe", tmp_path / "ws", "--texts-per-flow", "1", "-q")
    assert code == 0, err
    assert "DNS" in out
    code, _, err = cli("label", "ndpi", tmp_path / "ws", tmp_path / "nothing-here")
    assert code == 2 and "nothing-here" in one_error_line(err)


def test_7_server_rejects_out_of_range_ports_in_one_line():
    from packetclip.errors import PacketClipError
    from packetclip.language.chat import ChatBackend
    from packetclip.language.server import ChatServer

    class Echo(ChatBackend):
        name = "echo"

    for port in (99999, -1):
        with pytest.raises(PacketClipError, match="--port must be in 1..65535"):
            ChatServer(Echo(), port=port)


@pytest.mark.slow
def test_pretrain_refuses_an_existing_checkpoint_unless_overwrite(lab, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(lab, ws)
    assert cli("split", ws, "--by", "flow")[0] == 0
    args = ("encoder", "pretrain", ws, "--steps", "2", "--save-every", "0", "--out", tmp_path / "m", "--threads", "1",
            "-q")
    code, out, err = cli(*args)
    assert code == 0, err
    assert "steps 2/2" in out
    code, _, err = cli(*args)
    assert code == 2 and "--resume" in one_error_line(err)
    code, _, err = cli(*args, "--overwrite")
    assert code == 0, err
