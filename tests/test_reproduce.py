"""``packetclip reproduce``: one small run writes a self-contained index.html and report.md with Tables 1-2 and
Figures 6-9; bad input is one line. Tiny settings and a hashed text side keep it to seconds of work."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from packetclip.evaluate.reproduce import ReproduceSettings, reproduce
from packetclip.reasoning.baselines import EtbertFlowSettings


class HashText:
    """Deterministic 32-d word vectors (hash-seeded): no model download."""

    fingerprint = "hash-text-32"

    def embed(self, texts):
        out = []
        for t in texts:
            v = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).standard_normal(32)
            out.append((v / np.linalg.norm(v)).astype(np.float32))
        return np.stack(out)

    def describe(self):
        return {"fingerprint": self.fingerprint, "model": "hash"}

    @property
    def dim(self):
        return 32


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.splits import split_workspace

    torch.set_num_threads(1)
    ws = tmp_path_factory.mktemp("reproduce") / "lab"
    SynthLab(duration_s=20, seed=4, classes="paper").generate(ws, progress=False)
    split_workspace(ws, by="flow", test_size=0.2, val_size=0.15, seed=4)
    return ws


def test_reproduce_writes_tables_and_figures(lab, tmp_path):
    tiny = ReproduceSettings(gnn_epochs=1, min_batches=2, align_steps=20, describe_flows=120, table1_steps=20,
                             table1_eval_every=10, etbert=EtbertFlowSettings(epochs=1, max_train_flows=40),
                             scarcity=(100, 10), max_test_flows=300, boosted_trees=5,
                             dnn_iterations=3)
    out = tmp_path / "report"
    result = reproduce(lab, out, settings=tiny, progress=False, text_side=HashText())
    md = (out / "report.md").read_text()
    for heading in ("Table 1", "Table 2", "Figure 6", "Figure 7", "Figure 8", "Figure 9"):
        assert heading in md
    assert len(result["table2"]) == 6 and all(0.0 <= v["mauc"] <= 1.0 for v in result["table2"].values())
    assert set(result["scarcity"]) == {"MissionGNN", "ET-BERT-ft", "XGBoost-flow"}
    assert list(result["scarcity"]["MissionGNN"]) == [100, 10]
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 6 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert result["costs"]["MissionGNN"]["params"] < result["costs"]["ET-BERT-ft base"]["params"]


def test_reproduce_cli_refuses_bad_input_in_one_line(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "packetclip.cli", "reproduce", str(tmp_path / "nope"), "--out",
                              str(tmp_path / "r")], capture_output=True, text=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
