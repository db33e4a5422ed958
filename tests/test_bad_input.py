"""Every CLI command through a matrix of bad inputs, as a user types them.

Each cell runs the real entry point (`latkit.cli.main`, in this process for speed) and asserts
what a user must get: exit status 2, exactly one line on stderr that names the bad thing, no
traceback anywhere, and the store exactly as it was. The matrix is a table: a command added
later slots in with one line per bad input it takes.

Cases: missing file, unreadable file (a folder where a file belongs: unreadable even to root),
wrong format, empty store, unknown device, unwritable output folder (a file in the way),
read-only store, bad numbers (and usage errors).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import fail
from readonly_support import read_only

from latkit.cli import app, main
from latkit.ops import OpSpec
from latkit.records import Environment, Stats
from latkit.store import MeasurementStore
from tests.conftest import DATA, write_device

CASES = (
    "missing file",
    "unreadable file",
    "wrong format",
    "empty store",
    "unknown device",
    "unwritable output folder",
    "read-only store",
    "bad numbers",
)


class World:
    """Files for every case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.device = str(write_device(root / "dev.yaml"))
        self.missing = str(root / "missing.yaml")
        self.folder = root / "folder.yaml"
        self.folder.mkdir()
        self.garbage = root / "garbage.yaml"
        self.garbage.write_text("- just\n- a list\n")
        self.arch = str(DATA / "archs" / "proxylessnas" / "proxyless_mobile.config")
        self.not_json = root / "not.config"
        self.not_json.write_text("{ this is not json")
        self.blocker = root / "blocker"
        self.blocker.write_text("a file where a folder must go")
        self.out = str(self.blocker / "out")
        self.bad_csv = root / "bad.csv"
        self.bad_csv.write_text("type,input_hw,cin,cout,latency_ms\nconv,8,3,8,-1\n")
        self.wrong_csv = root / "wrong.csv"
        self.wrong_csv.write_text("name,value\na,1\n")
        self.twin = str(write_device(root / "twin.yaml"))  # a second file naming test-cpu
        self.db = str(root / "full" / "s.sqlite")
        self.empty_db = str(root / "empty" / "s.sqlite")
        self.not_db = root / "not.sqlite"
        self.not_db.write_text("not a database at all, but long enough to look like a file")
        MeasurementStore(self.empty_db).close()
        with MeasurementStore(self.db) as store:
            store.register_device(load_config(self.device))
            env = Environment("onnxruntime", "1", 1, 1, "cpu")
            for cout in (8, 16, 24):
                stats = Stats(1.0, 1.0, 0.1, 0.9, 1.1, 0.95, 1.05, 0.01, 10, exact=True)
                store.add("test-cpu", OpSpec("conv", 8, 3, cout, kernel=3), stats, env)


def load_config(path: str):
    from latkit.devices import load_device

    return load_device(path)


@dataclass(frozen=True)
class Bad:
    """One cell: `latkit COMMAND ARGS` must fail naming `names` (a substring of the line)."""

    command: str
    case: str
    args: Callable[[World], list[str]]
    names: Callable[[World], str]
    #: which store --db points at: "full", "empty", "read-only", None (the command has no --db)
    db: str | None = "full"

    @property
    def id(self) -> str:
        return f"{self.command}: {self.case}: {' '.join(self.args(_IDS))}"


def _w(attr: str) -> Callable[[World], str]:
    return lambda w: str(getattr(w, attr))


def _text(text: str) -> Callable[[World], str]:
    return lambda w: text


