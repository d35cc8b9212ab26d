"""Many objects on large canvases: the grid model against AIR and DAIR (N = 10 steps) on 100 x 100 canvases
of 0-10 digits, the same wall-clock budget each, 3 seeds; the grid trained there tested on 200 x 200
canvases of 0-40; and inference time per image against the number of objects, with the grid of an earlier
version (its source and its run: --before SRC RUN) timed beside it in the same way.

    python benchmarks/many_objects.py --before benchmarks/out/before-68a2730/src benchmarks/out/many_objects-before/grid-seed0
"""

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, seeded_runs_parser, train_and_evaluate, write_section  # noqa: E402
from versions import last_line  # noqa: E402

import airscene  # noqa: E402
from airscene.config import ModelConfig  # noqa: E402
from airscene.data import load_dataset  # noqa: E402
from airscene.images import to_model_layout  # noqa: E402
from airscene.model import AIR  # noqa: E402
from airscene.model.priors import apply_object_size  # noqa: E402
from airscene.viz import plt, save_figure  # noqa: E402

MODELS = {
    "grid": ["--model", "grid", "--estimator", "local", "--batch-size", "16", "--glimpse-size", "20",
             "--embedding-size", "64", "--backbone-channels", "8", "--count-prior", "1e-20"],
    "air": ["--model", "air", "--max-objects", "10"],
    "dair": ["--model", "dair", "--max-objects", "10"],
}
TIMED_COUNTS = (0, 1, 5, 10, 20, 30, 40)


def make_data(out: Path) -> tuple[Path, Path]:
    small, large = out / "data-100", out / "data-200"
    if not (small / "dataset.json").is_file():
        run_airscene("data", "multi-mnist", "--out", str(small), "--size", "100", "--counts", "0-10",
                     "--train", "20000", "--test", "2000")
    if not (large / "dataset.json").is_file():  # only its test split is used
        run_airscene("data", "multi-mnist", "--out", str(large), "--size", "200", "--counts", "0-40",
                     "--train", "64", "--test", "1000")
    return small, large


def train(data: Path, run: Path, model: str, seed: int, minutes: float) -> None:
    train_and_evaluate(run, data, seed, minutes, *MODELS[model], "--object-size", "20,20", "--window-limit", "1.2",
                       "--steps", "1000000", "--eval-every", "500", "--eval-images", "500")


def seconds_per_image(describers: list, batches: list[torch.Tensor], rounds: int = 2, warm_up: float = 2.0,
                      least: float = 0.5) -> list[float]:
    """Seconds per image of each describe on its batch (`describers[i]` on `batches[i]`): the best of its calls
    (as many as fill `least` seconds, 3 to 10) in each of `rounds` passes over them, the best pass kept. First,
    `warm_up` seconds of calls on the last: a process's first seconds of describe run up to twice slower (its
    allocator and caches settling), and in a single pass, which batch ran before changes a time by a fifth."""
    started = time.perf_counter()
    while time.perf_counter() - started < warm_up:
        describers[-1](batches[-1])
    best = [math.inf] * len(batches)
    for _ in range(rounds):
        for index, (describe, images) in enumerate(zip(describers, batches)):
            calls, began = 0, time.perf_counter()
            while calls < 3 or (calls < 10 and time.perf_counter() - began < least):
                tick = time.perf_counter()
                describe(images)
                best[index], calls = min(best[index], time.perf_counter() - tick), calls + 1
    return [seconds / len(images) for seconds, images in zip(best, batches)]


def scenes_with(test, count: int, number: int) -> torch.Tensor:
    chosen = np.flatnonzero(test.counts == count)[:number]
    return to_model_layout(test.images[chosen], 1)


