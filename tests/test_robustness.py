"""Nothing a user trained or ran is lost or silently wrong (issue 17): atomic exports, bounded inputs, one-line errors.

Fault injection by monkeypatch and by SIGKILL of a subprocess; memory measured in a subprocess; the permission
cases run as an unprivileged user (a forked child that drops to ``nobody`` when the tests run as root).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcourse import assets, audit, cli, export, imageio, widgets
from tlcourse.cli import mirror as cli_mirror
from tlcourse.cli import pipeline
from tlcourse.errors import TLCourseError

REPO = Path(__file__).resolve().parents[1]
SIZE = 16


# ------------------------------------------------------------------------------------------------ helpers


def _tiny_model(num_classes: int = 2, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def _batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (hidden ones included)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _assert_consistent(out: Path) -> None:
    """No staging leftovers, no temporary files, and model.keras names the classes class_names.json names."""
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    if (out / "model.keras").exists() and (out / "class_names.json").exists():
        assert export.stored_class_names(out / "model.keras") == json.loads(
            (out / "class_names.json").read_text()
        )


def _huge_uniform_png(path: Path, width: int, height: int) -> None:
    """A valid, mostly uniform RGB PNG of width x height written row by row (constant memory, ~0.5 MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((200, 30, 30)) * width
    packer = zlib.compressobj(9)
    body = bytearray()
    for _ in range(height):
        body += packer.compress(row)
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(body)) + chunk(b"IEND", b"")
    )