DEV = ["--device", "test-cpu"]
MATRIX = [
    # profile
    Bad("profile", "missing file", lambda w: ["--device", w.missing], _w("missing")),
    Bad("profile", "unreadable file", lambda w: ["--device", str(w.folder)], _w("folder")),
    Bad("profile", "wrong format", lambda w: ["--device", str(w.garbage)], _w("garbage")),
    Bad("profile", "wrong format", lambda w: ["--device", w.device], _w("not_db"), db="not-db"),
    Bad(
        "profile",
        "wrong format",
        lambda w: ["--device", w.device, "--space", str(w.garbage)],
        _w("garbage"),
    ),
    Bad("profile", "missing file", lambda w: [*DEV, "--space", w.missing], _w("missing")),
    Bad("profile", "unknown device", lambda w: ["--device", "nosuch"], _text("nosuch")),
    Bad("profile", "unknown device", lambda w: [*DEV, "--device", w.twin], _text("test-cpu")),
    Bad("profile", "bad numbers", lambda w: [*DEV, "--limit", "0"], _text("--limit")),
    Bad("profile", "bad numbers", lambda w: [*DEV, "--limit", "many"], _text("--limit")),
    Bad("profile", "bad numbers", lambda w: [*DEV, "--keep"], _text("--keep")),
    Bad("profile", "unwritable output folder", lambda w: [*DEV, "--json", w.out], _w("blocker")),
    Bad("profile", "read-only store", lambda w: ["--device", w.device], _text("s.sqlite"), "ro"),
    Bad("profile", "bad numbers", lambda w: [*DEV, "--allow-unmapped"], _text("--allow-unmapped")),
    Bad(
        "profile",
        "bad numbers",
        lambda w: [*DEV, "--onnx", "m.onnx", "--input-shape", "1,3,0,64"],
        _text("--input-shape '1,3,0,64'"),
    ),
    # measurements
    Bad("measurements", "unknown device", lambda w: ["--device", "nosuch"], _text("nosuch")),
    Bad("measurements", "missing file", lambda w: ["--device", w.missing], _w("missing")),
    Bad(
        "measurements", "empty store", lambda w: ["--device", w.device], _text("test-cpu"), "empty"
    ),
    Bad(
        "measurements", "unwritable output folder", lambda w: [*DEV, "--csv", w.out], _w("blocker")
    ),
    # spaces
    Bad("spaces", "bad numbers", lambda w: ["--many"], _text("--many"), None),
    # time-network
    Bad("time-network", "missing file", lambda w: [*DEV, "--arch", w.missing], _w("missing")),
    Bad("time-network", "unreadable file", lambda w: [*DEV, "--arch", str(w.folder)], _w("folder")),
    Bad(
        "time-network", "wrong format", lambda w: [*DEV, "--arch", str(w.not_json)], _w("not_json")
    ),
    Bad("time-network", "unknown device", lambda w: ["--device", "x", "--arch", "a"], _text("'x'")),
    Bad(
        "time-network",
        "bad numbers",
        lambda w: [*DEV, "--arch", w.arch, "--input-shape", "1,3,64,64"],
        _text("--input-shape applies to --onnx"),
    ),
    Bad(
        "time-network",
        "bad numbers",
        lambda w: [*DEV, "--onnx", "m.onnx", "--input-shape", "1,3,64,99999"],
        _text("H and W are at most 4096"),
    ),
    Bad(
        "time-network",
        "unwritable output folder",
        lambda w: [*DEV, "--arch", str(w.not_json), "--json", w.out],
        _w("blocker"),
    ),
    # export
    Bad("export", "unwritable output folder", lambda w: ["--out", w.out], _w("blocker"), None),
    Bad(
        "export", "missing file", lambda w: ["--out", "o", "--arch", w.missing], _w("missing"), None
    ),
    Bad(
        "export",
        "wrong format",
        lambda w: ["--out", "o", "--arch", str(w.not_json)],
        _w("not_json"),
        None,
    ),
    Bad(
        "export",
        "wrong format",
        lambda w: ["--out", "o", "--space", str(w.garbage)],
        _w("garbage"),
        None,
    ),
    Bad("export", "bad numbers", lambda w: ["--out", "o", "--batch", "0"], _text("--batch"), None),
    Bad(
        "export", "bad numbers", lambda w: ["--out", "o", "--format", "x"], _text("--format"), None
    ),
    # devices
    Bad("devices", "bad numbers", lambda w: ["--no-usb", "--tcp", "phone"], _text("phone"), None),
    Bad(
        "devices",
        "missing file",
        lambda w: ["--no-usb", "--device-files", w.missing],
        _w("missing"),
        None,
    ),
    Bad(
        "devices",
        "wrong format",
        lambda w: ["--no-usb", "--device-files", str(w.garbage)],
        _w("garbage"),
        None,
    ),
    # emulate-phone
    Bad("emulate-phone", "bad numbers", lambda w: ["--port", "0"], _text("--port"), None),
    Bad("emulate-phone", "bad numbers", lambda w: ["--temperatures", "hot"], _text("hot"), None),
    Bad(
        "emulate-phone",
        "missing file",
        lambda w: ["--auth", "--authorized-key", w.missing],
        _w("missing"),
        None,
    ),
    Bad(
        "emulate-phone",
        "unwritable output folder",
        lambda w: ["--root", w.out],
        _w("blocker"),
        None,
    ),
    # fit
    Bad("fit", "empty store", lambda w: ["--device", w.device], _text("test-cpu"), "empty"),
    Bad("fit", "unknown device", lambda w: ["--device", "nosuch"], _text("nosuch")),
    Bad("fit", "missing file", lambda w: ["--device", w.missing], _w("missing")),
    Bad("fit", "unreadable file", lambda w: ["--device", str(w.folder)], _w("folder")),
    Bad("fit", "wrong format", lambda w: ["--device", str(w.garbage)], _w("garbage")),
    Bad("fit", "missing file", lambda w: [*DEV, "--networks", w.missing], _w("missing")),
    Bad("fit", "wrong format", lambda w: [*DEV, "--networks", str(w.not_json)], _w("not_json")),
    Bad("fit", "bad numbers", lambda w: [*DEV, "--test-fraction", "2"], _text("--test-fraction")),
    Bad("fit", "unwritable output folder", lambda w: [*DEV, "--json", w.out], _w("blocker")),
    Bad("fit", "unwritable output folder", lambda w: [*DEV, "--data-dir", w.out], _w("blocker")),
    # predict
    Bad(
        "predict",
        "unknown device",
        lambda w: ["--device", "nosuch", "--arch", w.arch],
        _text("nosuch"),
    ),
    Bad(
        "predict",
        "empty store",
        lambda w: ["--device", w.device, "--arch", w.arch],
        _text("predictor"),
        "empty",
    ),
    Bad("predict", "missing file", lambda w: [*DEV, "--arch", w.missing], _w("missing")),
    Bad("predict", "wrong format", lambda w: [*DEV, "--arch", str(w.not_json)], _w("not_json")),
    Bad("predict", "missing file", lambda w: [*DEV, "--networks", w.missing], _w("missing")),
    Bad(
        "predict",
        "bad numbers",
        lambda w: [*DEV, "--arch", str(w.not_json), "--resolution", "0"],
        _text("--resolution"),
    ),
    Bad(
        "predict",
        "unwritable output folder",
        lambda w: [*DEV, "--arch", str(w.not_json), "--json", w.out],
        _w("blocker"),
    ),
    Bad(
        "predict",
        "bad numbers",
        lambda w: [*DEV, "--arch", w.arch, "--allow-unmapped"],
        _text("--allow-unmapped applies to --onnx"),
    ),
    Bad(
        "predict",
        "bad numbers",
        lambda w: [*DEV, "--onnx", "m.onnx", "--input-shape", "1,3,²,64"],
        _text("--input-shape '1,3,²,64'"),
    ),
    # validate
    Bad("validate", "unknown device", lambda w: ["--device", "nosuch"], _text("nosuch")),
    Bad("validate", "bad numbers", lambda w: [*DEV, "--networks", "0"], _text("--networks")),
    Bad("validate", "missing file", lambda w: [*DEV, "--space", w.missing], _w("missing")),
    Bad("validate", "empty store", lambda w: ["--device", w.device], _text("predictor"), "empty"),
    Bad(
        "validate", "unwritable output folder", lambda w: [*DEV, "--data-dir", w.out], _w("blocker")
    ),
    Bad("validate", "unwritable output folder", lambda w: [*DEV, "--json", w.out], _w("blocker")),
    # import-lut
    Bad("import-lut", "missing file", lambda w: [w.missing, *DEV], _w("missing")),
    Bad("import-lut", "unreadable file", lambda w: [str(w.folder), *DEV], _w("folder")),
    Bad("import-lut", "wrong format", lambda w: [str(w.garbage), *DEV], _w("garbage")),
    Bad(
        "import-lut", "unknown device", lambda w: [str(w.garbage), "-d", "no way"], _text("no way")
    ),
    # export-lut
    Bad(
        "export-lut",
        "empty store",
        lambda w: [*DEV, "--format", "ofa", "--out", "x"],
        _text("test-cpu"),
        "empty",
    ),
    Bad(
        "export-lut",
        "unknown device",
        lambda w: ["-d", "nosuch", "--format", "ofa", "--out", "x"],
        _text("nosuch"),
    ),
    Bad(
        "export-lut",
        "bad numbers",
        lambda w: [*DEV, "--format", "x", "--out", "x"],
        _text("--format"),
    ),
    Bad(
        "export-lut",
        "unwritable output folder",
        lambda w: [*DEV, "--format", "ofa", "--out", w.out],
        _w("blocker"),
    ),
    # import-measurements
    Bad("import-measurements", "missing file", lambda w: [w.missing, *DEV], _w("missing")),
    Bad("import-measurements", "unreadable file", lambda w: [str(w.folder), *DEV], _w("folder")),
    Bad("import-measurements", "wrong format", lambda w: [str(w.wrong_csv), *DEV], _w("wrong_csv")),
    Bad("import-measurements", "bad numbers", lambda w: [str(w.bad_csv), *DEV], _w("bad_csv")),
    Bad(
        "import-measurements",
        "read-only store",
        lambda w: [str(w.root / "good.csv"), "-d", "imported"],
        _text("s.sqlite"),
        "ro",
    ),
    # import-networks
    Bad("import-networks", "missing file", lambda w: [w.missing, *DEV], _w("missing")),
    Bad("import-networks", "unreadable file", lambda w: [str(w.folder), *DEV], _w("folder")),
    Bad("import-networks", "wrong format", lambda w: [str(w.not_json), *DEV], _w("not_json")),
    Bad(
        "import-networks",
        "bad numbers",
        lambda w: [str(w.root / "bad.jsonl"), "-d", "fresh"],
        _text("bad.jsonl:2: needs a non-empty `ops` and latency_ms > 0"),
    ),
    Bad(
        "import-networks",
        "read-only store",
        lambda w: [str(w.root / "good.jsonl"), "-d", "imported"],
        _text("s.sqlite"),
        "ro",
    ),
    # fit --transfer
    Bad(
        "fit", "empty store", lambda w: ["-d", w.device, "--transfer"], _text("at least 3"), "empty"
    ),
    Bad("fit", "bad numbers", lambda w: [*DEV, "--transfer", "--train", "5"], _text("--train")),
    # search
    Bad(
        "search", "unknown device", lambda w: ["-d", "nosuch", "--target-ms", "1"], _text("nosuch")
    ),
    Bad("search", "missing file", lambda w: ["-d", w.missing, "--target-ms", "1"], _w("missing")),
    Bad("search", "bad numbers", lambda w: [*DEV, "--target-ms", "fast"], _text("--target-ms")),
    Bad("search", "bad numbers", lambda w: [*DEV, "--target-ms", "-1"], _text("--target-ms")),
    Bad(
        "search",
        "bad numbers",
        lambda w: [*DEV, "--target-ms", "1", "--epochs", "-1"],
        _text("--epochs"),
    ),
    Bad(
        "search",
        "empty store",
        lambda w: ["-d", w.device, "--target-ms", "1"],
        _text("predictor"),
        "empty",
    ),
    Bad(
        "search",
        "unwritable output folder",
        lambda w: [*DEV, "--target-ms", "1", "--json", w.out],
        _w("blocker"),
    ),
    Bad(
        "search",
        "unwritable output folder",
        lambda w: [*DEV, "--target-ms", "1", "--out", w.out],
        _w("blocker"),
    ),
    # quickstart
    Bad("quickstart", "bad numbers", lambda w: ["--networks", "1"], _text("--networks")),
    Bad("quickstart", "unwritable output folder", lambda w: ["--json", w.out], _w("blocker")),
    Bad("quickstart", "unwritable output folder", lambda w: ["--data-dir", w.out], _w("blocker")),
    Bad("quickstart", "wrong format", lambda w: [], _w("not_db"), db="not-db"),
    Bad("quickstart", "read-only store", lambda w: [], _text("s.sqlite"), db="ro"),
]


