"""Inference time through the public API (`airscene.load(...).infer`), one image per call and batched, for
several versions side by side on this machine.

    python benchmarks/inference_speed.py --checkpoint RUN/checkpoint.pt --version before=.before/src \
        --version eager=src --version 'compiled=src --compile default'

Each version (a `src` folder, with `--compile MODE` passed to `airscene.load` where given; on a GPU,
`--device cuda` and `--compile reduce-overhead` for CUDA graphs) is measured in a process of its own, 2 torch
threads, the versions taking turns for `--rounds` rounds, so that the machine's drift
falls on all alike. In each: the first call (with a compile, its cost), 50 more to warm up, then the median of
`--calls` calls of one held-out image each (timed call by call), and batches of 1,000 over 10,000 held-out
images (the best of 3 passes, per image). A version's figure is the median over the rounds."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402
from versions import compile_mode, last_line, parse_versions  # noqa: E402

MEASURE = """
import json, statistics, sys, time
import torch
import airscene
from airscene.data import load_dataset

checkpoint, data, mode, calls, device = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(2)
_, test, _ = load_dataset(data)
model = (airscene.load(checkpoint, device=device) if mode == "none"
         else airscene.load(checkpoint, device=device, compile=mode))
started = time.perf_counter()
model.infer(test.images[:1])
first = time.perf_counter() - started
for index in range(50):
    model.infer(test.images[index:index + 1])
single = []
for index in range(calls):
    image = test.images[index % len(test.images)][None]
    started = time.perf_counter()
    model.infer(image)
    single.append(time.perf_counter() - started)
images = test.images[:10000]
model.infer(images[:1000], batch_size=1000)
batched = []
for _ in range(3):
    started = time.perf_counter()
    model.infer(images, batch_size=1000)
    batched.append((time.perf_counter() - started) / len(images))
print(json.dumps({"first_call_s": first, "single_ms": 1000 * statistics.median(single),
                  "batched_ms": 1000 * min(batched)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained run's checkpoint.pt")
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--version", action="append", required=True, help="NAME=SRC_FOLDER [--compile MODE]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="where the model infers (its results come back to the host, "
                        "so every call is timed to its end)")
    args = parser.parse_args()
    versions = parse_versions(args.version)
    measured: dict[str, list[dict]] = {name: [] for name in versions}
    for round_ in range(args.rounds):
        for name, (source, flags) in versions.items():
            result = json.loads(last_line(source, MEASURE, args.checkpoint, args.data, compile_mode(flags), str(args.calls),
                                           args.device))
            measured[name].append(result)
            print(f"round {round_}: {name} {result}", flush=True)
    figures = {name: {key: statistics.median(result[key] for result in results) for key in results[0]}
               for name, results in measured.items()}
    first = next(iter(versions))
    names = list(versions)
    rows = [
        ("one image per call, median of calls", "single_ms", "{:.3f} ms"),
        ("batches of 1,000, per image", "batched_ms", "{:.4f} ms"),
        ("first call (with the compile)", "first_call_s", "{:.1f} s"),
    ]
    table = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, key, form in rows:
        table.append(f"| {label} | " + " | ".join(form.format(figures[name][key]) for name in names) + " |")
    for label, key, _ in rows[:2]:
        table.append(f"| {label}, against {first} | "
                     + " | ".join(f"{figures[name][key] / figures[first][key]:.2f}" for name in names) + " |")
    body = "\n".join([
        "Versions: " + ", ".join(f"{name} = `{' '.join([source, *flags])}`" for name, (source, flags) in versions.items())
        + f". Checkpoint `{args.checkpoint}`, device {args.device}; {args.calls} calls of one image, medians over {args.rounds} rounds "
        "(each version in a process of its own, taking turns).\n",
        *table,
        "\nA version with `--compile` runs the model's fixed-shape describe as one compiled graph (every step on every "
        "image, the images that stopped masked); without, describe exits early, each step running only on the images "
        "still going. Its first call compiles (seconds; less once torch's compiler cache holds the shapes).",
    ])
    write_section("Inference speed", body)
    print(body)


if __name__ == "__main__":
    main()
