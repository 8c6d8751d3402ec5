"""Open a static page in headless Chromium and report what did not load.

No browser-automation package is needed: Chromium is started with
``--remote-debugging-port=0`` and driven over the DevTools protocol with the
small WebSocket client below (RFC 6455 text frames, client-side masking).
Nothing is downloaded: the browser runs with a fresh profile, background
networking off and a dead proxy for every non-loopback address, so a page that
references anything outside the local server shows up as a failed request.

Used by ``tests/test_report_browser.py``; also a command-line check of a real
report folder::

    python tests/browser_check.py out/demo [--screenshot out/demo/screenshot.png]

prints a JSON report and exits 1 when an image, audio source or console
message says the page is broken.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--password-store=basic",
    "--mute-audio",
    "--hide-scrollbars",
    # Loopback bypasses the proxy; everything else hits a closed port and fails fast.
    "--proxy-server=127.0.0.1:9",
)


def find_chromium() -> str | None:
    """``$ASR_CHROMIUM`` or the first Chromium on ``PATH`` (``None`` if there is none)."""
    override = os.environ.get("ASR_CHROMIUM")
    if override:
        return override if Path(override).is_file() else shutil.which(override)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


# --------------------------------------------------------------------------- HTTP server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; requests are recorded on the server instead of printed."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".flac": "audio/flac",
        ".wav": "audio/wav",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".html": "text/html; charset=utf-8",
    }

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        self.server.requests.append(format % args)  # type: ignore[attr-defined]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []
        self.errors: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a browser that drops a media request half way is not a server problem
        self.errors.append(repr(sys.exc_info()[1]))


@contextlib.contextmanager
def serve_directory(directory: str | os.PathLike) -> Iterator[tuple[str, _Server]]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield ``(base_url, server)``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- WebSocket


class WebSocketError(ConnectionError):
    pass


class WebSocket:
    """A minimal blocking WebSocket client (text messages; enough for DevTools)."""

    _GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws":
            raise WebSocketError(f"only ws:// URLs are supported, got {url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WebSocketError("connection closed during the WebSocket handshake")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in f"{lines[0]} ":
            raise WebSocketError(f"WebSocket handshake refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        expected = base64.b64encode(hashlib.sha1(key + self._GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise WebSocketError("WebSocket handshake: wrong Sec-WebSocket-Accept")

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise WebSocketError("WebSocket connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack("!H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", n)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + _xor(payload, mask))

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def recv(self, timeout: float | None = None) -> str:
        """The next text message (pings answered, fragments joined). ``socket.timeout`` on timeout."""
        self.sock.settimeout(timeout)
        message = bytearray()
        while True:
            b0, b1 = self._read_exact(2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if b1 & 0x80 else None
            payload = self._read_exact(n)
            if mask:
                payload = _xor(payload, mask)
            if opcode == 0x8:
                raise WebSocketError("WebSocket closed by the peer")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if fin:
                return message.decode("utf-8")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        with contextlib.suppress(OSError):
            self.sock.close()


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


# --------------------------------------------------------------------------- DevTools


class DevToolsError(RuntimeError):
    pass


class DevTools:
    """Commands and events of one DevTools target over a :class:`WebSocket`."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self._next_id = 0

    def _receive(self, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            return json.loads(self.ws.recv(timeout=remaining))
        except TimeoutError as exc:
            raise TimeoutError from exc

    def call(self, method: str, params: dict | None = None, timeout: float = 20.0) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._receive(deadline)
            except TimeoutError:
                raise DevToolsError(f"{method}: no answer within {timeout:.0f} s") from None
            if message.get("id") == msg_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str, timeout: float = 20.0, since: int = 0) -> dict:
        """The first event ``method`` at index >= ``since`` of :attr:`events` (waits for it)."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for event in self.events[checked:]:
                if event["method"] == method:
                    return event
            checked = len(self.events)
            try:
                message = self._receive(deadline)
            except TimeoutError:
                raise DevToolsError(f"no {method} event within {timeout:.0f} s") from None
            if "method" in message:
                self.events.append(message)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while True:
                message = self._receive(deadline)
                if "method" in message:
                    self.events.append(message)


class Chromium:
    """A headless Chromium with a throw-away profile; one page driven over DevTools."""

    def __init__(
        self, executable: str | None = None, startup_timeout: float = 30.0, width: int = 1280, height: int = 900
    ) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("no Chromium found (install the Debian package `chromium`)")
        self.startup_timeout = startup_timeout
        self.width, self.height = width, height
        self.profile: Path | None = None
        self.process: subprocess.Popen | None = None
        self.ws: WebSocket | None = None
        self.devtools: DevTools | None = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="asr-chromium-"))
        log = open(self.profile / "chromium-stderr.log", "wb")  # noqa: SIM115 - closed below
        try:
            self.process = subprocess.Popen(
                [
                    self.executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self.profile / 'profile'}",
                    "--remote-debugging-port=0",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            port = self._wait_for_port()
            self.ws = WebSocket(self._page_socket_url(port), timeout=10)
        except BaseException:
            self.close()
            raise
        self.devtools = DevTools(self.ws)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.devtools.call(f"{domain}.enable")
        self.devtools.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    def _stderr_tail(self) -> str:
        try:
            text = (self.profile / "chromium-stderr.log").read_text(errors="replace")  # type: ignore[operator]
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-15:])

    def _wait_for_port(self) -> int:
        port_file = self.profile / "profile" / "DevToolsActivePort"  # type: ignore[operator]
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # type: ignore[union-attr]
                raise RuntimeError(
                    f"{self.executable} exited with code {self.process.returncode} at start-up:\n"  # type: ignore[union-attr]
                    f"{self._stderr_tail()}"
                )
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(port_file.read_text().split()[0])
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.executable}: no DevTools port after {self.startup_timeout:.0f} s:\n{self._stderr_tail()}"
        )

    def _page_socket_url(self, port: int) -> str:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    targets = json.load(response)
                for target in targets:
                    if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                        return target["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise RuntimeError(f"{self.executable}: no page target on DevTools port {port}")

    def close(self) -> None:
        if self.devtools is not None:
            with contextlib.suppress(Exception):
                self.devtools.call("Browser.close", timeout=5)
        if self.ws is not None:
            self.ws.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # our own process group only (start_new_session=True above)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=5)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
        self.devtools = self.ws = self.process = None

    def check_page(
        self, url: str, screenshot: str | os.PathLike | None = None, timeout: float = 20.0, settle: float = 0.3
    ) -> PageReport:
        """Load ``url``, wait for images and audio metadata, and report what failed."""
        dt = self.devtools
        assert dt is not None, "call start() first"
        first_event = len(dt.events)
        result = dt.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise DevToolsError(f"{url}: navigation failed: {result['errorText']}")
        dt.wait_event("Page.loadEventFired", timeout=timeout, since=first_event)
        evaluated = dt.call(
            "Runtime.evaluate",
            {"expression": _CHECK_SCRIPT, "awaitPromise": True, "returnByValue": True, "timeout": int(timeout * 1000)},
            timeout=timeout + 5,
        )
        if "exceptionDetails" in evaluated:
            raise DevToolsError(f"page check script failed: {evaluated['exceptionDetails']}")
        facts = evaluated["result"]["value"]
        dt.drain(settle)
        report = PageReport(url=url, **facts)
        _collect_errors(report, dt.events[first_event:])
        if screenshot is not None:
            report.screenshot = str(self.screenshot(screenshot))
        return report

    def screenshot(self, path: str | os.PathLike, max_height: int = 16000) -> Path:
        """A PNG of the whole page (up to ``max_height`` CSS pixels tall)."""
        dt = self.devtools
        assert dt is not None
        metrics = dt.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": max(1, int(size["width"])),
            "height": max(1, min(int(size["height"]), max_height)),
            "scale": 1,
        }
        shot = dt.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, timeout=30
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


# In the page: wait for every image and audio element, then fetch each audio source.
_CHECK_SCRIPT = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map((img) => img.complete ? null :
      new Promise((r) => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  const audios = Array.from(document.querySelectorAll('audio'));
  const t0 = performance.now();
  while (audios.some((a) => a.readyState < 1 && !a.error) && performance.now() - t0 < 10000) {
    await sleep(50);
  }
  const audio = audios.map((a) => {
    const source = a.querySelector('source');
    return {src: a.currentSrc || a.src || (source ? source.src : ''),
            type: source ? source.type : '',
            can_play: source && source.type ? a.canPlayType(source.type) : '',
            ready_state: a.readyState, network_state: a.networkState,
            error: a.error ? a.error.code : null,
            duration: Number.isFinite(a.duration) ? a.duration : null};
  });
  const fetched = [];
  for (const src of [...new Set(audio.map((a) => a.src).filter(Boolean))]) {
    try {
      const r = await fetch(src, {cache: 'no-store'});
      const b = await r.arrayBuffer();
      fetched.push({src, status: r.status, bytes: b.byteLength,
                    content_type: r.headers.get('content-type') || ''});
    } catch (e) {
      fetched.push({src, status: 0, bytes: 0, content_type: '', error: String(e)});
    }
  }
  const resources = Array.from(document.querySelectorAll('[src], link[href]'))
      .map((e) => e.src || e.href).filter((u) => u && !u.startsWith('data:'));
  const external = resources.filter((u) => new URL(u, location.href).origin !== location.origin);
  const anchors = Array.from(document.querySelectorAll('a[href^="#"]')).map((a) => a.getAttribute('href'));
  const broken_anchors = anchors.filter((h) => h.length > 1 &&
      !document.getElementById(decodeURIComponent(h.slice(1))));
  return {
    title: document.title,
    images: imgs.map((img) => ({src: img.currentSrc || img.src, alt: img.getAttribute('alt'),
                                natural_width: img.naturalWidth, natural_height: img.naturalHeight,
                                rendered_width: img.getBoundingClientRect().width})),
    audio, fetched, external_resources: external, broken_anchors,
    scripts: document.scripts.length,
    horizontal_overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
})()
"""


