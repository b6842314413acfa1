"""Hostile input, as a table: what a user does, the one line evonas must answer (exit 2), and
that nothing already written changed. Then the run-directory cases that need a process of
their own: the lock, a kill while a run directory is made, SIGTERM, a read-only run."""

import io
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from evo_nas.cli import main
from evo_nas.store import RunDir
from tests.waiting import HANG, wait_for_lines

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "4", "--no-report"]


def evonas(*args, env=None, timeout=HANG, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evo_nas", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "EVONAS_NO_DOWNLOAD": "1", **(env or {})}, timeout=timeout,
                          **options)


def files(path: Path) -> dict:
    """Every file's bytes, but the lock's (it names whoever held the run last)."""
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


def lines(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in ("wall_time", "images_per_s", "finished")}
            for x in (run / "journal.jsonl").read_text().splitlines() if x.strip()]


def tiny_run(tmp_path_factory, name: str, generations: int) -> Path:
    runs = tmp_path_factory.mktemp(name)
    done = evonas("run", *TINY, "--runs-dir", runs, "--name", name, "--generations", str(generations))
    assert done.returncode == 0, done.stderr
    return runs / name


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of 3 generations (16 evaluations)."""
    return tiny_run(tmp_path_factory, "done", 3)


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def genome_file(tmp_path: Path, text: str, name="g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def npz(tmp_path: Path, labels) -> str:
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.zeros((len(labels), 16, 16), np.uint8), y=np.array(labels))
    return f"npz:{path}"


def damage_snapshots(run: Path, how: str) -> None:
    newest = sorted((run / "snapshots").glob("gen-*.json"))[-1]
    if how == "deleted":
        shutil.rmtree(run / "snapshots")
    elif how == "fields missing":
        newest.write_text('{"generation": 1}\n')
    elif how == "wrong types":
        newest.write_text(re.sub(r'"next_id": \d+', '"next_id": "abc"', newest.read_text()))
    elif how == "nested deeply":
        newest.write_text("[" * 5000 + "]" * 5000 + "\n")


LAYER = "space: layers\nlayers:\n- {height: 3, width: 3, filters: %s, inputs: [0]}\n"
LATIN_1 = "# café\n".encode("latin-1")  # the é a Latin-1 editor writes: one byte, 0xe9, never UTF-8

# (what the user does, the words of the one-line answer). {tmp} is a fresh folder, {run} a copy
# of a finished run, {genome:TEXT} a genome file with TEXT, {npz:LABELS} an npz data set.
TABLE = [
    (["run", "--name", "../../x"], "name: must be one folder name"),
    (["run", "--name", "/abs/path"], "name: must be one folder name"),
    (["run", "--population", "99999999999999999999999999"], "population: 99999999999999999999999999 is above the most"),
    (["run", "--dataset", "mnist", "--data-dir", "/nonexistent"], "--data-dir names the folder to use"),
    (["run", "--data-dir", "{tmp}"], "fashion-mnist not found"),
    (["run", "--dataset", "{npz:0,1,2,57}"], "labels run to 57 but 54 of 0..57 never appear"),
    (["run", "--dataset", "{npz:0,1,2,1000}"], "labels run to 1000 but 997 of 0..1000 never appear"),
    (["run", "--dataset", "{npz:0,1,2,3}", "--classes", "2"], "label 3 >= classes=2"),
    (["run", "--space", "layers", "--filter-counts", "2000000"], "filter_counts: 2000000 is more than evonas allows"),
    (["inspect", "{genome:" + LAYER % "1e20" + "}"], "layers[0].filters: must be an integer, got '1e20'"),
    (["inspect", "{genome:" + LAYER % "1.0e+20" + "}"], "layers[0].filters: must be an integer, got 1e+20"),
    (["inspect", "{genome:" + LAYER % "2000000" + "}"], "layers[0].filters: 2000000 is more than evonas allows"),
    (["inspect", "{deep genome}"], "nested too deeply to be a genome"),
    (["inspect", "{huge genome}"], "bytes is more than a genome file may have"),
    (["resume", "{run}", "--generations", "1"], "has 3 generations done; --generations 1 is below that"),
    (["resume", "{run}", "--budget", "5"], "has 16 networks trained; --budget 5 is below that"),
    (["resume", "{run:config}"], "config.yaml: not valid YAML (line 4, column 1: expected the node content"),
    (["report", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["resume", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["front", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["report", "{run}", "--out", "{run}/journal.jsonl"], "is the run's own journal file; --out must name a new file"),
    (["report", "{run}", "--out", "{run}/config.yaml"], "is the run's own config file; --out must name a new file"),
    (["bench", "--in-flight", "a,b"], "bench: in_flight: expected tuple[int, ...], got 'a,b'"),
    (["bench", "--in-flight", "0"], "bench: in_flight: counts of 1 or more, such as 1,2,4; got 0"),
    # issue 24: every reader, one line
    (["inspect", "{genome:space: [cells]\n}"], "space: must be one of cells, layers, nb201, got ['cells']"),
    (["run", "--config", "{latin-1 config}"], "not UTF-8 text (byte 0xe9 at line 1, byte offset 5)"),
    (["resume", "{run:latin-1}"], "config.yaml: not UTF-8 text (byte 0xe9 at line 1, byte offset 5)"),
    (["report", "{run:latin-1}"], "config.yaml: not UTF-8 text (byte 0xe9 at line 1, byte offset 5)"),
    (["front", "{run:latin-1}"], "config.yaml: not UTF-8 text (byte 0xe9 at line 1, byte offset 5)"),
    (["run", "--config", "{deep config}"], "nested too deeply to be a config file (more than 100 levels at line 2)"),
    (["resume", "{run:deep config}"], "config.yaml: nested too deeply to be a run config"),
    (["report", "{run:deep config}"], "config.yaml: nested too deeply to be a run config"),
    (["front", "{run:deep config}"], "config.yaml: nested too deeply to be a run config"),
    (["resume", "{run:deep meta}"], "meta.json: nested too deeply to be a meta.json"),
    (["report", "{run:deep meta}"], "meta.json: nested too deeply to be a meta.json"),
    (["front", "{run:deep meta}"], "meta.json: nested too deeply to be a meta.json"),
    (["resume", "{run:meta types}"], "meta.json: damaged (objectives is 5, not a JSON list)"),
    (["report", "{run:meta types}"], "meta.json: damaged (objectives is 5, not a JSON list)"),
    (["front", "{run:meta types}"], "meta.json: damaged (objectives is 5, not a JSON list)"),
    (["resume", "{run:results_config}"], "meta.json: damaged (results_config is ['space'], not a JSON object)"),
    (["resume", "{run:snapshots file}", "--generations", "4"], "is a file where the run keeps its snapshots folder"),
    (["resume", "{run:history folder}", "--generations", "4"], "history.csv: is a folder where the run keeps a file"),
    (["run", "--seed", "-1"], "seed: must not be negative, got -1"),
    (["run", "--config", "{file:space: nb201\npopulation: 4\npopulation: 5\n}"],
     "not valid YAML (line 3, column 1: key 'population' appears twice (lines 2 and 3))"),
    (["inspect", "{genome:space: nb201\narch: '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'\n"
                 "arch: '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'\n}"],
     "key 'arch' appears twice (lines 2 and 3)"),
]


def prepare(arg: str, tmp_path: Path, run: Path) -> str:
    if arg == "{tmp}":
        return str(tmp_path)
    if arg.startswith("{genome:"):
        return str(genome_file(tmp_path, arg[len("{genome:"):-1]))
    if arg == "{deep genome}":
        return str(genome_file(tmp_path, "space: cells\nnormal: " + "[" * 5000 + "]" * 5000 + "\n"))
    if arg == "{huge genome}":
        return str(genome_file(tmp_path, "space: nb201\n" + "# filler\n" * 300_000))
    if arg.startswith("{npz:"):
        return npz(tmp_path, [int(x) for x in arg[5:-1].split(",")])
    if arg.startswith("{file:"):
        return str(genome_file(tmp_path, arg[len("{file:"):-1], "config.yaml"))
    if arg == "{latin-1 config}":
        (tmp_path / "config.yaml").write_bytes(LATIN_1 + b"space: nb201\n")
        return str(tmp_path / "config.yaml")
    if arg == "{deep config}":
        return str(genome_file(tmp_path, "space: nb201\nobjectives: " + "[" * 5000 + "]" * 5000 + "\n", "config.yaml"))
    if arg == "{run:latin-1}":
        (run / "config.yaml").write_bytes(LATIN_1 + (run / "config.yaml").read_bytes())
    if arg == "{run:deep config}":
        (run / "config.yaml").write_text("space:\n  space: " + "[" * 5000 + "]" * 5000 + "\n")
    if arg == "{run:deep meta}":
        (run / "meta.json").write_text('{"format": 1, "seed": ' + "[" * 5000 + "]" * 5000 + "}\n")
    if arg in ("{run:meta types}", "{run:results_config}"):
        meta = json.loads((run / "meta.json").read_text())
        meta.update({"objectives": 5} if arg == "{run:meta types}" else {"results_config": ["space"]})
        (run / "meta.json").write_text(json.dumps(meta))
    if arg == "{run:snapshots file}":
        shutil.rmtree(run / "snapshots")
        (run / "snapshots").write_text("not a folder\n")
    if arg == "{run:history folder}":
        (run / "history.csv").unlink()
        (run / "history.csv").mkdir()
    if arg == "{run:config}":
        (run / "config.yaml").write_text("space:\n  space: nb201\n  bad: [\n")
    if arg == "{run:genome}":
        journal = (run / "journal.jsonl").read_text().splitlines()
        record = json.loads(journal[2])
        record["genome"] = {"space": "nb201", "arch": "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"}
        (run / "journal.jsonl").write_text("\n".join([*journal[:2], json.dumps(record), *journal[3:]]) + "\n")
    if arg.startswith("{run}/"):
        return str(run / arg[len("{run}/"):])
    return str(run) if arg.startswith("{run") else arg


@pytest.mark.parametrize("args, words", TABLE, ids=[" ".join(a)[:60] for a, _ in TABLE])
def test_one_clear_line_exit_2_and_nothing_changed(args, words, tmp_path, run, capsys, monkeypatch):
    monkeypatch.setenv("EVONAS_NO_DOWNLOAD", "1")
    runs = tmp_path / "runs"
    runs.mkdir()
    args = [prepare(a, tmp_path, run) for a in args]
    before = files(run), files(runs)
    if args[0] == "run":
        args += ["--runs-dir", str(runs), *TINY[TINY.index("--no-report"):]]
    code = main(args)  # in this process: a traceback would be an exception here
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert (files(run), files(runs)) == before


# -- bombs: a few bytes that claim gigabytes, under a memory and a time limit -----------------------

MEMORY = 1 << 30  # the data limit (RLIMIT_DATA: heap and anonymous mappings) a bomb test runs evonas under
BOMB_TIME = 300  # seconds; a refusal takes a few, a bomb that goes off hits MEMORY long before this


def bounded(*args, **options) -> subprocess.CompletedProcess:
    """evonas in a process of its own with at most MEMORY of data and BOMB_TIME seconds: a bomb
    that goes off there is a MemoryError or a timeout, not this machine out of memory."""
    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY, MEMORY))
    return evonas(*args, preexec_fn=limit, timeout=BOMB_TIME, **options)


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow list of a few hundred bytes: nine x's, then each level nine aliases of the one
    before, so that str() of it would spell 9**9 (387 million) x's."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def npz_bomb(path: Path, images: int, side: int = 64) -> Path:
    """A .npz whose x (zeros, images x side x side) inflates to GBs from a few MB: one deflated
    MiB of zeros written again and again (a full flush makes each copy a complete block). The
    zip is written by hand, as no library writes a member it has not compressed itself."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (images, side, side)})
    header, mib = head.getvalue(), 1 << 20
    size = len(header) + images * side * side
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(header + bytes(mib - len(header))) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(mib)) + deflate.flush(zlib.Z_FULL_FLUSH)
    copies, rest = divmod(size - mib, mib)
    last = deflate.compress(bytes(rest)) + deflate.flush()
    crc = zlib.crc32(header + bytes(mib - len(header)))
    for _ in range(copies):
        crc = zlib.crc32(bytes(mib), crc)
    crc = zlib.crc32(bytes(rest), crc)
    labels = io.BytesIO()
    np.save(labels, np.zeros(images, np.int64))
    members = [(b"x.npy", 8, crc, len(first) + copies * len(block) + len(last), size),
               (b"y.npy", 0, zlib.crc32(labels.getvalue()), len(labels.getvalue()), len(labels.getvalue()))]
    with open(path, "wb") as f:
        offsets = []
        for (name, method, crc_, packed, unpacked), parts in zip(members, [None, [labels.getvalue()]]):
            offsets.append(f.tell())
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc_, packed, unpacked,
                                len(name), 0) + name)
            if parts is None:
                f.write(first)
                for _ in range(copies):
                    f.write(block)
                f.write(last)
            else:
                f.write(parts[0])
        directory = f.tell()
        for (name, method, crc_, packed, unpacked), offset in zip(members, offsets):
            f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc_, packed, unpacked,
                                len(name), 0, 0, 0, 0, 0, offset) + name)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, f.tell() - directory, directory, 0))
    return path


