"""Several processes (torchrun, DistributedDataParallel over gloo, one thread each) train one run as one
process would: the same weights on every rank, the gradient of the whole batch, disjoint shards that cover
the data, exactly reduced metrics, and a resume that continues bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from airscene.data import make_multi_mnist
from airscene.distributed import Shard
from airscene.runs import batch_indices
from test_reliability import TINY_FLAGS

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=128, test=40, seed=0, progress=False)
    return directory


def torchrun(*arguments, processes: int = 2, check: bool = True) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*TORCHRUN, "--nproc-per-node", str(processes), *arguments]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0 or not check, finished.stderr[-3000:]
    return finished


def rank_results(out: Path) -> dict[int, dict]:
    return {rank: json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)
            if (out / f"rank{rank}.json").is_file()}


@pytest.mark.parametrize("check, differing", [("steps_differ", "train.steps"), ("model_differs", "model.model")])
def test_ranks_started_with_different_settings_stop_at_once_in_one_line(data_dir, tmp_path, check, differing):
    started = time.monotonic()
    torchrun(str(WORKER), check, str(data_dir), str(tmp_path), check=False)
    assert time.monotonic() - started < 120  # never a hang
    results = rank_results(tmp_path)
    assert set(results) == {0, 1}
    for result in results.values():
        assert result["code"] == 2 and result["error"].count("\n") == 1, result
        assert f"rank 1's settings differ from rank 0's ({differing}" in result["error"]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_rank_that_dies_gives_the_others_one_line(data_dir, tmp_path):
    torchrun(str(WORKER), "rank_dies", str(data_dir), str(tmp_path), check=False)
    result = rank_results(tmp_path)[0]
    assert result["code"] == 2 and result["error"].count("\n") == 1, result
    assert "rank communication failed" in result["error"] and "resume the run with --resume" in result["error"]


def test_a_rank_waiting_for_one_that_hangs_stops_on_sigterm(data_dir, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([*TORCHRUN, "--nproc-per-node", "2", str(WORKER), "rank_hangs", str(data_dir),
                                 str(tmp_path)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / ".lock").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # rank 0 has made its run directory and now waits in its first collective for rank 1
        signalled = time.monotonic()
        os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGTERM)
        while not (tmp_path / "rank0.json").is_file() and time.monotonic() < signalled + 40:
            time.sleep(0.2)
        result = rank_results(tmp_path)[0]
        assert result["code"] == 2 and "stopped by a signal while waiting for the other ranks" in result["error"]
        assert time.monotonic() - signalled < 30
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)  # torchrun and both ranks
        launcher.wait()


def test_shards_are_disjoint_cover_the_data_and_make_the_single_process_batch():
    for world in (2, 3):
        shares = [Shard(rank=rank, world=world).indices(100) for rank in range(world)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(100))
        for step in (0, 7, 30):  # the last crosses into another epoch, which is shuffled anew
            parts = [batch_indices(step, 120, 4, seed=3, shard=Shard(rank=rank, world=world)) for rank in range(world)]
            assert len(set(np.concatenate(parts))) == 4 * world
            np.testing.assert_array_equal(np.concatenate(parts), batch_indices(step, 120, 4 * world, seed=3))
    assert not np.array_equal(batch_indices(0, 120, 8, 3), batch_indices(15, 120, 8, 3))


def test_ranks_end_with_the_same_weights(data_dir, tmp_path):
    torchrun(str(WORKER), "weights", str(data_dir), str(tmp_path))
    first, second = (torch.load(tmp_path / f"weights-rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)
    start = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert start["step"] == 6 and len(start["rng"]) == 2  # every rank's random state
    assert all(torch.equal(start["model"][name], first[name]) for name in first)


def test_two_ranks_of_half_a_batch_give_the_gradient_of_one_rank_of_the_whole(data_dir, tmp_path):
    torchrun(str(WORKER), "gradient", str(data_dir), str(tmp_path / "two"))  # 2 ranks x 8 images
    torchrun(str(WORKER), "gradient", str(data_dir), str(tmp_path / "one"), processes=1)  # 1 rank x 16
    two, one = (torch.load(tmp_path / name / "gradient.pt", weights_only=True) for name in ("two", "one"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)


def test_metrics_reduced_over_ranks_equal_the_single_process_ones(data_dir, tmp_path):
    torchrun(str(WORKER), "metrics", str(data_dir), str(tmp_path / "two"))
    torchrun(str(WORKER), "metrics", str(data_dir), str(tmp_path / "one"), processes=1)
    two, one = (torch.load(tmp_path / name / "metrics.pt", weights_only=True) for name in ("two", "one"))
    assert two["share"] == 20 and one["share"] == 40  # each rank scored half the held-out images
    assert two["metrics"] == one["metrics"] and one["metrics"]["test_count_accuracy"] is not None


def test_a_two_rank_run_resumes_bit_for_bit_from_rank_0s_checkpoint(data_dir, tmp_path):
    flags = ["--data", str(data_dir), "--quiet", "--batch-size", "8", "--eval-every", "4", "--eval-images", "16",
             "--checkpoint-every", "4", "--log-every", "2", "--threads", "1", "--estimator", "nvil", *TINY_FLAGS]
    torchrun("-m", "airscene", "train", "--out", str(tmp_path / "whole"), "--steps", "8", *flags)
    torchrun("-m", "airscene", "train", "--out", str(tmp_path / "split"), "--steps", "4", *flags)
    torchrun("-m", "airscene", "train", "--out", str(tmp_path / "split"), "--steps", "8", "--resume", *flags)
    whole, split = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("whole", "split"))
    assert whole["step"] == split["step"] == 8
    for part in ("model", "estimator"):  # nvil's baseline is trained across the ranks too
        assert all(torch.equal(whole[part][name], split[part][name]) for name in whole[part]), part
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]  # written once, by rank 0


def test_inverse_graphics_trains_across_ranks_through_the_same_loop(tmp_path):
    flags = ["--renderer", "torch", "--training-images", "64", "--test-images", "16", "--batch-size", "4",
             "--eval-every", "3", "--checkpoint-every", "3", "--log-every", "3", "--threads", "1", "--quiet"]
    finished = torchrun("-m", "airscene", "graphics", "train", "--out", str(tmp_path / "run"), "--steps", "3", *flags)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["step"] == 3 and summary["identity_accuracy"] is not None
    assert finished.stdout.count('"stopped_by"') == 1  # rank 0 alone reports


def test_devices_are_chosen_or_refused_in_one_line(data_dir, tmp_path, capsys):
    from airscene.cli import main
    from airscene.distributed import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else
                                           "mps" if torch.backends.mps.is_available() else "cpu")
    flags = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--quiet", "--steps", "2",
             "--batch-size", "8", "--eval-images", "8", *TINY_FLAGS]
    if not torch.cuda.is_available():
        assert main([*flags, "--device", "cuda:3"]) == 2
        assert "device cuda:3 is not available here" in capsys.readouterr().err
    assert main([*flags, "--device", "tpu"]) == 2
    assert "device 'tpu' is not a device" in capsys.readouterr().err
    assert main([*flags, "--device", "cpu", "--precision", "bf16"]) == 0
    import airscene

    trained = airscene.load(tmp_path / "run", device="auto")
    assert trained.device == resolve_device("auto") and trained.infer(np.zeros((2, 50, 50), np.uint8)).counts.shape == (2,)


def test_parallel_seeds_pick_the_best_by_held_out_elbo(data_dir, tmp_path, capsys):
    from airscene.cli import main

    config = {"train": {"steps": 3, "batch_size": 8, "eval_every": 3, "eval_images": 16, "log_every": 3}}
    (tmp_path / "base.json").write_text(json.dumps({"data": str(data_dir), "model": dict(zip(
        ("glimpse_size", "what_size", "hidden_size", "embedding_size", "glimpse_hidden_size"), (10, 8, 32, 32, 32))),
        **config}))
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "seeds"), "--config", str(tmp_path / "base.json"),
                 "--seeds", "0,1", "--parallel", "2"]) == 0
    report = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    elbos = {result["seed"]: result["test_elbo"] for result in report["seeds"]}
    assert sorted(elbos) == [0, 1] and report["best"].endswith(f"seed-{max(elbos, key=elbos.get)}")
    assert report["threads_per_seed"] == max(1, (os.cpu_count() or 1) // 2)
    assert json.loads((tmp_path / "seeds" / "seed-1" / "config.json").read_text())["train"]["seed"] == 1
    assert "best by held-out ELBO" in capsys.readouterr().out
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "seeds"), "--seeds", "0,0"]) == 2
