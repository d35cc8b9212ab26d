"""Objects on real backgrounds: Multi-MNIST (0-2 digits) over crops of photographs, the test scenes'
photographs held out, AIR with and without the learned background; and overlapping sprites (0-3, later
ones occluding earlier ones) with alpha compositing against the paper's sum of glimpses. 3 seeds each,
the default 10-minute run, two runs side by side.

    python benchmarks/backgrounds.py
"""

import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, seeded_runs_parser, train_and_evaluate, write_section  # noqa: E402

from airscene.viz import draw_run_figure, plt, save_figure  # noqa: E402

COMPARISONS = {  # name: what it is, the `airscene data` command, and the runs compared (label: train flags)
    "photos": {
        "what": "Multi-MNIST, 0-2 digits, over held-out photographs",
        "data": ["multi-mnist", "--background", "photos"],
        "runs": {"air": ["--model", "air"],
                 "air, learned background": ["--model", "air", "--background", "learned"]},
    },
    "sprites": {
        "what": "overlapping sprites, colour, 0-3, occluding",
        "data": ["sprites", "--counts", "0-3", "--colour"],
        "runs": {"dair, add": ["--model", "dair", "--object-size", "10,20"],
                 "dair, alpha": ["--model", "dair", "--object-size", "10,20", "--compositing", "alpha"]},
    },
}


def make_data(out: Path, name: str) -> Path:
    directory = out / f"data-{name}"
    if not (directory / "dataset.json").is_file():
        run_airscene("data", *COMPARISONS[name]["data"], "--out", str(directory))
    return directory


def run_directory(out: Path, name: str, label: str, seed: int) -> Path:
    return out / f"{name}-{label.replace(', ', '-').replace(' ', '-')}-seed{seed}"


def train(out: Path, name: str, label: str, seed: int, minutes: float) -> Path:
    return train_and_evaluate(run_directory(out, name, label, seed), out / f"data-{name}", seed, minutes,
                              *COMPARISONS[name]["runs"][label])


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/backgrounds")
    parser.add_argument("--comparisons", nargs="+", choices=tuple(COMPARISONS), default=list(COMPARISONS))
    args = parser.parse_args()
    out = Path(args.out)
    for name in args.comparisons:
        make_data(out, name)
    jobs = [(name, label, seed) for seed in args.seeds for name in args.comparisons for label in COMPARISONS[name]["runs"]]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: train(out, *job, args.minutes), jobs))
    accuracy = {job: json.loads((run / "eval.json").read_text())["count_accuracy"] for job, run in zip(jobs, runs)}

    rows, labels = [], []
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for name in args.comparisons:
        for label, flags in COMPARISONS[name]["runs"].items():
            values = [100 * accuracy[(name, label, seed)] for seed in args.seeds]
            rows.append(f"| {COMPARISONS[name]['what']} | `{' '.join(flags)}` | "
                        + ", ".join(f"{value:.1f}%" for value in values) + f" | {min(values):.1f}% |")
            axis.scatter(np.full(len(values), len(labels)), values, color="C0")
            labels.append(f"{name}\n{label}")
    axis.axhline(95, color="grey", linestyle=":")
    axis.set_xticks(range(len(labels)), labels, fontsize=8)
    axis.set(ylabel="held-out count accuracy (%)")
    save_figure(figure, Path(__file__).with_name("backgrounds.png"))
    decomposition = []
    if "photos" in args.comparisons:
        shown = run_directory(out, "photos", "air, learned background", args.seeds[0])
        draw_run_figure(shown)  # its decomposition.png: image, background, each object, reconstruction
        shutil.copy(shown / "decomposition.png", Path(__file__).with_name("backgrounds_decomposition.png"))
        decomposition = [
            "", f"Held-out scenes taken apart by the learned-background run of seed {args.seeds[0]} (`airscene viz`): "
            "the image, the inferred background, each step's object and the reconstruction.", "",
            "![held-out scenes: background, objects, reconstruction](backgrounds_decomposition.png)"]
    body = "\n".join([
        f"Each data set made by the `airscene data` command shown in the script (its defaults: 50 x 50, 60,000 "
        f"training scenes, 10,000 held out), {args.minutes:g} minutes of training, one thread, two runs side by "
        "side; held-out count accuracy of each seed. The photographs behind the held-out scenes (gravel, a "
        "rocket, the moon) are never seen in training.",
        "",
        "| data | train flags | count accuracy by seed | worst seed |",
        "|---|---|---|---:|",
        *rows,
        "",
        "![count accuracy with and without the background model and alpha compositing](backgrounds.png)",
        *decomposition,
    ])
    write_section("Backgrounds and occlusion", body)


if __name__ == "__main__":
    main()
