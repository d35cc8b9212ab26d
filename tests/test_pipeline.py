"""Training, checkpoints, evaluation, inference and figures, end to end through the CLI and the API."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import airscene
from airscene.cli import main
from airscene.model import AIR, GridAIR
from airscene.data import make_multi_mnist

TINY_MODEL = ["--glimpse-size", "10", "--what-size", "8", "--hidden-size", "32", "--embedding-size", "32",
              "--glimpse-hidden-size", "32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=256, test=64, seed=0, progress=False)
    return directory


def _train(data_dir, out, *extra):
    return main(["train", "--data", str(data_dir), "--out", str(out), "--quiet", "--batch-size", "16",
                 "--eval-every", "5", "--eval-images", "32", "--log-every", "5", "--checkpoint-every", "5",
                 *TINY_MODEL, *extra])


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert _train(data_dir, out, "--steps", "10") == 0
    return out


def test_training_writes_run_directory(trained_run):
    names = {path.name for path in trained_run.iterdir()}
    assert {"checkpoint.pt", "config.json", "metrics.jsonl", "tensorboard", "train_summary.json"} <= names
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10]
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert any(r["kind"] == "eval" for r in records)
    assert json.loads((trained_run / "train_summary.json").read_text())["step"] == 10


RUNS = [("air", estimator) for estimator in AIR.estimators] + [("grid", estimator) for estimator in GridAIR.estimators]


@pytest.mark.parametrize(("model", "estimator"), RUNS)
def test_resume_matches_an_uninterrupted_run(data_dir, tmp_path, model, estimator):
    options = ("--model", model, "--estimator", estimator)
    assert _train(data_dir, tmp_path / "whole", "--steps", "10", *options) == 0
    assert _train(data_dir, tmp_path / "split", "--steps", "5", *options) == 0
    assert _train(data_dir, tmp_path / "split", "--steps", "10", *options, "--resume") == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert split["step"] == whole["step"] == 10
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for key, value in whole["estimator"].items():
        assert torch.equal(value, split["estimator"][key]), key


def test_the_learning_rate_starts_high_and_decays_over_the_budget(data_dir, tmp_path):
    decay = ("--learning-rate-decay", "cosine", "--learning-rate-hold", "0.2", "--learning-rate-final", "0.1",
             "--learning-rate-start", "4", "--learning-rate-start-steps", "8")
    assert _train(data_dir, tmp_path, "--steps", "10", *decay) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = [r["learning_rate"] for r in records if r["kind"] == "train"]  # each the mean of 5 steps
    factors = [4 ** max(1 - step / 8, 0) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(max((step / 10 - 0.2) / 0.8, 0), 1))))
               for step in range(10)]
    assert rates == pytest.approx([1e-3 * np.mean(factors[:5]), 1e-3 * np.mean(factors[5:])])


def test_the_grid_trains_at_its_learning_rate_from_the_first_step(data_dir, tmp_path):
    """The fast start is AIR's and DAIR's: it slowed the grid's count, so the grid's rate is never raised."""
    assert _train(data_dir, tmp_path / "grid", "--steps", "5", "--model", "grid", "--estimator", "local") == 0
    assert _train(data_dir, tmp_path / "air", "--steps", "5") == 0
    rates = {name: [json.loads(line)["learning_rate"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                    if json.loads(line)["kind"] == "train"] for name in ("grid", "air")}
    assert rates["grid"] == [pytest.approx(1e-3)]
    assert rates["air"] == [pytest.approx(1e-3 * np.mean([4 ** (1 - step / 1000) for step in range(5)]))]
    assert _train(data_dir, tmp_path / "refused", "--steps", "5", "--model", "grid", "--estimator", "local",
                  "--learning-rate-start", "2") == 2


def test_existing_run_is_not_overwritten(data_dir, trained_run, capsys):
    before = (trained_run / "checkpoint.pt").read_bytes()
    assert _train(data_dir, trained_run, "--steps", "3") == 2
    assert "already holds a checkpoint: pass --resume" in capsys.readouterr().err
    assert (trained_run / "checkpoint.pt").read_bytes() == before


def test_load_and_infer_api(trained_run, data_dir):
    model = airscene.load(trained_run / "checkpoint.pt")
    from airscene.data import load_dataset

    _, test, _ = load_dataset(data_dir)
    scenes = model.infer(test.images[:7], batch_size=3)
    n = model.config.model.max_objects
    assert scenes.counts.shape == (7,) and scenes.boxes.shape == (7, n, 4)
    assert scenes.presence.shape == (7, n) and scenes.what.shape == (7, n, 8)
    for count, boxes, what in zip(scenes.counts, scenes.boxes, scenes.what):
        assert not np.isnan(boxes[:count]).any() and np.isnan(boxes[count:]).all()
        assert np.isnan(what[count:]).all()
    # uint8, float and channel-first inputs describe the same scenes
    as_float = model.infer(test.images[:7].astype(np.float32)[:, None] / 255)
    np.testing.assert_array_equal(as_float.counts, scenes.counts)
    np.testing.assert_allclose(as_float.presence, scenes.presence, atol=1e-6)
    records = scenes.to_records()
    assert len(records) == 7 and all(len(r["objects"]) == r["count"] for r in records)


def test_eval_viz_and_infer_commands(trained_run, data_dir, tmp_path, capsys):
    assert main(["eval", str(trained_run), "--samples", "3"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == json.loads((trained_run / "eval.json").read_text())
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.sum() == 64 and metrics["count_accuracy"] == pytest.approx(np.trace(confusion) / 64)
    assert np.isfinite(metrics["test_elbo"]) and metrics["importance_samples"] == 3
    assert main(["viz", str(trained_run)]) == 0
    assert (trained_run / "figure3.png").read_bytes()[:4] == b"\x89PNG"
    from airscene.data import load_dataset

    _, test, _ = load_dataset(data_dir)
    paths = []
    for index in range(2):
        paths.append(str(tmp_path / f"scene{index}.png"))
        Image.fromarray(test.images[index]).save(paths[-1])
    capsys.readouterr()
    assert main(["infer", str(trained_run / "checkpoint.pt"), *paths, "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [o["image"] for o in output] == paths and all("count" in o for o in output)


def test_run_command_does_data_training_eval_and_figures(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    make_multi_mnist(data, train=64, test=32, seed=1, progress=False)
    assert main(["run", "--data", str(data), "--out", str(out), "--quiet", "--steps", "4", "--batch-size", "16",
                 "--eval-images", "16", *TINY_MODEL]) == 0
    printed = capsys.readouterr().out
    assert "figure3.png" in printed and "count_accuracy" in printed
    assert (out / "eval.json").is_file() and (out / "figure3.png").is_file()


def test_gradvar_writes_every_estimators_variance(trained_run, data_dir, capsys):
    assert main(["gradvar", str(trained_run), "--samples", "20", "--batch-size", "4", "--baseline-steps", "2"]) == 0
    results = json.loads((trained_run / "gradvar.json").read_text())
    variances = {name: values["presence_head_variance"] for name, values in results["estimators"].items()}
    assert len(variances) == 6 and results["baseline_fitted_steps"] == 2
    # the plain score function is the noisy one; exact enumeration has no variance from the count
    assert variances["score function, no baseline"] > 10 * variances["enumerate"]
    assert (trained_run / "gradvar.png").read_bytes()[:4] == b"\x89PNG"


def test_importance_weighted_log_likelihood_tightens_with_samples(data_dir):
    """log of the mean of S importance weights grows with S in expectation (a mean of logs would not)."""
    from airscene.data import load_dataset
    from airscene.evaluate import elbo_and_log_likelihood
    from airscene.model import AIR
    from test_model import small_config

    _, test, _ = load_dataset(data_dir)
    model = AIR(small_config(image_size=50, count_prior=0.3))
    images = torch.from_numpy(test.images[:32]).float().div(255)[:, None]
    torch.manual_seed(0)
    _, one = elbo_and_log_likelihood(model, images, samples=1)
    elbo, many = elbo_and_log_likelihood(model, images, samples=30)
    assert many.mean() > one.mean() + 1.0 and many.mean() > elbo.mean() + 1.0


def test_one_scene_saved_in_every_format_gets_one_inference(trained_run, data_dir, tmp_path, capsys):
    from airscene.data import load_dataset
    from test_images import SUFFIX, save_as

    _, test, _ = load_dataset(data_dir)
    scene = test.images[int(np.argmax(test.counts))]  # one with objects
    paths = []
    for form in ("png8", "png16", "tiff-float", "png-rgb", "png-rgba", "png-palette", "bmp"):
        paths.append(str(tmp_path / f"{form}{SUFFIX.get(form, '.png')}"))
        save_as(scene, paths[-1], form)
    capsys.readouterr()
    assert main(["infer", str(trained_run), *paths, "--json"]) == 0
    records = [{key: value for key, value in record.items() if key != "image"} for record in json.loads(capsys.readouterr().out)]
    assert all(record == records[0] for record in records)
    assert records[0] == airscene.load(trained_run).infer(scene[None]).to_records()[0]


def test_the_main_job_budget_and_resume_rule_live_in_the_library(tmp_path, monkeypatch):
    import airscene.pipeline as pipeline
    from airscene.checkpoint import resumable
    from airscene.config import MAIN_JOB_MINUTES, Config

    seen = {}

    def fake_train(config, out, resume, progress):
        seen.update(minutes=config.train.minutes, resume=resume)
        return {"stopped_by": "SIGINT"}  # stop before evaluation

    monkeypatch.setattr(pipeline, "train", fake_train)
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text("{}")
    config = Config(data=str(data))
    assert config.train.minutes is None
    pipeline.main_job(config, tmp_path / "run", say=lambda _: None)
    assert seen == {"minutes": MAIN_JOB_MINUTES, "resume": False} and config.train.minutes is None  # not mutated
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    assert resumable(tmp_path / "run")
    config.train.minutes = 2.0
    pipeline.main_job(config, tmp_path / "run", say=lambda _: None)
    assert seen == {"minutes": 2.0, "resume": True}


def test_training_and_inference_do_not_import_the_plotting_library():
    """Figures are drawn by the jobs that write them (pipeline, viz): a training process, or a program that only
    infers, never loads matplotlib."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, airscene, airscene.train, airscene.runs, airscene.evaluate; "
                             "print('matplotlib' in sys.modules)"], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "False"

