"""The gate's own screen as a kiosk page: a small HTTP server on the box, read by its local browser.

Why a page and not a serial LED panel: the gate boxes this project targets are small Linux computers
with an HDMI or LVDS screen beside the face camera (the screen the face gates already carry), and a
browser in kiosk mode shows Chinese text, a group's count and a ticket type in colour at any size with
no font ROM; serial LED text panels speak a different protocol per maker, show a few characters, and
gates with them are fading out. A stdlib server keeps Flask off the box.

    GET /          the page (HTML, the language of the gate's config)
    GET /events    Server-Sent Events: one `notice` event per decision (JSON), a comment every 15 s
    GET /notice    the current notice as JSON (for a browser without EventSource: polling)

Listen on a local address only (127.0.0.1 by default, `devices.display.listen`): the page shows
what staff must check and is no public surface. A browser that is gone never holds up a decision:
each client has a bounded queue that drops the oldest notice.
"""

from __future__ import annotations

import html
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from protocol.i18n import N_, catalogue_locale, translation

from .announcer import Notice
from .display import Colour, Display
from .display import make_display as console_display

log = logging.getLogger(__name__)
IDLE_AFTER_S = 8.0  # the decision stays on the screen this long, then the page goes back to its prompt
KEEPALIVE_S = 15.0
# TRANSLATORS: the gate's screen between two visitors.
IDLE = N_("Please scan your ticket, ID card or pass")

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 html,body{{margin:0;height:100%;font-family:"Noto Sans CJK SC","Noto Sans",sans-serif;background:#111;color:#fff}}
 main{{display:flex;flex-direction:column;justify-content:center;align-items:center;height:100%;text-align:center}}
 #text{{font-size:9vw;font-weight:700;padding:0 4vw}}
 #lines div{{font-size:5vw;margin-top:2vh}}
 #lines .staff{{background:#fff;color:#000;padding:1vh 3vw;border-radius:1vw}}
 body.green{{background:#0a7a2f}} body.amber{{background:#b36b00}}
 body.red{{background:#a31515}} body.blue{{background:#1746a2}}
</style></head>
<body class="idle"><main><div id="text" role="status" aria-live="assertive">{idle}</div><div id="lines"></div></main>
<script>
const IDLE = {idle_json}, IDLE_MS = {idle_ms};
let timer = null;
function render(n) {{
  document.body.className = n.colour || "idle";
  document.getElementById("text").textContent = n.text;
  const box = document.getElementById("lines"); box.replaceChildren();
  for (const line of n.lines || []) {{
    const d = document.createElement("div"); d.textContent = line;
    if (n.see_staff && line === n.lines[n.lines.length - 1]) d.className = "staff";
    box.appendChild(d);
  }}
  clearTimeout(timer);
  timer = setTimeout(() => render({{text: IDLE, colour: "idle", lines: []}}), IDLE_MS);
}}
if (window.EventSource) {{
  const es = new EventSource("events");
  es.addEventListener("notice", e => render(JSON.parse(e.data)));
}} else {{
  let last = 0;
  setInterval(async () => {{
    const n = await (await fetch("notice")).json();
    if (n.at && n.at !== last) {{ last = n.at; render(n); }}
  }}, 500);
}}
</script></body></html>
"""


def notice_json(notice: Notice) -> dict:
    return {"text": notice.text, "colour": notice.colour, "reason": notice.reason, "lines": list(notice.lines),
            "see_staff": notice.see_staff, "at": notice.at}


class KioskDisplay:
    """A `Display` that serves the decision to the box's own browser; `url` once started."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, language: Callable[[], str] = lambda: "zh",
                 idle_after_s: float = IDLE_AFTER_S) -> None:
        self._language = language
        self.idle_after_s = idle_after_s
        self.current: Notice | None = None
        self._clients: set[queue.Queue[Notice]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        kiosk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
                log.debug("kiosk: " + format, *args)

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", kiosk.page().encode())
                elif path == "/notice":
                    body = notice_json(kiosk.current) if kiosk.current else {}
                    self._send(200, "application/json", json.dumps(body, ensure_ascii=False).encode())
                elif path == "/events":
                    kiosk._stream(self)
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found")

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kiosk", daemon=True)
        self._thread.start()
        log.info("kiosk page at %s", self.url)

    def page(self) -> str:
        language = self._language()
        idle = translation(language).gettext(IDLE)
        return PAGE.format(lang="zh-Hans" if catalogue_locale(language) == "zh_Hans" else "en",
                           title=html.escape(idle), idle=html.escape(idle),
                           idle_json=json.dumps(idle, ensure_ascii=False), idle_ms=int(self.idle_after_s * 1000))

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        q: queue.Queue[Notice] = queue.Queue(8)
        with self._lock:
            self._clients.add(q)
        try:
            handler.wfile.write(b": connected\n\n")
            handler.wfile.flush()
            while not self._stop.is_set():
                try:
                    notice = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    handler.wfile.write(b": keepalive\n\n")
                else:
                    data = json.dumps(notice_json(notice), ensure_ascii=False)
                    handler.wfile.write(f"event: notice\ndata: {data}\n\n".encode())
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the browser went away
        finally:
            with self._lock:
                self._clients.discard(q)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def wait_clients(self, n: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.clients < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)  # a browser connecting gives the display no event to wait on
        return True

    # -- Display ------------------------------------------------------------------------------------

    def show(self, text: str, colour: Colour, reason: str = "") -> None:
        pass  # the whole notice follows in `notice()`

    def speak(self, text: str) -> None:
        pass  # the voice module speaks (gate_agent.speaker); the page stays silent

    def notice(self, notice: Notice) -> None:
        self.current = notice
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            while True:
                try:
                    q.put_nowait(notice)
                    break
                except queue.Full:  # a slow browser: the oldest notice goes
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def make_display(kind: str, name: str, voice: bool = True, *, listen: tuple[str, int] = ("127.0.0.1", 8765),
                 language: Callable[[], str] = lambda: "zh") -> Display:
    """The display `devices.display.kind` names: "console", or "kiosk" (this page)."""
    if kind == "kiosk":
        return KioskDisplay(*listen, language=language)
    return console_display(kind, name, voice)


__all__ = ["KioskDisplay", "make_display"]
