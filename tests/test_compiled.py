"""--compile: the training step compiled by torch.compile takes the eager step's samples and losses, compiles
once for the whole run (the schedules are inputs, not constants), resumes bit for bit, and where torch cannot
compile, says so in one line and trains eagerly."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch._inductor.config
from torch._dynamo.utils import counters

from airscene import cli
from airscene.cli import main
from airscene.config import Config, ModelConfig
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneError, AirsceneWarning
from airscene.infer import TrainedModel
from airscene.model import AIR, GridAIR
from test_host_sync import TINY


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=64, test=16, seed=0, progress=False)
    return directory


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles for itself (a graph compiled by another test would pass its guards)."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def losses_of_run(data_dir, out, steps: int, *flags: str) -> list[float]:
    """Train `steps` steps (the exploration decaying to 0 over the first 2, so that the run spans both of its
    regimes), logging every step; the run's losses. Fails on any airscene warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", AirsceneWarning)
        assert main(["train", "--data", str(data_dir), "--out", str(out), "--quiet", "--steps", str(steps),
                     "--log-every", "1", "--eval-every", "4", "--checkpoint-every", "2",
                     "--presence-exploration-steps", "2", *TINY, *flags]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if record["kind"] == "train"]


def test_the_compiled_step_takes_the_eager_steps_and_compiles_once(data_dir, tmp_path):
    eager = losses_of_run(data_dir, tmp_path / "eager", 4)
    compiled = losses_of_run(data_dir, tmp_path / "compiled", 4, "--compile", "default")
    assert counters["stats"]["unique_graphs"] == 1  # one graph for every exploration weight, 1 down to 0
    # The same samples (eager's random generators); the sums rounded otherwise by fused kernels, so the
    # first steps' losses agree closely and later ones drift apart as the weights do.
    assert compiled[:3] == pytest.approx(eager[:3], rel=1e-4)
    assert compiled != eager


def test_a_compiled_run_resumes_bit_for_bit(data_dir, tmp_path):
    losses_of_run(data_dir, tmp_path / "whole", 4, "--compile", "default")
    losses_of_run(data_dir, tmp_path / "split", 2, "--compile", "default")
    losses_of_run(data_dir, tmp_path / "split", 4, "--compile", "default", "--resume")
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert split["step"] == whole["step"] == 4
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key


def test_where_torch_cannot_compile_one_warning_says_so_and_the_run_trains_eagerly(data_dir, tmp_path):
    eager = losses_of_run(data_dir, tmp_path / "eager", 3)
    # no C++ compiler for the kernels
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",)}), pytest.warns(AirsceneWarning) as caught:
        assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "fallback"), "--quiet", "--steps", "3",
                     "--log-every", "1", "--eval-every", "4", "--presence-exploration-steps", "2", *TINY,
                     "--compile", "default"]) == 0
    assert [str(warning.message) for warning in caught] == [
        "--compile: torch.compile failed (No working C++ compiler found in torch._inductor.config.cpp.cxx: "
        "('/nonexistent/c++',)); training runs eagerly (the same computation, not compiled)"]
    records = [json.loads(line) for line in (tmp_path / "fallback" / "metrics.jsonl").read_text().splitlines()]
    assert [record["loss"] for record in records if record["kind"] == "train"] == eager  # the draws put back


def test_the_command_line_shows_airscenes_warnings_in_one_line():
    assert cli._format_warning(AirsceneWarning("--compile: why"), AirsceneWarning, "compiled.py", 1) == \
        "airscene: warning: --compile: why\n"
    assert "UserWarning" in cli._format_warning(UserWarning("other"), UserWarning, "elsewhere.py", 1)


