"""Lens pre-training under ``torchrun --nproc-per-node 2`` (CPU, gloo): a short 2-rank run works, rank 0 alone
writes one checkpoint (``pretrain``'s format) and a resumed run continues it; on one process the DDP trainer
is exactly ``pretrain`` and a resumed run ends where the uninterrupted one ends."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from packetclip.scale.ddp import pretrain_lens_ddp

BATCH = {"batch_msp": 4, "batch_pop": 4, "batch_htp": 4}


def _settings(steps: int, save_every: int = 0):
    from packetclip.encoders.pretrain import PretrainSettings

    return PretrainSettings(steps=steps, save_every=save_every, warmup_steps=2, **BATCH)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("lens") / "lab"
    SynthLab(duration_s=30, seed=2).generate(root, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split_workspace(root, by="flow", seed=0)
    return root


def _weights(folder: Path) -> dict:
    from packetclip.encoders.lens import LensModel

    return LensModel.from_pretrained(folder).state_dict()


def _assert_same(a: dict, b: dict) -> None:
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=1e-6, err_msg=name)


def test_one_rank_is_pretrain_and_resume_equals_uninterrupted(lab, tmp_path):
    from packetclip.encoders.lens import LensConfig
    from packetclip.encoders.pretrain import pretrain

    torch.set_num_threads(1)
    quiet = {"log": lambda _m: None}
    pretrain([lab], tmp_path / "plain", config=LensConfig(size="tiny"), settings=_settings(4), progress=False)
    pretrain_lens_ddp([lab], tmp_path / "full", config=LensConfig(size="tiny"), settings=_settings(4), **quiet)
    _assert_same(_weights(tmp_path / "plain"), _weights(tmp_path / "full"))
    pretrain_lens_ddp([lab], tmp_path / "cut", config=LensConfig(size="tiny"), settings=_settings(2), **quiet)
    resumed = pretrain_lens_ddp([lab], tmp_path / "cut", settings=_settings(4), resume=True, **quiet)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    _assert_same(_weights(tmp_path / "full"), _weights(tmp_path / "cut"))


def test_two_ranks_write_one_checkpoint_and_resume(lab, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two"
    base = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "packetclip.scale.ddp", "lens", str(lab),
            "--out", str(out), "--batch-msp", "4", "--batch-pop", "4", "--batch-htp", "4"]
    first = subprocess.run([*base, "--steps", "4", "--save-every", "2"], capture_output=True, text=True, env=env,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint"]
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["world_size"] == 2
    second = subprocess.run([*base, "--steps", "6", "--resume"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    log = json.loads((out / "ddp_log.json").read_text())
    assert log["world_size"] == 2 and log["backend"] == "gloo" and log["resumed_from"] == 4 and log["steps"] == 6
    assert math.isfinite(log["final"]["total"])
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
