"""Vision as inverse graphics (the paper's Sec. 3.2, Figs. 6 and 7), with the MuJoCo renderer.

Single objects: unsupervised AIR (identity summed out, pose through finite differences), the same network
trained supervised on the true identity and pose, and direct optimisation of each test image's
likelihood from the table's centre. With --table-top, also DAIR with N = 4 steps on 0-3 crockery items and
a moving camera, with and without repeated item types. Each run is `airscene graphics train` with a budget in
steps (so results do not depend on the machine's load), then `airscene graphics eval`; tables and
figures go to RESULTS.md."""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, train_once, write_section  # noqa: E402

from airscene.graphics.data import scene_data  # noqa: E402
from airscene.graphics.evaluate import optimise_scenes  # noqa: E402
from airscene.graphics.figures import draw_positions  # noqa: E402
from airscene.graphics.renderers import make_renderer  # noqa: E402
from airscene.graphics.scenes import CROCKERY, SINGLE_OBJECTS, sample_scenes  # noqa: E402
from airscene.graphics.train import open_run  # noqa: E402
from airscene.images import to_model_layout  # noqa: E402
from airscene.viz import plt, save_figure  # noqa: E402

FIGURE = Path(__file__).with_name("graphics.png")
RUNS = {  # name: (label, `airscene graphics train` options)
    "single-object-air": ("AIR (unsupervised)", ["--experiment", "single-object"]),
    "single-object-supervised": ("supervised", ["--experiment", "single-object", "--estimator", "supervised"]),
}
TABLE_TOP = ["--experiment", "table-top", "--model", "dair", "--estimator", "nvil", "--count-prior", "1e-6"]


def table_top_runs(seeds: list[int]) -> dict[str, tuple[str, list[str]]]:
    """Both table-top settings, once per seed."""
    runs = {}
    for seed in seeds:
        runs[f"table-top-repeats-seed{seed}"] = (f"DAIR, repeated item types, seed {seed}", [*TABLE_TOP, "--seed", str(seed)])
        runs[f"table-top-distinct-seed{seed}"] = (f"DAIR, distinct item types, seed {seed}",
                                                  [*TABLE_TOP, "--no-repeats", "--seed", str(seed)])
    return runs


def train(out: Path, options: list[str], steps: int) -> None:
    train_once(out, "graphics", "train", "--quiet", "--steps", str(steps), "--threads", "1", *options)


def evaluate(out: Path, optimise_images: int) -> dict:
    run_airscene("graphics", "eval", str(out), *(["--optimise-images", str(optimise_images)] if optimise_images else []))
    return json.loads((out / "eval.json").read_text())


def row(label: str, metrics: dict, steps, milliseconds: float, keys: list[str]) -> str:
    cells = [f"{metrics[key]:.3f}" if key in metrics else "-" for key in keys]
    return f"| {label} | {steps} | " + " | ".join(cells) + f" | {milliseconds:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/graphics")
    parser.add_argument("--single-object-steps", type=int, default=1500)
    parser.add_argument("--table-top-steps", type=int, default=2000)
    parser.add_argument("--optimise-images", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--table-top", action="store_true", help="also train and report the table-top runs")
    parser.add_argument("--table-top-seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    out = Path(args.out)
    table_top = table_top_runs(args.table_top_seeds) if args.table_top else {}
    runs = {**RUNS, **table_top}
    steps = {name: args.single_object_steps if name.startswith("single") else args.table_top_steps for name in runs}
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda name: train(out / name, runs[name][1], steps[name]), runs))
    reports = {name: evaluate(out / name, args.optimise_images if name == "single-object-air" else 0) for name in runs}

    single_keys = ["identity_accuracy", "position_error", "rotation_error_degrees_cube", "rotation_error_degrees_cylinder"]
    air = reports["single-object-air"]
    single = [
        "| method | training steps | identity accuracy | position error (table units) | cube rotation error (deg, mod 90) "
        "| cylinder rotation error (deg) | ms per image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("AIR (unsupervised)", air, air["step"], 1000 * air["seconds_per_image"], single_keys),
        row("supervised on true identity and pose", reports["single-object-supervised"],
            reports["single-object-supervised"]["step"], 1000 * reports["single-object-supervised"]["seconds_per_image"],
            single_keys),
        row(f"AIR on the {args.optimise_images} images below", air["network_on_same_images"], air["step"],
            1000 * air["seconds_per_image"], single_keys),
        row(f"direct optimisation ({air['optimisation']['iterations']} Adam steps per identity, "
            f"{args.optimise_images} images)", air["optimisation"], "-", 1000 * air["optimisation"]["seconds_per_image"],
            single_keys),
    ]
    table_keys = ["count_accuracy", "identity_accuracy", "position_error", "camera_error_degrees"]
    table = ["| model | training steps | count accuracy | identity accuracy | position error | camera error (deg) "
             "| ms per image |", "| --- | --- | --- | --- | --- | --- | --- |"]
    table += [row(runs[name][0], reports[name], reports[name]["step"], 1000 * reports[name]["seconds_per_image"],
                  table_keys) for name in table_top]
    draw_figure(out, next(iter(table_top), None))
    costs = ["| run | training steps | training minutes (one thread) |", "| --- | --- | --- |"]
    for name in runs:
        summary = json.loads((out / name / "train_summary.json").read_text())
        costs.append(f"| {name} | {summary['step']} | {summary['seconds'] / 60:.1f} |")
    costs += ["", "| MuJoCo render, 32 x 32, one process | ms per frame |", "| --- | --- |",
              *(f"| {label} | {milliseconds:.2f} |" for label, milliseconds in render_speed())]
    body = "\n".join([
        "Images 32 x 32, rendered by MuJoCo (EGL or OSMesa, 4x multisampling); 20,000 training and 1,000 test "
        "scenes per experiment, rendered from fixed seeds. Positions lie within +-0.4 table units (a cube is "
        "0.32 wide); rotation errors are modulo each shape's symmetry and count only objects of the right "
        "identity; the sphere's rotation is not observable. Metrics on the 1,000 held-out scenes unless "
        "stated. Training budgets are in steps (one thread each), so the numbers do not depend on the machine's load.\n",
        "### Single objects (Fig. 6)\n", *single,
        *(["\n### Table top: 0-3 items, moving camera (Fig. 7)\n", *table] if args.table_top else []),
        "\n### Cost\n", *costs,
        f"\n![inverse graphics]({FIGURE.name})",
    ])
    write_section("Inverse graphics", body)
    print(body)


