"""Cost of one logged line: FastKit's process-safe file sink against loguru's own file sink.

Reproduce (public tools only):

    pip install -e '.[dev]'
    python bench/bench_log_file.py                  # 7 interleaved rounds of 20,000 lines
    python bench/bench_log_file.py --rounds 3 --lines 5000

One process, no other sink: ``logger.info`` of a 60-character message through FastKit's
text format, to ``add_file_sink`` (a lock file taken and released per line, the file
checked for a rotation by another process) and to ``logger.add(path, ...)`` with the same
format, rotation and retention; also a sink that discards the line (what loguru's
formatting alone costs). ``--rotation 100 MB`` (the default) never rotates during the run;
``--rotation "64 KB"`` rotates every ~400 lines. Each round measures every sink once, in a
new directory, the order alternating between rounds; the figure is the median over rounds
of µs per line, wall-clock (``time.perf_counter``) and CPU (``time.process_time``, user and
system: the system calls are most of the difference, and on a busy machine CPU time is the
steadier of the two).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from loguru import logger

from fastkit.logging._files import add_file_sink

FORMAT = ("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[request_id]} | "
          "{name}:{function}:{line} - {message}")
MESSAGE = "order 12345 accepted for customer 987 with 3 items, total 42.50"


def _loguru(path: str, serialize: bool, rotation: str) -> int:
    return logger.add(path, level="INFO", format=FORMAT, serialize=serialize,
                      rotation=rotation, retention=10, encoding="utf-8",
                      diagnose=False, backtrace=False)


def _fastkit(path: str, serialize: bool, rotation: str) -> int:
    return add_file_sink(path, level="INFO", format=FORMAT, serialize=serialize,
                         rotation=rotation, retention=10)


def _discard(path: str, serialize: bool, rotation: str) -> int:
    return logger.add(lambda _message: None, level="INFO", format=FORMAT, serialize=serialize)


SINKS: dict[str, Callable[[str, bool, str], int]] = {
    "discard": _discard, "loguru": _loguru, "fastkit": _fastkit,
}


def _run(sink: str, lines: int, serialize: bool, rotation: str) -> tuple[float, float]:
    """Wall-clock and CPU µs per line of ``lines`` lines to a fresh ``sink``."""
    with tempfile.TemporaryDirectory() as directory:
        handler_id = SINKS[sink](os.path.join(directory, "bench.log"), serialize, rotation)
        bound = logger.bind(request_id="-")
        for _ in range(200):  # warm-up: the file opened, formats memoized
            bound.info(MESSAGE)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(lines):
            bound.info(MESSAGE)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        logger.remove(handler_id)
    return elapsed / lines * 1e6, cpu / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rotation", default="100 MB")
    parser.add_argument("--json", action="store_true", help="serialize=True (JSON lines)")
    args = parser.parse_args()
    logger.remove()
    wall: dict[str, list[float]] = {name: [] for name in SINKS}
    cpu: dict[str, list[float]] = {name: [] for name in SINKS}
    for round_ in range(args.rounds):
        order = list(SINKS) if round_ % 2 == 0 else list(reversed(SINKS))
        for name in order:
            elapsed, used = _run(name, args.lines, args.json, args.rotation)
            wall[name].append(elapsed)
            cpu[name].append(used)
    print(f"{args.rounds} rounds x {args.lines} lines, rotation={args.rotation!r}, "
          f"serialize={args.json}; µs per line, median (min-max)")
    for label, results in (("wall", wall), ("cpu", cpu)):
        medians = {name: statistics.median(values) for name, values in results.items()}
        for name, values in results.items():
            print(f"  {label:4} {name:8} {medians[name]:7.2f}  "
                  f"({min(values):.2f}-{max(values):.2f})")
        print(f"  {label:4} fastkit / loguru: {medians['fastkit'] / medians['loguru']:.2f}x; "
              f"the file's share (minus discard): "
              f"{medians['fastkit'] - medians['discard']:.2f} vs "
              f"{medians['loguru'] - medians['discard']:.2f} µs")

if __name__ == "__main__":
    main()
