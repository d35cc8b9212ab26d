"""What a scene description is worth downstream (the paper's Sec. 3.1.2, Fig. 5).

AIR is trained without labels on 0-2 digit scenes. On separate 2-digit scenes, small supervised heads then
learn (a) the sum of the two digits and (b) whether they appear in ascending order, left to right, from
one of three representations of the same images:
- `air`: AIR's inferred objects, ordered left to right by the ink each draws, each (presence, z_where,
  z_what): a structured code, read by one network shared by the objects and an MLP on their embeddings;
- `air-digits`: the same code, read by one digit classifier shared by the objects, whose two distributions give
  the task's answer exactly (the sum's distribution is their convolution): the task's own structure;
- `air-glimpses`: AIR's description without its appearance code: the pixels under each object's attention window
  (what AIR's encoder reads), left to right, through the same digit head with a small CNN as its classifier;
- `cae`: the code of a convolutional autoencoder trained on the same unlabelled scenes as AIR;
- `pixels`: the raw image, learned end to end by a small CNN.
Test accuracy against the number of labelled scenes gives the data-efficiency curves; `digit_ceiling`
measures what the digit pool allows with every label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from airscene.data.scenes import compose_scenes
from airscene.data.sources import ObjectPool
from airscene.infer import Scenes, TrainedModel
from airscene.images import to_model_layout
from airscene.model import crop_glimpse

TASKS = {"sum": 19, "ascending": 2}  # task: number of classes
REPRESENTATIONS = ("air", "air-digits", "air-glimpses", "cae", "pixels")
IMAGES = ("air-glimpses", "pixels")  # the representations that are pictures, read by CNNs
DIGITS = 10
BATCH_SIZE = 64
# Every CNN here (the glimpses', the pixels', the ceiling's) sees each training picture moved by up to SHIFT pixels
# each step: a labelled digit in 25 places, as AIR's windows hold digits a pixel or two off centre.
SHIFT = 2


@dataclass
class PairScenes:
    images: np.ndarray  # (M, H, W) uint8, two digits each
    digits: np.ndarray  # (M, 2) int64: the digits' labels, left to right

    def targets(self, task: str) -> np.ndarray:
        """(M,) the label of a task: the digits' sum, or 1 if left < right (strictly ascending)."""
        if task == "sum":
            return self.digits.sum(1)
        return (self.digits[:, 0] < self.digits[:, 1]).astype(np.int64)


def pair_scenes(pool: ObjectPool, number: int, seed: int, size: int = 50) -> PairScenes:
    """2-digit Multi-MNIST scenes with the digits' labels ordered by the x of their ink box's centre, as AIR's
    objects are ordered by the centres of the ink they draw (`drawn_centres`)."""
    scenes = compose_scenes(pool, number, seed=seed, counts=(2,), size=size, progress=False)
    centres = scenes.boxes[:, :2, 0] + scenes.boxes[:, :2, 2]  # (M, 2): twice the x of each box's centre
    order = np.argsort(centres, axis=1, kind="stable")  # (M, 2)
    return PairScenes(images=scenes.images, digits=np.take_along_axis(scenes.labels[:, :2], order, axis=1))


INK = 0.5  # a pixel of an object's drawing is ink where it is at least this bright


def drawn_centres(trained: TrainedModel, images: np.ndarray, scenes: Scenes, chunk: int = 1000) -> np.ndarray:
    """(M, N) the x (pixels) of the centre of the box of the ink each step's object draws, alone (`decompose`); the
    centre of its window where it draws no pixel as bright as INK. The pair's digits are ordered by their ink
    boxes' centres; a window's centre is further from that (with the downstream benchmark's AIR, 2.4% of its
    test pairs in the other order against 1.3%)."""
    centres = []
    for start in range(0, len(images), chunk):
        drawn = trained.decompose(images[start:start + chunk])["objects"].max(2)  # (m, N, H, W) over the channels
        columns = (drawn >= INK).any(2)  # (m, N, W): the columns holding ink
        width = columns.shape[-1]
        left, right = columns.argmax(-1), width - 1 - columns[..., ::-1].argmax(-1)  # (m, N)
        centres.append(np.where(columns.any(-1), (left + right + 1) / 2, np.nan))
    centre, window = np.concatenate(centres), (scenes.boxes[..., 0] + scenes.boxes[..., 2]) / 2
    return np.where(np.isnan(centre), window, centre)