class _Placeholder(World):
    """Stand-in paths for readable test ids."""

    def __init__(self) -> None:
        for name in ("device", "missing", "folder", "garbage", "not_json", "out", "twin", "arch"):
            setattr(self, name, f"<{name}>")
        self.blocker = "<blocker>"
        self.bad_csv, self.wrong_csv = "<bad.csv>", "<wrong.csv>"
        self.root = Path("<root>")


_IDS = _Placeholder()


def test_every_command_and_every_case_is_covered():
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert commands <= {bad.command for bad in MATRIX}, "a command without bad-input cells"
    assert {bad.case for bad in MATRIX} == set(CASES)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = World(tmp_path_factory.mktemp("world"))
    (world.root / "good.csv").write_text("type,input_hw,cin,cout,latency_ms\nconv,8,3,8,0.5\n")
    line = f'{{"ops": ["{KEY}"], "latency_ms": 0.5}}\n'
    (world.root / "good.jsonl").write_text(line)
    (world.root / "bad.jsonl").write_text(line + line.replace("0.5", "-1"))
    return world


def dump(db: Path) -> list:
    """Every row of every table of a SQLite store, in a stable order."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, sorted(map(repr, conn.execute(f"SELECT * FROM {t}")))) for t in sorted(tables)]
    except sqlite3.DatabaseError:
        return [db.read_bytes()]
    finally:
        conn.close()


@pytest.mark.parametrize("bad", MATRIX, ids=lambda b: b.id)
def test_bad_input_fails_in_one_line_and_changes_nothing(bad, world, capsys, monkeypatch):
    monkeypatch.chdir(world.root)  # relative outputs ("o", "x") land in the world, not the repo
    stores = {"full": world.db, "empty": world.empty_db, "not-db": str(world.not_db)}
    guard = read_only(Path(world.db).parent) if bad.db == "ro" else nullcontext(None)
    with guard as ro_folder:
        db = str(ro_folder / "s.sqlite") if ro_folder else stores.get(bad.db or "", "")
        before = dump(Path(db)) if db else None
        argv = ["latkit", bad.command, *bad.args(world), *(["--db", db] if bad.db else [])]
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.setenv("COLUMNS", "80")
        with pytest.raises(SystemExit) as exited:
            main()
        after = dump(Path(db)) if db else None
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exited.value.code == 2, f"exit {exited.value.code}\n{out}\n{err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in out + err
    assert bad.names(world) in lines[0], lines[0]
    assert before == after, "the store changed"


# --- nothing left behind ------------------------------------------------------------------------
#
# A command that stops on a bad input leaves the store byte for byte as it was, and no new file or
# folder anywhere (no empty store, no phantom device, no empty data/ folder). Each case runs in a
# copy of one prepared folder, which is the working folder too, so relative defaults land in it.

KEY = "Conv-input:224x224x3-output:112x112x32"
TEMPLATE_FILES = {
    "big.yaml": "name: big\nkind: cpu\nruntime: onnxruntime\nbatch_size: 1000000000000\n",
    "runs.yaml": "name: long\nkind: cpu\nruntime: onnxruntime\ntiming: {runs: 1000000000}\n",
    "garbage.jsonl": "this is not JSON at all\n",
    "nan.jsonl": f'{{"ops": ["{KEY}"], "latency_ms": NaN}}\n',
    "empty.jsonl": "",
    "two.jsonl": "".join(f'{{"ops": ["{KEY}"], "latency_ms": {ms}}}\n' for ms in (1.0, 1.2)),
    "garbage.yaml": "- just\n- a list\n",
    "bad.csv": "type,input_hw,cin,cout,latency_ms\nconv,8,3,8,0.5\nconv,8,3,16,nan\n",
    "not.config": "{ this is not json",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A store holding one device and three ops, a device file it does not know, bad files."""
    root = tmp_path_factory.mktemp("template")
    write_device(root / "dev.yaml")
    write_device(root / "other.yaml", name="other-cpu")
    for name, text in TEMPLATE_FILES.items():
        (root / name).write_text(text)
    with MeasurementStore(root / "s.sqlite") as store:
        store.register_device(load_config(str(root / "dev.yaml")))
        env = Environment("onnxruntime", "1", 1, 1, "cpu")
        stats = Stats(1.0, 1.0, 0.1, 0.9, 1.1, 0.95, 1.05, 0.01, 10, exact=True)
        for cout in (8, 16, 24):
            store.add("test-cpu", OpSpec("conv", 8, 3, cout, kernel=3), stats, env)
    return root


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file under `root` by its sha256, every folder as None, by relative path."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