def bomb(what: str, tmp_path: Path, run: Path) -> list[str]:
    """The command line that meets bomb `what`."""
    if what.startswith("config file: "):
        key = what.removeprefix("config file: ")
        return ["run", "--config", genome_file(tmp_path, f"space: nb201\n{key}: {alias_bomb()}\n", "bomb.yaml")]
    if what == "run config.yaml":
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(config.replace("  population: 4\n", f"  population: {alias_bomb()}\n"))
        return ["resume", run, "--generations", "4"]
    if what.startswith("genome: "):
        text = {"hparams": "space: nb201\narch: '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'\n"
                           f"hparams: {{lr: {alias_bomb()}, weight_decay: 0.001, dropout: 0.0, optimizer: sgd}}\n",
                "filters": LAYER % alias_bomb(),
                "concat": (ROOT / "genomes" / "darts_v2.yaml").read_text().replace("concat: [2, 3, 4, 5]",
                                                                                   f"concat: {alias_bomb()}", 1)}
        return ["inspect", genome_file(tmp_path, text[what.removeprefix("genome: ")])]
    labels = tmp_path / "labels.npz"
    if what == "npz: a label of 2^40":
        np.savez(labels, x=np.zeros((4, 16, 16), np.uint8), y=np.array([0, 1, 2, 2 ** 40]))
    elif what == "npz: a header claiming 1 TB":
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 12,)})
        with zipfile.ZipFile(labels, "w") as z:
            z.writestr("x.npy", header.getvalue() + bytes(4096))
            z.writestr("y.npy", header.getvalue())
    elif what == "npz: 6 MB inflating to 2 GB":
        npz_bomb(labels, (2 << 30) // 4096)
    return ["run", *TINY, "--device", "cpu", "--dataset", f"npz:{labels}", "--runs-dir", tmp_path / "runs",
            "--generations", "1"]


BOMBS = [  # (what, the words of the one-line answer)
    *[(f"config file: {key}", "anchors and aliases (&name, *name) are not allowed")
      for key in ("population", "objectives", "seed_genomes", "name")],
    ("run config.yaml", "column 16: anchors and aliases (&name, *name) are not allowed"),
    *[(f"genome: {key}", "anchors and aliases (&name, *name) are not allowed")
      for key in ("hparams", "filters", "concat")],
    ("npz: a label of 2^40", "labels run to 1099511627776, beyond the 100,000 classes evonas allows"),
    ("npz: a header claiming 1 TB", "x claims 1.0 TB (shape (1000000000000,)) but holds 4.2 KB"),
    ("npz: 6 MB inflating to 2 GB", "its arrays take 2.2 GB once inflated, more than the"),
]


@pytest.mark.slow  # a process each, under a memory limit
@pytest.mark.parametrize("what, words", BOMBS, ids=[what for what, _ in BOMBS])
def test_a_bomb_is_one_line_within_a_memory_and_a_time_limit(what, words, tmp_path, run):
    args = bomb(what, tmp_path, run)
    (tmp_path / "runs").mkdir()
    before = files(run), files(tmp_path / "runs")
    result = bounded(*args)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1 and words in err[0], result.stderr[-2000:]
    assert (files(run), files(tmp_path / "runs")) == before


# -- damage a resume repairs, with a warning ---------------------------------------------------

@pytest.fixture(scope="module")
def two_generations(tmp_path_factory) -> Path:
    """The same run as `finished`, stopped after 2 generations (made once, copied per test)."""
    return tiny_run(tmp_path_factory, "cut", 2)


@pytest.mark.parametrize("how", ["deleted", "fields missing", "wrong types", "nested deeply"])
@pytest.mark.slow
def test_a_damaged_snapshot_falls_back_and_the_resume_equals_the_run(finished, two_generations, tmp_path, how):
    shutil.copytree(two_generations, tmp_path / "cut")
    damage_snapshots(tmp_path / "cut", how)
    resumed = evonas("resume", tmp_path / "cut", "--generations", "3")
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert how == "deleted" or any("damaged snapshot" in w for w in warnings), resumed.stderr
    assert lines(tmp_path / "cut") == lines(finished)


def test_a_repeated_journal_line_is_left_out_with_a_one_line_warning(run):
    journal = (run / "journal.jsonl").read_text().splitlines()
    (run / "journal.jsonl").write_text("\n".join([*journal[:5], journal[4], *journal[5:]]) + "\n")
    result = evonas("front", run, "--json")
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and "line 6 repeats evaluation 4 (rung 0) of line 5; keeping line 5" in warning[0]
    assert warning[0].startswith("evonas: warning: ")


def test_report_and_front_read_past_a_deeply_nested_snapshot(run, tmp_path, capsys):
    damage_snapshots(run, "nested deeply")
    assert main(["front", str(run), "--json"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert "Traceback" not in capsys.readouterr().err


# -- what a run believes: only the evaluations it can have made ------------------------------------

def forge(run: Path) -> None:
    """Two copies of line 5 under ids the run never handed out: 999 in the middle, the next id
    (16) at the end."""
    journal = (run / "journal.jsonl").read_text().splitlines()
    copy = json.loads(journal[4])
    forged = [*journal[:8], json.dumps({**copy, "id": 999}), *journal[8:], json.dumps({**copy, "id": 16})]
    (run / "journal.jsonl").write_text("\n".join(forged) + "\n")


def test_a_journal_line_the_run_cannot_have_made_is_ignored_with_a_warning(finished, run, tmp_path):
    forge(run)
    real, forged = evonas("front", finished, "--json"), evonas("front", run, "--json")
    assert forged.returncode == 0 and json.loads(forged.stdout) == json.loads(real.stdout)
    warning = forged.stderr.strip().splitlines()
    assert len(warning) == 1 and re.findall(r"line (\d+): evaluation (\d+) \(", warning[0]) == \
        [("9", "999"), ("18", "16")], warning
    assert "not made by this run (ids and generations it cannot have had); ignoring them as damage" in warning[0]
    for source, folder in ((finished, "real"), (run, "forged")):
        assert main(["export", str(source), "--out", str(tmp_path / folder)]) == 0
    assert sorted(os.listdir(tmp_path / "forged")) == sorted(os.listdir(tmp_path / "real"))  # no id16.yaml, id999.yaml


@pytest.fixture(scope="module")
def four_generations(finished, tmp_path_factory) -> Path:
    """`finished` resumed to 4 generations: the journal any damage repaired must come back to."""
    path = Path(shutil.copytree(finished, tmp_path_factory.mktemp("four") / "run"))
    assert evonas("resume", path, "--generations", "4").returncode == 0
    return path


@pytest.mark.slow
def test_a_resume_sets_impossible_lines_aside_and_extends_the_run_as_if_they_were_not_there(four_generations, run):
    forge(run)
    resumed = evonas("resume", run, "--generations", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("moved to journal-ignored.jsonl") == 1
    assert lines(run) == lines(four_generations)  # id 16 is the resumed run's own, not the forged copy
    assert [json.loads(x)["id"] for x in (run / "journal-ignored.jsonl").read_text().splitlines()] == [999, 16]


# -- full disks ---------------------------------------------------------------------------------------

DISK = 1 << 20  # bytes: a run of 16 evaluations (60 KB) fits, its 4.8 MB report never does


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, mounted for the test (root only), unmounted after."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small file system needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all of `disk`'s free space but `leave` bytes."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(disk).free - leave)
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("leave, stops", [(0, "journal.jsonl"), (8192, "gen-00004.json"), (65536, None)],
                         ids=["in the journal", "at the snapshot", "only the report"])
def test_a_full_disk_stops_a_run_in_one_line_and_loses_nothing(finished, four_generations, small_disk, leave, stops):
    """`finished` resumed to 4 generations with its report on (config.yaml edited, as a user may)
    and `leave` bytes free: the disk fills in a journal append, at the snapshot, or only for the
    report (a warning). Each time: one line, no temporary file, no half line, and once there is
    space again a resume ends with the journal of a run that never met a full disk."""
    run = Path(shutil.copytree(finished, small_disk / "run"))
    config = (run / "config.yaml").read_text()
    edited = config.replace("  generations: 3\n", "  generations: 4\n").replace("  report: false\n", "  report: true\n")
    assert edited.count(": 4\n") > config.count(": 4\n") and "report: true" in edited
    (run / "config.yaml").write_text(edited)
    journal = run / "journal.jsonl"  # blank lines (readers skip them) to its last block's end: a new line needs a block
    journal.write_bytes(journal.read_bytes() + b"\n" * (-journal.stat().st_size % os.statvfs(small_disk).f_frsize))
    filler = fill(small_disk, leave)
    result = evonas("resume", run)
    err = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    if stops is None:
        assert result.returncode == 0 and "report not refreshed" in result.stderr, result.stderr
    else:
        assert result.returncode == 2 and err[-1].startswith(f"evonas: {run}/") and stops in err[-1], result.stderr
        assert "the disk is full" in err[-1] and "bytes needed" in err[-1]
    assert not [p.name for p in small_disk.rglob("*") if ".tmp" in p.name]
    assert (run / "journal.jsonl").read_bytes().endswith(b"\n")
    filler.unlink()
    again = evonas("resume", run)
    assert again.returncode == 0, again.stderr
    assert lines(run) == lines(four_generations)


# -- two processes, kills, signals ---------------------------------------------------------------

@pytest.mark.slow
def test_a_second_process_on_a_run_is_refused_naming_the_holder(run):
    before = files(run)
    with RunDir(run).locked():
        result = evonas("resume", run, "--generations", "4")
    assert result.returncode == 2 and f"in use by another evonas process (pid {os.getpid()})" in result.stderr
    assert files(run) == before
    # the lock died with its holder: nothing stale blocks the resume
    assert evonas("resume", run, "--generations", "4").returncode == 0


@pytest.mark.slow
def test_a_run_killed_while_its_directory_is_made_leaves_no_dead_end(tmp_path):
    """What a kill between config.yaml and meta.json leaves: a hidden temporary folder, no run."""
    leftover = tmp_path / ".mine.tmp-99999"
    (leftover / "snapshots").mkdir(parents=True)
    (leftover / "config.yaml").write_text("space: {space: nb201}\n")
    assert evonas("resume", tmp_path / "mine").returncode == 2  # there is no run "mine"...
    made = evonas("run", *TINY, "--runs-dir", tmp_path, "--name", "mine", "--generations", "0")
    assert made.returncode == 0, made.stderr  # ...and the name is free
    assert RunDir.open(tmp_path / "mine").history().trained() == 4


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes_to_the_same_journal(finished, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "evo_nas", "run", *TINY, "--runs-dir", str(tmp_path), "--name",
                             "term", "--generations", "3"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for_lines(tmp_path / "term" / "journal.jsonl", 6, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("evonas: stopped; the journal and the last snapshot")
    assert "Traceback" not in stderr
    assert evonas("resume", tmp_path / "term").returncode == 0
    assert lines(tmp_path / "term") == lines(finished)


def as_plain_user() -> list[str]:
    """A command prefix that runs without the privilege to ignore file permissions (root's
    CAP_DAC_OVERRIDE dropped), so a read-only folder is read-only even under root."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv ignores modes")
def test_a_read_only_run_is_refused_before_anything_trains(run):
    """A run directory we may read but not write: one line before any training, nothing written."""
    for path in [*run.rglob("*"), run]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    before = files(run)
    try:
        result = subprocess.run([*as_plain_user(), sys.executable, "-m", "evo_nas", "resume", str(run),
                                 "--generations", "4"], cwd=ROOT, text=True, capture_output=True, timeout=HANG)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "cannot write to the run directory" in result.stderr or "not writable" in result.stderr
        assert files(run) == before
    finally:
        for path in [run, *run.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
