"""What the best of K explanations (`airscene eval --proposals K`, infer.best_explanation), refined by R gradient
steps on each scene's joint (`--refine R`, infer.refine_explanation), does to trained runs' masks: FG-ARI, ARI and
mBO on their first training scenes (where K and R are chosen) and on the held-out ones, and what a scene costs,
for each K and R.

    python benchmarks/proposals.py benchmarks/out/tetrominoes-30min --proposals 1 4 16 64
    python benchmarks/proposals.py RUN --proposals 1 16 --refine 0 100
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

from airscene.data import load_dataset  # noqa: E402
from airscene.evaluate import segmentation_metrics  # noqa: E402
from airscene.infer import load  # noqa: E402


def scored(trained, scenes, proposals: int, refine: int) -> tuple[str, float]:
    """FG-ARI / ARI / mBO of the scenes' label maps, and the milliseconds a scene took."""
    torch.manual_seed(0)
    started = time.perf_counter()
    labels = trained.segment(scenes.images, proposals=proposals, refine=refine)[1]
    milliseconds = 1000 * (time.perf_counter() - started) / len(labels)
    metrics = segmentation_metrics(scenes.masks, labels)
    return " / ".join(f"{100 * metrics[key]:.2f}%" for key in ("fg_ari", "ari", "mbo")), milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--scenes", type=int, default=1000, help="training and held-out scenes each")
    parser.add_argument("--proposals", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--refine", type=int, nargs="+", default=[0], help="gradient steps after choosing (0: none)")
    args = parser.parse_args()
    refined = any(args.refine)
    rows = ["| run | proposals |" + (" refine |" if refined else "") + " training scenes: FG-ARI / ARI / mBO | held out: "
            "FG-ARI / ARI / mBO | ms a scene |", "|---|---:|" + ("---:|" if refined else "") + "---|---|---:|"]
    for run in args.runs:
        trained = load(run)
        train, test, _ = load_dataset(trained.config.data)
        for proposals in args.proposals:
            for refine in args.refine:
                on_train, _ = scored(trained, train[:args.scenes], proposals, refine)
                held_out, milliseconds = scored(trained, test[:args.scenes], proposals, refine)
                rows.append(f"| `{run}` (step {trained.step:,}) | {proposals} |" + (f" {refine} |" if refined else "")
                            + f" {on_train} | {held_out} | {milliseconds:.2f} |")
                print(rows[-1], flush=True)
    write_section("Segmentation: the best of K explanations" + (", refined" if refined else ""),
                  f"Each run's first {args.scenes:,} training and held-out scenes; proposals 1 is the most probable "
                  "explanation alone (every latent at its mean, presence greedy), the rest drawn from the inference "
                  "network and kept, scene by scene, where log p(x, z) - log q(z | x) is higher"
                  + ("; refine R: then R steps of Adam on each scene's log p(x, z) over its objects' windows and codes, "
                     "kept where it rose" if refined else "") + ".\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
