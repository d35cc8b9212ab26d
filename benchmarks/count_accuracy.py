"""Held-out count accuracy over training for each estimator and seed: time to 95%, final accuracy, and
a figure of accuracy over wall-clock time. Runs train in parallel subprocesses, one torch thread each."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import seeded_runs_parser, train_and_evaluate, write_section  # noqa: E402

from airscene.viz import plt, save_figure  # noqa: E402


def train(data: str, out: Path, estimator: str, seed: int, minutes: float, extra: list[str]) -> None:
    train_and_evaluate(out, data, seed, minutes, "--estimator", estimator, "--steps", "1000000", "--eval-every", "250",
                       *extra, samples=20)


def first_time_at(evals: list[dict], bar: float):
    hit = next((e for e in evals if e["test_count_accuracy"] >= bar), None)
    return (hit["seconds"], hit["step"]) if hit else (None, None)


def gradient_variances(path: str | None) -> dict[str, float]:
    """Presence-head gradient variance per estimator name, from an `airscene gradvar` JSON."""
    if not path:
        return {}
    results = json.loads(Path(path).read_text())["estimators"]
    return {name.split(" ")[0]: values["presence_head_variance"] for name, values in results.items()
            if "straight-through" not in name and not name.startswith("score")}


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/count_accuracy")
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--estimators", nargs="+", default=["enumerate", "nvil"])
    parser.add_argument("--section", default="Count accuracy", help="the RESULTS.md section to write")
    parser.add_argument("--figure", default="count_accuracy.png", help="figure file name, beside RESULTS.md")
    parser.add_argument("--gradvar", default=None, help="an `airscene gradvar` JSON for the variance column")
    parser.add_argument("extra", nargs="*", help="more `airscene train` options, after --")
    args = parser.parse_args()
    # Seed-major order: the estimators run side by side under the same load, not one after another.
    jobs = [(estimator, seed) for seed in args.seeds for estimator in args.estimators]
    out = Path(args.out)
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda job: train(args.data, out / f"{job[0]}-seed{job[1]}", *job, args.minutes, args.extra), jobs))

    figure_path = Path(__file__).with_name(args.figure)
    figure, axis = plt.subplots(figsize=(7, 4))
    colours = dict(zip(args.estimators, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    rows, per_estimator = [], {name: [] for name in args.estimators}
    for estimator, seed in sorted(jobs, key=lambda job: (args.estimators.index(job[0]), job[1])):
        run = out / f"{estimator}-seed{seed}"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in records if r["kind"] == "eval"]
        trains = [r for r in records if r["kind"] == "train"]
        final = json.loads((run / "eval.json").read_text())
        seconds95, steps95 = first_time_at(evals, 0.95)
        seconds98, _ = first_time_at(evals, 0.98)
        ms_per_step = 1000 * trains[-1]["seconds"] / trains[-1]["step"]
        per_estimator[estimator].append((seconds95, final["count_accuracy"], ms_per_step))
        rows.append(f"| {estimator} | {seed} | {f'{seconds95 / 60:.1f} min ({steps95} steps)' if seconds95 else 'never'} "
                    f"| {f'{seconds98 / 60:.1f} min' if seconds98 else 'never'} | {final['count_accuracy']:.4f} "
                    f"| {final['checkpoint_step']} | {ms_per_step:.0f} | {final['mean_iou']:.3f} | {final['ap50']:.3f} "
                    f"| {final['test_elbo']:.1f} | {final['test_log_likelihood_iw']:.1f} |")
        axis.plot([e["seconds"] / 60 for e in evals], [e["test_count_accuracy"] for e in evals],
                  color=colours[estimator], alpha=0.8, label=f"{estimator}" if seed == args.seeds[0] else None)
    axis.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("wall-clock minutes (one torch thread, two runs at once)")
    axis.set_ylabel("held-out count accuracy (1,000 scenes)")
    axis.set_ylim(0, 1.02)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, figure_path, dpi=110)
    variances = gradient_variances(args.gradvar)
    summary = []
    for estimator, results in per_estimator.items():
        reached = sorted(r[0] for r in results if r[0] is not None)
        median = f"{reached[len(reached) // 2] / 60:.1f} min" if reached else "never"
        finals = [r[1] for r in results]
        variance = f"{variances[estimator]:.3g}" if estimator in variances else "-"
        summary.append(f"| {estimator} | {len(reached)} of {len(results)} | {median} | {sum(finals) / len(finals):.4f} "
                       f"| {min(finals):.4f} | {sum(r[2] for r in results) / len(results):.0f} | {variance} |")
    body = "\n".join([
        f"Each run: `airscene train` with the default config, {args.minutes:g} minutes of wall-clock, one torch thread, "
        f"{args.parallel} runs at once on the 2 cores (so a run alone with both cores is faster). Accuracy over "
        "training is on the first 1,000 held-out scenes every 250 steps; the final columns are `airscene eval` on "
        "all 10,000 held-out scenes (digits never seen in training).\n",
        "| estimator | seeds reaching 95% | median time to 95% | mean final accuracy | worst final accuracy "
        "| ms/step | presence-gradient variance |",
        "| --- | --- | --- | --- | --- | --- | --- |", *summary,
        f"\n{'Gradient variance: from `' + args.gradvar + '` (see the Gradient variance section).' if variances else ''}\n",
        "| estimator | seed | time to 95% | time to 98% | final accuracy | steps | ms/step | mean IoU | AP@0.5 "
        "| test ELBO | IW log p(x) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows,
        f"\n![count accuracy over wall-clock time]({figure_path.name})",
    ])
    write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
