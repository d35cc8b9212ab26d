"""Held-out metrics: counts, ELBO, importance-weighted log p(x), localisation."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from airscene.estimators.elbo import count_log_posterior, elbo_per_count, log_weight
from airscene.model import SceneModel
from airscene.model.trace import Description


@torch.no_grad()
def infer_counts(model: SceneModel, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([model.describe(chunk).present.sum(1).long().cpu().numpy() for chunk in images.split(batch_size)])


def count_accuracy(inferred: np.ndarray, true: np.ndarray) -> float | None:
    """The share of images whose count is right; None for no images (not NaN: there is nothing to score)."""
    inferred, true = np.asarray(inferred), np.asarray(true)
    return float(np.mean(inferred == true)) if len(true) else None


def confusion_matrix(inferred: np.ndarray, true: np.ndarray, max_count: int) -> np.ndarray:
    """(max_count+1, max_count+1): rows are true counts, columns inferred counts."""
    matrix = np.zeros((max_count + 1, max_count + 1), dtype=np.int64)
    np.add.at(matrix, (np.minimum(true, max_count), np.minimum(inferred, max_count)), 1)
    return matrix


def _pairs(counts: np.ndarray) -> np.ndarray:
    """n choose 2, elementwise."""
    return counts * (counts - 1) / 2


def adjusted_rand_index(true: np.ndarray, inferred: np.ndarray, foreground: bool = False) -> np.ndarray:
    """(B,) the adjusted Rand index of each image's inferred segmentation against the true one, both (B, H, W)
    label maps (0: background, k: object k), over every pixel or, with `foreground`, over the pixels of true
    objects alone (FG-ARI, as object-centric models are compared). Where both segmentations are a single
    segment the index is 1; an image with no pixel to score is NaN."""
    true, inferred = np.asarray(true, np.int64), np.asarray(inferred, np.int64)
    batch = len(true)
    scored = (true > 0) if foreground else np.ones(true.shape, bool)
    labels_true, labels_inferred = int(true.max(initial=0)) + 1, int(inferred.max(initial=0)) + 1
    cells = (np.arange(batch)[:, None, None] * labels_true + true) * labels_inferred + inferred  # (B, H, W)
    table = np.bincount(cells[scored], minlength=batch * labels_true * labels_inferred)
    table = table.reshape(batch, labels_true, labels_inferred).astype(np.float64)  # (B, T, I) contingency
    pixels = table.sum((1, 2))
    index = _pairs(table).sum((1, 2))
    rows, columns = _pairs(table.sum(2)).sum(1), _pairs(table.sum(1)).sum(1)
    expected = np.divide(rows * columns, _pairs(pixels), out=np.zeros(batch), where=pixels > 1)
    best = (rows + columns) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ari = np.where(best == expected, 1.0, (index - expected) / (best - expected))
    return np.where(pixels > 0, ari, np.nan)


def mean_best_overlap(true: np.ndarray, inferred: np.ndarray) -> float | None:
    """mBO: over every true object of every image, the best IoU of its pixels with any inferred object's
    (label maps (B, H, W), 0 the background), averaged; None where there is no true object."""
    true, inferred = np.asarray(true, np.int64), np.asarray(inferred, np.int64)
    best = []
    for truth, found in zip(true, inferred):  # an image at a time: its objects against each other
        objects, segments = np.unique(truth[truth > 0]), np.unique(found[found > 0])
        if not len(objects):
            continue
        if not len(segments):
            best += [0.0] * len(objects)
            continue
        mine = truth[None] == objects[:, None, None]  # (T, H, W)
        theirs = found[None] == segments[:, None, None]  # (I, H, W)
        intersection = (mine[:, None] & theirs[None]).sum((2, 3))
        union = (mine[:, None] | theirs[None]).sum((2, 3))
        best += (intersection / union).max(1).tolist()
    return float(np.mean(best)) if best else None


def segmentation_metrics(true: np.ndarray, inferred: np.ndarray) -> dict:
    """FG-ARI, ARI (the background as one more segment) and mBO of inferred label maps against true ones."""
    foreground = adjusted_rand_index(true, inferred, foreground=True)
    whole = adjusted_rand_index(true, inferred)
    return {"fg_ari": float(np.nanmean(foreground)) if np.isfinite(foreground).any() else None,
            "ari": float(np.nanmean(whole)) if np.isfinite(whole).any() else None,
            "mbo": mean_best_overlap(true, inferred)}


@torch.no_grad()
def elbo_and_log_likelihood(model: SceneModel, images: torch.Tensor, samples: int = 50, batch_size: int = 100):
    """Per image: the ELBO and the importance-weighted estimate of log p(x) from `samples` samples. AIR's
    count is summed out exactly: for each sample of the continuous latents, sum_n p(x, n, z^{1:n}) /
    q(z^{1:n}) is an unbiased estimate of p(x), so its log-mean-exp over samples is a tighter bound than the
    ELBO. A grid's presences are sampled with the rest (batches shrink to keep its tiles in memory)."""
    elbos, log_likelihoods = [], []
    for chunk in images.split(batch_size if model.enumerates_count else max(1, batch_size * 4 // samples)):
        repeated = chunk.repeat_interleave(samples, dim=0)  # (b * S, C, H, W)
        if not model.enumerates_count:
            elbo = weights = log_weight(model, model(repeated, presence="sample")).view(-1, samples)
        else:
            trace = model(repeated, presence="all")
            count_log_q = count_log_posterior(trace)
            integrand = elbo_per_count(model, trace, count_log_q)  # (b * S, N+1)
            elbo = (count_log_q.exp() * integrand).sum(1).view(-1, samples)
            weights = torch.logsumexp(integrand + count_log_q, dim=1).view(-1, samples)
        elbos.append(elbo.mean(1))
        log_likelihoods.append(torch.logsumexp(weights, dim=1) - math.log(samples))
    return torch.cat(elbos).cpu().numpy(), torch.cat(log_likelihoods).cpu().numpy()


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(P, 4), (T, 4) boxes x0, y0, x1, y1 -> (P, T) intersection over union."""
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.clip(high - low, 0, None).prod(-1)
    area = lambda boxes: (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(-1)  # noqa: E731
    return intersection / (area(first)[:, None] + area(second)[None, :] - intersection + 1e-9)


def localisation(pred_boxes: np.ndarray, scores: np.ndarray, true_boxes: np.ndarray, true_counts: np.ndarray,
                 threshold: float = 0.5) -> dict:
    """Inferred boxes (B, N, 4; NaN where absent, scored by presence) matched to true boxes (B, K, 4) per
    image by the Hungarian algorithm on IoU. Returns mean IoU of matched pairs and AP at IoU >= threshold."""
    matched_ious, detections = [], []  # detections: (score, is_true_positive)
    for boxes, score, truth, count in zip(pred_boxes, scores, true_boxes, true_counts):
        present = ~np.isnan(boxes[:, 0])
        boxes, score, truth = boxes[present], score[present], truth[:count].astype(np.float64)
        true_positive = np.zeros(len(boxes), dtype=bool)
        if len(boxes) and len(truth):
            iou = box_iou(boxes, truth)
            rows, columns = linear_sum_assignment(-iou)
            matched_ious.extend(iou[rows, columns])
            true_positive[rows] = iou[rows, columns] >= threshold
        detections.extend(zip(score, true_positive))
    total_true = int(np.sum(true_counts))
    if not detections or total_true == 0:  # nothing to score: not a score of 0
        return {"mean_iou": float(np.mean(matched_ious)) if matched_ious else None, "ap50": None}
    order = np.argsort([-score for score, _ in detections], kind="stable")
    hits = np.array([detections[i][1] for i in order], dtype=np.float64)
    recall = np.cumsum(hits) / total_true
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    # all-point interpolated average precision (PASCAL VOC 2010+)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return {"mean_iou": float(np.mean(matched_ious)) if matched_ious else None,
            "ap50": float(np.sum(recall_steps * precision))}


@torch.no_grad()
def evaluate(model: SceneModel, images: torch.Tensor, counts: np.ndarray | None = None, boxes: np.ndarray | None = None,
             samples: int = 50, likelihood_images: int = 1000) -> dict:
    """Every held-out metric of one model that the labels allow. Always: the test ELBO, the
    importance-weighted log p(x) and the histogram of inferred counts; with true counts, their accuracy and
    confusion matrix; with true boxes, localisation (mean IoU, AP@0.5). `missing_labels` names what was
    not given, so no metric is silently absent."""
    model.eval()
    described = Description.joined([model.describe(chunk) for chunk in images.split(1000)])
    inferred = described.present.sum(1).long().cpu().numpy()
    capacity = model.object_capacity() or int(inferred.max(initial=0))
    elbo, log_likelihood = elbo_and_log_likelihood(model, images[:likelihood_images], samples)
    metrics = {
        "images": len(images),
        "test_elbo": float(elbo.mean()),
        "test_log_likelihood_iw": float(log_likelihood.mean()),
        "importance_samples": samples,
        "likelihood_images": min(likelihood_images, len(images)),
        "inferred_counts": np.bincount(inferred, minlength=capacity + 1).tolist(),
        "missing_labels": [name for name, array in (("counts", counts), ("boxes", boxes)) if array is None],
    }
    if counts is not None:
        metrics["count_accuracy"] = count_accuracy(inferred, counts)
        metrics["count_mean_absolute_error"] = float(np.abs(inferred - counts).mean()) if len(counts) else None
        largest = max(capacity, int(counts.max(initial=0)))
        metrics["confusion_matrix"] = confusion_matrix(inferred, counts, largest).tolist()
    if boxes is not None and counts is not None:
        pred_boxes = model.boxes(described.where, images.shape[-1]).cpu().numpy()
        metrics.update(localisation(pred_boxes, described.presence.cpu().numpy(), boxes, counts))
    return metrics