def render_speed(frames: int = 500) -> list[tuple[str, float]]:
    """Milliseconds per MuJoCo frame for single-object and table-top scenes."""
    timings = []
    for label, shapes, slots, counts in (("one object", SINGLE_OBJECTS, 1, (1,)), ("table top, 0-3 items", CROCKERY, 4, (0, 1, 2, 3))):
        scenes = sample_scenes(frames, len(shapes), slots, counts, True, slots > 1, seed=0)
        with make_renderer("mujoco", shapes, slots, 32) as renderer:
            renderer.render(scenes[:10])  # first frames set up the context
            started = time.perf_counter()
            renderer.render(scenes)
            timings.append((label, 1000 * (time.perf_counter() - started) / frames))
    return timings


def draw_figure(out: Path, table_top: str | None, shown: int = 8) -> None:
    """Rows: single-object data, AIR, supervised and optimisation re-rendered (and table-top data and AIR
    re-rendered, from the run named `table_top`); inferred against true positions for each AIR run."""
    rows = []
    with open_run(out / "single-object-air") as (config, model, _), \
            open_run(out / "single-object-supervised") as (_, supervised, _):
        renderer = model.renderer
        data = scene_data(config, renderer, out / "single-object-air")
        images = to_model_layout(data.test_images[:shown], 3)
        fitted, _ = optimise_scenes(renderer, images, iterations=100)
        single_truth, single_inferred = data.test_scenes, model.infer(to_model_layout(data.test_images, 3))
        rows += [("single object", images), ("AIR", renderer.render(single_inferred[:shown])),
                 ("supervised", renderer.render(supervised.infer(images))), ("optimisation", renderer.render(fitted))]
    panels = [("AIR, single objects", single_inferred, single_truth)]
    if table_top:
        with open_run(out / table_top) as (config, model, _):
            data = scene_data(config, model.renderer, out / table_top)
            images = to_model_layout(data.test_images[:shown], 3)
            inferred = model.infer(to_model_layout(data.test_images, 3))
            rows += [("table top", images), ("DAIR", model.renderer.render(inferred[:shown]))]
            panels.append(("DAIR, table top", inferred, data.test_scenes))
    figure = plt.figure(figsize=(shown + 5, 1.1 * len(rows) + 0.4))
    grid = figure.add_gridspec(len(rows), shown + 5, wspace=0.08, hspace=0.12, left=0.04, right=0.98, bottom=0.1, top=0.95)
    for index, (label, pictures) in enumerate(rows):
        for column in range(shown):
            axis = figure.add_subplot(grid[index, column])
            axis.imshow(pictures[column].permute(1, 2, 0).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
    height = len(rows) // len(panels)
    for position, (title, inferred_scenes, truth) in enumerate(panels):
        axis = figure.add_subplot(grid[height * position:height * (position + 1), shown + 2:shown + 5])
        draw_positions(axis, inferred_scenes, truth)
        axis.set_title(title, fontsize=8)
    save_figure(figure, FIGURE, dpi=110)


if __name__ == "__main__":
    main()