def forced_air(model: str, steps: int, size: int) -> AIR:
    """AIR or DAIR with `steps` steps whose every step is present: the cost of inferring steps - 1 objects
    (the last step finds nothing and stops); untrained, as only the time is wanted."""
    config = ModelConfig(model=model, max_objects=steps, image_size=size, channels=1, object_size=(20.0,), window_limit=1.2)
    apply_object_size(config)
    air = AIR(config).eval()
    with torch.no_grad():
        air.infer_step.head.bias[0] = 50.0  # presence probability 1 at every step
    return air


def model_times(model: str, large: str, precision: str = "fp32") -> list[float]:
    """Seconds per image of describe at each of TIMED_COUNTS (one thread), on 20 held-out scenes of that many
    digits: of the trained grid run `model` (loaded with that inference `precision`), or of "air" or "dair"
    (forced_air)."""
    torch.set_num_threads(1)
    _, test, _ = load_dataset(large)
    batches = [scenes_with(test, count, 20) for count in TIMED_COUNTS]
    if model in ("air", "dair"):
        return seconds_per_image([forced_air(model, count + 1, 200).describe for count in TIMED_COUNTS], batches)
    return seconds_per_image([airscene.load(model, precision=precision).described_tensors] * len(batches), batches)


MODEL_TIMES = ("import json, sys; sys.path.insert(0, sys.argv[1]); from many_objects import model_times; "
               "print(json.dumps(model_times(*sys.argv[2:])))")


