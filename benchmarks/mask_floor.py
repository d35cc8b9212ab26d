"""How a trained AIR or DAIR run's masks depend on the brightness floor VISIBLE, on its training scenes (not
the held-out ones the results report): the label maps of the prior shares alone (model.air.pixel_shares) and of
the posterior given each pixel (AIR.pixel_shares, explain_pixels), scored by FG-ARI, ARI and mBO.

    python benchmarks/mask_floor.py benchmarks/out/tetrominoes-dair
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

import airscene.model.air as air  # noqa: E402
from airscene.data import load_dataset  # noqa: E402
from airscene.evaluate import segmentation_metrics  # noqa: E402
from airscene.infer import load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run")
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    args = parser.parse_args()
    trained = load(args.run)
    train, _, _ = load_dataset(trained.config.data)
    images = trained.prepare(train.images[:args.scenes])
    with torch.inference_mode():
        trace = trained.model.most_probable(images)
        rows = ["| floor | prior alone: FG-ARI / ARI / mBO | posterior: FG-ARI / ARI / mBO |", "|---:|---|---|"]
        for floor in args.floors:
            air.VISIBLE = floor
            prior = air.pixel_shares(trace.objects, trace.background, trace.z_pres, trained.model.alpha).argmax(1)
            scored = [segmentation_metrics(train.masks[:args.scenes], labels.numpy())
                      for labels in (prior, trained.model.pixel_shares(trace).argmax(1))]
            rows.append(f"| {floor:g} | " + " | ".join(" / ".join(f"{100 * s[key]:.1f}%" for key in ("fg_ari", "ari", "mbo"))
                                                     for s in scored) + " |")
    write_section("Masks: the brightness floor", f"Run `{args.run}`, its first {args.scenes:,} training scenes.\n\n"
                  + "\n".join(rows))


if __name__ == "__main__":
    main()
