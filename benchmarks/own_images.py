"""Objects that are not MNIST digits, trained as a user would train on their own: Fashion-MNIST items
composed by `data scenes`, and filled shapes (grey sprites, not overlapping, 0-2); each with --object-size
set as the README says and the default 10-minute run. (Overlapping sprites: benchmarks/sprites.py.)

    python benchmarks/own_images.py
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, seeded_runs_parser, train_and_evaluate, write_section  # noqa: E402

from airscene.viz import plt, save_figure  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
DATA = {  # name: (the `airscene data` command, --object-size, what it is)
    "fashion": (["scenes", "--objects", FASHION], "28,28", "Fashion-MNIST items, 0-2"),
    "shapes": (["sprites", "--no-overlap", "--counts", "0-2"], "10,20", "filled shapes, grey, 0-2, not overlapping"),
}
MODELS = {"fashion": ("air", "dair"), "shapes": ("air",)}


def make_data(out: Path, name: str, command: list[str]) -> Path:
    directory = out / f"data-{name}"
    if not (directory / "dataset.json").is_file():
        run_airscene("data", *command, "--out", str(directory))
    return directory


def accuracy_by_seed(data: dict, models: dict, flags: dict, description: str, figure_name: str) -> tuple[dict, list]:
    """Make each data set, train every (data, model, seed) of the command line with --object-size and the
    data's `flags`, and draw the held-out count accuracy of each seed as benchmarks/FIGURE_NAME.png; returns
    the run directory of each (data, model, seed) and the lines of a RESULTS.md section."""
    parser = seeded_runs_parser(description, f"benchmarks/out/{figure_name}")
    parser.add_argument("--data", nargs="+", choices=tuple(data), default=list(data))
    args = parser.parse_args()
    out = Path(args.out)
    for name in args.data:
        make_data(out, name, data[name][0])
    jobs = [(name, model, seed) for seed in args.seeds for name in args.data for model in models[name]]

    def train(job):
        name, model, seed = job
        return train_and_evaluate(out / f"{name}-{model}-seed{seed}", out / f"data-{name}", seed, args.minutes,
                                  "--model", model, "--object-size", data[name][1], *flags.get(name, ()))

    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(train, jobs))
    accuracy = {job: json.loads((run / "eval.json").read_text())["count_accuracy"] for job, run in zip(jobs, runs)}

    pairs = [(name, model) for name in args.data for model in models[name]]
    rows = []
    for name, model in pairs:
        values = [accuracy[(name, model, seed)] for seed in args.seeds]
        shown = " ".join(["--object-size", data[name][1], *flags.get(name, ())])
        rows.append(f"| {data[name][2]} | {model} | `{shown}` | " + ", ".join(f"{100 * value:.1f}%" for value in values)
                    + f" | {100 * min(values):.1f}% |")
    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(pairs)), 3.5))
    for index, (name, model) in enumerate(pairs):
        values = [100 * accuracy[(name, model, seed)] for seed in args.seeds]
        axis.scatter(np.full(len(values), index), values, color="C0")
    axis.axhline(95, color="grey", linestyle=":")
    axis.set_xticks(range(len(pairs)), [f"{name}\n{model}" for name, model in pairs], fontsize=8)
    axis.set(ylabel="held-out count accuracy (%)")
    save_figure(figure, Path(__file__).with_name(f"{figure_name}.png"))
    return dict(zip(jobs, runs)), [
        f"Each data set made by the `airscene data` command shown in the script (its defaults: 50 x 50, 60,000 "
        f"training scenes, 10,000 held out), AIR's defaults but for the flags shown, {args.minutes:g} minutes of "
        "training, one thread, two runs side by side; held-out count accuracy of each seed.",
        "",
        "| objects | model | flags | count accuracy by seed | worst seed |",
        "|---|---|---|---:|---:|",
        *rows,
        "",
        f"![held-out count accuracy by seed]({figure_name}.png)",
    ]


def main() -> None:
    _, lines = accuracy_by_seed(DATA, MODELS, {}, __doc__, "own_images")
    write_section("Your own images", "\n".join(lines))


if __name__ == "__main__":
    main()
