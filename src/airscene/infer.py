"""The public inference API: images in, objects out.

    model = airscene.load("RUN/checkpoint.pt")
    scenes = model.infer(images)      # (B, H, W), (B, C, H, W) or (B, H, W, C); uint8, uint16, or float in [0, 1]
    scenes.counts, scenes.boxes, scenes.presence, scenes.what
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from airscene.checkpoint import load_checkpoint
from airscene.compiled import COMPILE_MODES, Compiled, warn_eager
from airscene.config import PRECISIONS, Config
from airscene.data.imports import MIN_CANVAS
from airscene.data.scenes import SceneSet
from airscene.distributed import resolve_device
from airscene.errors import AirsceneError, AirsceneWarning, last_line
from airscene.estimators.elbo import log_weight
from airscene.images import MAX_PIXELS, image_files, marked_png, quantise, read_images, rescaled, to_model_layout
from airscene.model import SceneModel, make_model
from airscene.model.trace import Trace
from airscene.settings import check_value
from airscene.storage import as_path


@dataclass(kw_only=True)
class Scenes:
    """Per image: the count and, per inference step (the grid model: per cell, N = K), the object's box,
    presence and codes."""

    counts: np.ndarray  # (B,) int
    boxes: np.ndarray  # (B, N, 4) float: pixel x0, y0, x1, y1 of the attention window; NaN where no object
    presence: np.ndarray  # (B, N) float: presence probability of each step or cell (0 for steps not reached)
    what: np.ndarray  # (B, N, C) float: appearance codes z_what; NaN where no object
    where: np.ndarray  # (B, N, 3) float: z_where = (scale, x, y); NaN where no object

    def to_records(self) -> list[dict]:
        """JSON-ready: one dict per image with its objects ("step": the step or cell that found it, from 1)."""
        records = []
        for index, count in enumerate(self.counts):
            objects = [{"step": int(step) + 1, "box": [round(float(v), 2) for v in self.boxes[index, step]],
                        "presence": round(float(self.presence[index, step]), 4),
                        "where": [round(float(v), 4) for v in self.where[index, step]],
                        "what": [round(float(v), 4) for v in self.what[index, step]]}
                       for step in np.flatnonzero(~np.isnan(self.where[index, :, 0]))]
            records.append({"count": int(count), "objects": objects})
        return records


REFINEMENT_LEARNING_RATE = 0.02  # Adam's step on the latents: z_what's prior is N(0, I), z_where's sd is 0.1-1


def check_proposals(proposals) -> int:
    """The number of explanations to choose among (best_explanation), or a clear error."""
    return check_value("proposals", proposals, int, {"minimum": 1, "maximum": 1024})


@torch.no_grad()
def best_explanation(model: SceneModel, images: torch.Tensor, proposals: int = 1) -> Trace:
    """The most probable scene (model.most_probable) or, with proposals > 1, image by image the best of it and
    proposals - 1 more from q (the continuous latents drawn, the presences most probable given them): the one whose
    importance weight log p(x, z) - log q(z | x) is highest. Where q hesitates (two pieces that touch), the
    model's own joint chooses among its guesses; no label is used."""
    best = model.most_probable(images)
    if proposals > 1:
        weight = log_weight(model, best)
    for _ in range(proposals - 1):
        proposal = model.most_probable(images, sample=True)
        proposal_weight = log_weight(model, proposal)
        better = proposal_weight > weight
        best, weight = best.where(better, proposal), torch.where(better, proposal_weight, weight)
    return best


def check_refinement(steps) -> int:
    """The number of gradient steps refine_explanation takes (0: none), or a clear error."""
    return check_value("refine", steps, int, {"minimum": 0, "maximum": 10000})


