"""Nothing is lost: non-finite steps are skipped and then stop the run, signals checkpoint and exit, a full
disk leaves the previous checkpoint readable."""

import errno
import json
import os
import signal

import pytest
import torch

import airscene
from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneError
from airscene.estimators.enumerate import Enumerate
from airscene.runs import MAX_BAD_STEPS
from airscene.train import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=64, test=16, seed=0, progress=False)
    return directory


def tiny_config(data_dir, steps: int) -> Config:
    model = ModelConfig(glimpse_size=10, what_size=8, hidden_size=32, embedding_size=32, glimpse_hidden_size=32)
    return Config(data=str(data_dir), model=model,
                  train=TrainConfig(steps=steps, batch_size=16, checkpoint_every=5, eval_every=5, eval_images=16,
                                    log_every=5))


def patch_estimator(monkeypatch, from_call: int, action) -> None:
    """From the from_call-th loss on, apply action(loss) to Enumerate's loss."""
    original, calls = Enumerate.forward, {"n": 0}

    def forward(self, model, trace):
        loss, stats = original(self, model, trace)
        calls["n"] += 1
        return (action(loss) if calls["n"] >= from_call else loss), stats

    monkeypatch.setattr(Enumerate, "forward", forward)


def test_non_finite_steps_are_skipped_then_stop_the_run(data_dir, tmp_path, monkeypatch):
    patch_estimator(monkeypatch, from_call=8, action=lambda loss: loss * float("nan"))
    with pytest.raises(AirsceneError, match=f"{MAX_BAD_STEPS} non-finite losses or gradients in a row; the last "
                                            "good checkpoint .* is intact"):
        train(tiny_config(data_dir, steps=50), tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "skipped"] == list(range(7, 7 + MAX_BAD_STEPS))
    # Skipped steps still count, so the checkpoint at step 10 (after steps 7-9 were skipped) holds the
    # weights of the last good update: finite.
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    assert all(torch.isfinite(value).all() for value in state["model"].values())


def test_an_isolated_non_finite_step_is_skipped_and_training_goes_on(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}

    def once(loss):
        calls["n"] += 1
        return loss * float("inf") if calls["n"] == 1 else loss

    patch_estimator(monkeypatch, from_call=3, action=once)
    summary = train(tiny_config(data_dir, steps=8), tmp_path, progress=False)
    assert summary["step"] == 8
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "skipped"] == [2]
    assert all(torch.isfinite(v).all() for v in torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"].values())


def test_sigterm_checkpoints_and_exits_cleanly(data_dir, tmp_path, monkeypatch):
    def terminate(loss):
        os.kill(os.getpid(), signal.SIGTERM)
        return loss

    patch_estimator(monkeypatch, from_call=3, action=terminate)
    summary = train(tiny_config(data_dir, steps=50), tmp_path, progress=False)
    assert summary["stopped_by"] == "SIGTERM" and summary["step"] == 3
    assert airscene.load(tmp_path / "checkpoint.pt").step == 3
    monkeypatch.undo()
    assert train(tiny_config(data_dir, steps=6), tmp_path, resume=True, progress=False)["step"] == 6


def test_full_disk_keeps_the_previous_checkpoint(data_dir, tmp_path, monkeypatch):
    original, saves = torch.save, {"n": 0}

    def save(obj, handle, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            handle.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(AirsceneError, match="No space left on device.*free disk space.*previous checkpoint is intact"):
        train(tiny_config(data_dir, steps=20), tmp_path, progress=False)
    assert airscene.load(tmp_path / "checkpoint.pt").step == 5
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".partial")] == []


def test_a_new_run_does_not_inherit_metrics_of_one_that_died_before_its_first_checkpoint(data_dir, tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 999, "loss": 1.0}) + "\n")
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert 999 not in [r["step"] for r in records] and records[0]["step"] == 5