def _write_png(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _one_error_line(captured: str, command: str) -> str:
    lines = [line for line in captured.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tlcourse {command}: ") and "Traceback" not in captured
    return lines[0]


# ------------------------------------------------------------------------------------------ atomic export


@pytest.fixture()
def first_export(tmp_path):
    """A complete earlier export (keras + SavedModel) and its byte snapshot."""
    out = tmp_path / "out"
    model = _tiny_model()
    export.export_all(model, out, _batch(), formats=("keras", "saved_model"), class_names=["cat", "dog"])
    return out, _snapshot(out)


STEPS = {
    "model write": ("keras.Model.save", None),
    "class names in the model": ("tlcourse.export.fsync_path", 1),
    "SavedModel swap": ("tlcourse.export._swap_folder", None),
    "round trip": ("tlcourse.export.round_trip", None),
    "class_names.json write": ("tlcourse.runfolder.write_atomic", None),
    "commit rename": ("os.replace", 1),
    "commit second rename": ("os.replace", 2),
    "commit model rename": ("os.replace", 4),
    "marking the commit done": ("tlcourse.runfolder.write_atomic", 3),  # after every file moved: still undone
    "commit flush": ("tlcourse.runfolder.fsync_path", 1),
}


def _inject(monkeypatch, target: str, nth: int | None, error: BaseException) -> None:
    module_name, _, attribute = target.rpartition(".")
    if module_name == "keras.Model":
        import keras

        owner = keras.Model
    else:
        owner = sys.modules[module_name] if module_name in sys.modules else __import__(module_name)
    original = getattr(owner, attribute)
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        if nth is None or calls["n"] == nth:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, broken)


@pytest.mark.parametrize("step", list(STEPS))
def test_ctrl_c_at_any_step_of_export_leaves_the_previous_export_byte_identical(
    first_export, monkeypatch, step
):
    out, before = first_export
    model = _tiny_model(num_classes=3, seed=1)
    target, nth = STEPS[step]
    if target == "os.replace":  # fail a rename of the commit itself, not one of the staging writes
        real_commit = export.ExportStage.commit

        def commit_with_fault(self):
            _inject(monkeypatch, target, nth, KeyboardInterrupt())
            return real_commit(self)

        monkeypatch.setattr(export.ExportStage, "commit", commit_with_fault)
    else:
        _inject(monkeypatch, target, nth, KeyboardInterrupt())
    with contextlib.suppress(KeyboardInterrupt):
        export.export_all(model, out, _batch(), formats=("keras", "saved_model"), class_names=["a", "b", "c"])
    monkeypatch.undo()
    assert _snapshot(out) == before
    _assert_consistent(out)


@pytest.mark.parametrize("step", ["model write", "SavedModel swap", "round trip", "class names in the model"])
def test_an_exception_in_one_format_never_loses_the_previous_model(first_export, monkeypatch, step):
    out, before = first_export
    target, nth = STEPS[step]
    _inject(monkeypatch, target, nth, OSError("disk full (injected)"))
    result = export.export_all(
        _tiny_model(num_classes=3, seed=1),
        out,
        _batch(),
        formats=("keras", "saved_model"),
        class_names=list("abc"),
    )
    monkeypatch.undo()
    assert any(info.get("error") for info in result.values())
    after = _snapshot(out)
    kept = {name: digest for name, digest in after.items() if name.startswith("previous/")}
    for name, digest in before.items():  # every earlier file is still there: in place or in previous/
        assert after.get(name) == digest or kept.get(f"previous/{name}") == digest, name
    _assert_consistent(out)


def test_a_kill_during_the_model_write_leaves_the_previous_model_byte_identical(first_export, tmp_path):
    out, before = first_export
    flag = tmp_path / "writing"
    script = textwrap.dedent(
        f"""
        import sys, time, keras
        sys.path.insert(0, {str(REPO)!r})
        from tlcourse import export
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_robustness import _tiny_model, _batch
        real_save = keras.Model.save

        def slow_save(self, path, *args, **kwargs):
            real_save(self, path, *args, **kwargs)
            with open(path, "r+b") as handle:  # half-written, as when the kill comes mid-write
                handle.truncate(100)
            open({str(flag)!r}, "w").close()
            time.sleep(60)

        keras.Model.save = slow_save
        export.export_all(_tiny_model(3, 1), {str(out)!r}, _batch(), formats=("keras",), class_names=list("abc"))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    visible = {name: digest for name, digest in _snapshot(out).items() if not name.startswith(".")}
    assert visible == before  # the half-written file is only in the hidden staging folder
    assert export.stored_class_names(out / "model.keras") == ["cat", "dog"]
    export.export_all(
        _tiny_model(), out, _batch(), formats=("keras", "saved_model"), class_names=["cat", "dog"]
    )
    _assert_consistent(out)  # the next export removes the killed run's staging folder


def test_save_keras_stores_the_class_names_and_replaces_a_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    export.save_keras(_tiny_model(), path, class_names=["a", "b"])
    old = path.read_bytes()
    _inject(monkeypatch, "keras.Model.save", None, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        export.save_keras(_tiny_model(), path, class_names=["x", "y"])
    monkeypatch.undo()
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    assert export.stored_class_names(path) == ["a", "b"]


def test_export_lines_report_a_failed_format_instead_of_crashing():
    lines = pipeline._export_lines(
        {
            "keras": {"path": "out/model.keras", "max_abs_diff": 0.0, "ok": True},
            "tflite": {
                "path": "out/model.tflite",
                "max_abs_diff": None,
                "ok": False,
                "error": "RuntimeError: x",
            },
        }
    )
    assert lines[0].startswith("keras: out/model.keras (round-trip max |diff| 0")
    assert lines[1] == "tflite: FAILED RuntimeError: x"


def test_predict_refuses_class_names_that_do_not_match_the_model(tmp_path, capsys):
    out = tmp_path / "out"
    export.export_all(_tiny_model(), out, _batch(), formats=("keras",), class_names=["daisy", "tulips"])
    image = _write_png(tmp_path / "x.png", 1)
    (out / "class_names.json").write_text('["tulips", "daisy"]')  # as an interrupted older export left it
    assert cli.main(["predict", str(out / "model.keras"), str(image)]) == 2
    captured = capsys.readouterr()
    assert "does not match the class names stored in model.keras" in _one_error_line(captured.err, "predict")
    assert captured.out == ""
    (out / "class_names.json").unlink()  # the model's own names are used then
    assert cli.main(["predict", str(out / "model.keras"), str(image)]) == 0
    assert "daisy" in capsys.readouterr().out


def test_predict_prints_class_names_escaped(tmp_path, capsys):
    out = tmp_path / "out"
    hostile = "roses\x1b[2J\nfake.jpg: tulips 1.000"
    export.export_all(_tiny_model(), out, _batch(), formats=("keras",), class_names=[hostile, "b"])
    image = _write_png(tmp_path / "x.png", 1)
    assert cli.main(["predict", str(out / "model.keras"), str(image), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and len(printed.strip().splitlines()) == 1
    assert "roses\\x1b[2J\\nfake.jpg" in printed


def test_predict_refuses_a_model_with_a_one_channel_input(tmp_path, capsys):
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    path = export.save_keras(model, tmp_path / "gray.keras")
    image = _write_png(tmp_path / "x.png", 1)
    assert cli.main(["predict", str(path), str(image)]) == 2
    assert "1 channel(s)" in _one_error_line(capsys.readouterr().err, "predict")


# ------------------------------------------------------------------------------------- argument checking


def _photos(tmp_path: Path) -> Path:
    for label in ("a", "b"):
        for index in range(2):
            _write_png(tmp_path / "photos" / label / f"{index}.png", hash((label, index)) % 1000)
    return tmp_path / "photos"


@pytest.mark.parametrize(
    "extra",
    [
        ["--alpha", "nan"],
        ["--alpha", "0"],
        ["--size", "-5"],
        ["--size", "0"],
        ["--size", "100000"],
        ["--seed", "-1"],
    ],
)
def test_train_refuses_out_of_range_settings_in_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, extra
):
    monkeypatch.setattr(pipeline, "_audit", lambda *_: pytest.fail("the audit ran before the check"))
    code = cli.main(["train", str(_photos(tmp_path)), "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    assert extra[0] in _one_error_line(capsys.readouterr().err, "train")
    assert not (tmp_path / "out").exists()


def _out_cases(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "afile").write_text("x")
    return {
        "a file": tmp_path / "afile",
        "under a file": tmp_path / "afile" / "out",
        "in /proc": Path("/proc/x"),
    }


@pytest.mark.parametrize("case", ["a file", "under a file", "in /proc"])
def test_train_refuses_an_out_folder_it_cannot_write_before_the_audit(tmp_path, capsys, monkeypatch, case):
    monkeypatch.setattr(pipeline, "_audit", lambda *_: pytest.fail("the audit ran before the check"))
    out = _out_cases(tmp_path)[case]
    assert cli.main(["train", str(_photos(tmp_path)), "--out", str(out)]) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err, "train")


def test_train_refuses_to_replace_an_existing_model_without_force(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    export.export_all(_tiny_model(), out, _batch(), formats=("keras",), class_names=["a", "b"])
    before = _snapshot(out)
    monkeypatch.setattr(pipeline, "_audit", lambda *_: pytest.fail("the audit ran before the check"))
    assert cli.main(["train", str(_photos(tmp_path)), "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "--force" in line and "previous" in line
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--timeout", "nan"], "--timeout"),
        (["run", "--timeout", "inf"], "--timeout"),
        (["run", "-p", "1abc", "2"], "identifier"),
        (["run", "-p", "class", "2"], "identifier"),
        (["check-data", "", "--json"], "empty string"),
        (["check-data", "DIR", "--min-per-class", "0"], "--min-per-class"),
        (["check-data", "DIR", "--min-per-class", "-1"], "--min-per-class"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    import tlcourse.cli.runner

    monkeypatch.setattr(tlcourse.cli.runner, "run_command", lambda _args: pytest.fail("the run started"))
    argv = [str(_photos(tmp_path)) if item == "DIR" else item for item in argv]
    assert cli.main(argv) == 2
    assert needle in _one_error_line(capsys.readouterr().err, argv[0])


def test_check_data_json_into_a_closed_pipe_does_not_raise(tmp_path):
    folder = _photos(tmp_path)
    for index in range(4000):  # about 300 KB of "ignored" entries: more than a pipe holds after `head` left
        (folder / "a" / f"notes_{index:05d}_{'x' * 50}.txt").write_bytes(b"")
    command = f"{sys.executable} -m tlcourse check-data {folder} --json | head -c 10 >/dev/null"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------- permissions, as a non-root user


def _as_unprivileged(function, *args):
    """Run ``function(*args)`` as a non-root user; returns (result, stdout, stderr). Root: a forked child
    that drops to ``nobody`` (everything it needs is imported beforehand)."""
    if os.geteuid() != 0:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = function(*args)
        return result, out.getvalue(), err.getvalue()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        payload = {"result": None, "out": "", "err": ""}
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    payload["result"] = function(*args)
                except BaseException as error:  # noqa: BLE001 - report anything to the parent
                    payload["result"] = f"raised {type(error).__name__}: {error}"
            payload.update(out=out.getvalue(), err=err.getvalue())
        finally:
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(json.dumps(payload))
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        payload = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    return payload.get("result"), payload.get("out", ""), payload.get("err", "")


@pytest.fixture()
def locked():
    """A folder nobody may enter, with photos and a model below it; a writable place for the child."""
    if os.geteuid() == 0 and not hasattr(os, "fork"):
        pytest.skip("needs os.fork to drop root privileges")
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tlcourse-perm-", dir="/tmp"))  # pytest's tmp_path is private to root
    photos = _photos(base / "locked" / "sub")
    export.save_keras(_tiny_model(), base / "locked" / "sub" / "model.keras", class_names=["a", "b"])
    image = _write_png(base / "open" / "x.png", 3)
    (base / "readonly").mkdir()
    (base / "readonly").chmod(0o555)
    for folder in (base, base / "open"):
        folder.chmod(0o755)
    (base / "locked").chmod(0o000)
    image.chmod(0o644)
    import tlcourse.audit  # noqa: F401 - imported before dropping privileges
    import tlcourse.evaluate  # noqa: F401

    yield {"photos": photos, "model": base / "locked" / "sub" / "model.keras", "image": image, "base": base}
    (base / "locked").chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "command", ["check-data", "train", "train --out", "train --out unwritable", "predict"]
)
def test_a_path_under_an_unreadable_folder_gives_one_line_as_a_non_root_user(locked, command):
    if os.geteuid() != 0 and os.access(locked["base"] / "locked", os.R_OK):
        pytest.skip("this user can read a mode-000 folder (a capability), so the case cannot happen")
    argv = {
        "check-data": ["check-data", str(locked["photos"])],
        "train": ["train", str(locked["photos"]), "--out", str(locked["base"] / "open" / "out")],
        "train --out": ["train", str(locked["base"] / "open"), "--out", str(locked["base"] / "locked" / "o")],
        "train --out unwritable": [
            "train",
            str(locked["base"] / "open"),
            "--out",
            str(locked["base"] / "readonly"),
        ],
        "predict": ["predict", str(locked["model"]), str(locked["image"])],
    }[command]
    code, _out, err = _as_unprivileged(cli.main, argv)
    assert code == 2, (code, err)
    line = _one_error_line(err, argv[0])
    assert "ermission denied" in line or "cannot" in line.lower(), line


# --------------------------------------------------------------------------------------------- memory bombs


def test_a_13000_square_png_audits_under_a_memory_bound(tmp_path):
    """A 0.5 MB PNG that decodes to 507 MB (RGB): refused from its header; four copies in four threads."""
    folder = tmp_path / "data"
    for label in ("a", "b"):
        for index in range(2):
            _write_png(folder / label / f"{index}.png", ord(label) * 10 + index)
    _huge_uniform_png(folder / "a" / "huge.png", 13000, 13000)
    assert (folder / "a" / "huge.png").stat().st_size < 1_000_000
    for copy in range(1, 4):
        os.link(folder / "a" / "huge.png", folder / "b" / f"huge_{copy}.png")
    script = textwrap.dedent(
        f"""
        import json, resource
        import imagehash, scipy.fftpack  # what the audit imports for near-duplicates, before the baseline
        from tlcourse import audit
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = audit.audit_folder({str(folder)!r}, workers=4)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({{"mib": grown, "problems": [[p.path, p.problem] for p in report.problems]}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["mib"] < 100, measured  # decoding one copy takes 646 MiB (measured before the fix)
    reasons = dict(measured["problems"])
    assert len(reasons) == 4
    assert "13000x13000 pixels, 169 megapixels" in reasons["a/huge.png"]


def test_the_pixel_budget_is_shared_by_training_loading_and_the_upload_widget(tmp_path):
    path = _write_png(tmp_path / "x.png", 1, (60, 60))
    assert widgets.MAX_DECODE_PIXELS == imageio.MAX_DECODE_PIXELS
    with pytest.raises(imageio.ImageDecodeError, match="too large to decode safely"):
        imageio.load_image(path, 32, max_pixels=1000)
    with pytest.raises(imageio.ImageDecodeError, match="too large to decode safely"):
        imageio.inspect_image(path, max_pixels=1000)
    assert imageio.load_image(path, 32).shape == (32, 32, 3)  # under the real budget


def test_the_audit_decodes_at_most_one_big_picture_at_a_time(tmp_path, monkeypatch):
    import threading

    from PIL import PngImagePlugin

    for label in ("a", "b"):
        for index in range(4):
            _write_png(tmp_path / label / f"{index}.png", index + ord(label), (30, 30))
    monkeypatch.setattr(imageio, "LARGE_DECODE_PIXELS", 100)
    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    real_load = PngImagePlugin.PngImageFile.load

    def tracked(self):
        if not self.tile:  # already decoded: later calls (convert, EXIF) return at once
            return real_load(self)
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)
        try:
            return real_load(self)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", tracked)
    report = audit.audit_folder(tmp_path, workers=4)
    assert report.classes == {"a": 4, "b": 4}
    assert state["most"] == 1


def test_train_loading_lets_no_decompression_bomb_warning_through(tmp_path, monkeypatch):
    import warnings

    path = _write_png(tmp_path / "x.png", 1, (40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: Pillow warns (errors only above 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pipeline.quiet_decoding():
            imageio.load_image(path, 8)
        with pytest.warns(Image.DecompressionBombWarning):  # the warning is real outside it
            imageio.load_image(path, 8)


def test_a_symlink_dag_counts_each_image_once(tmp_path):
    root = tmp_path / "data"
    for label in ("a", "b"):
        _write_png(root / label / "0.png", ord(label))
        _write_png(root / label / "1.png", ord(label) + 1)
    level = root / "a" / "deep"
    level.mkdir()
    try:
        for depth in range(14):  # each level links twice to the next: 2**14 paths to the last folder
            following = root / "a" / f"level{depth}"
            following.mkdir()
            os.symlink(following, level / "left")
            os.symlink(following, level / "right")
            level = following
        os.symlink(root / "a" / "0.png", level / "photo.png")
    except OSError:
        pytest.skip("symlinks are not available here")
    start = time.perf_counter()
    report = audit.audit_folder(root)
    assert time.perf_counter() - start < 20
    assert report.classes == {"a": 2, "b": 2}


def test_a_folder_nested_1200_levels_is_scanned_without_recursion_error(tmp_path):
    root = tmp_path / "data"
    _write_png(root / "b" / "0.png", 1)
    _write_png(root / "b" / "1.png", 2)
    current = str(root / "a")
    os.makedirs(current)
    for _ in range(1200):  # one level at a time: pathlib's mkdir(parents=True) itself recurses per level
        current = os.path.join(current, "d")
        os.mkdir(current)
    deep = Path(current)
    _write_png(deep / "x.png", 3, (8, 8))
    _write_png(deep / "y.png", 4, (8, 8))
    try:
        report = audit.audit_folder(root)  # no RecursionError
        assert report.classes == {"a": 2, "b": 2}
    finally:
        # pytest's own tmp_path clean-up (shutil.rmtree) recurses once per level and would fail at session end,
        # so remove the deep chain here, deepest level first.
        for name in os.listdir(current):
            os.remove(os.path.join(current, name))
        while current != str(root / "a"):
            os.rmdir(current)
            current = os.path.dirname(current)


def test_save_uploads_refuses_a_file_over_the_size_cap_and_writes_nothing(tmp_path):
    big = widgets.Upload(name="big.jpg", original_name="big.jpg", content=b"\xff" * 2000, size=2000)
    with pytest.raises(TLCourseError, match="too big"):
        widgets.save_uploads([big], tmp_path / "uploads", max_bytes=1000)
    assert not (tmp_path / "uploads").exists() or list((tmp_path / "uploads").iterdir()) == []
    assert widgets.save_uploads([big], tmp_path / "uploads", max_bytes=4000)[0].stat().st_size == 2000


# ------------------------------------------------------------------------------------------ mirror integrity


@pytest.fixture()
def small_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "imagenet").mkdir(parents=True)
    target = mirror / "imagenet" / "imagenet_class_index.json"
    target.write_text(json.dumps({"0": ["n01440764", "tench"]}))
    digest = assets.file_sha256(target)
    (mirror / assets.SUMS_FILE).write_text(f"{digest}  ./imagenet/imagenet_class_index.json\n")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return mirror, target


def test_a_flipped_bit_in_a_mirror_file_is_refused_in_one_line(small_mirror, capsys):
    mirror, target = small_mirror
    assert assets.resolve_file(target.name, mirror=mirror, download=False).path == target
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10_000))  # a new mtime: checked again
    with pytest.raises(TLCourseError, match="damaged") as caught:
        assets.resolve_file(target.name, mirror=mirror, download=False)
    assert "\n" not in str(caught.value)


def test_verify_refuses_entries_that_leave_the_mirror(small_mirror, tmp_path, capsys):
    mirror, target = small_mirror
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    sums = mirror / assets.SUMS_FILE
    sums.write_text(
        sums.read_text()
        + f"{assets.file_sha256(outside)}  ./../outside.txt\n"
        + f"{assets.file_sha256(outside)}  {outside}\n"
    )
    report = cli_mirror.verify_mirror(mirror)
    refused = [item for item in report.problems if "outside the mirror" in item["problem"]]
    assert len(refused) == 2 and not report.ok


def test_verify_reports_a_binary_checksum_list_in_one_line(small_mirror, capsys):
    mirror, _ = small_mirror
    (mirror / assets.SUMS_FILE).write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert cli.main(["assets", "verify", "--mirror", str(mirror)]) == 1
    captured = capsys.readouterr()
    assert "not a text checksum list" in captured.out and "Traceback" not in captured.err


# ------------------------------------------------------------------------------------------ safe-mode reasons


def _with_config(tmp_path: Path, name: str, change) -> Path:
    source = export.save_keras(_tiny_model(), tmp_path / "base.keras")
    with zipfile.ZipFile(source) as archive:
        members = {item: archive.read(item) for item in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    target = tmp_path / name
    with zipfile.ZipFile(target, "w") as archive:
        for item, data in members.items():
            archive.writestr(item, data)
    return target


def test_load_keras_names_a_non_modelling_api_gadget_not_a_lambda(tmp_path):
    def gadget(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {
            "module": "keras.models",
            "class_name": "function",
            "config": "load_model",
            "registered_name": "function",
        }

    path = _with_config(tmp_path, "gadget.keras", gadget)
    with pytest.raises(TLCourseError) as caught:
        export.load_keras(path)
    message = str(caught.value)
    assert "Lambda" not in message, message
    assert "keras.models.load_model" in message and "not part of any model" in message


# ------------------------------------------------------------------------------------------ near-duplicates


def test_a_resized_copy_of_a_training_image_in_validation_is_reported(tmp_path, capsys):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for label in ("a", "b"):
            for index in range(2):
                # smooth random pictures (distinct at low frequencies, as photos are)
                small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
                picture = Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC)
                (root / split / label).mkdir(parents=True, exist_ok=True)
                picture.save(root / split / label / f"{index}.png")
    source = root / "train" / "a" / "0.png"
    Image.open(source).resize((61, 61), Image.Resampling.LANCZOS).save(
        root / "validation" / "a" / "copy.jpg", quality=85
    )
    report = audit.audit_folder(root)
    assert report.near_duplicates == [("train/a/0.png", "validation/a/copy.jpg")]
    assert any("near-duplicate" in warning and "another split" in warning for warning in report.warnings)
    assert cli.main(["check-data", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["near_duplicates"] == [
        ["train/a/0.png", "validation/a/copy.jpg"]
    ]


def test_distinct_mirror_photos_are_not_near_duplicates(mirror):
    """The mirror's flower photos: the few pairs flagged are the same picture (checked by pixel correlation)."""
    folder = mirror / "datasets" / "flower_photos_small"
    report = audit.audit_folder(folder)
    assert len(report.records) >= 500
    assert (
        len(report.near_duplicates) <= len(report.records) // 50
    )  # 1000 photos: 499,500 pairs, a handful flagged

    def luminance(relpath: str) -> np.ndarray:
        image = Image.open(folder / relpath).convert("L").resize((32, 32), Image.Resampling.BILINEAR)
        values = np.asarray(image, dtype="float64").ravel()
        return (values - values.mean()) / (values.std() + 1e-9)

    for (
        first,
        second,
    ) in report.near_duplicates:  # each flagged pair shows one scene: same light and dark areas
        assert float(np.mean(luminance(first) * luminance(second))) > 0.6, (first, second)


def test_train_prints_class_names_and_paths_escaped(tmp_path, capsys, monkeypatch):
    import tlcourse.data

    hostile = "red\x1b[31m\rfake"
    root = tmp_path / "photos"
    for label in (hostile, "b"):
        for index in range(2):
            _write_png(root / label / f"{index}.png", hash((label, index)) % 1000)

    def stop(*_args, **_kwargs):
        raise TLCourseError("stopped after the audit (test)")

    monkeypatch.setattr(tlcourse.data, "load_for_profile", stop)
    assert cli.main(["train", str(root), "--out", str(tmp_path / "out"), "--profile", "smoke"]) == 2
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\r" not in printed
    assert "red\\x1b[31m\\rfake 2" in printed