@pytest.mark.parametrize("kind, proposal", [("air", "none"), ("dair", "none"), ("dair", "residual")])
def test_compiled_inference_describes_what_eager_inference_does(kind, proposal):
    torch.manual_seed(3)
    config = Config(model=ModelConfig(model=kind, image_size=20, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16, max_objects=3, where_proposal=proposal))
    model = AIR(config.model)
    images = torch.rand(32, 1, 20, 20) * torch.rand(32, 1, 1, 1)
    with torch.no_grad():  # presence that depends on the image, so that images stop at different steps
        model.infer_step.head.weight[0] *= 30
        for _ in range(3):
            model.infer_step.head.bias[0] -= model(images, presence="all", sample=False).presence_logits.median()
    eager, compiled = TrainedModel(model, config), TrainedModel(model, config, compile="default")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AirsceneWarning)  # compiled, not fallen back to eager
        grey = images[:, 0].numpy()
        # a batch, one image at a time, and then both again from RGB arrays (channels last; read as grey, the same
        # shapes laid out otherwise)
        rgb = np.repeat(grey[..., None], 3, -1)
        for batch in (images, images[:1], images[5:6], rgb, rgb[:1]):
            expected, found = eager.infer(batch), compiled.infer(batch)
            assert np.array_equal(found.counts, expected.counts)
            for name in ("boxes", "presence", "what", "where"):
                np.testing.assert_allclose(getattr(found, name), getattr(expected, name), rtol=1e-4, atol=1e-5)
    assert set(eager.infer(images).counts) == {0, 1, 2, 3}
    assert counters["stats"]["unique_graphs"] == 2  # one for batches, one for single images, whatever their layout


def test_inference_compiles_only_in_the_modes_there_are():
    config = Config(model=ModelConfig(image_size=20, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    with pytest.raises(AirsceneError, match="setting compile = 'fast' is invalid"):
        TrainedModel(AIR(config.model), config, compile="fast")


def test_a_model_whose_inference_is_faster_eagerly_says_so_and_infers_eagerly():
    config = Config(model=ModelConfig(model="grid", image_size=24, channels=1, cell_size=8, object_size=(8.0,),
                                      glimpse_size=6, what_size=3, embedding_size=16, glimpse_hidden_size=16))
    model = GridAIR(config.model)
    with pytest.warns(AirsceneWarning, match="the grid model's inference is faster eagerly than compiled; inference runs eagerly"):
        trained = TrainedModel(model, config, compile="default")
    images = torch.rand(2, 1, 24, 24)
    np.testing.assert_array_equal(trained.infer(images).where, TrainedModel(model, config).infer(images).where)
    assert counters["stats"]["unique_graphs"] == 0


def test_bf16_inference_of_a_grid_describes_what_float32_does_and_returns_float32():
    torch.manual_seed(0)
    config = Config(model=ModelConfig(model="grid", image_size=24, channels=1, cell_size=8, object_size=(8.0,),
                                      glimpse_size=6, what_size=3, embedding_size=16, glimpse_hidden_size=16))
    model = GridAIR(config.model)
    images = torch.rand(6, 1, 48, 48) * torch.rand(6, 1, 1, 1)
    with torch.no_grad():  # presences that depend on the image
        model.head.weight[0] *= 30
        model.head.bias[0] -= model.head(model.backbone(model.padded(images)))[:, 0].median()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AirsceneWarning)
        half, full = TrainedModel(model, config, precision="bf16").infer(images), TrainedModel(model, config).infer(images)
    assert half.where.dtype == np.float32 and half.what.dtype == np.float32
    assert np.array_equal(half.counts, full.counts) and len(set(full.counts)) > 1
    np.testing.assert_allclose(half.presence, full.presence, atol=0.02)
    assert not np.array_equal(half.presence, full.presence)  # computed in bfloat16, not in float32


def test_a_model_that_infers_in_float32_only_says_so_and_infers_in_float32():
    config = Config(model=ModelConfig(image_size=20, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    model = AIR(config.model)
    with pytest.warns(AirsceneWarning, match="precision bf16: the air model infers in float32 only"):
        trained = TrainedModel(model, config, precision="bf16")
    images = torch.rand(3, 1, 20, 20)
    np.testing.assert_array_equal(trained.infer(images).what, TrainedModel(model, config).infer(images).what)
    assert trained.precision == "fp32"
    with pytest.raises(AttributeError):
        trained.precision = "bf16"  # fixed at loading, where it is checked
    with pytest.raises(AirsceneError, match="setting precision = 'fp16' is invalid"):
        TrainedModel(model, config, precision="fp16")
