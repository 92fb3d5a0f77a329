"""``--ray`` takes an optional ADDRESS: alone it means a Ray started here (``local``); ``--ray ADDRESS``,
``--ray=ADDRESS`` and ``--ray-address ADDRESS`` name a cluster. The Ray calls are replaced by recorders (a real
cluster is tested in ``tests/test_scale_ray.py``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from packetclip.cli import main
from packetclip.scale.cluster import expand_ray_flag

NDPI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcap"
if not NDPI.is_dir():
    NDPI = Path("/work/shared/data/ndpi/pcap")


@pytest.mark.parametrize("argv, expected", [
    (["ingest", "a.pcap", "--out", "ws", "--ray"], ["ingest", "a.pcap", "--out", "ws", "--ray=local"]),
    (["ingest", "--ray", "a.pcap", "--out", "ws"], ["ingest", "--ray=local", "a.pcap", "--out", "ws"]),
    (["ingest", "a.pcap", "--ray", "--out", "ws"], ["ingest", "a.pcap", "--ray=local", "--out", "ws"]),
    (["ingest", "a.pcap", "--ray", "auto"], ["ingest", "a.pcap", "--ray=auto"]),
    (["embed", "ws", "--ray", "10.0.0.1:6379"], ["embed", "ws", "--ray=10.0.0.1:6379"]),
    (["embed", "ws", "--ray", "ray://head:10001"], ["embed", "ws", "--ray=ray://head:10001"]),
    (["embed", "ws", "--ray=auto"], ["embed", "ws", "--ray=auto"]),
    (["embed", "ws", "--ray-address", "auto"], ["embed", "ws", "--ray-address", "auto"]),
    (["search", "--", "--ray"], ["search", "--", "--ray"]),
])
def test_expand_ray_flag(argv, expected):
    assert expand_ray_flag(argv) == expected


@pytest.fixture
def recorded(monkeypatch):
    """Ray replaced: ``ray_session`` records its address; the Ray paths run the plain ones."""
    import packetclip.scale.cluster as cluster
    import packetclip.scale.ray_ingest as ray_ingest
    import packetclip.scale.ray_work as ray_work
    from packetclip.traffic.ingest import ingest_captures

    seen: list = []

    @contextlib.contextmanager
    def session(address=None, **_kwargs):
        seen.append(address)
        yield None

    def ingest(paths, out, *, settings=None, strict=False, progress=True, overwrite=False):
        return ingest_captures(paths, out, settings=settings, strict=strict, progress=False, overwrite=overwrite)

    def embed(workspace, encoder, **_kwargs):
        return np.zeros((3, 8), np.float32), {"flows": 3, "seconds": 1.0, "startup_seconds": 2.0, "workers": 2,
                                              "fingerprint": "f" * 16}

    def detect(captures, **_kwargs):
        return ray_work.MergedDetectResult(packets=1, flows=1)

    monkeypatch.setattr(cluster, "ray_session", session)
    monkeypatch.setattr(ray_ingest, "ingest_captures_ray", ingest)
    monkeypatch.setattr(ray_work, "embed_workspace_ray", embed)
    monkeypatch.setattr(ray_work, "detect_captures_ray", detect)
    return seen


def _run(argv) -> int:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    return ended.value.code


@pytest.mark.skipif(not NDPI.is_dir(), reason="nDPI captures not available")
def test_cli_ray_alone_means_local_and_an_address_is_passed_on(recorded, tmp_path, capsys):
    cap = str(NDPI / "reddit.pcap")
    assert _run(["ingest", cap, "--out", str(tmp_path / "a"), "-q", "--ray"]) == 0
    assert _run(["ingest", "--ray", cap, "--out", str(tmp_path / "b"), "-q"]) == 0
    assert _run(["ingest", cap, "--out", str(tmp_path / "c"), "-q", "--ray", "127.0.0.1:6379"]) == 0
    assert _run(["ingest", cap, "--out", str(tmp_path / "d"), "-q", "--ray-address", "auto"]) == 0
    assert recorded == ["local", "local", "127.0.0.1:6379", "auto"]
    encoder = tmp_path / "enc"
    encoder.mkdir()
    assert _run(["embed", str(tmp_path / "a"), "--encoder", str(encoder), "--ray"]) == 0
    assert "after 2.0 s of actor start-up" in capsys.readouterr().out
    assert _run(["detect", cap, "--ray", "-q"]) == 0
    assert _run(["detect", cap, "--ray=auto", "-q"]) == 0
    assert recorded[4:] == ["local", "local", "auto"]


@pytest.mark.parametrize("command", ["ingest", "embed", "detect"])
def test_help_shows_the_optional_address_and_keeps_examples(command, capsys):
    assert _run([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--ray" in text and "--ray-address" in text and "Example:" in text and "--ray auto" in text