def refine_explanation(model: SceneModel, trace: Trace, steps: int,
                       learning_rate: float = REFINEMENT_LEARNING_RATE) -> Trace:
    """The explanation moved uphill on the image's own joint log p(x, z): `steps` of Adam on the present objects'
    continuous latents (model.explanation_latents), presences and background held; image by image, the better of
    it and `trace` by that joint. The inference network proposes, and a few gradient steps on the one image mend
    what amortisation left (semi-amortised inference, as in Kim et al. 2018, "Semi-Amortized Variational
    Autoencoders"): windows that straddle two touching pieces slide onto one. No label is used."""
    if steps == 0:
        return trace
    latents = {name: value.detach().clone().requires_grad_(True)
               for name, value in model.explanation_latents(trace).items()}
    optimiser = torch.optim.Adam(latents.values(), lr=learning_rate)
    with torch.enable_grad():
        for step in range(steps):
            refined, log_prior = model.explained_by(trace, latents)
            joint = model.trace_log_likelihood(refined) + log_prior
            if step == 0:
                start = joint.detach()  # the explanation as it came, to keep where refining did not help
            gradients = torch.autograd.grad(-joint.sum(), list(latents.values()))  # the latents', not the model's
            for value, gradient in zip(latents.values(), gradients):
                value.grad = gradient
            optimiser.step()
    with torch.no_grad():
        refined, log_prior = model.explained_by(trace, {name: value.detach() for name, value in latents.items()})
        better = model.trace_log_likelihood(refined) + log_prior > start
    return trace.where(better, refined)


