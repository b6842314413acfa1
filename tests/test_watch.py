"""`evonas watch`: the page follows the journal (re-rendered only when it changed), the server
answers what the page asks, Ctrl-C and SIGTERM stop it cleanly, bad input is one line, and in
headless Chromium the page updates itself while a real run is still going."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from evo_nas import watch
from evo_nas.store import RunDir
from tests.test_report import Browser, history_records, make_run, needs_chromium, rec, without_plotly

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "3", "--generations", "2", "--no-report"]
HANG = 600  # seconds: only to catch a hang; the waits below are on what the page or the journal shows


@pytest.fixture
def run(tmp_path) -> RunDir:
    return make_run(tmp_path / "run", history_records()[:6])


def test_the_page_is_rendered_again_only_when_the_journal_changed(run):
    live = watch.LiveReport(run.path)
    first = live.page()
    assert live.page() is first  # nothing changed: the same bytes, no second render
    version = live.version()
    run.append(rec(12, 2, 0.75, 120, 12, [1]))
    assert live.version() != version
    second = live.page()
    assert second is not first and b"data-id='12'" in second and b"data-id='12'" not in first
    page = second.decode()
    assert "<script src='plotly.min.js'></script>" in page and json.dumps(live.version()) in page
    assert "fetch('version'" in page and "location.reload()" in page


def test_a_damaged_journal_is_shown_as_its_one_line_and_watched_on(run):
    live = watch.LiveReport(run.path)
    with open(run.journal_file, "a") as f:
        f.write("garbage\n")
    run.append(rec(12, 2, 0.75, 120, 12, [1]))
    page = live.page().decode()
    assert "line 7 is damaged" in page and "fetch('version'" in page  # keeps polling
    lines = run.journal_file.read_text().splitlines(keepends=True)
    run.journal_file.write_text("".join(lines[:6] + lines[7:]))  # repaired
    assert b"data-id='12'" in live.page()


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.status, dict(reply.headers), reply.read()


def test_the_server_answers_the_page_its_version_and_plotly(run):
    from plotly.offline import get_plotlyjs

    live = watch.LiveReport(run.path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), watch.handler(live))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    try:
        status, headers, body = get(base)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"evonas run run" in body
        assert headers["Cache-Control"] == "no-store"
        assert get(base + "version")[2].decode() == live.version()
        status, headers, body = get(base + "plotly.min.js")
        assert body.decode() == get_plotlyjs() and "max-age" in headers["Cache-Control"]
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(base + "journal.jsonl")  # nothing of the run directory itself is served
    finally:
        server.shutdown()
        server.server_close()


def evonas(*args) -> subprocess.Popen:
    # A shell's background job ignores SIGINT, and a Python started so never installs its Ctrl-C
    # handler: give the child the default, as a terminal would (as in test_run).
    return subprocess.Popen([sys.executable, "-m", "evo_nas", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "EVONAS_NO_DOWNLOAD": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def started(process: subprocess.Popen) -> str:
    """The URL `evonas watch` prints once it listens."""
    line = process.stdout.readline()
    found = re.search(r"at (http://\S+/) \(Ctrl-C stops\)", line)
    assert found, line + process.stderr.read()
    return found.group(1)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_ctrl_c_and_sigterm_stop_it_cleanly(run, signum, code):
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    process = evonas("watch", run.path, "--port", "0")
    try:
        url = started(process)
        assert get(url)[0] == 200
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code
    assert err.strip().splitlines()[-1] == "evonas: stopped; the run itself was not touched", err
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before  # nothing written
    with pytest.raises(urllib.error.URLError):
        get(url)  # the port is closed


def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
    from evo_nas.cli import main

    assert main(["watch", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    busy = ThreadingHTTPServer(("127.0.0.1", 0), watch.handler(watch.LiveReport(run.path)))
    try:
        assert main(["watch", str(run.path), "--port", str(busy.server_port)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot listen there" in err and "--port" in err
    finally:
        busy.server_close()


def test_without_plotly_it_is_one_line_and_exit_2(run):
    done = without_plotly(f"from evo_nas.cli import main; print(main(['watch', {str(run.path)!r}, '--port', '0']))",
                          run.path)
    assert done.stdout.split() == ["2"] and done.stderr.count("\n") == 1 and "plotly is not installed" in done.stderr


ROWS_JS = """(function () {
  if (document.readyState !== 'complete') return null;  // between two versions of the page
  var rows = document.querySelectorAll('#evaluations tbody tr');
  return {rows: rows.length, live: !!document.getElementById('evonas-live'), errors: window.__errors || []};
})()"""


def complete_lines(journal: Path) -> int:
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_the_page_follows_a_run_that_is_still_going(tmp_path):
    """The run is paused (SIGSTOP) twice, at journal lengths it reached by itself, and the page
    must show each length while the run is still going: no race with how fast it trains."""
    runs = tmp_path / "runs"
    search = evonas("run", *TINY, "--runs-dir", runs, "--name", "live", "--backend", "serial")
    watcher = None
    try:
        journal = runs / "live" / "journal.jsonl"
        deadline = time.monotonic() + HANG
        while not (complete_lines(journal) and (runs / "live" / "config.yaml").exists()):
            assert search.poll() is None and time.monotonic() < deadline, search.stderr.read()
            time.sleep(0.05)
        search.send_signal(signal.SIGSTOP)
        watcher = evonas("watch", runs / "live", "--port", "0")
        url = started(watcher)
        with Browser(tmp_path / "profile") as browser:
            browser.open(url)
            seen = []
            for _ in range(2):
                lines = complete_lines(journal)
                shown = browser.wait(f"(function () {{ var s = {ROWS_JS}; return s && s.rows === {lines} && s; }})()",
                                     timeout=HANG)
                assert shown["live"] and shown["errors"] == [], shown
                seen.append(shown["rows"])
                search.send_signal(signal.SIGCONT)
                while complete_lines(journal) == lines:  # let it write more, then pause it again
                    assert search.poll() is None and time.monotonic() < deadline, search.stderr.read()
                    time.sleep(0.05)
                if search.poll() is None:
                    search.send_signal(signal.SIGSTOP)
            search.send_signal(signal.SIGCONT)
            assert seen[0] < seen[1], seen  # it grew, by itself, during the run
            assert search.wait(timeout=HANG) == 0, search.stderr.read()
            lines = complete_lines(journal)
            final = browser.wait(f"(function () {{ var s = {ROWS_JS}; return s && s.rows === {lines} && s; }})()",
                                 timeout=60)
            assert final["errors"] == [] and browser.exceptions == []
    finally:
        for process in (search, watcher):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
