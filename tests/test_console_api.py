"""The analyst console's HTTP API (issue 13) with FastAPI's TestClient, over a real lab workspace, a real
alignment and alerts from the real detector replaying the lab capture."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")

from fastapi.testclient import TestClient  # noqa: E402

from packetclip.console.live import AlertStore, LiveDetection, Rates, Subscriber, Timelines  # noqa: E402
from packetclip.console.run import ConsoleOptionError, check_exposure  # noqa: E402
from packetclip.console.server import CSP, create_app  # noqa: E402
from packetclip.console.services import ReportFiles, WorkspaceService, model_card  # noqa: E402

TOKEN = "s3cret-token-for-tests-0123456789"


def build_console_lab(base: Path) -> Path:
    """A small lab workspace (20 s, the paper's classes), split, described and aligned (flow-table traffic side,
    20 steps): enough for alerts of every mission, search and flow details. Built once per test session and
    shared by the console test files through a marker file."""
    root = base / "console-lab"
    if (root / "console-ready").is_file():
        return root
    import torch

    from packetclip.align.api import train_alignment
    from packetclip.align.train import TrainSettings
    from packetclip.lab.synth import SynthLab
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.traffic.splits import split_workspace

    torch.set_num_threads(1)
    SynthLab(duration_s=20, seed=3, classes="paper").generate(root, progress=False, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a 30 s capture has classes with one flow group
        split_workspace(root, by="flow", seed=0)
    describe_workspace(root, Describer("rules", per_flow=1, seed=0), limit=200)
    train_alignment(root, base / "console-align", traffic="flow", settings=TrainSettings(steps=20, seed=0))
    (root / "console-ready").write_text("ok\n")
    return root


@pytest.fixture(scope="session")
def console_lab(tmp_path_factory) -> Path:
    return build_console_lab(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def served(console_lab):
    """Store, rates and timelines filled by the real detector over the lab capture; workspace search."""
    store, rates, timelines = AlertStore(5000), Rates(), Timelines()
    det = LiveDetection(store, rates, timelines, captures=[console_lab / "capture.pcap"])
    det.start()
    deadline = time.time() + 60
    while det.state in ("idle", "running") and time.time() < deadline:
        time.sleep(0.1)
    det.stop()
    assert det.state == "finished", det.status()
    rates.sample(store.counts()["per_mission"])
    ws = WorkspaceService(console_lab)
    return {"store": store, "rates": rates, "timelines": timelines, "detection": det, "workspace": ws}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report")
    (d / "index.html").write_text("<html><body><h1>reproduce report</h1><img src='fig.png'></body></html>")
    (d / "fig.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return d


@pytest.fixture(scope="module")
def client(served, report_dir):
    app = create_app(served["store"], rates=served["rates"], timelines=served["timelines"],
                     detection=served["detection"], workspace=served["workspace"], model_card=model_card(None),
                     report=ReportFiles(report_dir))
    return TestClient(app)


def test_page_and_assets_are_served_with_a_csp_and_no_cdn(client):
    r = client.get("/")
    assert r.status_code == 200 and "packetclip console" in r.text
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "style.css", "logo.svg"):
        a = client.get(f"/static/{name}")
        assert a.status_code == 200 and len(a.content) > 100
        assert "http://" not in a.text.replace("http://www.w3.org", "") and "https://cdn" not in a.text
    assert "<script>" not in r.text and " style=" not in r.text          # nothing inline the CSP would block


def test_status_counts_every_mission_of_the_lab_capture(client):
    s = client.get("/api/status").json()
    assert s["detection"]["state"] == "finished"
    assert {"DoS", "Reconnaissance"} <= set(s["counts"]["per_mission"])
    assert s["totals"]["packets"] > 1000 and s["search"] is True
    samples = client.get("/api/rates?last=5").json()["samples"]
    assert samples and samples[-1]["packets_per_s"] > 0


def test_alerts_are_paged_and_filtered_on_the_server(client):
    everything = client.get("/api/alerts?limit=500").json()
    assert everything["total"] == len(everything["items"]) > 5
    ids = [a["id"] for a in everything["items"]]
    assert ids == sorted(ids, reverse=True)                     # newest first
    page = client.get("/api/alerts?limit=2&offset=1").json()
    assert [a["id"] for a in page["items"]] == ids[1:3] and page["total"] == everything["total"]
    dos = client.get("/api/alerts", params={"mission": "DoS", "limit": 500}).json()
    assert dos["total"] > 0 and {a["mission"] for a in dos["items"]} == {"DoS"}
    fine = dos["items"][0]["fine_class"]
    by_class = client.get("/api/alerts", params={"class": fine}).json()
    assert by_class["total"] > 0 and {a["fine_class"] for a in by_class["items"]} == {fine}
    host = everything["items"][0]["dest_ip"]
    by_host = client.get("/api/alerts", params={"host": host}).json()["items"]
    assert by_host and all(a["src_ip"].startswith(host) or a["dest_ip"].startswith(host) for a in by_host)
    assert len(by_host) < everything["total"]


def test_alert_detail_has_timeline_concepts_kg_nearest_and_raw_eve(client):
    recon = client.get("/api/alerts", params={"mission": "Reconnaissance"}).json()["items"][0]
    d = client.get(f"/api/alerts/{recon['id']}").json()
    assert d["eve"]["event_type"] == "alert" and d["eve"]["packetclip"]["mission"] == "Reconnaissance"
    assert d["explanation"] and d["concepts"]
    assert all(c["url"].startswith("https://attack.mitre.org/techniques/T") for c in d["concepts"])
    tl = d["timeline"]
    assert tl and len(tl["t_s"]) == len(tl["length"]) == len(tl["direction"]) >= 1
    near = client.get(d["nearest"]).json()["nearest"]
    assert near and near[0]["description"] and -1.0 <= near[0]["similarity"] <= 1.0
    techs = ",".join(c["attack_id"] for c in d["concepts"])
    svg = client.get("/api/kg/Reconnaissance.svg", params={"highlight": techs})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert 'class="node level0 lit"' in svg.text or "lit" in svg.text
    assert "attack.mitre.org/techniques/" in svg.text


def test_search_returns_flows_that_open_as_flow_details(client):
    r = client.get("/api/search", params={"q": "hosts trying many passwords over SSH", "top": 5}).json()
    assert len(r["hits"]) == 5
    sims = [h["similarity"] for h in r["hits"]]
    assert sims == sorted(sims, reverse=True)
    f = client.get(f"/api/flows/{r['hits'][0]['flow_id']}").json()
    assert f["flow"]["Src IP"] and f["timeline"]["length"] and all(x > 0 for x in f["timeline"]["length"])


def test_model_card_and_the_report_given_at_start(client):
    card = client.get("/api/model").json()
    assert card["card"]["kind"] == "detector model" and "Benign" in card["card"]["classes"]
    assert card["card"]["thresholds"] and card["report"] == "/report/"
    page = client.get("/report/")
    assert page.status_code == 200 and "reproduce report" in page.text
    assert "'unsafe-inline'" in page.headers["content-security-policy"]      # styles only; no script source
    assert "script-src" not in page.headers["content-security-policy"]
    assert client.get("/report/fig.png").headers["content-type"] == "image/png"


@pytest.mark.parametrize("url, status, words", [
    ("/api/alerts?limit=0", 422, "limit"),
    ("/api/alerts?limit=100000", 422, "limit"),
    ("/api/alerts?offset=-1", 422, "offset"),
    ("/api/alerts?mission=Phishing", 422, "mission"),
    ("/api/alerts?host=10.0.0.1;rm", 422, "host"),
    ("/api/alerts/999999", 404, "alert 999999"),
    ("/api/alerts/abc", 422, "alert_id"),
    ("/api/alerts/999999/nearest", 404, "alert 999999"),
    ("/api/kg/Phishing.svg", 404, "mission"),
    ("/api/kg/DoS.svg?highlight=../../etc", 422, "highlight"),
    ("/api/search", 422, "q"),
    ("/api/search?q=%20%20", 422, "empty"),
    ("/api/search?q=x&top=0", 422, "top"),
    ("/api/flows/987654321", 404, "flow 987654321"),
    ("/api/rates?last=0", 422, "last"),
    ("/report/../../../etc/passwd", 404, "passwd"),
    ("/report/%2e%2e/%2e%2e/etc/passwd", 404, "passwd"),
    ("/static/..%2Fserver.py", 404, "server.py"),
    ("/static/server.py", 404, "asset"),
    ("/nowhere", 404, "no such page"),
])
def test_bad_parameters_are_4xx_with_a_clear_message(client, url, status, words):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_without_workspace_or_report_those_pages_say_what_to_pass(served):
    c = TestClient(create_app(served["store"]))
    r = c.get("/api/search", params={"q": "x"})
    assert r.status_code == 409 and "--workspace" in r.json()["error"]
    assert c.get("/api/flows/1").status_code == 409
    assert "--report" in c.get("/report/").json()["error"]


def test_token_is_required_on_every_request_when_given(served):
    c = TestClient(create_app(served["store"], token=TOKEN))
    for url in ("/", "/static/app.js", "/api/status", "/api/alerts", "/api/stream", "/api/model"):
        r = c.get(url)
        assert r.status_code == 401 and "token" in r.json()["error"], url
        assert r.headers["content-security-policy"] == CSP
    assert c.get("/api/status", headers={"Authorization": "Bearer wrong-" + TOKEN}).status_code == 401
    assert c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = c.get(f"/?token={TOKEN}", follow_redirects=False)       # the browser's first visit sets a cookie
    assert first.status_code == 303 and "HttpOnly" in first.headers["set-cookie"]
    assert c.get("/api/status").status_code == 200                    # the client keeps the cookie


def test_non_loopback_host_needs_a_token_and_bad_options_are_one_line(capsys):
    with pytest.raises(ConsoleOptionError, match="--token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ConsoleOptionError, match="at least"):
        check_exposure("0.0.0.0", "short")
    check_exposure("0.0.0.0", TOKEN)
    check_exposure("127.0.0.1", None)
    check_exposure("::1", None)
    from packetclip.cli import main

    for argv, words in ((["serve", "--host", "0.0.0.0"], "--token"),
                        (["serve", "--replay", "/nonexistent.pcap"], "no such capture"),
                        (["serve", "--port", "70000"], "--port"),
                        (["serve", "--workspace", "/nonexistent-ws"], "nonexistent-ws"),
                        (["serve", "--report", "/tmp"], "index.html")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and words in err and len(err.splitlines()) == 1, (argv, err)


def test_serve_check_validates_everything_and_exits(console_lab, capsys):
    from packetclip.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--replay", str(console_lab / "capture.pcap"), "--host", "::1", "--check"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "console ready: detect on capture.pcap" in out and "no search" in out


def test_a_foreign_host_header_is_refused_on_loopback(served):
    c = TestClient(create_app(served["store"], allowed_hosts=("127.0.0.1", "localhost")), base_url="http://evil.example")
    r = c.get("/api/status")
    assert r.status_code == 421 and "loopback" in r.json()["error"]


def test_store_is_bounded_and_slow_clients_are_dropped(served):
    src = served["store"]
    event = src.get(src.page(limit=1)["items"][0]["id"])[1]
    store = AlertStore(1000, max_pending=50)
    loop = asyncio.new_event_loop()
    try:
        sub = store.subscribe(loop)
        t0 = time.perf_counter()
        for i in range(10_000):
            e = dict(event)
            e["packetclip"] = {**event["packetclip"], "aggregate": {**event["packetclip"]["aggregate"],
                                                                    "alert_id": i + 1, "status": "new"}}
            store.add(e)
        assert len(store.rows) == 1000 and store.counts()["alerts"] == 10_000
        assert sub.dropped and not sub.pending                    # it never read: dropped, its buffer freed
        store.unsubscribe(sub)
        assert store.counts()["dropped_clients"] == 1
        t0 = time.perf_counter()
        page = store.page(mission=event["packetclip"]["mission"], offset=500, limit=50)
        assert page["total"] == 1000 and page["items"][0]["id"] == 10_000 - 500
        assert time.perf_counter() - t0 < 1.0
        assert Subscriber(loop, 1).max_pending == 1
    finally:
        loop.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stream_pushes_new_alerts_to_a_connected_client(served):
    """Server-sent events over a real uvicorn on loopback: an alert added after connecting arrives."""
    import httpx
    import uvicorn

    store = AlertStore(100)
    app = create_app(store, rates_every_s=0.2)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    src = served["store"]
    event = src.get(src.page(limit=1)["items"][0]["id"])[1]
    try:
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        got = []
        with httpx.Client(timeout=10) as http, http.stream("GET", f"http://127.0.0.1:{port}/api/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind == "hello":
                    store.add(event)                          # arrives after the client connected
                elif line.startswith("data:") and kind == "alerts":
                    got = json.loads(line[5:])
                    break
        assert got and got[0]["id"] == event["packetclip"]["aggregate"]["alert_id"]
    finally:
        server.should_exit = True
        thread.join(5)


def test_packet_timelines_keep_the_first_packets_of_the_most_recent_flows():
    import numpy as np

    t = Timelines(max_flows=2, per_flow=3)
    t.update(np.array([5, 5, 5, 5, -1]), np.array([10, 20, 30, 40, 50]), np.array([60, 70, 80, 90, 1]),
             np.array([0, 1, 0, 1, 0]))
    assert t.get(5) == {"t_s": [0.0, 1e-08, 2e-08], "length": [60, 70, 80], "direction": [0, 1, 0], "start_ns": 10}
    t.update(np.array([7, 9]), np.array([60, 70]), np.array([100, 200]), np.array([0, 1]))
    assert t.get(5) is None and t.get(7)["length"] == [100] and t.get(9)["direction"] == [1]
