"""Where a run's masks go wrong: each true object of the first held-out scenes, by its size, found whole (one
inferred segment holds most of its pixels), missed (most of its pixels go to the background) or split (two or
more segments each hold at least a sixth of it), and how far the inferred count is from the truth. The most
probable explanation, as the training's own evaluations score it. Run it on runs trained on validation scenes.

    python benchmarks/segmentation_errors.py benchmarks/out/clevr-dev3/sd07-s1 benchmarks/out/clevr-dev/recipe-seed1
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

from airscene.data import load_dataset  # noqa: E402
from airscene.infer import load  # noqa: E402

SIZES = ((0, 8), (8, 12), (12, 16), (16, np.inf))  # an object's extent in pixels: the larger side of its mask's box
SPLIT_SHARE = 1 / 6  # a segment holding at least this share of an object's pixels is one of its pieces


def object_outcomes(true: np.ndarray, labels: np.ndarray) -> list[tuple[int, str]]:
    """True label maps and inferred ones (B, H, W), 0 the background -> (extent, outcome) for every true object:
    outcome "missed", "split" or "whole"."""
    outcomes = []
    for truth, inferred in zip(true, labels):
        for index in range(1, int(truth.max()) + 1):
            mask = truth == index
            rows, columns = np.nonzero(mask)
            if not len(rows):
                continue
            extent = int(max(np.ptp(rows), np.ptp(columns))) + 1
            owners = inferred[mask]
            shares = np.bincount(owners) / len(owners)  # (segments + 1,) the background's share first
            if shares[0] > 0.5:
                outcomes.append((extent, "missed"))
            else:
                outcomes.append((extent, "split" if (shares[1:] >= SPLIT_SHARE).sum() > 1 else "whole"))
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--scenes", type=int, default=300)
    args = parser.parse_args()
    bands = [f"{low}-{high - 1} px" if np.isfinite(high) else f"{low}+ px" for low, high in SIZES]
    rows = ["| run | count: under / right / over | " + " | ".join(f"{band}: missed / split" for band in bands) + " |",
            "|---|---|" + "---|" * len(bands)]
    for run in args.runs:
        trained = load(run)
        _, test, _ = load_dataset(trained.config.data)
        images = trained.prepare(test.images[:args.scenes])
        _, labels = trained.segment(images, proposals=1)
        difference = trained.infer(images).counts - test.counts[:args.scenes]
        outcomes = object_outcomes(np.asarray(test.masks[:args.scenes]), np.asarray(labels))
        cells = []
        for low, high in SIZES:
            found = [outcome for extent, outcome in outcomes if low <= extent < high]
            cells.append(f"{found.count('missed') / len(found):.1%} / {found.count('split') / len(found):.1%} "
                         f"({len(found)})" if found else "-")
        rows.append(f"| `{run}` | {(difference < 0).mean():.1%} / {(difference == 0).mean():.1%} / "
                    f"{(difference > 0).mean():.1%} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    write_section("Segmentation: where the masks go wrong", f"The first {args.scenes} held-out scenes of each run's own "
                  "data, most probable explanation. Per size band: the share of its objects missed and split (the "
                  "number of objects in brackets).\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
