"""Log files shared and rotated by several processes (fastkit.logging._files): no line lost,
none written twice, none torn; rotated files named and kept as documented.

The multi-process rounds run in a fresh interpreter (this file run as a script) that owns
loguru's whole configuration, as a server's master does: its writers start together at a
barrier, forked after the parent added the sink (and used it) or spawned.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from fastkit.logging._files import add_file_sink, check_file_options

WRITERS = 3
LINES = 2_000
PAD = "x" * 80  # about 130 bytes a line: 6,000 lines make some 12 files of 64 KB
FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {process} | {message}"
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO     \| \d+ \| ([A-Z]\d?-\d{5}) " + PAD + r"\n"
)


# -- the driver: run as ``python this_file.py MODE DIRECTORY SERIALIZE`` ----------------------

def _add(path: str, serialize: bool) -> int:
    return add_file_sink(path, level="INFO", format=FORMAT, serialize=serialize,
                         rotation="64 KB", retention=1_000)


def _write(tag: str) -> None:
    for i in range(LINES):
        logger.info(f"{tag}-{i:05d} {PAD}")


def _writer(mode: str, path: str, serialize: bool, tag: str, barrier: Any) -> None:
    if mode != "fork-inherit":
        # spawned: loguru's default sink goes; forked: what the worker inherited goes, as
        # when a worker configures logging again
        logger.remove()
        _add(path, serialize)
    barrier.wait(60)
    _write(tag)


def _drive(mode: str, directory: str, serialize: bool) -> int:
    logger.remove()
    path = os.path.join(directory, "orders.log")
    forked = mode.startswith("fork")
    context = multiprocessing.get_context("fork" if forked else "spawn")
    if forked:  # the master configures and logs before its workers are forked
        _add(path, serialize)
        logger.info(f"S-00000 {PAD}")
    barrier = context.Barrier(WRITERS + forked)
    writers = [context.Process(target=_writer, args=(mode, path, serialize, f"P{n}", barrier))
               for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    if forked:  # ... and goes on logging while they do
        barrier.wait(60)
        _write("M")
    for writer in writers:
        writer.join(120)
    logger.remove()
    return 0 if all(writer.exitcode == 0 for writer in writers) else 1


# -- the tests ------------------------------------------------------------------------------

def _files(directory: Path, name: str = "orders.log") -> list[Path]:
    """``name`` and its rotated files, oldest first (``.N`` … ``.1``, then ``name``)."""
    rotated = sorted((p for p in directory.iterdir() if re.fullmatch(re.escape(name) + r"\.\d+",
                                                                      p.name)),
                     key=lambda p: -int(p.suffix[1:]))
    return [*rotated, directory / name]


def _ids(path: Path, serialize: bool) -> list[str]:
    ids = []
    with path.open(encoding="utf-8", newline="") as lines:
        for line in lines:
            if serialize:
                record = json.loads(line)  # a torn line is no JSON
                assert line.endswith("}\n"), f"torn line in {path.name}: {line!r}"
                line = record["text"]
            match = TEXT_LINE.fullmatch(line)
            assert match, f"torn line in {path.name}: {line!r}"
            ids.append(match.group(1))
    return ids


def _expected(mode: str) -> set[str]:
    tags = [f"P{n}" for n in range(WRITERS)] + (["M"] if mode.startswith("fork") else [])
    expected = {f"{tag}-{i:05d}" for tag in tags for i in range(LINES)}
    if mode.startswith("fork"):
        expected.add("S-00000")  # the line the master logged before forking
    return expected


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize(("mode", "serialize"), [
    ("spawn", False), ("spawn", True), ("fork-inherit", False), ("fork-reconfigure", False),
])
def test_processes_rotating_one_file_keep_every_line_once(tmp_path, mode, serialize, round_):
    result = subprocess.run([sys.executable, __file__, mode, str(tmp_path), str(int(serialize))],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "Logging error" not in result.stderr, result.stderr
    files = _files(tmp_path)
    assert len(files) >= 10, [p.name for p in files]  # it did rotate, many times
    seen: dict[str, int] = {}
    for path in files:
        for line_id in _ids(path, serialize):
            seen[line_id] = seen.get(line_id, 0) + 1
    twice = sorted(line_id for line_id, count in seen.items() if count > 1)
    missing = sorted(_expected(mode) - seen.keys())
    assert not twice, f"{len(twice)} lines written more than once: {twice[:5]}"
    assert not missing, f"{len(missing)} lines lost: {missing[:5]}"
    assert seen.keys() == _expected(mode)
    # Each process's lines stay in order across the files, oldest file first.
    order: dict[str, list[int]] = {}
    for path in files:
        for line_id in _ids(path, serialize):
            tag, number = line_id.split("-")
            order.setdefault(tag, []).append(int(number))
    assert all(numbers == sorted(numbers) for numbers in order.values())


def test_rotated_files_are_numbered_newest_first_and_retention_keeps_that_many(tmp_path):
    path = tmp_path / "app.log"
    handler_id = add_file_sink(str(path), level="INFO", format="{message}", serialize=False,
                               rotation=1_000, retention=3)
    try:
        for i in range(100):
            logger.info(f"line-{i:03d} " + "y" * 40)  # 50 bytes: 20 lines a file
    finally:
        logger.remove(handler_id)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".__app.lock"]
    kept = [line.split()[0] for p in _files(tmp_path, "app.log")
            for line in p.read_text().splitlines()]
    # the newest lines, in order, with nothing missing in between
    assert kept == [f"line-{i:03d}" for i in range(100 - len(kept), 100)]
    for rotated in _files(tmp_path, "app.log")[:-1]:
        # rotated once it held 1,000 bytes or more, before the next line
        assert 1_000 <= rotated.stat().st_size < 1_050, rotated.name


def test_size_units_read_as_loguru_reads_them(tmp_path):
    path = tmp_path / "app.log"
    handler_id = add_file_sink(str(path), level="INFO", format="{message}", serialize=False,
                               rotation="2 KB", retention=5)
    try:
        for _ in range(41):
            logger.info("z" * 99)  # 100 bytes a line
    finally:
        logger.remove(handler_id)
    # KB = 1,000 bytes, as loguru reads it: 20 lines a file, the 41st starts a third
    assert (tmp_path / "app.log.2").stat().st_size == 2_000
    assert (tmp_path / "app.log.1").stat().st_size == 2_000
    assert path.stat().st_size == 100


@pytest.mark.parametrize("serialize", [False, True])
def test_lines_are_those_of_loguru_own_file_sink(tmp_path, serialize):
    ours = tmp_path / "ours.log"
    theirs = tmp_path / "theirs.log"
    fmt = "{time} | {level: <8} | {name}:{function}:{line} | {extra} - {message}"
    ids = [
        add_file_sink(str(ours), level="DEBUG", format=fmt, serialize=serialize,
                      rotation="100 MB", retention=10),
        logger.add(theirs, level="DEBUG", format=fmt, serialize=serialize, rotation="100 MB",
                   retention=10, encoding="utf-8", diagnose=False, backtrace=False),
    ]
    try:
        logger.bind(request_id="r-1").info("plain")
        logger.warning("two\nlines, unicode: é ✓ 日本, braces {}", 1)
        logger.debug("{x}", x="formatted")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("with a traceback")
        logger.error("a lone surrogate \udcff dropped")
    finally:
        for handler_id in ids:
            logger.remove(handler_id)
    ours_bytes, theirs_bytes = ours.read_bytes(), theirs.read_bytes()
    # loguru's own sink fails on the lone surrogate and drops that line; ours writes it
    # with "?" in its place. Every other line is the same, byte for byte.
    lines = ours_bytes.decode().splitlines(keepends=True)
    assert "a lone surrogate ? dropped" in lines[-1]
    assert "".join(lines[:-1]).encode() == theirs_bytes
    assert b"ZeroDivisionError" in ours_bytes
    if serialize:
        assert all(json.loads(line) for line in lines)


@pytest.mark.parametrize("rotation", [
    "64 XB", "soon", "monthly", "hourly", "12:99", "someday at 10:00", 0, -5, "0 KB", "0 s",
    True, 1.5,
])
def test_bad_rotation_raises_naming_it(tmp_path, rotation):
    directory = tmp_path / "logs"
    with pytest.raises(ValueError, match=r"^rotation=") as caught:
        add_file_sink(str(directory / "a.log"), level="INFO", format="{message}",
                      serialize=False, rotation=rotation, retention=3)
    assert repr(rotation) in str(caught.value)
    assert not directory.exists()  # nothing created for a refused value
    with pytest.raises(ValueError, match=r"^rotation="):
        check_file_options(rotation, 3)


@pytest.mark.parametrize("retention", ["10 days", "3", 0, -1, True])
def test_bad_retention_raises_naming_it(tmp_path, retention):
    with pytest.raises(ValueError, match=r"^retention="):
        add_file_sink(str(tmp_path / "a.log"), level="INFO", format="{message}",
                      serialize=False, rotation="1 MB", retention=retention)
    with pytest.raises(ValueError, match=r"^retention="):
        check_file_options("1 MB", retention)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rotation", ["64 KB", "1 MiB", 4096, "00:00", "monday at 12:00", "1 day"])
def test_good_options_pass_the_check(rotation):
    check_file_options(rotation, 10)


@pytest.mark.parametrize("rotation", ["00:00", "12:30", "1 day", "6 hours", "daily", "weekly",
                                      "monday", "w4 at 23:00"])
def test_time_rotations_are_accepted_and_write(tmp_path, rotation):
    path = tmp_path / "t.log"
    handler_id = add_file_sink(str(path), level="INFO", format="{message}", serialize=False,
                               rotation=rotation, retention=7)
    try:
        logger.info("written")
    finally:
        logger.remove(handler_id)
    assert path.read_text() == "written\n"


@pytest.mark.slow
def test_interval_rotation_names_files_by_their_period(tmp_path):
    from waiting import wait_for  # here: the rounds run this file where tests/ is not a path

    path = tmp_path / "t.log"
    handler_id = add_file_sink(str(path), level="INFO", format="{message}", serialize=False,
                               rotation="1 second", retention=7)

    def rotated() -> bool:
        logger.info("tick")
        return any(p.name.startswith("t.log.") for p in tmp_path.iterdir())

    try:
        wait_for(rotated, timeout=5, what="a rotation after one second")
    finally:
        logger.remove(handler_id)
    (old,) = [p.name for p in tmp_path.iterdir() if p.name.startswith("t.log.")]
    assert re.fullmatch(r"t\.log\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", old)


if __name__ == "__main__":
    sys.exit(_drive(sys.argv[1], sys.argv[2], sys.argv[3] == "1"))
