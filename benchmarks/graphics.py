"""Vision as inverse graphics (the paper's Sec. 3.2, Figs. 6 and 7), with the MuJoCo renderer.

    python benchmarks/graphics.py               # single objects (Fig. 6)
    python benchmarks/graphics.py --table-top   # the table top (Fig. 7), 3 seeds

Single objects: unsupervised AIR (identity summed out, pose through finite differences), the same network
trained supervised on the true identity and pose, and direct optimisation of each test image's
likelihood from the table's centre. The table top (its own section and figure): 0-3 crockery items and a moving
camera, with and without repeated item types; unsupervised DAIR with N = 4 steps, each step's position proposed
where the residual is brightest, its count summed out over the rendered prefixes (dair-enumerate) or learned by
NVIL's score function (dair-proposal; --methods dair: NVIL without the proposal), beside the same network trained on the
true scenes with their labels in a fixed order (by item type), as the paper's Fig. 7. Each run is
`airscene graphics train` with a budget in steps (so results do not depend on the machine's load), then
`airscene graphics eval`; tables and figures go to RESULTS.md."""

import argparse
import json
import statistics
import sys
import textwrap
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
TABLE_TOP_FIGURE = Path(__file__).with_name("graphics_table_top.png")
RUNS = {  # name: (label, `airscene graphics train` options)
    "single-object-air": ("AIR (unsupervised)", ["--experiment", "single-object"]),
    "single-object-supervised": ("supervised", ["--experiment", "single-object", "--estimator", "supervised"]),
}
TABLE_TOP = ["--experiment", "table-top", "--model", "dair"]
COUNT_PRIOR = ["--count-prior", "1e-6"]
DAIR = ["--estimator", "nvil", *COUNT_PRIOR]
METHODS = {"dair-enumerate": ("DAIR, residual proposal, count summed out",
                              ["--estimator", "enumerate", *COUNT_PRIOR, "--where-proposal", "residual"]),
           "dair-proposal": ("DAIR, residual proposal", [*DAIR, "--where-proposal", "residual"]),
           "supervised": ("supervised", ["--estimator", "supervised"]),
           "dair": ("DAIR", DAIR)}
SCENARIOS = {"repeats": ("item types may repeat", []), "distinct": ("distinct item types", ["--no-repeats"])}


def table_top_name(method: str, scenario: str, seed: int) -> str:
    """The run's folder: plain DAIR's runs keep the names they had before the other methods joined them."""
    return f"table-top-{scenario}-seed{seed}" if method == "dair" else f"table-top-{scenario}-{method}-seed{seed}"


def table_top_runs(methods: list[str], seeds: list[int]) -> dict[str, list[str]]:
    """The methods in both scenarios, once per seed: name -> `airscene graphics train` options."""
    return {table_top_name(method, scenario, seed): [*TABLE_TOP, *METHODS[method][1], *SCENARIOS[scenario][1], "--seed", str(seed)]
            for seed in seeds for scenario in SCENARIOS for method in methods}


def train(out: Path, options: list[str], steps: int) -> None:
    train_once(out, "graphics", "train", "--quiet", "--steps", str(steps), "--threads", "1", *options)


def evaluate(out: Path, optimise_images: int = 0) -> dict:
    run_airscene("graphics", "eval", str(out), *(["--optimise-images", str(optimise_images)] if optimise_images else []))
    return json.loads((out / "eval.json").read_text())


def row(label: str, metrics: dict, steps, milliseconds: float, keys: list[str]) -> str:
    cells = [f"{metrics[key]:.3f}" if key in metrics else "-" for key in keys]
    return f"| {label} | {steps} | " + " | ".join(cells) + f" | {milliseconds:.2f} |"


def training_minutes(run: Path) -> float:
    return json.loads((run / "train_summary.json").read_text())["seconds"] / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/out/graphics")
    parser.add_argument("--single-object-steps", type=int, default=1500)
    parser.add_argument("--table-top-steps", type=int, default=2000)
    parser.add_argument("--optimise-images", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--table-top", action="store_true", help="train and report the table-top runs instead")
    parser.add_argument("--table-top-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=["dair-enumerate", "dair-proposal", "supervised"],
                        help="the table top's methods")
    parser.add_argument("--section", default="Inverse graphics: the table top", help="the table top's RESULTS section")
    parser.add_argument("--figure", default=TABLE_TOP_FIGURE.name, help="the table top's figure, beside RESULTS.md")
    args = parser.parse_args()
    out = Path(args.out)
    if args.table_top:
        runs, steps = table_top_runs(args.methods, args.table_top_seeds), args.table_top_steps
    else:
        runs, steps = {name: options for name, (_, options) in RUNS.items()}, args.single_object_steps
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda name: train(out / name, runs[name], steps), runs))
    if args.table_top:
        report_table_top(out, args.methods, args.table_top_seeds, args.section, FIGURE.with_name(args.figure))
    else:
        report_single_objects(out, args.optimise_images)


