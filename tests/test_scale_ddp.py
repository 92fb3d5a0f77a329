"""Alignment under ``torchrun --nproc-per-node 2`` (CPU, gloo) reaches the zero-shot top-1 of one process; a
run resumed from rank 0's checkpoint ends where the uninterrupted run ends."""

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

from packetclip.scale.ddp import train_align_ddp

STEPS, BATCH = 120, 64


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("ddp") / "lab"
    SynthLab(duration_s=60, seed=1).generate(root, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a 60 s capture has classes with a single flow group
        split_workspace(root, by="flow", seed=0)
    describe_workspace(root, Describer("rules", per_flow=2, seed=0), limit=600)
    return root


def _quiet(_message: str) -> None:
    return None


def test_two_ranks_reach_the_single_process_zero_shot_top1(lab, tmp_path):
    torch.set_num_threads(1)
    one = train_align_ddp(lab, tmp_path / "one", traffic="flow", steps=STEPS, batch_size=BATCH, log=_quiet)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "packetclip.scale.ddp",
                          "align", str(lab), "--traffic", "flow", "--steps", str(STEPS), "--batch-size", str(BATCH),
                          "--save-every", "60", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "ddp_log.json").read_text())
    assert two["world_size"] == 2 and two["backend"] == "gloo" and two["global_batch"] == BATCH
    assert one["world_size"] == 1 and one["steps"] == two["steps"] == STEPS
    assert abs(two["zero_shot"]["top1"] - one["zero_shot"]["top1"]) <= 0.01
    assert one["zero_shot"]["top1"] > 0.3          # it learned something (chance is ~0.1 over the classes)
    # rank 0 alone wrote the checkpoint: one folder, the final step
    state = json.loads((tmp_path / "two" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2


def test_resume_from_checkpoint_equals_uninterrupted_run(lab, tmp_path):
    from packetclip.align.model import AlignModel

    torch.set_num_threads(1)
    kwargs = {"traffic": "flow", "batch_size": BATCH, "log": _quiet}
    train_align_ddp(lab, tmp_path / "full", steps=60, **kwargs)
    train_align_ddp(lab, tmp_path / "cut", steps=30, **kwargs)                # stops: checkpoint at step 30
    resumed = train_align_ddp(lab, tmp_path / "cut", steps=60, resume=True, **kwargs)
    assert resumed["resumed_from"] == 30
    a = AlignModel.from_pretrained(tmp_path / "full").state_dict()
    b = AlignModel.from_pretrained(tmp_path / "cut").state_dict()
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=1e-6, err_msg=name)
