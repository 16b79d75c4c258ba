"""The long fuzzing run: hostile compressed files against the whole decoder, every outcome counted.

Runs the harness of ``tests/fuzzing.py`` (raw damage and forgeries with every
check recomputed, judged by its oracle) on the tiny model with a 64×64 bucket
(files of tiles), or with ``--windowed`` a 128×128 bucket (files of windows,
one of them in two regions): every truncation of every corpus file, then ``--examples`` inputs drawn by
hypothesis, then ``--memory-examples`` drawn uniformly by numpy while the
resident memory is watched (hypothesis itself keeps every example's choices,
so its phase says nothing about the decoder's memory). Crashes, wrong images
and decodes slower than ``--hang-seconds`` are counted, the first 20 kept with
their input, and make the script exit with status 1.

    python bench/fuzz.py --examples 100000 --out bench/results/fuzz.json
    python bench/fuzz.py --windowed --examples 20000 --out bench/results/fuzz-windows.json
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings

from report import save_report  # a sibling script: python puts bench/ on the path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.fuzzing
from tests import fuzzing  # noqa: E402


WRONG_IMAGE, CRASH, HANG = "WRONG IMAGE", "CRASH", "HANG"


def resident_mb() -> float:
    """This process's resident memory now (Linux)."""
    status = Path("/proc/self/status").read_text()
    return round(int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024, 1)


def uniform_recipes(count: int, corpus_size: int, seed: int):
    rng = np.random.default_rng(seed)
    kinds = fuzzing.RAW + fuzzing.FORGED
    for _ in range(count):
        yield fuzzing.Recipe(kinds[rng.integers(len(kinds))], int(rng.integers(corpus_size)),
                             int(rng.integers(corpus_size)), int(rng.integers(2**32)), int(rng.integers(2**32)),
                             rng.bytes(int(rng.integers(1, 17))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-examples", type=int, default=10_000)
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--windowed", action="store_true", help="the corpus of windowed files")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        codec, corpus = fuzzing.fuzz_codec(Path(folder), windowed=args.windowed)
        outcomes: collections.Counter = collections.Counter()
        failures: list[dict] = []
        slowest = 0.0

        def judge(kind: str, data: bytes, recipe: fuzzing.Recipe) -> None:
            nonlocal slowest
            started = time.perf_counter()
            try:
                outcome = fuzzing.judge(codec, corpus, recipe, data)
            except fuzzing.WrongImage:
                outcome = WRONG_IMAGE
            except Exception as exc:  # a crash: anything but a LicrtError
                outcome = f"{CRASH}: {type(exc).__name__}"
            elapsed = time.perf_counter() - started
            if elapsed > args.hang_seconds:
                outcome = HANG
            if outcome in (WRONG_IMAGE, HANG) or outcome.startswith(CRASH):
                failures.append({"outcome": outcome, "recipe": repr(recipe), "input": data.hex()})
            slowest = max(slowest, elapsed)
            outcomes[kind, outcome] += 1

        started = time.perf_counter()
        for index, item in enumerate(corpus):
            for length in range(len(item.data)):
                judge("truncate-every", item.data[:length], fuzzing.Recipe("truncate", index, index, length, 0, b"-"))

        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(recipe=fuzzing.recipes(len(corpus)))
        def fuzz(recipe):
            judge(recipe.kind, fuzzing.mutate(corpus, recipe), recipe)

        fuzz()
        rss_before = resident_mb()
        for recipe in uniform_recipes(args.memory_examples, len(corpus), args.seed):
            judge(recipe.kind, fuzzing.mutate(corpus, recipe), recipe)
        rss_after = resident_mb()
        seconds = time.perf_counter() - started

    counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (kind, outcome), count in sorted(outcomes.items()):
        counts[kind][outcome] = count
    def total(prefix: str) -> int:
        return sum(n for (_, outcome), n in outcomes.items() if outcome.startswith(prefix))

    save_report("fuzz.py", argv, args.out,
                corpus=[{"name": s.name, "bytes": len(s.data), "tiles": s.container.header.sections} for s in corpus],
                inputs=sum(outcomes.values()), refused=total("refused"), decoded=total("decoded"),
                wrong_images=total(WRONG_IMAGE), crashes=total(CRASH), hangs=total(HANG),
                slowest_input_seconds=round(slowest, 3),
                seconds=round(seconds, 1), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                memory_phase={"inputs": args.memory_examples, "rss_mb_before": rss_before, "rss_mb_after": rss_after},
                hypothesis_seed=args.seed, outcomes=counts, failures=failures[:20])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