def left_to_right(trained: TrainedModel, images: np.ndarray, scenes: Scenes,
                  objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, objects) the steps of the first `objects` inferred objects left to right by their drawings
    (`drawn_centres`), present ones first and then empty steps; and (M, N) whether each step found an object."""
    present = np.arange(scenes.presence.shape[1]) < scenes.counts[:, None]  # (M, N)
    x = np.where(present, drawn_centres(trained, images, scenes), np.inf)
    return np.argsort(x, axis=1)[:, :objects], present


def air_features(trained: TrainedModel, images: np.ndarray, objects: int = 2) -> np.ndarray:
    """(M, objects * (4 + C)): per inferred object, left to right, its presence, z_where and z_what;
    zeros for objects not found (and the first `objects` by x if more were)."""
    scenes = trained.infer(images)
    order, present = left_to_right(trained, images, scenes, objects)
    per_object = np.concatenate([scenes.presence[..., None], scenes.where, scenes.what], -1)  # (M, N, 4 + C)
    per_object = np.nan_to_num(per_object * present[..., None])
    return np.take_along_axis(per_object, order[..., None], axis=1).reshape(len(images), -1).astype(np.float32)


@torch.inference_mode()
def air_glimpses(trained: TrainedModel, images: np.ndarray, objects: int = 2) -> np.ndarray:
    """(M, objects, g, g): per inferred object, left to right, the image under its attention window resampled
    to the glimpse AIR's encoder reads (crop_glimpse at its z_where); zeros for objects not found."""
    scenes = trained.infer(images)
    order, present = left_to_right(trained, images, scenes, objects)
    where = torch.from_numpy(np.take_along_axis(np.nan_to_num(scenes.where), order[..., None], axis=1))  # (M, objects, 3)
    found = torch.from_numpy(np.take_along_axis(present, order, axis=1))  # (M, objects)
    model = trained.config.model
    glimpses = crop_glimpse(trained.prepare(images).cpu(), where.float(), model.glimpse_size, model.min_scale)
    return (glimpses.mean(2) * found[..., None, None]).numpy()  # channels to grey: (M, objects, g, g)


