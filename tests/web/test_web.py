"""`neuroear serve`: the HTTP API, bad input, the live socket, concurrency (the browser itself: test_web_browser.py)."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, has_module, run_cli

pytestmark = [
    pytest.mark.skipif(not (has_module("fastapi") and has_module("httpx") and has_module("python_multipart")),
                       reason="needs the 'web' extra (fastapi, uvicorn, python-multipart) and httpx"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

EXAMPLE = ROOT / "neuroear" / "examples" / "example.ogg"
STATIC = ROOT / "neuroear" / "web" / "static"


@pytest.fixture(scope="module")
def client(detector, tmp_path_factory):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note that its TestClient will move to httpx2
        from fastapi.testclient import TestClient

    from neuroear.web.server import ServerConfig, create_app

    updir = tmp_path_factory.mktemp("uploads")
    app = create_app(detector, config=ServerConfig(max_upload_bytes=400_000, max_live=2), upload_dir=updir)
    with TestClient(app) as c:
        c.upload_dir = updir
        yield c


def post(client, name: str, data: bytes, query: str = ""):
    return client.post(f"/api/analyze{query}", files={"file": (name, data, "application/octet-stream")})


def windows(text: str) -> list[dict]:
    return [r for r in map(json.loads, text.splitlines()) if "start" in r]


def cli_rows(*args: str) -> str:
    """stdout of `neuroear analyze ARGS` (a subprocess: the real command)."""
    res = run_cli("analyze", *args, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


# ----------------------------------------------------------------------------- page and API


def test_page_and_its_files_are_served_and_fetch_nothing_from_the_internet(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith("/static/") for r in refs)
    for f in STATIC.iterdir():
        text = f.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), f"{f.name} refers to something outside the server"
        assert client.get(f"/static/{f.name}").status_code == 200


def test_model_card(client, detector):
    card = client.get("/api/model").json()
    assert card["name"] == detector.name and card["labels"] == list(detector.labels)
    assert card["thresholds"] == detector.card.thresholds and card["provider"] == detector.provider
    cfg = client.get("/api/config").json()
    assert cfg["max_upload_bytes"] == 400_000 and cfg["labels"] == list(detector.labels)


@pytest.mark.parametrize("hop", [None, "0.5", "smooth"])
def test_analyze_gives_the_lines_of_neuroear_analyze(client, hop):
    query, extra = {None: ("", []), "0.5": ("?hop=0.5", ["--hop", "0.5"]), "smooth": ("?smooth=2", ["--smooth", "2"])}[hop]
    r = post(client, "example.ogg", EXAMPLE.read_bytes(), query)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert float(r.headers["x-neuroear-duration"]) == pytest.approx(28.0)
    ours = [json.loads(line) for line in r.text.splitlines()]
    cli = [json.loads(line) for line in cli_rows(str(EXAMPLE), "--format", "jsonl", *extra).splitlines()]
    assert len(ours) == len(cli) == (55 if hop == "0.5" else 28)
    for a, b in zip(ours, cli):
        assert a["source"] == "example.ogg" and b["source"] == str(EXAMPLE)
        assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}
    assert list(client.upload_dir.iterdir()) == []  # deleted after analysis


def test_csv_is_the_cli_csv(client):
    r = post(client, "example.ogg", EXAMPLE.read_bytes(), "?format=csv")
    assert r.status_code == 200
    cli = cli_rows(str(EXAMPLE), "--format", "csv")
    # csv.writer ends rows with \r\n in both; the subprocess's text mode turned the CLI's into \n
    assert r.text.replace("\r\n", "\n").replace("example.ogg,", "X,") == cli.replace(f"{EXAMPLE},", "X,")


# ----------------------------------------------------------------------------- bad input


def _clip(fmt: str, seconds: float = 6.0) -> bytes:
    import soundfile as sf

    x, sr = sf.read(EXAMPLE, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, x[: int(seconds * sr)], sr, format=fmt, subtype="PCM_16" if fmt == "WAV" else None)
    return buf.getvalue()


BAD = {
    # name: (file name, bytes, status, message fragment)
    "text file": ("notes.wav", b"just some text\n" * 40, 422, "cannot decode audio"),
    "PNG": ("cover.png", b"\x89PNG\r\n\x1a\n" + bytes(200), 422, "cannot decode audio"),
    "empty": ("empty.flac", b"", 400, "empty file"),
    "WAV cut in its header": ("cut.wav", _clip("WAV")[:20], 422, "cannot decode audio"),
    "WAV header, no data": ("hdr.wav", _clip("WAV")[:44], 422, "no audio samples"),
    "OGG cut to 300 bytes": ("cut.ogg", EXAMPLE.read_bytes()[:300], 422, "cannot decode audio"),
    "over the limit": ("big.wav", bytes(500_000), 413, "larger than the server's limit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_with_one_line(client, case):
    name, data, status, fragment = BAD[case]
    r = post(client, name, data)
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert fragment in msg and "\n" not in msg and "Traceback" not in msg
    assert str(client.upload_dir) not in msg and "/upload-" not in msg  # the client's name, not our path
    assert list(client.upload_dir.iterdir()) == []
    assert client.get("/api/model").status_code == 200  # still serving


def test_refused_files_give_back_their_turn_and_their_upload(detector, tmp_path):
    """One analysis at a time: a refusal that kept its turn would leave the next file waiting for ever."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note that its TestClient will move to httpx2
        from fastapi.testclient import TestClient

    from neuroear.web import server

    updir = tmp_path / "uploads"
    app = server.create_app(detector, config=server.ServerConfig(max_upload_bytes=400_000, max_analyses=1), upload_dir=updir)
    got: list[int] = []

    def requests(c) -> None:
        # refused before the analysis starts (the header is not audio) and by it (no samples), twice each
        for case in ("text file", "WAV header, no data") * 2:
            name, data, status, _ = BAD[case]
            got.append(post(c, name, data).status_code)
        got.append(post(c, "example.ogg", EXAMPLE.read_bytes()).status_code)

    # no `with`: each request runs its own event loop, so one stuck on a turn cannot hold up the test's end
    t = threading.Thread(target=requests, args=(TestClient(app),), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), f"a request waited for a turn never given back (answers so far: {got})"
    assert got == [422, 422, 422, 422, 200]
    assert list(updir.iterdir()) == [] and not [k for k in server._routes if k.startswith(str(updir))]


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"files": {"note": (None, b"a field, not a file")}}, 400),  # multipart without a file part
        ({"data": {"file": "not a file"}}, 415),  # a form, not multipart
        ({"content": b"raw bytes", "headers": {"content-type": "audio/wav"}}, 415),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400),
    ],
)
def test_requests_without_a_proper_file_part(client, kwargs, status):
    r = client.post("/api/analyze", **kwargs)
    assert r.status_code == status and "\n" not in r.json()["error"]


