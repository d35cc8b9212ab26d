"""AIR really learns to count: a short seeded run, unsupervised, must count held-out scenes."""

import json

from airscene.config import Config, TrainConfig
from airscene.data import make_multi_mnist
from airscene.train import train

COUNT_ACCURACY_BAR = 0.9  # seeds 0 and 1 reach 0.98 by step 1,500 of this run


def test_air_learns_to_count_held_out_scenes(tmp_path):
    data = tmp_path / "data"
    make_multi_mnist(data, train=4000, test=500, seed=0, progress=False)
    # The default model and schedule, on a smaller data set and a shorter run (about 2 minutes).
    config = Config(data=str(data), train=TrainConfig(steps=2000, eval_every=250, eval_images=500,
                                                      checkpoint_every=2000, log_every=100, seed=0, threads=1))
    summary = train(config, tmp_path / "run", progress=False)
    curve = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    accuracies = [r["test_count_accuracy"] for r in curve if r["kind"] == "eval"]
    assert summary["test_count_accuracy"] >= COUNT_ACCURACY_BAR, accuracies