ARCH = str(DATA / "archs" / "proxylessnas" / "proxyless_mobile.config")
#: (id, command line after `latkit`, a text the one error line holds); --db s.sqlite is added
LEFT_BEHIND = [
    ("profile: batch_size 1e12", ["profile", "-d", "big.yaml"], "batch_size"),
    ("profile: runs 1e9", ["profile", "-d", "runs.yaml"], "timing.runs"),
    ("fit new: garbage", ["fit", "-d", "new", "--networks", "garbage.jsonl"], "garbage.jsonl:1"),
    ("fit new: NaN", ["fit", "-d", "new", "--networks", "nan.jsonl"], "nan.jsonl:1"),
    ("fit new: empty", ["fit", "-d", "new", "--networks", "empty.jsonl"], "no networks"),
    (
        "fit new: --train",
        ["fit", "-d", "new", "--networks", "two.jsonl", "--train", "5"],
        "--train",
    ),
    ("fit file: garbage", ["fit", "-d", "other.yaml", "--networks", "garbage.jsonl"], "garbage"),
    ("fit: unknown", ["fit", "-d", "nosuch"], "nosuch"),
    ("fit: no rows", ["fit", "-d", "other.yaml"], "other-cpu"),
    ("import-lut", ["import-lut", "garbage.yaml", "-d", "other.yaml"], "garbage.yaml"),
    ("import-lut: name", ["import-lut", "garbage.yaml", "-d", "fresh"], "garbage.yaml"),
    ("import-measurements", ["import-measurements", "bad.csv", "-d", "other.yaml"], "bad.csv:3"),
    ("import-networks", ["import-networks", "nan.jsonl", "-d", "fresh"], "nan.jsonl:1"),
    ("fit --transfer", ["fit", "-d", "other.yaml", "--transfer"], "at least 3"),
    # (with op rows in the store: refused as a device `latkit fit` fits from them)
    ("fit --transfer: profiled", ["fit", "-d", "dev.yaml", "--transfer"], "test-cpu"),
    ("time-network", ["time-network", "-d", "other.yaml", "--arch", "not.config"], "not.config"),
    ("validate", ["validate", "-d", "other.yaml"], "predictor"),
    ("predict", ["predict", "-d", "nosuch", "--arch", ARCH], "nosuch"),
    ("measurements", ["measurements", "-d", "nosuch"], "nosuch"),
    ("export-lut", ["export-lut", "-d", "nosuch", "--format", "ofa", "--out", "x.yaml"], "nosuch"),
]