@dataclass
class PageReport:
    """What one page load showed; :meth:`problems` lists everything that is wrong."""

    url: str
    title: str = ""
    images: list[dict] = field(default_factory=list)
    audio: list[dict] = field(default_factory=list)
    fetched: list[dict] = field(default_factory=list)
    external_resources: list[str] = field(default_factory=list)
    broken_anchors: list[str] = field(default_factory=list)
    scripts: int = 0
    horizontal_overflow: bool = False
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    screenshot: str | None = None

    def problems(self) -> list[str]:
        out = []
        for img in self.images:
            if not img["natural_width"]:
                out.append(f"image did not load: {img['src']}")
            if not img.get("alt"):
                out.append(f"image without alt text: {img['src']}")
        for item in self.audio:
            if not item["src"]:
                out.append("audio element without a source")
            elif item["error"] is not None:
                out.append(f"audio element error {item['error']}: {item['src']}")
            elif item["ready_state"] < 1:
                out.append(f"audio metadata not loaded (readyState {item['ready_state']}): {item['src']}")
        for got in self.fetched:
            if got["status"] != 200 or got["bytes"] <= 0:
                out.append(f"audio source not readable (HTTP {got['status']}, {got['bytes']} bytes): {got['src']}")
        out += [f"external resource: {u}" for u in self.external_resources]
        out += [f"link to a missing anchor: {h}" for h in self.broken_anchors]
        out += [f"console: {m}" for m in self.console_errors]
        out += [f"request failed: {m}" for m in self.failed_requests]
        out += [f"HTTP error: {m}" for m in self.http_errors]
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "problems": self.problems()}


