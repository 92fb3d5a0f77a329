"""The mission GNN under ``torchrun --nproc-per-node 2`` (CPU, gloo): a short 2-rank run works, rank 0 alone
writes one checkpoint, a resumed run continues from it, and the 2-rank validation mAUC is the 1-rank one
within a tolerance; in one process a resumed run ends exactly where the uninterrupted run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from packetclip.scale.ddp import train_gnn_ddp

EPOCHS = 8          # the GNN is still learning at 4 epochs on this tiny lab (1 rank: val mAUC 0.92 -> 0.99)


def _settings(epochs: int = EPOCHS):
    from packetclip.reasoning.train import ReasoningSettings

    return ReasoningSettings(epochs=epochs, min_batches=8, align_steps=150, describe_flows=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("gnn") / "lab"
    SynthLab(duration_s=60, seed=1).generate(root, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a 60 s capture has classes with a single flow group
        split_workspace(root, by="flow", seed=0)
    return root


@pytest.fixture(scope="module")
def one_rank(lab, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("one") / "run"
    return out, train_gnn_ddp([lab], out, settings=_settings(), log=lambda _m: None)


def _state(folder: Path) -> dict:
    from packetclip.reasoning.model import MissionGNN

    return MissionGNN.from_pretrained(folder).state_dict()


def test_resume_in_one_process_equals_uninterrupted(lab, one_rank, tmp_path):
    full_out, full = one_rank
    cut = tmp_path / "cut"
    train_gnn_ddp([lab], cut, settings=_settings(2), alignment=str(full_out / "setup" / "align"),
                  log=lambda _m: None)
    resumed = train_gnn_ddp([lab], cut, settings=_settings(), resume=True, log=lambda _m: None)
    assert resumed["resumed_from"] == 2
    assert [h["val_mauc"] for h in resumed["history"]] == pytest.approx([h["val_mauc"] for h in full["history"]],
                                                                         abs=1e-9)
    a, b = _state(full_out / "bundle" / "gnn"), _state(cut / "bundle" / "gnn")
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=1e-6, err_msg=name)


def test_two_ranks_write_one_checkpoint_resume_and_reach_the_one_rank_val_mauc(lab, one_rank, tmp_path):
    one_out, one = one_rank
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "packetclip.scale.ddp", "gnn", str(lab),
            "--out", str(tmp_path / "two"), "--alignment", str(one_out / "setup" / "align"), "--min-batches", "8"]
    first = subprocess.run([*base, "--epochs", "4"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoints = [p for p in (tmp_path / "two").iterdir() if p.name.startswith("checkpoint")]
    assert [p.name for p in checkpoints] == ["checkpoint"]          # rank 0 alone, one folder
    state = json.loads((tmp_path / "two" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["world_size"] == 2
    second = subprocess.run([*base, "--epochs", str(EPOCHS), "--resume"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "ddp_log.json").read_text())
    assert two["world_size"] == 2 and two["backend"] == "gloo" and two["resumed_from"] == 4
    assert len(two["history"]) == EPOCHS
    assert one["world_size"] == 1 and one["val_mauc"] > 0.8
    assert abs(two["val_mauc"] - one["val_mauc"]) <= 0.02
    assert (tmp_path / "two" / "bundle" / "gnn").is_dir()