def report_single_objects(out: Path, optimise_images: int) -> None:
    reports = {name: evaluate(out / name, optimise_images if name == "single-object-air" else 0) for name in RUNS}
    keys = ["identity_accuracy", "position_error", "rotation_error_degrees_cube", "rotation_error_degrees_cylinder"]
    air, supervised = reports["single-object-air"], reports["single-object-supervised"]
    table = [
        "| method | training steps | identity accuracy | position error (table units) | cube rotation error (deg, mod 90) "
        "| cylinder rotation error (deg) | ms per image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("AIR (unsupervised)", air, air["step"], 1000 * air["seconds_per_image"], keys),
        row("supervised on true identity and pose", supervised, supervised["step"], 1000 * supervised["seconds_per_image"], keys),
        row(f"AIR on the {optimise_images} images below", air["network_on_same_images"], air["step"],
            1000 * air["seconds_per_image"], keys),
        row(f"direct optimisation ({air['optimisation']['iterations']} Adam steps per identity, "
            f"{optimise_images} images)", air["optimisation"], "-", 1000 * air["optimisation"]["seconds_per_image"], keys),
    ]
    draw_single_objects(out)
    costs = ["| run | training steps | training minutes (one thread) |", "| --- | --- | --- |",
             *(f"| {name} | {reports[name]['step']} | {training_minutes(out / name):.1f} |" for name in RUNS),
             "", "| MuJoCo render, 32 x 32, one process | ms per frame |", "| --- | --- |",
             *(f"| {label} | {milliseconds:.2f} |" for label, milliseconds in render_speed())]
    body = "\n".join([
        f"{IMAGES_TEXT} Rotation errors are modulo each shape's symmetry and count only objects of the right identity; "
        "the sphere's rotation is not observable. The table top has its own section (\"Inverse graphics: the table "
        "top\").\n",
        "### Single objects (Fig. 6)\n", *table, "\n### Cost\n", *costs, f"\n![inverse graphics]({FIGURE.name})"])
    write_section("Inverse graphics", body)
    print(body)


IMAGES_TEXT = ("Images 32 x 32, rendered by MuJoCo (EGL or OSMesa, 4x multisampling); 20,000 training and 1,000 test "
               "scenes per experiment, rendered from fixed seeds. Positions lie within +-0.4 table units (a cube is "
               "0.32 wide). Metrics on the 1,000 held-out scenes unless stated. Training budgets are in steps (one "
               "thread each), so the numbers do not depend on the machine's load.")
TABLE_TOP_KEYS = ["count_accuracy", "identity_accuracy", "position_error", "camera_error_degrees"]


def report_table_top(out: Path, methods: list[str], seeds: list[int], section: str, figure: Path) -> None:
    reports = {name: evaluate(out / name) for name in table_top_runs(methods, seeds)}
    runs = ["| method | scenario | seed | training steps | count accuracy | identity accuracy | position error "
            "| camera error (deg) | ms per image | training minutes (one thread) |", "| --- " * 10 + "|"]
    means = ["| method | scenario | count accuracy | identity accuracy | position error | seeds with count and "
             "identity >= 90% |", "| --- " * 6 + "|"]
    for scenario, (scenario_label, _) in SCENARIOS.items():
        for method in methods:
            method_label = METHODS[method][0]
            names = [table_top_name(method, scenario, seed) for seed in seeds]
            for seed, name in zip(seeds, names):
                report = reports[name]
                cells = " | ".join(f"{report[key]:.3f}" for key in TABLE_TOP_KEYS)
                runs.append(f"| {method_label} | {scenario_label} | {seed} | {report['step']} | {cells} | "
                            f"{1000 * report['seconds_per_image']:.2f} | {training_minutes(out / name):.1f} |")
            chosen = [reports[name] for name in names]
            spans = " | ".join(f"{statistics.mean(r[key] for r in chosen):.3f} ({min(r[key] for r in chosen):.3f}-"
                               f"{max(r[key] for r in chosen):.3f})" for key in TABLE_TOP_KEYS[:3])
            passed = sum(r["count_accuracy"] >= 0.9 and r["identity_accuracy"] >= 0.9 for r in chosen)
            means.append(f"| {method_label} | {scenario_label} | {spans} | {passed} of {len(chosen)} |")
    draw_table_top(out, methods, seeds, reports, figure)
    flags = "; ".join(f"{METHODS[method][0]}: `{' '.join(TABLE_TOP + METHODS[method][1])}`" for method in methods)
    supervised = ("The supervised network is the same network trained on the true count, identities, positions and "
                  "camera, its step i against the i-th label in a fixed order, by item type (plate, cup, bowl), items "
                  "of one type in the order the scene was generated. " if "supervised" in methods else "")
    body = "\n".join([
        f"{IMAGES_TEXT} 0-3 plates, cups and bowls, N = 4 steps, a camera turning up to 29 degrees about the table. "
        f"{flags}. DAIR is unsupervised. {supervised}Objects are matched to the truth by position (Hungarian) for "
        "the identity and position metrics.\n",
        "Mean over seeds (lowest-highest):\n", *means, "\nEach run:\n", *runs, f"\n![the table top]({figure.name})"])
    write_section(section, body)
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


