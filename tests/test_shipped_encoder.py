"""The pre-trained Lens shipped in the package: present as package data, loadable by name everywhere a
packet encoder is asked for, its card in step with its weights, and the demo's encoder stage using it."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from packetclip.encoders import default_packet_encoder, load_encoder
from packetclip.encoders.lens import LensModel
from packetclip.encoders.pretrained import (DEFAULT_PACKET_ENCODER, default_packet_encoder_path, metadata,
                                            resolve_encoder, shipped_names, shipped_path)
from packetclip.errors import PacketClipError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FILES = ("config.json", "model.safetensors", "metadata.json", "card.md")


@pytest.fixture(scope="module")
def shipped():
    return default_packet_encoder()


def test_lens_tiny_ships_as_package_data_within_the_size_limit():
    folder = shipped_path("lens-tiny")
    assert DEFAULT_PACKET_ENCODER == "lens-tiny" and "lens-tiny" in shipped_names()
    assert folder == default_packet_encoder_path()
    assert folder.is_relative_to(ROOT / "src" / "packetclip")
    for name in SHIPPED_FILES:
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20 * 1024 * 1024
    # every shipped file matches a package-data pattern, so `pip install` (wheel and sdist) carries it
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["packetclip"]
    for name in SHIPPED_FILES:
        rel = (folder / name).relative_to(ROOT / "src" / "packetclip").as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} is not package data"


def test_loaded_by_name_with_the_card_fingerprint_and_embedding_shape(shipped):
    meta = metadata("lens-tiny")
    assert shipped.fingerprint == meta["weights"]["fingerprint"]
    assert LensModel.from_pretrained("lens-tiny").fingerprint == shipped.fingerprint
    assert load_encoder("lens-tiny").fingerprint == shipped.fingerprint
    assert shipped.embed_dim == shipped.config.k_packets * shipped.config.d_model == meta["weights"]["embed_dim"]
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, (3, 2, 128), dtype=np.uint8)
    views[:, :, 0] = 0x45                                       # IPv4, 20-byte header
    emb = shipped.embed(views)
    assert emb.shape == (3, shipped.embed_dim) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_a_local_folder_of_that_name_wins_and_unknown_names_are_one_line(tmp_path, monkeypatch, shipped):
    from test_lens import tiny_config

    LensModel(tiny_config(), seed=1).save_pretrained(tmp_path / "lens-tiny")
    monkeypatch.chdir(tmp_path)
    assert resolve_encoder("lens-tiny") == Path("lens-tiny")
    assert LensModel.from_pretrained("lens-tiny").fingerprint != shipped.fingerprint
    with pytest.raises(PacketClipError, match="encoder folder not found.*lens-tiny"):
        load_encoder("lens-huge")
    with pytest.raises(PacketClipError, match="no shipped encoder named 'lens-huge'"):
        shipped_path("lens-huge")


def test_card_metadata_and_readme_match_the_shipped_weights():
    """Fails after new weights are copied in until the card is refreshed:
    python -m packetclip.encoders.pretrained.card lens-tiny --run RUN [--bench BENCH.json] --readme README.md"""
    from packetclip.encoders.pretrained.card import check

    assert check("lens-tiny", ROOT / "README.md") == []


def test_card_refresh_finds_the_step_by_hash_and_marks_old_figures_stale(tmp_path, monkeypatch):
    import shutil

    from packetclip.encoders.pretrained import card

    folder = tmp_path / "shipped" / "lens-tiny"
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "metadata.json"):
        shutil.copy(shipped_path("lens-tiny") / name, folder / name)
    run = tmp_path / "run"
    (run / "snapshots" / "step-750").mkdir(parents=True)
    shutil.copy(folder / "model.safetensors", run / "snapshots" / "step-750" / "model.safetensors")
    (run / "losses.json").write_text(json.dumps([{"step": s, "msp": 5.0 - s / 500, "pop": 1.0, "htp": 0.7,
                                                  "pop_acc": 0.3, "htp_acc": 0.5} for s in range(760)]))
    bench = tmp_path / "bench.txt"
    bench.write_text("log line\n" + json.dumps({"fewshot10_pretrained_lab": 0.8, "fewshot10_random_lab": 0.7,
                                                "gen_exact_mean": 0.5, "gen_ttl_model": 0.9, "seconds": 3}) + "\n")
    monkeypatch.setattr(card, "shipped_path", lambda name: folder)
    meta = card.refresh("lens-tiny", run=run, bench=bench, today="2000-01-01")
    assert meta["pretraining"]["step"] == 750 and meta["figures"]["measured_at_step"] == 750
    assert meta["figures"]["fewshot10_pretrained_lab"] == 0.8 and "seconds" not in meta["figures"]
    assert "lab: pretrained 0.800" in (folder / "card.md").read_text()
    assert card.check("lens-tiny") == []
    config = LensModel.from_pretrained(folder).config               # new weights dropped in: the card is out of date
    LensModel(config, seed=3).save_pretrained(folder)
    assert any("other weights" in p for p in card.check("lens-tiny"))
    with pytest.raises(PacketClipError, match="not in this run"):
        card.refresh("lens-tiny", run=run)
    card.refresh("lens-tiny")
    text = (folder / "card.md").read_text()
    assert "Stale: measured on earlier weights (step 750)" in text and "- **Steps**: not recorded" in text


def test_packet_alignment_without_encoder_uses_the_shipped_one(tmp_path):
    from packetclip.align.api import traffic_side_for

    side = traffic_side_for("packet", None, None)
    assert Path(side.path) == default_packet_encoder_path()
    assert side.fingerprint == metadata("lens-tiny")["weights"]["fingerprint"]


# --- CLI and demo on a small capture ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_ws(tmp_path_factory):
    """A short labelled lab capture, ingested and split by flow (what the demo's first stages make)."""
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("shipped_lab") / "workspace"
    SynthLab(duration_s=20.0, seed=5).generate(root, progress=False)
    split_workspace(root, by="flow", test_size=0.3, val_size=0.1, seed=5)
    return root


def test_embed_command_defaults_to_the_shipped_encoder(lab_ws, capsys):
    from packetclip.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(lab_ws), "--quiet"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "flows embedded (512 dims, encoder " + metadata("lens-tiny")["weights"]["fingerprint"][:12] in out
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(lab_ws), "--encoder", "no-such-encoder"])
    assert exit_info.value.code == 2
    assert "no such --encoder folder (nor a shipped encoder: lens-tiny)" in capsys.readouterr().err


def test_demo_encoder_stage_uses_the_shipped_encoder(lab_ws, tmp_path):
    from rich.console import Console

    from packetclip.demo import DemoRun, encoder_dir, stage_encoder
    from packetclip.evaluate.report import Report

    out = tmp_path / "demo"
    out.mkdir()
    (out / "workspace").symlink_to(lab_ws, target_is_directory=True)
    run = DemoRun(out=out, seed=5, duration_s=20.0, report=Report(out), console=Console(quiet=True))
    assert run.encoder_minutes is None and encoder_dir(run) == default_packet_encoder_path()
    stage_encoder(run)
    assert run.state["encoder"] == default_packet_encoder_path()
    assert not (out / "models").exists()                         # nothing pre-trained
    assert run.report.metrics["demo_encoder"].startswith("lens-tiny (shipped, step ")
    assert 0.0 <= run.report.metrics["demo_probe_f1_pre_trained"] <= 1.0
    text = "\n".join(run.report.sections)
    assert "shipped pre-trained Lens" in text and "| shipped pre-trained |" in text