@pytest.mark.parametrize("query", ["?hop=0", "?hop=abc", "?format=xml", "?smooth=0", "?smooth=two"])
def test_bad_options(client, query):
    r = post(client, "example.ogg", EXAMPLE.read_bytes(), query)
    assert 400 <= r.status_code < 500 and r.json()["error"]


@pytest.mark.parametrize("value", ["0", "33"])
def test_smooth_out_of_range_is_a_400_with_the_policys_own_message(client, value):
    from neuroear.live.policy import MAX_SMOOTH

    r = post(client, "example.ogg", EXAMPLE.read_bytes(), f"?smooth={value}")
    assert r.status_code == 400 and r.json()["error"] == f"smooth must be between 1 and {MAX_SMOOTH} hops, got {value}"


def test_a_file_cut_short_gives_what_decodes_and_says_so(client):
    """Damage found mid-file: the windows before it (as `analyze` prints them) and a message line."""
    wav = _clip("WAV")
    r = post(client, "half.wav", wav[: len(wav) // 2])
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert "cut short" in lines[0]["warning"] and lines[0]["warning"].startswith("half.wav:")
    assert len(windows(r.text)) == 3
    flac = _clip("FLAC")
    r = post(client, "half.flac", flac[: len(flac) // 2])
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert windows(r.text) and "cannot decode past" in lines[-1]["error"] and lines[-1]["error"].startswith("half.flac:")
    assert list(client.upload_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["../../../../tmp/neuroear-evil-{}.wav", "/etc/neuroear-evil-{}.wav", "..\\..\\neuroear-evil-{}.wav", "a\x00b\nc-{}.wav"])
def test_client_names_never_become_paths(client, name):
    name = name.format(uuid.uuid4().hex[:8])
    r = post(client, name, EXAMPLE.read_bytes())
    assert r.status_code == 200
    shown = windows(r.text)[0]["source"]
    assert "/" not in shown and "\\" not in shown and "\n" not in shown and "\x00" not in shown
    for where in (Path("/tmp"), Path("/etc"), ROOT.parent, client.upload_dir):
        assert not list(where.glob("*neuroear-evil*"))


def test_upload_limit_is_enforced_while_streaming(client):
    """No Content-Length to trust: the body is cut off once it crosses the limit."""

    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n\r\n"
        for _ in range(100):
            yield bytes(10_000)
        yield b"\r\n--b--\r\n"

    r = client.post("/api/analyze", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and list(client.upload_dir.iterdir()) == []


# ----------------------------------------------------------------------------- live socket


def _live(client_or_url, x: np.ndarray, rate: int, *, hop: float = 0.5, speed: float = 8.0, block: int = 4410) -> list[dict]:
    """Stream x [frames, channels] at `speed` × real time over the live socket; all messages back."""
    if isinstance(client_or_url, str):
        from websockets.sync.client import connect

        ws_cm = connect(client_or_url + "/api/live", max_size=None)
        send_text, send_bytes, recv = None, None, None
    else:
        ws_cm = client_or_url.websocket_connect("/api/live")
    with ws_cm as ws:
        if isinstance(client_or_url, str):
            send_text, send_bytes, recv = ws.send, ws.send, lambda: json.loads(ws.recv(timeout=30))
        else:
            send_text, send_bytes, recv = ws.send_text, ws.send_bytes, ws.receive_json
        send_text(json.dumps({"rate": rate, "channels": x.shape[1], "hop": hop}))
        assert recv()["type"] == "ready"
        for i in range(0, len(x), block):
            send_bytes(np.ascontiguousarray(x[i : i + block], dtype="<f4").tobytes())
            time.sleep(block / rate / speed)
        send_text('{"type": "stop"}')
        out = []
        while not out or out[-1]["type"] not in ("end", "error"):
            out.append(recv())
    return out


@pytest.fixture(scope="module")
def stereo44(tmp_path_factory):
    """10 s of the example at 44.1 kHz stereo (a browser-like rate), and `neuroear listen --input` on it."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(EXAMPLE, dtype="float32")
    y = soxr.resample(x[: 10 * sr], sr, 44_100).astype(np.float32)
    st = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path_factory.mktemp("live") / "ex44.wav"
    sf.write(path, st, 44_100, subtype="FLOAT")
    res = run_cli("listen", "--input", str(path), "--hop", "0.5", "--jsonl", "--no-dashboard", timeout=120)
    assert res.returncode == 0, res.stderr
    return st, [json.loads(line) for line in res.stdout.splitlines()]


def _same_as_listen(msgs: list[dict], ref: list[dict], *, min_share: float) -> None:
    hops = [m for m in msgs if m["type"] == "hop"]
    assert msgs[-1]["type"] == "end", msgs[-1]
    by_start = {r["start"]: r for r in ref}
    assert len(hops) >= min_share * len(ref), f"{len(hops)} of {len(ref)} hops (dropped {msgs[-1]['dropped']})"
    for h in hops:  # a live source may drop a late window; every window it does score is listen's
        if h["start"] not in by_start:  # the tail of a cut-off stream
            continue
        r = by_start[h["start"]]
        assert h["end"] == r["end"] and h["active"] == r["active"]
        assert max(abs(h["probs"][k] - r["probs"][k]) for k in r["probs"]) <= 1e-4
        assert h["in_frames"] == int(np.ceil(h["end"] * 44_100))


def test_live_socket_runs_the_listen_loop_at_any_rate(client, stereo44):
    x, ref = stereo44
    msgs = _live(client, x, 44_100, speed=4.0)
    _same_as_listen(msgs, ref, min_share=0.7)  # on a loaded machine a live source may drop a stale hop


@pytest.mark.parametrize(
    "first, fragment",
    [
        ("hello", "must be JSON"),
        ('{"rate": 0}', "rate must be"),
        ('{"rate": 48000, "hop": 3}', "hop must be"),
        ('{"rate": 48000, "channels": 0}', "channels must be"),
    ],
)
def test_live_socket_bad_config(client, first, fragment):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(first)
        m = ws.receive_json()
    assert m["type"] == "error" and fragment in m["error"]


def test_live_socket_bad_pcm_and_too_many_sockets(client):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text('{"rate": 48000, "channels": 2}')
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(b"\x00" * 6)  # not whole stereo float32 frames
        m = ws.receive_json()
        while m["type"] != "error":
            m = ws.receive_json()
        assert "whole float32 frames" in m["error"]
    with client.websocket_connect("/api/live") as a, client.websocket_connect("/api/live") as b:
        for ws in (a, b):
            ws.send_text('{"rate": 16000}')
            assert ws.receive_json()["type"] == "ready"
        with client.websocket_connect("/api/live") as c:
            m = c.receive_json()
        assert m["type"] == "error" and "too many live sessions" in m["error"]


# ----------------------------------------------------------------------------- a real server


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    head = f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    return head.encode() + data + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def _http_post(url: str, name: str, data: bytes, timeout: float = 120) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    body, ctype = _multipart(name, data)
    req = urllib.request.Request(url + "/api/analyze", data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ten_uploads_and_two_live_sockets_at_once(web_server, stereo44, client):
    """One real `neuroear serve`: 10 concurrent uploads and 2 live sockets, all answered right."""
    x, ref = stereo44
    x, ref = x[: 6 * 44_100], [r for r in ref if r["end"] <= 6.0]  # 6 s in real time, as a microphone sends it
    expected = windows(post(client, "example.ogg", EXAMPLE.read_bytes()).text)
    data = EXAMPLE.read_bytes()
    results: dict = {}

    def up(i: int) -> None:
        results[f"up{i}"] = _http_post(web_server.url, f"clip{i}.ogg", data)

    def lv(i: int) -> None:
        results[f"live{i}"] = _live(web_server.url.replace("http", "ws"), x, 44_100, speed=1.0)

    threads = [threading.Thread(target=up, args=(i,)) for i in range(10)] + [threading.Thread(target=lv, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    for i in range(10):
        status, text = results[f"up{i}"]
        assert status == 200
        got = windows(text)
        assert [{**w, "source": ""} for w in got] == [{**w, "source": ""} for w in expected]
    for i in range(2):
        _same_as_listen(results[f"live{i}"], ref, min_share=0.6)
    assert not any("Traceback" in line for line in web_server.stderr)


def test_a_long_file_streams_with_bounded_memory(web_server, tmp_path):
    """10 min of audio: the first lines come back long before the last, and the server's memory stays flat."""
    import http.client
    import urllib.parse

    import soundfile as sf

    x, sr = sf.read(EXAMPLE, dtype="float32")
    n = 22  # 22 × 28 s = 616 s
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", sr, 1, format="FLAC") as f:
        for _ in range(n):
            f.write(x)
    data = path.read_bytes()

    def rss_kb(field: str) -> int:
        text = Path(f"/proc/{web_server.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1))

    before = rss_kb("VmRSS")
    u = urllib.parse.urlparse(web_server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    body, ctype = _multipart("long.flac", data)
    t0 = time.monotonic()
    conn.request("POST", "/api/analyze", body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    assert resp.status == 200 and float(resp.getheader("X-Neuroear-Duration")) == pytest.approx(28.0 * n)
    first = resp.readline()
    t_first = time.monotonic() - t0
    rest = resp.read().decode().splitlines()
    t_all = time.monotonic() - t0
    conn.close()
    assert json.loads(first)["start"] == 0.0 and len(rest) + 1 == 28 * n
    assert t_first < 0.5 * t_all, (t_first, t_all)
    peak = rss_kb("VmHWM")
    assert peak - before < 150_000, f"server grew by {(peak - before) / 1e3:.0f} MB for a {len(data) / 1e6:.0f} MB file"


def test_serve_warns_when_open_to_the_network_and_refuses_a_busy_port(web_server):
    from conftest import WebServer

    port = web_server.url.rsplit(":", 1)[1]
    res = run_cli("serve", "--port", port, timeout=60)
    assert res.returncode == 1 and "cannot listen on 127.0.0.1:" in res.stderr and "--port" in res.stderr
    assert "Traceback" not in res.stderr
    open_server = WebServer("--host", "0.0.0.0")
    try:
        assert any("warning: listening on 0.0.0.0" in line for line in open_server.stderr)
    finally:
        open_server.stop()
    assert not any("warning" in line for line in web_server.stderr)