class ConvEncoder(nn.Module):
    """(B, 1, 50, 50) -> (B, code): the CNN of the pixel baseline and the autoencoder's encoder."""

    def __init__(self, code_size: int, image_size: int = 50):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * ((image_size + 7) // 8) ** 2, code_size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ConvAutoencoder(nn.Module):
    def __init__(self, code_size: int = 128, image_size: int = 50):
        super().__init__()
        self.image_size = image_size
        self.encode = ConvEncoder(code_size, image_size)
        side = (image_size + 7) // 8
        self.decode = nn.Sequential(
            nn.Linear(code_size, 32 * side ** 2), nn.ReLU(), nn.Unflatten(1, (32, side, side)),
            nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits, (B, 1, H, W)."""
        logits = self.decode(self.encode(images))
        return F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)


def train_autoencoder(images: np.ndarray, steps: int, seed: int, code_size: int = 128) -> ConvAutoencoder:
    """Trained by Bernoulli reconstruction loss on unlabelled scenes."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    autoencoder = ConvAutoencoder(code_size, images.shape[-1])
    optimiser = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = to_model_layout(images[generator.integers(0, len(images), BATCH_SIZE)], 1)
        loss = F.binary_cross_entropy_with_logits(autoencoder(batch), batch, reduction="sum") / len(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return autoencoder.eval()


@torch.no_grad()
def cae_features(autoencoder: ConvAutoencoder, images: np.ndarray) -> np.ndarray:
    chunks = np.array_split(images, max(1, len(images) // 1000))
    return torch.cat([autoencoder.encode(to_model_layout(chunk, 1)) for chunk in chunks]).numpy()


class ObjectHead(nn.Module):
    """For AIR's codes: one small network shared by the objects (a digit is a digit wherever it is drawn),
    then an MLP on their embeddings in left-to-right order. Only a structured code allows this."""

    def __init__(self, object_size: int, objects: int, classes: int):
        super().__init__()
        self.objects = objects
        self.embed = nn.Sequential(nn.Linear(object_size, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(64 * objects, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # (B, objects * object_size) -> (B, classes)
        return self.out(self.embed(codes.view(len(codes), self.objects, -1)).flatten(1))


class DigitHead(nn.Module):
    """For AIR's objects: one classifier shared by the two objects reads each one's digit from its input (its code,
    of shape object_shape, or its glimpse), and the task's answer is a function of the two digits, so its
    distribution follows exactly from theirs: log p(answer) is the logsumexp of log p(left = i) + log p(right = j)
    over the pairs (i, j) with that answer (the sum's is a convolution). The pair labels teach the classifier the
    digits through that structure; returns log-probabilities."""

    def __init__(self, classify: nn.Module, object_shape: tuple[int, ...], task: str):
        super().__init__()
        self.classify, self.object_shape = classify, object_shape
        digits = np.stack(np.meshgrid(np.arange(DIGITS), np.arange(DIGITS), indexing="ij"), -1).reshape(-1, 2)
        answers = torch.from_numpy(PairScenes(images=np.empty(0), digits=digits).targets(task))  # (100,) of pair (i, j)
        table = F.one_hot(answers, TASKS[task]).T.reshape(TASKS[task], DIGITS, DIGITS).bool()  # (classes, 10, 10)
        self.register_buffer("log_table", torch.zeros(table.shape).masked_fill(~table, -math.inf))

    def forward(self, objects: torch.Tensor) -> torch.Tensor:  # (B, 2 * prod(object_shape)) or (B, 2, *object_shape)
        digits = F.log_softmax(self.classify(objects.reshape(-1, *self.object_shape)), -1).view(len(objects), 2, DIGITS)
        pairs = digits[:, 0, :, None] + digits[:, 1, None, :]  # (B, 10, 10) log p(left = i, right = j)
        return torch.logsumexp((pairs[:, None] + self.log_table).flatten(2), -1)  # (B, classes)


class DigitClassifier(nn.Sequential):
    """(B, 1, S, S) -> (B, 10): a LeNet-like CNN for single digits, for the ceiling below (and, half as wide, the
    glimpses' digit head: a quarter of the arithmetic, for a head trained fifty times in one benchmark)."""

    def __init__(self, size: int = 28, widths: tuple[int, int] = (32, 64)):
        super().__init__(nn.Conv2d(1, widths[0], 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(widths[0], widths[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(widths[1] * (size // 4) ** 2, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, DIGITS))


def shifted(pictures: torch.Tensor, generator: np.random.Generator, shift: int = SHIFT) -> torch.Tensor:
    """(..., H, W) -> the same, each picture moved by a random whole number of pixels in [-shift, shift] on each axis,
    zeros where it moved from."""
    height, width = pictures.shape[-2:]
    flat = F.pad(pictures.reshape(-1, height, width), (shift, shift, shift, shift))  # (P, H + 2s, W + 2s)
    dx, dy = (torch.from_numpy(generator.integers(0, 2 * shift + 1, len(flat))) for _ in range(2))  # (P,)
    rows = (dy[:, None] + torch.arange(height))[:, :, None]  # (P, H, 1)
    columns = (dx[:, None] + torch.arange(width))[:, None, :]  # (P, 1, W)
    return flat[torch.arange(len(flat))[:, None, None], rows, columns].view(pictures.shape)


def digit_ceiling(train_pool: ObjectPool, test_pool: ObjectPool, seed: int, steps: int = 3000) -> float:
    """Accuracy on the test pool's single digits of a standard CNN trained on every training digit with its
    label (each moved by up to SHIFT pixels, as the other CNNs' pictures are): a reference for what a code learned
    from these digits without labels can be expected to give per digit. Both digits of a pair are read right, so
    the sum is right, with about its square."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    classifier = DigitClassifier(train_pool.images.shape[-1])
    optimiser = torch.optim.Adam(classifier.parameters(), lr=1e-3)
    images, labels = to_model_layout(train_pool.images, 1), torch.from_numpy(train_pool.labels)
    for _ in range(steps):
        index = generator.integers(0, len(labels), BATCH_SIZE)
        loss = F.cross_entropy(classifier(shifted(images[index], generator)), labels[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = classifier.eval()(to_model_layout(test_pool.images, 1)).argmax(1).numpy()
    return float((predicted == test_pool.labels).mean())


def make_head(representation: str, inputs: np.ndarray, task: str, objects: int = 2) -> nn.Module:
    """A shared-object head or the digit head on AIR's codes, the digit head with a CNN on AIR's glimpses, an MLP on
    the autoencoder's code, or a CNN on pixels."""
    classes = TASKS[task]
    if representation == "pixels":
        return nn.Sequential(ConvEncoder(128, inputs.shape[-1]), nn.ReLU(), nn.Linear(128, classes))
    if representation == "air":
        return ObjectHead(inputs.shape[1] // objects, objects, classes)
    if representation == "air-digits":
        size = inputs.shape[1] // objects
        return DigitHead(nn.Sequential(nn.Linear(size, 256), nn.ReLU(), nn.Linear(256, DIGITS)), (size,), task)
    if representation == "air-glimpses":
        size = inputs.shape[-1]
        return DigitHead(DigitClassifier(size, widths=(16, 32)), (1, size, size), task)
    return nn.Sequential(nn.Linear(inputs.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, classes))


def training_steps(labelled: int) -> int:
    """30 epochs, at least 200 and at most 5,000 steps of batch 64."""
    return int(np.clip(30 * labelled / BATCH_SIZE, 200, 5000))


def as_tensor(representation: str, inputs: np.ndarray) -> torch.Tensor:
    return to_model_layout(inputs, 1) if representation == "pixels" else torch.from_numpy(inputs)


def fit_and_score(representation: str, train_inputs: np.ndarray, train_targets: np.ndarray,
                  test_inputs: np.ndarray, test_targets: np.ndarray, task: str, learning_rate: float,
                  weight_decay: float, seed: int) -> float:
    """Train a head on the labelled scenes for training_steps(...) steps (pictures moved by up to SHIFT pixels each
    step); its accuracy on the test scenes."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    head = make_head(representation, train_inputs, task)
    optimiser = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    targets = torch.from_numpy(train_targets)
    for _ in range(training_steps(len(train_inputs))):
        index = generator.integers(0, len(train_inputs), min(BATCH_SIZE, len(train_inputs)))
        inputs = as_tensor(representation, train_inputs[index])
        loss = F.cross_entropy(head(shifted(inputs, generator) if representation in IMAGES else inputs), targets[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    head.eval()
    with torch.no_grad():
        predicted = torch.cat([head(as_tensor(representation, chunk)).argmax(1)
                               for chunk in np.array_split(test_inputs, max(1, len(test_inputs) // 500))])
    return float((predicted.numpy() == test_targets).mean())
