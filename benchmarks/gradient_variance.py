"""Gradient variance of every estimator on one trained model (`airscene gradvar`), beside the report's
Table 1 (../shared/reference/report-experiments-with-air.txt)."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

FIGURE = Path(__file__).with_name("gradient_variance.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="benchmarks/out/estimators/enumerate-seed0", help="a trained run directory")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "gradvar.json").is_file():
        subprocess.run([sys.executable, "-m", "airscene.cli", "gradvar", str(run), "--samples", str(args.samples)],
                       check=True, stdout=subprocess.DEVNULL)
    results = json.loads((run / "gradvar.json").read_text())
    shutil.copyfile(run / "gradvar.png", FIGURE)
    rows = [f"| {name} | {values['presence_head_variance']:.3g} | {values['presence_head_mean_norm']:.3g} "
            f"| {values['decoder_variance']:.3g} |" for name, values in results["estimators"].items()]
    fitted = (f"nvil's baseline was fitted for {results['baseline_fitted_steps']} steps on the fixed model"
              if results["baseline_fitted_steps"] else "nvil's baseline is the run's own")
    body = "\n".join([
        f"Model: `{run}` (trained by `{results['trained_with']}`, step {results['checkpoint_step']}), fixed. One batch "
        f"of {results['batch_size']} held-out scenes; {results['samples']} gradient draws per estimator; total "
        "variance (sum over parameters of the per-parameter variance) of the gradient of the loss for the presence "
        "head (the inference network's output row for the presence logit) and, for reference, for the glimpse "
        f"decoder. {fitted}. nvil's signal normalisation is off here: it rescales the gradient (a step size) "
        "rather than reducing its variance.\n",
        "| estimator | presence head: variance | presence head: norm of mean | decoder: variance |",
        "| --- | --- | --- | --- |", *rows,
        "\nThe report's Table 1 (its own AIR, 160k steps): backprop (decoder) 5.8e-2, score function 2.0e4, score "
        "function with baseline 6.5e2.\n",
        f"![gradient variance per estimator]({FIGURE.name})",
    ])
    write_section("Gradient variance", body)
    print(body)


if __name__ == "__main__":
    main()
