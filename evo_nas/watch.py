"""`evonas watch RUN`: the run's report served on localhost, re-rendered whenever the journal
grows (each evaluation appends a line), with a page that polls and reloads itself; a study's
page for a study directory, re-rendered whenever its journal or a search's grows.   [stdlib
http.server; the report's own dependencies]

Nothing is written: the page is rendered in memory from the journal, as `evonas report` would
render it, with plotly.js served once (the browser caches it) instead of inside every page.
"""

from __future__ import annotations

import html
import json
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from evo_nas.errors import Interrupted, UserError
from evo_nas.store import RunDir

POLL_SECONDS = 1.0  # how often the page asks whether the journal changed

# The page's side: ask for the version every POLL_SECONDS; reload (keeping the scroll position)
# when it differs from the one the page was rendered at; say so while the server is gone.
LIVE = """<div id='evonas-live' style='position:fixed;top:8px;right:12px;font-size:12px;background:#e8f5e9;
border:1px solid #9c9;padding:2px 8px;border-radius:10px;z-index:20'>live</div>
<script>
(function () {
  var version = %(version)s, badge = document.getElementById('evonas-live'), key = 'evonas-watch-scroll';
  var y = sessionStorage.getItem(key);
  if (y !== null) {
    sessionStorage.removeItem(key);
    window.addEventListener('load', function () { window.scrollTo(0, Number(y)); });
  }
  var poll = function () {
    fetch('version', {cache: 'no-store'}).then(function (r) { return r.text(); }).then(function (now) {
      badge.textContent = 'live';
      if (now !== version) {
        sessionStorage.setItem(key, String(window.scrollY));
        location.reload();
        return;
      }
      setTimeout(poll, %(ms)d);
    }, function () {
      badge.textContent = 'evonas watch stopped; retrying';
      setTimeout(poll, 3 * %(ms)d);
    });
  };
  setTimeout(poll, %(ms)d);
})();
</script>"""


class LiveReport:
    """The report page for the journal as it is now, rendered again only when it changed."""

    def __init__(self, run_dir: str | os.PathLike):
        from evo_nas import protocol

        self.run = RunDir.open(run_dir)  # not a run: one line, exit 2, before listening
        self.study = protocol.is_study(self.run)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._page = b""

    def version(self) -> str:
        """Changes whenever a file the report reads changes (size and modification time)."""
        from evo_nas import protocol

        parts = []
        files = protocol.journals(self.run) if self.study else [self.run.journal_file]
        for path in (*files, self.run.meta_file, self.run.config_file):
            try:
                st = path.stat()
                parts.append(f"{st.st_size}.{st.st_mtime_ns}")
            except OSError:
                parts.append("-")
        return "-".join(parts)

    def page(self) -> bytes:
        with self._lock:  # one render at a time; requests meanwhile get the fresh page after it
            version = self.version()
            if version != self._version:
                self._page, self._version = self._render(version).encode("utf-8"), version
            return self._page

    def _render(self, version: str) -> str:
        from evo_nas import report
        from evo_nas.report import shell

        tail = LIVE % {"version": json.dumps(version), "ms": round(POLL_SECONDS * 1000)}
        try:
            if self.study:
                from evo_nas import protocol
                from evo_nas.report import protocol_page

                return protocol_page.render_page(protocol.summary_of(self.run), self.run.path.name, "shared", tail)
            return report.render_html(report.report_data(self.run), plotly_js="shared", tail=tail)
        except UserError as err:  # e.g. a line being repaired: say so, and keep polling
            return shell.render("evonas watch", f"evonas watch {self.run.path.name}",
                                intro=f"<p>evonas: {html.escape(str(err))}</p>", plotly_js=None, tail=tail)


def handler(live: LiveReport) -> type[BaseHTTPRequestHandler]:
    """The server's answers; PlotlyMissing (one line) where plotly is not installed."""
    from evo_nas.report import shell

    plotly_js = shell.plotly_js_text().encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html", "/report.html"):
                self._send(live.page(), "text/html; charset=utf-8")
            elif path == "/version":
                self._send(live.version().encode(), "text/plain; charset=utf-8")
            elif path == "/plotly.min.js":
                self._send(plotly_js, "text/javascript; charset=utf-8", cache=True)
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _send(self, body: bytes, kind: str, cache: bool = False) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # a request log is noise here
            pass

    return Handler


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765,
          log: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C (or SIGTERM), then close the socket and raise Interrupted."""
    live = LiveReport(run_dir)
    try:
        server = ThreadingHTTPServer((host, port), handler(live))
    except OSError as err:
        raise UserError(f"{host}:{port}: cannot listen there ({err.strerror or err}); try another --port") from None
    server.daemon_threads = True
    with server:
        log(f"watching {live.run.path} at http://{host}:{server.server_port}/ (Ctrl-C stops)")
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt as stop:
            raise Interrupted("the run itself was not touched",
                              getattr(stop, "signum", 2)) from None
