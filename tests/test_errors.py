"""Bad input gets a one-line error naming the thing and the fix, and a non-zero exit from the CLI."""

import numpy as np
import pytest
import torch

import airscene
from airscene.cli import main
from airscene.config import Config, ModelConfig
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneError
from airscene.infer import TrainedModel
from airscene.model import AIR


@pytest.fixture(scope="module")
def model():
    config = Config(model=ModelConfig(image_size=20, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    return TrainedModel(AIR(config.model), config)


@pytest.mark.parametrize("images, message", [
    (np.zeros((20, 20), np.uint8), r"a single image: add a batch axis"),
    (np.zeros((2, 1, 1, 20, 20), np.uint8), r"pass \(B, H, W\) or \(B, C, H, W\)"),
    (np.zeros((2, 30, 30), np.uint8), r"30x30 but the model was trained on 20x20"),
    (np.zeros((0, 20, 20), np.uint8), r"no images given"),
    (np.full((2, 20, 20), np.nan, np.float32), r"NaN or infinite pixels"),
    (-np.ones((2, 20, 20), np.float32), r"must lie in \[0, 1\]"),
    (np.full((2, 20, 20), 255.0), r"divide uint8-range values by 255"),
    (np.zeros((2, 20, 20), "<U1"), r"dtype <U1"),
    (np.zeros((2, 2, 20, 20), np.float32), r"2 channels, the model expects 1"),
])
def test_bad_images(model, images, message):
    with pytest.raises(AirsceneError, match=message):
        model.infer(images)


def test_colour_images_are_made_grey(model):
    grey = np.random.default_rng(0).random((3, 20, 20)).astype(np.float32)
    colour = np.repeat(grey[:, None], 3, axis=1)
    np.testing.assert_allclose(model.infer(colour).presence, model.infer(grey).presence, atol=1e-6)


def test_bad_checkpoints(tmp_path, model):
    with pytest.raises(AirsceneError, match="does not exist"):
        airscene.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(AirsceneError, match="truncated or not an airscene checkpoint"):
        airscene.load(tmp_path / "junk.pt")
    state = {"format": 1, "config": model.config.to_dict(), "model": model.model.state_dict()}
    torch.save(state, tmp_path / "good.pt")
    assert airscene.load(tmp_path / "good.pt").config.model.image_size == 20
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    with pytest.raises(AirsceneError, match="truncated or not an airscene checkpoint"):
        airscene.load(tmp_path / "cut.pt")
    torch.save({**state, "format": 99}, tmp_path / "future.pt")
    with pytest.raises(AirsceneError, match="has format 99"):
        airscene.load(tmp_path / "future.pt")
    other = state["config"] | {"model": state["config"]["model"] | {"hidden_size": 32}}
    torch.save({**state, "config": other}, tmp_path / "mismatch.pt")
    with pytest.raises(AirsceneError, match="does not match its own config"):
        airscene.load(tmp_path / "mismatch.pt")
    torch.save({**state, "config": state["config"] | {"model": {"unknown_setting": 1}}}, tmp_path / "foreign.pt")
    with pytest.raises(AirsceneError, match="configuration does not match this airscene version"):
        airscene.load(tmp_path / "foreign.pt")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=32, test=16, seed=0, progress=False)
    return directory


@pytest.mark.parametrize("options, message", [
    (["--max-objects", "0"], "max_objects is 0: use N >= 1"),
    (["--learning-rate", "0"], "learning rate 0.0 must be > 0"),
    (["--learning-rate", "-1"], "learning rate -1.0 must be > 0"),
    (["--batch-size", "64"], "batch size 64 exceeds the 32 training images"),
    (["--max-objects", "1"], "scenes with 2 objects but the model has N = 1 steps"),
    (["--estimator", "magic"], "estimator 'magic' is unknown"),
    (["--count-prior-end", "2"], "count prior values must lie in"),
])
def test_nonsensical_settings(small_data, tmp_path, capsys, options, message):
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "run"), "--quiet", "--steps", "1",
                 "--batch-size", "8", *options]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_missing_data_and_unwritable_run(small_data, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "data directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--data", str(small_data), "--out", str(blocker / "run"), "--quiet"]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "fresh"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_infer_command_bad_image_files(tmp_path, capsys):
    config = Config(model=ModelConfig(image_size=20, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    torch.save({"format": 1, "config": config.to_dict(), "model": AIR(config.model).state_dict()}, tmp_path / "c.pt")
    (tmp_path / "fake.png").write_text("not an image")
    assert main(["infer", str(tmp_path / "c.pt"), str(tmp_path / "fake.png")]) == 2
    assert "fake.png is not a readable image" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "c.pt"), str(tmp_path / "absent.png")]) == 2
    assert "absent.png does not exist" in capsys.readouterr().err
