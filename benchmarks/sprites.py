"""Overlapping sprites (the paper's appendix H): squares, triangles and discs that occlude each other, 0-3
to a scene, grey and colour, every sprite at least half in view; AIR and DAIR, trained as the README's
"Counting shapes that hide each other" says.

    python benchmarks/sprites.py --minutes 15
"""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from own_images import accuracy_by_seed  # noqa: E402
from results import write_section  # noqa: E402

from airscene.viz import draw_run_figure  # noqa: E402

SPRITES = ["sprites", "--counts", "0-3", "--min-visible", "0.5"]
DATA = {  # name: (the `airscene data` command, --object-size, what it is)
    "grey": (SPRITES, "10,20", "overlapping sprites, grey, 0-3"),
    "colour": ([*SPRITES, "--colour"], "10,20", "overlapping sprites, colour, 0-3"),
}
MODELS = {"grey": ("air", "dair"), "colour": ("air", "dair")}
# A sharp likelihood and narrow windows: at the defaults' sd of 0.3 a blurred shape costs little, and
# windows up to 1.5 x the largest sprite take in two; the decay settles each run on the shapes it has.
# Grey also gets a small appearance code: two overlapping grey shapes fit one window, and a code of 5
# holds a shape (its kind, size and shade) but not a pair, so the second shape takes a step of its own.
FLAGS = ("--likelihood-sd", "0.1", "--window-limit", "1.2", "--learning-rate-decay", "cosine")
DATA_FLAGS = {"grey": (*FLAGS, "--what-size", "5"), "colour": FLAGS}


def main() -> None:
    runs, lines = accuracy_by_seed(DATA, MODELS, DATA_FLAGS, __doc__, "sprites")
    shown = next(job for job in runs if job[:2] == ("colour", "dair"))
    draw_run_figure(runs[shown])  # its decomposition.png: image, each object, reconstruction
    shutil.copy(runs[shown] / "decomposition.png", Path(__file__).with_name("sprites_decomposition.png"))
    lines += ["", f"Held-out colour scenes taken apart by the DAIR run of seed {shown[2]} (`airscene viz`): the image, "
              "each step's object and the reconstruction.", "",
              "![held-out sprite scenes: each object, reconstruction](sprites_decomposition.png)"]
    write_section("Overlapping sprites", "\n".join(lines))


if __name__ == "__main__":
    main()
