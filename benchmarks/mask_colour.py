"""How alpha-compositing runs' masks depend on the colour each object is taken to show where its glimpse is
nearly transparent: as its decoder drew it there, or drawn toward its opacity-weighted mean colour
(`model.air.fitted_appearance`, what `pixel_shares` uses). Most probable explanations of the first scenes of each
run's held-out split, scored by FG-ARI, ARI and mBO. Run it on runs trained on validation scenes, not on the
benchmark's.

    python benchmarks/mask_colour.py benchmarks/out/dsprites-dev2/limit15 benchmarks/out/clevr-dev/recipe-seed1
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

from airscene.data import load_dataset  # noqa: E402
from airscene.evaluate import segmentation_metrics  # noqa: E402
from airscene.infer import load  # noqa: E402
from airscene.model.air import alone_pictures, pixel_shares  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--scenes", type=int, default=1000)
    args = parser.parse_args()
    rows = ["| run | as decoded: FG-ARI / ARI / mBO | fitted: FG-ARI / ARI / mBO |", "|---|---|---|"]
    for run in args.runs:
        trained = load(run)
        _, test, _ = load_dataset(trained.config.data)
        images = trained.prepare(test.images[:args.scenes])
        model = trained.model
        with torch.inference_mode():
            labels = []
            for chunk in images.split(100):
                trace = model.most_probable(chunk)
                shares = pixel_shares(trace.objects, trace.background, trace.z_pres, alpha=True)
                decoded = alone_pictures(trace.objects[:, :, :-1], trace.background, additive=False)  # as drawn
                labels.append([model.explain_pixels(chunk, shares, decoded).argmax(1),
                               model.pixel_shares(trace).argmax(1)])  # the model's own masks, fitted colours
        scored = [segmentation_metrics(test.masks[:args.scenes], torch.cat(maps).numpy()) for maps in zip(*labels)]
        rows.append(f"| `{run}` | " + " | ".join(" / ".join(f"{100 * s[key]:.1f}%" for key in ("fg_ari", "ari", "mbo"))
                                                 for s in scored) + " |")
    write_section("Masks: a transparent pixel's colour",
                  f"The first {args.scenes:,} held-out scenes of each run's own data.\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