def image_row(axes_row, pictures, label: str) -> None:
    for column, axis in enumerate(axes_row):
        axis.imshow(pictures[column].permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_xticks([])
        axis.set_yticks([])
        if column == 0:
            axis.set_ylabel(label, fontsize=7)


def draw_single_objects(out: Path, shown: int = 8) -> None:
    """Rows: single-object data, AIR, supervised and optimisation re-rendered; AIR's inferred against true
    positions."""
    with open_run(out / "single-object-air") as (config, model, _), \
            open_run(out / "single-object-supervised") as (_, supervised, _):
        renderer = model.renderer
        data = scene_data(config, renderer, out / "single-object-air")
        images = to_model_layout(data.test_images[:shown], 3)
        fitted, _ = optimise_scenes(renderer, images, iterations=100)
        inferred = model.infer(to_model_layout(data.test_images, 3))
        rows = [("single object", images), ("AIR", renderer.render(inferred[:shown])),
                ("supervised", renderer.render(supervised.infer(images))), ("optimisation", renderer.render(fitted))]
    figure = plt.figure(figsize=(shown + 5, 1.1 * len(rows) + 0.4))
    grid = figure.add_gridspec(len(rows), shown + 5, wspace=0.08, hspace=0.12, left=0.04, right=0.98, bottom=0.1, top=0.95)
    for index, (label, pictures) in enumerate(rows):
        image_row([figure.add_subplot(grid[index, column]) for column in range(shown)], pictures, label)
    axis = figure.add_subplot(grid[:, shown + 2:shown + 5])
    draw_positions(axis, inferred, data.test_scenes)
    axis.set_title("AIR, single objects", fontsize=8)
    save_figure(figure, FIGURE, dpi=110)


def draw_table_top(out: Path, methods: list[str], seeds: list[int], reports: dict, path: Path, shown: int = 8) -> None:
    """Like the paper's Fig. 7, per scenario: held-out table tops and each method's inferences re-rendered (the
    first seed's runs), the first method's inferred against true positions; and every method's count accuracy in
    each scenario, every seed."""
    scenarios, seed = list(SCENARIOS), seeds[0]
    height = len(methods) + 1  # image rows per scenario
    figure = plt.figure(figsize=(shown + 8, 1.2 * height * len(scenarios) + 0.6))
    grid = figure.add_gridspec(height * len(scenarios), shown + 8, wspace=0.08, hspace=0.3, left=0.05, right=0.98,
                               bottom=0.07, top=0.95)
    for index, scenario in enumerate(scenarios):
        first = out / table_top_name(methods[0], scenario, seed)
        with open_run(first) as (config, model, _):
            data = scene_data(config, model.renderer, first)
            images = to_model_layout(data.test_images, 3)
            rows, inferred = [(f"{SCENARIOS[scenario][0]}\nheld out", images[:shown])], None
            for method in methods:
                with open_run(out / table_top_name(method, scenario, seed)) as (_, network, _):
                    scenes = network.infer(images)
                inferred = scenes if inferred is None else inferred
                rows.append(("\n".join(textwrap.wrap(METHODS[method][0], 18)), model.renderer.render(scenes[:shown])))
        for row_index, (label, pictures) in enumerate(rows):
            image_row([figure.add_subplot(grid[height * index + row_index, column]) for column in range(shown)], pictures, label)
        axis = figure.add_subplot(grid[height * index + 1:height * (index + 1), shown + 1:shown + 4])  # a row for the title
        draw_positions(axis, inferred, data.test_scenes)
        axis.set_title(f"{METHODS[methods[0]][0]},\n{SCENARIOS[scenario][0]}, seed {seed}", fontsize=8)
    axis = figure.add_subplot(grid[1:-1, shown + 5:])
    width = 0.8 / len(methods)
    for offset, method in enumerate(methods):
        places = [position + width * (offset - (len(methods) - 1) / 2) for position in range(len(scenarios))]
        accuracy = [[reports[table_top_name(method, scenario, s)]["count_accuracy"] for s in seeds] for scenario in scenarios]
        axis.bar(places, [statistics.mean(values) for values in accuracy], width=width, label=METHODS[method][0],
                 color=f"C{offset}", alpha=0.6)
        for place, values in zip(places, accuracy):
            axis.scatter([place] * len(values), values, color=f"C{offset}", s=10, zorder=3)
    axis.set_xticks(range(len(scenarios)), [SCENARIOS[scenario][0] for scenario in scenarios], fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel("held-out count accuracy", fontsize=8)
    axis.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.01))
    save_figure(figure, path, dpi=110)


if __name__ == "__main__":
    main()