class TrainedModel:
    """A trained AIR (or grid model) with its config, rebuilt from a checkpoint alone, on any device. `compile`
    (compiled.COMPILE_MODES): `infer` through torch.compile, the model's fixed-shape describe as one graph (a
    compile of seconds at the first call of each batch size; then one image in about half the eager time), where
    the model's describe compiles (SceneModel.describe_compiles; elsewhere a warning, and eager inference).
    `precision` (config.PRECISIONS): "bf16" infers under bfloat16 autocast, where the model's describe can
    (SceneModel.describe_in_bf16; elsewhere a warning, and float32); what `infer` returns is float32 either way."""

    def __init__(self, model: SceneModel, config: Config, step: int = 0, compile: str = "none", precision: str = "fp32"):
        self.model = model.eval()
        self.config = config
        self.step = step
        compile = check_value("compile", compile, str, {"choices": COMPILE_MODES})
        if compile != "none" and not model.describe_compiles:
            warn_eager(f"the {config.model.model} model's inference is faster eagerly than compiled", "inference")
            compile = "none"
        precision = check_value("precision", precision, str, {"choices": PRECISIONS})
        if precision == "bf16" and not model.describe_in_bf16:
            warnings.warn(f"precision bf16: the {config.model.model} model infers in float32 only; inference runs in "
                          "float32", AirsceneWarning, stacklevel=2)
            precision = "fp32"
        self._precision = precision
        # Inductor's C++ wrapper calls the kernels with less Python between them: it pays on calls of one image.
        self.described = Compiled(self.described_tensors, compile, self.device, task="inference",
                                  options={"cpp_wrapper": True})

    def described_tensors(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scenes' fields of a batch, as tensors on the model's device: model.describe, in its fixed-shape form
        where torch.compile traces it, and with its early exit wherever it runs eagerly (also where torch gives up
        compiling a new shape, past its recompile limit)."""
        compiling = torch.compiler.is_compiling() and self.model.describe_compiles
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._precision == "bf16"):
            described = self.model.describe(images, fixed_shapes=True) if compiling else self.model.describe(images)
        where = described.where.float()
        return {"counts": described.present.sum(1).long(), "boxes": self.model.boxes(where, images.shape[-1]),
                "presence": described.presence.float(), "what": described.what.float(), "where": where}

    @property
    def precision(self) -> str:
        """The precision inference runs in (config.PRECISIONS), fixed when the model is loaded."""
        return self._precision

    @property
    def device(self) -> torch.device:
        return self.model.count_prior.device

    def prepare(self, images, layout: str = "auto", intensity: str = "full") -> torch.Tensor:
        """Images in any supported form (airscene.images.to_model_layout) as this model's input, on its device:
        of the size trained on (the grid model: any size; its convolutions run on any canvas). Arrays are read
        by their type's range unless `intensity` says otherwise (files: `read`, as the data set was imported)."""
        return to_model_layout(images, self.config.model.channels, self.image_size, layout=layout,
                               intensity=intensity).to(self.device)

    @property
    def intensity(self) -> str:
        """How this model reads image files' values onto [0, 1] (images.INTENSITIES), as its data set was
        imported (runs from before the setting: by the type's range)."""
        return self.config.model.intensity or "full"

    def read(self, paths) -> torch.Tensor:
        """Image files of one size as this model's input (B, C, H, W), read as its data set was imported."""
        return read_images(paths, self.config.model.channels, self.image_size, self.intensity)

    @property
    def image_size(self) -> int | None:
        """The canvas side this model takes: the one trained on, or None (any) for the grid model."""
        return self.model.input_size

    @torch.inference_mode()
    def infer(self, images, batch_size: int = 1000, layout: str = "auto", intensity: str = "full") -> Scenes:
        """Counts, boxes, presence and codes for each image, batched. layout: "auto", "channels_first" or
        "channels_last", for batches whose shape could be either; intensity: how values become [0, 1]
        (images.INTENSITIES; arrays by their type's range unless told)."""
        batch_size = check_value("batch_size", batch_size, int, {"minimum": 1})
        # Each chunk's tensors leave the device before the next chunk: a CUDA graph's outputs are its next replay's.
        chunks = [{name: value.cpu() for name, value in self.described(chunk).items()}
                  for chunk in self.prepare(images, layout, intensity).split(batch_size)]
        return Scenes(**{name: (chunks[0][name] if len(chunks) == 1 else torch.cat([chunk[name] for chunk in chunks])).numpy()
                         for name in chunks[0]})

    @torch.inference_mode()
    def decompose(self, images, batch_size: int = 100) -> dict[str, np.ndarray]:
        """What the model sees in each image, from the most probable scene (means, greedy presence):
        "reconstruction" (B, C, H, W), "background" (B, C, H, W; zeros without a background model) and
        "objects" (B, N, C, H, W), each present object alone, as opaque as its alpha (absent: zeros). The grid
        model's objects are its present cells', up to the most any of the images has, in cell order."""
        batch_size = check_value("batch_size", batch_size, int, {"minimum": 1})
        parts: dict[str, list] = {"reconstruction": [], "background": [], "objects": []}
        for chunk in self.prepare(images).split(batch_size):
            trace = self.model.most_probable(chunk)
            parts["reconstruction"].append(self.model.render(trace).clamp(0, 1).cpu())
            parts["background"].append(torch.zeros_like(chunk).cpu() if trace.background is None else trace.background.cpu())
            parts["objects"].append(self.model.present_objects(trace).clamp(0, 1).cpu())
        most = max(part.shape[1] for part in parts["objects"])  # grid chunks may find different numbers
        parts["objects"] = [torch.nn.functional.pad(part, (0, 0, 0, 0, 0, 0, 0, most - part.shape[1]))
                            for part in parts["objects"]]
        return {name: torch.cat(values).numpy() for name, values in parts.items()}

    @torch.no_grad()  # not inference mode: refine_explanation takes gradients of the latents
    def segment(self, images, batch_size: int = 100, proposals: int = 1, refine: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Each image taken apart as the model draws its most probable scene (or the best of `proposals`,
        best_explanation; then `refine` gradient steps on its own joint, refine_explanation): soft masks
        (B, N + 1, H, W), the background's share of every pixel (index 0) and each object's (AIR: by step; the
        grid: its present cells in order), summing to 1; and the label map (B, H, W), the one with the largest
        share (0: the background)."""
        batch_size = check_value("batch_size", batch_size, int, {"minimum": 1})
        proposals, refine = check_proposals(proposals), check_refinement(refine)
        chunks = [self.model.pixel_shares(refine_explanation(self.model, best_explanation(self.model, chunk, proposals),
                                                             refine)).float().cpu()
                  for chunk in self.prepare(images).split(batch_size)]
        most = max(chunk.shape[1] for chunk in chunks)  # grid chunks may hold different numbers of objects
        masks = torch.cat([torch.nn.functional.pad(chunk, (0, 0, 0, 0, 0, most - chunk.shape[1])) for chunk in chunks])
        return masks.numpy(), masks.argmax(1).numpy()

    def sample(self, number: int = 32, count: int | None = None, seed: int = 0) -> SceneSet:
        """`number` scenes drawn from the trained generative model (model.sample, seeded): the canvases the
        latents draw (the likelihood's mean, as uint8), their counts and the present objects' windows as boxes.
        `count`: every scene with that many objects (the prior given the count)."""
        number = check_value("number", number, int, {"minimum": 1, "maximum": 1024})  # a figure's worth
        seed = check_value("seed", seed, int, {"minimum": 0, "maximum": 2**63 - 1})
        generator = torch.Generator(self.device).manual_seed(seed)
        drawn = self.model.sample(number, generator=generator, count=count)
        boxes = self.model.boxes(drawn.z_where, self.config.model.image_size).round().long()  # (B, N, 4)
        order = drawn.z_pres.argsort(dim=1, descending=True, stable=True)  # the present ones first, in order
        boxes = torch.where(drawn.z_pres.gather(1, order)[..., None] > 0, boxes.gather(1, order[..., None].expand(-1, -1, 4)), -1)
        return SceneSet(images=quantise(drawn.canvas.clamp(0, 1).cpu()), counts=drawn.z_pres.sum(1).long().cpu().numpy(),
                        boxes=boxes.cpu().numpy())

    def reconstruct(self, images) -> tuple[np.ndarray, Scenes]:
        """(B, C, H, W) reconstructions (the present objects composited over the background) and the scenes."""
        return self.decompose(images)["reconstruction"], self.infer(images)


def model_from_checkpoint(state: dict, config: Config, path: str | Path, device: str = "cpu") -> SceneModel:
    """The model of a checkpoint's state and config, on `device` (a name, "auto" included)."""
    try:
        model = make_model(config.model)
        model.load_state_dict(state["model"])
    except AirsceneError as error:
        raise AirsceneError(f"checkpoint {path}: {error}") from None
    except RuntimeError as error:
        raise AirsceneError(f"checkpoint {path} does not match its own config ({last_line(error)}): it is corrupt "
                            "or from an incompatible airscene version; retrain") from None
    return model.to(resolve_device(device))


def load(path: str | Path, device: str = "cpu", compile: str = "none", precision: str = "fp32") -> TrainedModel:
    """Rebuild a trained model from a checkpoint (or a run directory holding checkpoint.pt) on `device`:
    cpu (the default), cuda, cuda:N, mps, or auto. A checkpoint from any device loads on any other. `compile`:
    none, default, or reduce-overhead (CUDA graphs on a GPU); `precision`: fp32 or bf16; TrainedModel's."""
    state, config = load_checkpoint(path)
    return TrainedModel(model_from_checkpoint(state, config, path, device), config, state["step"], compile, precision)


def image_paths(paths) -> list[Path]:
    """Image files named directly, and those inside the folders named (sorted)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    if not isinstance(paths, (list, tuple)):
        raise AirsceneError(f"images are {paths!r}: give an image file, a folder, or a list of them")
    expanded = []
    for path in (as_path(path, "image path") for path in paths):  # a folder's pictures airscene drew are not images
        expanded += [file for file in image_files(path) if not marked_png(file)] if path.is_dir() else [path]
    if not expanded:
        raise AirsceneError(f"no image files in {', '.join(map(str, paths))}: give image files or folders that hold them")
    return expanded


def infer_files(trained: TrainedModel, paths, chunk: int = 500) -> list[tuple[Path, dict]]:
    """(file, record) for every image file named or inside a folder named, read `chunk` files at a time."""
    files, results = image_paths(paths), {}
    chunk = check_value("chunk", chunk, int, {"minimum": 1})
    for start in range(0, len(files), chunk):
        part = files[start:start + chunk]
        if trained.image_size is not None:
            results.update(zip(part, trained.infer(trained.read(part), layout="channels_first").to_records()))
            continue
        by_shape: dict[tuple, list] = {}  # any size: the files of each size inferred together
        for path in part:
            image = trained.read([path])
            by_shape.setdefault(tuple(image.shape), []).append((path, image))
        for group in by_shape.values():
            records = trained.infer(torch.cat([image for _, image in group]), layout="channels_first").to_records()
            results.update(zip([path for path, _ in group], records))
    return [(path, results[path]) for path in files]


def count_files(trained: TrainedModel, paths) -> list[tuple[Path, dict]]:
    """(file, record) for every image file of any size named or inside a folder named, as a practitioner's
    large photographs are counted: each read as the model's data set was imported (its values by
    TrainedModel.intensity, resized by the import's scale), counted whole by a model that takes any canvas (the
    grid), or tile by tile (count_by_tiles) by one trained on a canvas of one size; boxes in the file's pixels."""
    scale = trained.config.model.image_scale or 1.0
    results = []
    for path in image_paths(paths):
        image = read_images([path], trained.config.model.channels, intensity=trained.intensity)  # (1, C, H, W)
        height, width = (round(side * scale) for side in image.shape[-2:])
        if height * width > MAX_PIXELS or min(height, width) < MIN_CANVAS:
            raise AirsceneError(f"image {path} would be {width}x{height} pixels resized by the run's scale {scale:g}: "
                                f"count images of {MIN_CANVAS} to {MAX_PIXELS:,} pixels (crop a larger one)")
        image = rescaled(image, scale) if scale != 1 else image
        record = (trained.infer(image, layout="channels_first").to_records()[0] if trained.image_size is None
                  else count_by_tiles(trained, image, path))
        for found in record["objects"]:  # in the file's pixels
            found["box"] = [round(value / scale, 2) for value in found["box"]]
            if "tile" in found:
                found["tile"] = [round(value / scale, 2) for value in found["tile"]]
        results.append((path, record))
    return results


def tile_corners(length: int, side: int) -> list[int]:
    """Where tiles of `side` pixels start along `length`, half a tile apart, the last one flush with the end."""
    corners = list(range(0, length - side + 1, max(1, side // 2)))
    return corners + [length - side] if corners[-1] != length - side else corners


def count_by_tiles(trained: TrainedModel, image: torch.Tensor, path: Path | None = None) -> dict:
    """One image (1, C, H, W) larger than the model's canvas as one record: tiles of the canvas's size half a
    tile apart, each object kept by the tile whose centre is nearest its box's centre, so that an object seen
    by two overlapping tiles counts once, and one cut by a tile's edge is counted by the tile that holds it whole."""
    side, (height, width) = trained.image_size, image.shape[-2:]
    if min(height, width) < side:
        raise AirsceneError(f"image {path} is {width}x{height} after scaling, smaller than the model's {side}x{side} "
                            "canvas: count it with `airscene infer` at the canvas's size, or with a model trained on "
                            "smaller canvases")
    corners = [(x, y) for y in tile_corners(height, side) for x in tile_corners(width, side)]
    records = trained.infer(torch.cat([image[..., y:y + side, x:x + side] for x, y in corners]),
                            layout="channels_first").to_records()
    centres = np.array(corners, np.float64) + side / 2  # (T, 2)
    objects = []
    for tile, ((x, y), record) in enumerate(zip(corners, records)):
        for found in record["objects"]:
            box = [found["box"][0] + x, found["box"][1] + y, found["box"][2] + x, found["box"][3] + y]
            centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
            if np.argmin(((centres - centre) ** 2).sum(1)) == tile:
                objects.append({**found, "box": box, "tile": [x, y]})
    return {"count": len(objects), "objects": objects}
