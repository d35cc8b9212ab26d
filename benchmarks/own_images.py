"""Objects that are not MNIST digits, trained as a user would train on their own: overlapping sprites
(grey and colour, 0-3, occluding; AIR and DAIR), Fashion-MNIST items composed by `data scenes`, and
filled shapes (grey sprites, not overlapping, 0-2); each with --object-size set as the README says and
the default 10-minute run.

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
    "sprites-grey": (["sprites", "--counts", "0-3"], "10,20", "overlapping sprites, grey, 0-3"),
    "sprites-colour": (["sprites", "--counts", "0-3", "--colour"], "10,20", "overlapping sprites, colour, 0-3"),
    "fashion": (["scenes", "--objects", FASHION], "28,28", "Fashion-MNIST items, 0-2"),
    "shapes": (["sprites", "--no-overlap", "--counts", "0-2"], "10,20", "filled shapes, grey, 0-2, not overlapping"),
}
MODELS = {"sprites-grey": ("air", "dair"), "sprites-colour": ("air", "dair"), "fashion": ("air", "dair"), "shapes": ("air",)}


def make_data(out: Path, name: str) -> Path:
    directory = out / f"data-{name}"
    if not (directory / "dataset.json").is_file():
        run_airscene("data", *DATA[name][0], "--out", str(directory))
    return directory


def train(out: Path, name: str, model: str, seed: int, minutes: float) -> Path:
    return train_and_evaluate(out / f"{name}-{model}-seed{seed}", out / f"data-{name}", seed, minutes,
                              "--model", model, "--object-size", DATA[name][1])


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/own_images")
    parser.add_argument("--data", nargs="+", choices=tuple(DATA), default=list(DATA))
    args = parser.parse_args()
    out = Path(args.out)
    for name in args.data:
        make_data(out, name)
    jobs = [(name, model, seed) for seed in args.seeds for name in args.data for model in MODELS[name]]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: train(out, *job, args.minutes), jobs))
    accuracy = {job: json.loads((run / "eval.json").read_text())["count_accuracy"] for job, run in zip(jobs, runs)}

    rows = []
    for name in args.data:
        for model in MODELS[name]:
            values = [accuracy[(name, model, seed)] for seed in args.seeds]
            rows.append(f"| {DATA[name][2]} | {model} | `--object-size {DATA[name][1]}` | "
                        + ", ".join(f"{100 * value:.1f}%" for value in values) + f" | {100 * min(values):.1f}% |")
    figure, axis = plt.subplots(figsize=(7, 3.5))
    labels = [f"{name}\n{model}" for name in args.data for model in MODELS[name]]
    for index, (name, model) in enumerate((name, model) for name in args.data for model in MODELS[name]):
        values = [100 * accuracy[(name, model, seed)] for seed in args.seeds]
        axis.scatter(np.full(len(values), index), values, color="C0")
    axis.axhline(95, color="grey", linestyle=":")
    axis.set_xticks(range(len(labels)), labels, fontsize=8)
    axis.set(ylabel="held-out count accuracy (%)")
    save_figure(figure, Path(__file__).with_name("own_images.png"))
    body = "\n".join([
        f"Each data set made by the `airscene data` command shown in the script (its defaults: 50 x 50, 60,000 "
        f"training scenes, 10,000 held out), AIR's defaults otherwise, {args.minutes:g} minutes of training, "
        "one thread, two runs side by side; held-out count accuracy of each seed.",
        "",
        "| objects | model | size | count accuracy by seed | worst seed |",
        "|---|---|---|---:|---:|",
        *rows,
        "",
        "![count accuracy on objects that are not digits](own_images.png)",
    ])
    write_section("Your own images", body)


if __name__ == "__main__":
    main()
