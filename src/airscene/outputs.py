"""What inference writes for image files, and where it may: the objects as JSON or CSV (a row per object,
escaped for spreadsheets), each image with its boxes drawn, and each image's label map, as PNGs marked as
airscene's. Every target is checked before the work: never an image read, never inside the run read, and an
existing file only if airscene wrote it (or with --force)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from airscene.errors import AirsceneError
from airscene.images import PNG_MARK, marked_png, quantise, read_image, to_model_layout
from airscene.infer import TrainedModel
from airscene.rundir import RUN_MARKER
from airscene.storage import as_path, check_writable, listed, outside, read_json, replaceable, write_file, write_json


CSV_FIELDS = ("file", "count", "step", "x0", "y0", "x1", "y1", "presence", "scale", "x", "y")
# What a spreadsheet reads as the start of a formula, and the quote itself, so that dropping one leading
# quote always gives the text back.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_text(text: str) -> str:
    """A text cell as spreadsheets expect it to be escaped: a leading quote before what would start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def object_rows(results: list[tuple[Path, dict]]) -> list[dict]:
    """One row per object (file, step, box, presence, z_where, z_what as what_0 ...); an image with no
    objects gets one row with its count of 0 and the object fields empty. File names are escaped for
    spreadsheets (spreadsheet_text); numbers are not."""
    rows = []
    for path, record in results:
        for found in record["objects"] or [None]:
            row = {"file": spreadsheet_text(str(path)), "count": record["count"]}
            if found is not None:
                row.update(step=found["step"], **dict(zip(("x0", "y0", "x1", "y1"), found["box"])),
                           presence=found["presence"], **dict(zip(("scale", "x", "y"), found["where"])),
                           **{f"what_{index}": value for index, value in enumerate(found["what"])})
            rows.append(row)
    return rows


def earlier_inferences(path: Path) -> bool:
    """Whether `path` holds inferences that airscene wrote (write_inferences): its CSV header, or its JSON
    records."""
    if path.suffix.lower() == ".csv":
        header = ",".join(CSV_FIELDS).encode()
        with open(path, "rb") as handle:
            return handle.read(len(header)) == header
    try:
        records = read_json(path, "inferences file")
    except AirsceneError:
        return False
    return (isinstance(records, list) and bool(records)
            and all(isinstance(record, dict) and {"image", "count", "objects"} <= set(record) for record in records))


def inferences_file(out: str | Path, files: list[Path], force: bool = False, run: str | Path | None = None
                    ) -> tuple[Path, str]:
    """Where `infer --out` may write, and in which form (its suffix: json or csv), checked before the work:
    never one of the images read, nor inside the run read (`run`); an existing file only if airscene wrote it,
    or with `force`."""
    out = as_path(out, "--out")
    outside(out, [*files, *run_folder(run)], "--out")
    out = replaceable(out, "--out", force, earlier_inferences)
    form = out.suffix.lstrip(".").lower()
    if form not in ("json", "csv"):
        raise AirsceneError(f"--out {out} must end in .json or .csv: the suffix says the format")
    return out, form


def run_folder(run: str | Path | None) -> list[Path]:
    """What inference reads of a run: its directory (given, or the one its checkpoint lies in), or a checkpoint
    file that lies elsewhere; none for None."""
    if run is None:
        return []
    run = as_path(run, "run")
    return [run if run.is_dir() or not (run.parent / RUN_MARKER).is_file() else run.parent]