@pytest.mark.parametrize(
    ("args", "names"), [c[1:] for c in LEFT_BEHIND], ids=[c[0] for c in LEFT_BEHIND]
)
@pytest.mark.parametrize("store", ["existing store", "no store yet"])
def test_a_failed_command_leaves_store_and_folders_as_they_were(
    template, tmp_path, monkeypatch, capsys, args, names, store
):
    root = tmp_path / "work"
    shutil.copytree(template, root)
    if store == "no store yet":
        (root / "s.sqlite").unlink()
    monkeypatch.chdir(root)
    before = snapshot(root)
    line = fail([*args, "--db", "s.sqlite"], monkeypatch, capsys)
    assert names in line, line
    assert snapshot(root) == before


def test_a_new_device_is_created_only_by_a_fit_that_succeeds(
    template, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "work"
    shutil.copytree(template, root)
    monkeypatch.chdir(root)
    fail(["fit", "-d", "new", "--networks", "nan.jsonl", "--db", "s.sqlite"], monkeypatch, capsys)
    assert "new device" not in capsys.readouterr().err
    (root / "good.jsonl").write_text(
        "".join(f'{{"ops": ["{KEY}"], "latency_ms": {1 + i / 10}}}\n' for i in range(6))
    )
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "latkit",
            "fit",
            "-d",
            "new",
            "--networks",
            "good.jsonl",
            "--db",
            "s.sqlite",
            "--data-dir",
            "data",
        ],
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    assert "new device 'new'" in capsys.readouterr().err
    with MeasurementStore(root / "s.sqlite") as store:
        assert store.devices() == ["new", "test-cpu"]