def inference_times(grid_run: Path, large: Path, before: tuple[str, str] | None,
                    others: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Per image at each count, each model timed in a process of its own: the grid (other runs under their
    names, and the earlier version's, the version's code timing its run), AIR and DAIR."""
    here = str(Path(__file__).parent)
    times = {"grid": json.loads(last_line("src", MODEL_TIMES, here, str(grid_run), str(large)))}
    for name, run in others:
        times[name] = json.loads(last_line("src", MODEL_TIMES, here, run, str(large)))
    if before:
        times["grid before"] = json.loads(last_line(before[0], MODEL_TIMES, here, before[1], str(large)))
    for name in ("air", "dair"):
        times[name] = json.loads(last_line("src", MODEL_TIMES, here, name, str(large), timeout=3600))
    return times


def speed_up(times: dict[str, list[float]]) -> str:
    """The earlier grid's time over each of this version's grids', over the counts, in words."""
    if "grid before" not in times:
        return ""
    ratios = {name: [before / now for before, now in zip(times["grid before"], values)]
              for name, values in times.items() if name not in ("grid before", "air", "dair")}
    return "Against the earlier version's grid, at every count: " + "; ".join(
        f"`{name}` {min(ratio):.1f}-{max(ratio):.1f}x faster" for name, ratio in ratios.items()) + ". "


def air_against_grid(times: dict[str, list[float]]) -> str:
    """Where the grid is the faster of the two, in words."""
    faster = [str(count) for count, air, grid in zip(TIMED_COUNTS, times["air"], times["grid"]) if grid < air]
    if not faster:
        return "on a CPU its time stays below the grid's up to 40 objects"
    if len(faster) == len(TIMED_COUNTS):
        return "on a CPU the grid is the faster at every count"
    return f"on a CPU the grid is the faster at {', '.join(faster)} objects, AIR at the other counts"


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/many_objects")
    parser.add_argument("--before", nargs=2, metavar=("SRC", "RUN"), help="an earlier version's source and its grid run")
    parser.add_argument("--time-run", nargs=2, action="append", default=[], metavar=("NAME", "RUN"),
                        help="another grid run to time beside the benchmark's, under NAME")
    args = parser.parse_args()
    out = Path(args.out)
    small, large = make_data(out)
    jobs = [(model, seed) for seed in args.seeds for model in MODELS]  # seed-major: the models side by side
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda job: train(small, out / f"{job[0]}-seed{job[1]}", *job, args.minutes), jobs))
    for seed in args.seeds:  # on the larger canvases, once
        if not (out / f"grid-seed{seed}" / f"eval-{large.resolve().name}.json").is_file():
            run_airscene("eval", str(out / f"grid-seed{seed}"), "--data", str(large), "--samples", "1")

    rows = []
    for model, seed in sorted(jobs):
        run = out / f"{model}-seed{seed}"
        metrics, summary = (json.loads((run / name).read_text()) for name in ("eval.json", "train_summary.json"))
        larger = (json.loads((run / f"eval-{large.resolve().name}.json").read_text())["count_mean_absolute_error"]
                  if model == "grid" else None)
        rows.append(f"| {model} | {seed} | {summary['step']} | {100 * metrics['count_accuracy']:.1f}% | "
                    f"{metrics['count_mean_absolute_error']:.3f} | {metrics['ap50']:.3f} | "
                    f"{'' if larger is None else f'{larger:.3f}'} |")
    times = inference_times(out / f"grid-seed{args.seeds[0]}", large, args.before, args.time_run)
    figure, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")  # room for the x label
    for name, values in times.items():
        axis.plot(TIMED_COUNTS, [1000 * value for value in values], marker="o", label=name)
    axis.set(xlabel="objects in the image (200 x 200)", ylabel="inference ms / image", yscale="log")
    axis.legend()
    save_figure(figure, Path(__file__).with_name("many_objects.png"))
    timing = [f"| {count} | " + " | ".join(f"{1000 * times[name][index]:.2f}" for name in times) + " |"
              for index, count in enumerate(TIMED_COUNTS)]
    ratio = {name: values[TIMED_COUNTS.index(40)] / values[TIMED_COUNTS.index(1)] for name, values in times.items()}
    body = "\n".join([
        f"Multi-MNIST on 100 x 100 canvases with 0-10 digits (20,000 training scenes; held-out: 2,000), "
        f"{args.minutes:g} minutes of training each, one thread, two runs side by side; `--object-size 20,20 "
        "--window-limit 1.2` for all, and every model evaluated on 500 held-out scenes every 500 steps within "
        "its budget. Count accuracy, count mean absolute error and AP@0.5 of the windows against the digits' "
        "ink boxes on the held-out scenes; the last column is the grid trained there, tested on 200 x 200 "
        "canvases with 0-40 digits (1,000 scenes). The grid's counts are its refined presences (two sweeps, "
        "the default `--presence-sweeps`).",
        "",
        "| model | seed | steps | count accuracy | count MAE | AP@0.5 | count MAE, 200 x 200, 0-40 |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Inference time per image (ms, one thread, batches of 20 held-out 200 x 200 scenes with that many "
        "digits; each model in a process of its own, warmed up for 2 s, then the best call of each batch over two "
        "passes over the counts: `seconds_per_image`). The grid is the trained model (seed " + str(args.seeds[0])
        + "), timed by its version's code" + "".join(f"; `{name}` this version timing the run `{run}`"
                                                            for name, run in args.time_run)
        + (f"; `grid before` the earlier version `{args.before[0]}` timing "
        f"its own trained run `{args.before[1]}`" if args.before else "") + "; AIR and DAIR run the n + 1 steps "
        "that n objects take them (untrained networks of the same size with presence forced on: only the time is "
        "measured).",
        "",
        "| objects | " + " | ".join(times) + " |",
        "|---:|" + "---:|" * len(times),
        *timing,
        "",
        f"Time at 40 objects against 1: the grid {ratio['grid']:.2f}x, AIR {ratio['air']:.2f}x, DAIR "
        f"{ratio['dair']:.0f}x. {speed_up(times)}The grid reads the canvas once with its backbone, then decodes "
        "and weighs only its candidate cells (those it gives a presence probability above 0.1%): its cost grows "
        f"with the count, slowly. AIR's steps are cheap (one LSTM step and one glimpse each): {air_against_grid(times)}. "
        "DAIR re-embeds the whole error canvas at every step, and its describe re-adds every earlier object each "
        "step, so it grows fastest.",
        "",
        "![inference time](many_objects.png)",
    ])
    write_section("Many objects", body)


if __name__ == "__main__":
    main()
