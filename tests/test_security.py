"""Attacks on the two HTTP servers from a web page on another origin, and what they may serve (issue 18).

A page the analyst visits can send requests to loopback: simple cross-origin POSTs (a form
upload needs no CORS preflight) and, through DNS rebinding, same-origin-looking requests under a
foreign host name. Each case here failed on the servers before they were closed by default.
The web chat cases start the real Gradio server on a free port and talk to it over HTTP.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sleuth.config import Settings, load_settings
from sleuth.serve.access import Access
from sleuth.serve.api import create_api
from sleuth.serve.jobs import JobStore

KEY = "k3y-for-tests"
FOREIGN = "http://attacker.example"


class NoDetect:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no job may run")


@pytest.fixture
def cwd_with_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder a server is started from, holding what an attacker wants; no data folder configured."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----\nsecret\n")
    (home / ".env").write_text("OPENAI_API_KEY=sk-secret\n")
    (home / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    monkeypatch.chdir(home)
    monkeypatch.delenv("SLEUTH_DATA_DIRS", raising=False)
    monkeypatch.delenv("SLEUTH_API_KEY", raising=False)
    return home


@pytest.fixture
def settings(tmp_path: Path, cwd_with_secrets: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def api(settings: Settings) -> TestClient:
    app = create_api(settings, jobs=JobStore(settings, detect=NoDetect()), access=Access(token=KEY))
    return TestClient(app, base_url="http://127.0.0.1:8080")


def _uploads(settings: Settings) -> list[Path]:
    folder = Path(settings.data_dir) / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


# -- the API ------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyed", [False, True])
def test_a_cross_origin_upload_is_refused_and_nothing_is_stored(api: TestClient, settings: Settings,
                                                                keyed: bool) -> None:
    headers = {"Origin": FOREIGN, **({"X-API-Key": KEY} if keyed else {})}
    answer = api.post("/v1/videos", files={"file": ("a.mp4", b"\x00" * 64, "video/mp4")}, headers=headers)
    assert answer.status_code == 403 and "http://attacker.example" in answer.json()["error"]
    assert "access-control-allow-origin" not in answer.headers
    assert _uploads(settings) == []


@pytest.mark.parametrize("path", ["/v1/health", "/v1/scenes", "/v1/jobs", "/v1/chat/t1", "/docs",
                                  "/v1/openapi.json"])
def test_dns_rebinding_a_foreign_host_name_gets_nothing(api: TestClient, path: str) -> None:
    answer = api.get(path, headers={"Host": "attacker.example:8080", "X-API-Key": KEY})
    assert answer.status_code == 421
    assert answer.json()["error"] == "this server does not answer to the host name 'attacker.example:8080'"
    assert "SLEUTH_ALLOWED_HOSTS" in answer.json()["hint"]


@pytest.mark.parametrize("headers", [{"Origin": FOREIGN}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:9999"},
                                     {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}])
def test_cross_site_reads_are_refused_even_with_the_key(api: TestClient, headers: dict[str, str]) -> None:
    answer = api.get("/v1/jobs", headers={**headers, "X-API-Key": KEY})
    assert answer.status_code == 403 and "refused" in answer.json()["error"]


def test_same_origin_requests_and_trusted_origins_pass(settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_ALLOWED_ORIGINS", "https://console.example")
    monkeypatch.setenv("SLEUTH_ALLOWED_HOSTS", "sleuth.internal")
    app = create_api(settings, jobs=JobStore(settings, detect=NoDetect()), access=Access.for_server(token=KEY))
    client = TestClient(app, base_url="http://127.0.0.1:8080", headers={"X-API-Key": KEY})
    assert client.get("/v1/jobs", headers={"Origin": "http://127.0.0.1:8080"}).status_code == 200
    assert client.get("/v1/jobs", headers={"Origin": "https://console.example"}).status_code == 200
    assert client.get("/v1/jobs", headers={"Host": "sleuth.internal:8080"}).status_code == 200
    assert client.get("/v1/jobs", headers={"Host": "[::1]:8080"}).status_code == 200
    assert client.get("/v1/jobs", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_the_working_folder_is_not_served_when_no_data_folder_is_configured(api: TestClient,
                                                                             cwd_with_secrets: Path) -> None:
    headers = {"X-API-Key": KEY}
    for video in ("clip.mp4", str(cwd_with_secrets / "clip.mp4"), ".env", "../home/.env"):
        answer = api.post("/v1/jobs", json={"video": video, "scene": "demo"}, headers=headers)
        assert answer.status_code == 403, video
        assert "outside the data folders" in answer.json()["error"]
    answer = api.get("/v1/files", params={"path": str(cwd_with_secrets / ".env")}, headers=headers)
    assert answer.status_code == 403


def test_api_docs_load_nothing_from_the_internet(api: TestClient) -> None:
    import re

    page = api.get("/docs")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert links and all(link.startswith("/") for link in links), links
    assert "cdn" not in page.text.lower()
    for link in links:
        assert api.get(link).status_code == 200, link  # the assets are served from this machine


def test_a_malformed_json_body_gets_a_sentence(api: TestClient) -> None:
    answer = api.post("/v1/jobs", content=b'{"video": "a.mp4", "scene": }',
                      headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"].startswith("the body is not valid JSON (at character ")
    assert "Content-Type: application/json" in body["hint"]


def test_an_aborted_upload_keeps_nothing_and_logs_one_line(settings: Settings, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from sleuth.serve.api import ApiError, ApiLimits, _receive_upload
    from starlette.requests import ClientDisconnect

    class Aborted:
        headers = {"content-type": "multipart/form-data; boundary=XyZ"}

        async def stream(self) -> Any:
            yield (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
                   b"Content-Type: video/mp4\r\n\r\n" + b"\x00" * 1000)
            raise ClientDisconnect

    folder = tmp_path / "uploads"
    with caplog.at_level("INFO", logger="sleuth.serve.api"), pytest.raises(ApiError, match="aborted"):
        asyncio.run(_receive_upload(Aborted(), folder, ApiLimits()))  # type: ignore[arg-type]
    assert list(folder.iterdir()) == []
    assert [record.levelname for record in caplog.records] == ["INFO"]
    assert not any(record.exc_info for record in caplog.records)


# -- the web chat -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webchat(settings: Settings) -> Iterator[tuple[Any, str]]:
    webchat = pytest.importorskip("sleuth.serve.webchat")
    demo = webchat.launch_ui(settings, port=_free_port(), investigator_factory=lambda: None,
                             access=Access(token=KEY))
    try:
        yield demo, demo.local_url.rstrip("/")
    finally:
        demo.close()


def test_the_web_chat_needs_its_token_on_every_route(webchat: tuple[Any, str], cwd_with_secrets: Path) -> None:
    demo, base = webchat
    assert demo.sleuth_url == f"{base}/?token={KEY}"
    for path in ("/", "/config", "/gradio_api/info", f"/gradio_api/file={cwd_with_secrets}/.ssh/id_rsa",
                 f"/gradio_api/file={cwd_with_secrets}/.env"):
        answer = httpx.get(base + path)
        assert answer.status_code == 401, path
        assert "secret" not in answer.text
        assert "open the address `sleuth ui` printed" in answer.json()["hint"]
    assert httpx.get(f"{base}/?token=wrong").status_code == 401


def test_the_token_in_the_address_becomes_a_strict_cookie(webchat: tuple[Any, str]) -> None:
    demo, base = webchat
    with httpx.Client() as browser:
        first = browser.get(demo.sleuth_url + "&thread=abc")
        assert first.status_code == 303 and first.headers["location"] == "/?thread=abc"
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = browser.get(base + "/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert browser.get(base + "/config").status_code == 200


def test_the_web_chat_serves_no_file_from_its_working_folder(webchat: tuple[Any, str],
                                                              cwd_with_secrets: Path) -> None:
    """Issue 18: GET /gradio_api/file=<cwd>/.ssh/id_rsa returned the key."""
    _, base = webchat
    headers = {"Authorization": f"Bearer {KEY}"}
    for name in (".ssh/id_rsa", ".env"):
        answer = httpx.get(f"{base}/gradio_api/file={cwd_with_secrets}/{name}", headers=headers)
        assert answer.status_code in (403, 404), name
        assert "secret" not in answer.text


def test_the_web_chat_refuses_foreign_hosts_and_origins(webchat: tuple[Any, str]) -> None:
    _, base = webchat
    cookie = {"Authorization": f"Bearer {KEY}"}
    rebound = httpx.get(base + "/config", headers={**cookie, "Host": "attacker.example"})
    assert rebound.status_code == 421
    cross = httpx.post(base + "/gradio_api/upload", headers={**cookie, "Origin": FOREIGN},
                       files={"files": ("a.mp4", b"\x00" * 64)})
    assert cross.status_code == 403 and "access-control-allow-origin" not in cross.headers
    assert json.loads(cross.text)["error"].startswith("requests from http://attacker.example")


def test_the_cli_prints_the_address_with_its_token(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from sleuth.cli.ui import ui
    from sleuth.serve import webchat
    from typer.testing import CliRunner

    class Stopped:
        local_url = "http://127.0.0.1:7860/"
        sleuth_url = "http://127.0.0.1:7860/?token=abc"

        def block_thread(self) -> None:
            return None

        def close(self) -> None:
            return None

    seen: dict[str, Any] = {}

    def fake_launch(settings: Settings, **options: Any) -> Stopped:
        seen.update(options)
        return Stopped()

    monkeypatch.setattr(webchat, "launch_ui", fake_launch)
    app = typer.Typer()
    app.command()(ui)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "Sleuth web chat: http://127.0.0.1:7860/?token=abc" in result.output
    assert "warning: listening on 0.0.0.0" in result.output
    assert "no data folders configured" in result.output
    assert seen["access"].generated and seen["host"] == "0.0.0.0"


# -- a real browser on another origin ----------------------------------------------------------

ATTACK_PAGE = """<!doctype html><title>cat pictures</title><script>
const results = {};
async function attempt(name, run) {
  try { results[name] = await run(); } catch (error) { results[name] = 'blocked: ' + error.name; }
}
function video() {
  const form = new FormData();
  form.append('file', new Blob(['ATTACK-PAYLOAD'], {type: 'video/mp4'}), 'a.mp4');
  return form;
}
(async () => {
  await attempt('api health', async () => (await fetch(API + '/v1/health')).text());
  await attempt('api jobs', async () => (await fetch(API + '/v1/jobs')).text());
  await attempt('api jobs with the key', async () =>
    (await fetch(API + '/v1/jobs', {headers: {'X-API-Key': KEY}})).text());
  await attempt('api upload', async () => (await fetch(API + '/v1/videos',
    {method: 'POST', body: video(), mode: 'no-cors'})).type);
  await attempt('api upload with the key', async () => (await fetch(API + '/v1/videos',
    {method: 'POST', body: video(), headers: {'X-API-Key': KEY}})).text());
  await attempt('api job', async () => (await fetch(API + '/v1/jobs', {method: 'POST', mode: 'no-cors',
    body: JSON.stringify({video: 'clip.mp4', scene: 'demo'})})).type);
  await attempt('web chat page', async () => (await fetch(UI + '/')).text());
  await attempt('web chat config', async () => (await fetch(UI + '/config', {credentials: 'include'})).text());
  await attempt('web chat upload', async () => (await fetch(UI + '/gradio_api/upload',
    {method: 'POST', body: video(), mode: 'no-cors', credentials: 'include'})).type);
  await attempt('web chat message', async () => (await fetch(UI + '/gradio_api/queue/join', {method: 'POST',
    mode: 'no-cors', credentials: 'include', body: JSON.stringify({data: ['detect clip.mp4'], fn_index: 0})})).type);
  window.results = results;
  document.title = 'done';
})();
</script>"""


@pytest.mark.slow  # chromium (about 10 s)
def test_a_page_on_another_origin_can_neither_read_nor_write(settings: Settings, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's acceptance test: a real chromium opens a page served from another origin on this
    machine, which tries to read from and write to a running API and web chat. The browser tab has
    also opened the web chat with its token before, so it carries the web chat's cookie."""
    import http.server
    import shutil
    import threading
    import time

    import uvicorn
    from sleuth.serve import access as access_module

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    webchat = pytest.importorskip("sleuth.serve.webchat")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))

    refused: list[tuple[str, str, int]] = []
    check = access_module.AccessGuard._check

    def recording(self: Any, scope: Any) -> Any:
        response = check(self, scope)
        if response is not None:
            refused.append((scope.get("method", "WS"), scope["path"], response.status_code))
        return response

    monkeypatch.setattr(access_module.AccessGuard, "_check", recording)
    calls: list[Any] = []

    class Recorder:
        def new_thread(self) -> str:
            return "t1"

        def send(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return iter(())

        def resume(self, *args: Any) -> Any:
            calls.append(args)
            return iter(())

        def pending(self, thread_id: str) -> None:
            return None

        def history(self, thread_id: str) -> list[Any]:
            return []

    jobs = JobStore(settings, detect=NoDetect())
    api_port, ui_port, page_port = _free_port(), _free_port(), _free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(settings, jobs=jobs, access=Access(token=KEY)),
                                           host="127.0.0.1", port=api_port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    demo = webchat.launch_ui(settings, port=ui_port, investigator_factory=Recorder, access=Access(token=KEY))
    page_html = ATTACK_PAGE.replace("API", f"'http://127.0.0.1:{api_port}'", 1)

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            body = (page_html.replace("const results", f"const API = 'http://127.0.0.1:{api_port}', "
                                      f"UI = 'http://127.0.0.1:{ui_port}', KEY = '{KEY}'; const results", 1)
                    ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    page_server = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Attacker)
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
            tab = browser.new_page()
            tab.goto(demo.sleuth_url)  # the analyst's session: the tab now holds the web chat's cookie
            for origin in (f"http://localhost:{page_port}", f"http://127.0.0.1:{page_port}"):  # cross-site, same-site
                tab.goto(f"{origin}/cats.html")
                tab.wait_for_function("document.title === 'done'", timeout=20_000)
                results = tab.evaluate("window.results")
                assert len(results) == 10
                for name, outcome in results.items():  # reads fail; no-cors writes give the page an opaque nothing
                    assert outcome in ("blocked: TypeError", "opaque"), (origin, name, outcome)
            browser.close()
    finally:
        demo.close()
        server.should_exit = True
        page_server.shutdown()

    assert _uploads(settings) == [] and jobs.recent(10) == [] and calls == []
    stored = [path for path in (tmp_path / "gradio").rglob("*") if path.is_file()]
    assert not any(b"ATTACK-PAYLOAD" in path.read_bytes() for path in stored)
    # the requests did reach the servers, and the guard turned them away
    assert {("POST", "/v1/videos", 403), ("POST", "/v1/jobs", 403), ("GET", "/v1/jobs", 403),
            ("POST", "/gradio_api/upload", 403), ("POST", "/gradio_api/queue/join", 403)} <= set(refused)