def _remote_object_text(obj: dict) -> str:
    if "value" in obj:
        return str(obj["value"])
    return str(obj.get("description") or obj.get("type", ""))


def _collect_errors(report: PageReport, events: list[dict]) -> None:
    requests: dict[str, str] = {}
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.console_errors.append(" ".join(_remote_object_text(a) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception") or {}
            report.console_errors.append(f"{details.get('text', '')} {exc.get('description', '')}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            requests[params.get("requestId", "")] = params.get("request", {}).get("url", "")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            if int(response.get("status", 0)) >= 400:
                report.http_errors.append(f"{response.get('status')} {response.get('url', '')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = requests.get(params.get("requestId", ""), "?")
            report.failed_requests.append(f"{params.get('errorText', '')} {url}".strip())


def check_report(
    out_dir: str | os.PathLike,
    screenshot: str | os.PathLike | None = None,
    page: str = "index.html",
    executable: str | None = None,
) -> PageReport:
    """Serve ``out_dir`` on 127.0.0.1, open ``page`` in headless Chromium and report."""
    with serve_directory(out_dir) as (base, _server), Chromium(executable) as browser:
        return browser.check_page(base + page, screenshot=screenshot)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="report folder (with index.html)")
    parser.add_argument("--page", default="index.html")
    parser.add_argument("--screenshot", type=Path, default=None, help="write a full-page PNG here")
    args = parser.parse_args(argv)
    report = check_report(args.out_dir, args.screenshot, args.page)
    print(json.dumps(report.to_dict(), indent=2))
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