def write_inferences(results: list[tuple[Path, dict]], out: str | Path, form: str | None = None,
                     force: bool = False) -> Path:
    """The inferences as JSON (one record per image) or CSV (`object_rows`), written atomically. File names
    of any bytes survive: they are written as the bytes they are (CSV) or as JSON escapes."""
    out, suffix = inferences_file(out, [path for path, _ in results], force)
    form = form or suffix
    check_writable(out.parent, "output directory")
    if form == "json":
        write_json(out, [{"image": str(path), **record} for path, record in results], "inferences")
        return out
    rows = object_rows(results)
    what = sorted({key for row in rows for key in row if key.startswith("what_")}, key=lambda key: int(key[5:]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*CSV_FIELDS, *what], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode("utf-8", "surrogateescape")  # a name that is not UTF-8 keeps its own bytes
    write_file(out, lambda handle: handle.write(data), "inferences")
    return out


def drawing_files(files: list[Path], directory: str | Path, force: bool = False, run: str | Path | None = None,
                  flag: str = "--draw") -> list[Path]:
    """Where `infer --draw` (or `--masks`) puts a PNG for each image (DIRECTORY/<name>.png), checked before the
    work: never in a folder that holds images read, nor in the run read (`run`); an existing file only if it is
    a PNG of airscene's, or with `force`."""
    directory = as_path(directory, "drawing directory")
    outside(directory, run_folder(run), flag)
    if directory.exists() and not directory.is_dir():
        raise AirsceneError(f"{flag} {directory} is a file, not a folder: give a new folder for the pictures")
    if directory.resolve() in {path.resolve().parent for path in files}:
        raise AirsceneError(f"{flag} {directory} holds images this command reads: choose another {flag}")
    if directory.is_dir() and not force:
        foreign = sorted(entry.name for entry in directory.iterdir() if not (entry.is_file() and marked_png(entry)))
        if foreign:
            raise AirsceneError(f"{flag} {directory} holds files airscene did not draw ({listed(foreign)}): give a new or "
                                f"empty folder, or one of airscene's pictures (--force draws into any folder)")
    targets: list[Path] = []
    for path in files:
        name = f"{path.stem}.png" if directory / f"{path.stem}.png" not in targets else f"{path.stem}-{len(targets)}.png"
        targets.append(replaceable(directory / name, flag, force, marked_png))
    return targets


def png_mark():
    """PIL's PNG text chunks that mark a PNG as airscene's (images.PNG_MARK)."""
    from PIL.PngImagePlugin import PngInfo

    mark = PngInfo()
    for key, value in PNG_MARK.items():
        mark.add_text(key, value)
    return mark


def write_masks(trained: TrainedModel, files: list[Path], directory: str | Path, force: bool = False,
                run: str | Path | None = None, proposals: int = 1, refine: int = 0) -> list[Path]:
    """Each image's label map (TrainedModel.segment, the best of `proposals` explanations refined by `refine`
    gradient steps: 0 the background, k the k-th object) as DIRECTORY/<name>.png, 8-bit with a palette, so that
    the values are the labels and a viewer shows each object in its own colour."""
    from PIL import Image

    targets = drawing_files(files, directory, force, run, flag="--masks")
    check_writable(Path(directory), "mask directory")
    palette = np.random.default_rng(0).integers(64, 256, size=(256, 3), dtype=np.uint8)
    palette[0] = 0  # the background black
    for path, target in zip(files, targets):
        _, labels = trained.segment(trained.read([path]), proposals=proposals, refine=refine)
        picture = Image.fromarray(labels[0].astype(np.uint8), mode="P")
        picture.putpalette(palette.ravel().tolist())
        write_file(target, lambda handle: picture.save(handle, format="PNG", pnginfo=png_mark()), "mask")
    return targets


def draw_inferences(results: list[tuple[Path, dict]], directory: str | Path, force: bool = False,
                    intensity: str = "auto") -> list[Path]:
    """Each image, its values read as `intensity` says (TrainedModel.intensity: as the model saw it), with its
    objects' boxes drawn (one colour per step, as in Fig. 3), enlarged to at least 256 pixels, as
    DIRECTORY/<name>.png (drawing_files says which files it may replace)."""
    from PIL import Image, ImageDraw

    targets = drawing_files([path for path, _ in results], directory, force)
    check_writable(Path(directory), "drawing directory")
    colours = ((255, 0, 0), (0, 255, 0), (0, 160, 255), (255, 255, 0), (255, 0, 255), (255, 160, 0))
    mark = png_mark()
    for (path, record), target in zip(results, targets):
        image = quantise(to_model_layout(read_image(path, intensity=intensity)[None], 3, layout="channels_last"))[0]
        zoom = max(1, 256 // max(image.shape[:2]))
        picture = Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom), Image.NEAREST)
        pen = ImageDraw.Draw(picture)
        for found in record["objects"]:
            x0, y0, x1, y1 = (value * zoom for value in found["box"])
            pen.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colours[(found["step"] - 1) % len(colours)], width=max(1, zoom // 2))
        write_file(target, lambda handle: picture.save(handle, format="PNG", pnginfo=mark), "drawing")
    return targets
