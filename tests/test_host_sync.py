"""A training step never waits for the device: between two training records nothing is read back to the host.

Counted on the CPU through the command line: every way a tensor reaches the host (`.item()`, `.tolist()`,
`.cpu()`, `.numpy()`, and a tensor used as a Python bool, float or int) is counted over a whole run of 10
steps and of 20, each logging, evaluating and checkpointing once, at its end; the ten steps between are the
difference, and it must be nothing."""

import contextlib
import warnings

import pytest
import torch

from airscene.cli import main
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneWarning

READ_BACKS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__")
TINY = ["--glimpse-size", "8", "--what-size", "4", "--hidden-size", "16", "--embedding-size", "16",
        "--glimpse-hidden-size", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=64, test=16, seed=0, progress=False)
    return directory


@contextlib.contextmanager
def counted_read_backs(monkeypatch):
    """Count every read of a tensor's value on the host while the block runs."""
    counter = {"reads": 0}

    def counting(original):
        def read(self, *arguments, **options):
            counter["reads"] += 1
            return original(self, *arguments, **options)
        return read

    with monkeypatch.context() as patch:
        for name in READ_BACKS:
            patch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
        yield counter


def read_backs_of_run(monkeypatch, data_dir, out, steps: int, flags: list[str]) -> int:
    torch._dynamo.reset()  # a compiled run compiles afresh, as the run it is compared with did
    with counted_read_backs(monkeypatch) as counter, warnings.catch_warnings():
        warnings.simplefilter("error", AirsceneWarning)  # a compiled run that fell back to eager would count nothing
        assert main(["train", "--data", str(data_dir), "--out", str(out), "--quiet", "--steps", str(steps),
                     "--log-every", str(steps), "--eval-every", str(steps), "--checkpoint-every", str(steps),
                     *TINY, *flags]) == 0
    return counter["reads"]


@pytest.mark.parametrize("flags", [
    [], ["--model", "dair"], ["--estimator", "nvil"], ["--estimator", "vimco"], ["--estimator", "relaxed"],
    ["--model", "grid", "--estimator", "local", "--cell-size", "12", "--object-size", "20"],
    ["--model", "dair", "--background", "learned", "--compositing", "alpha"], ["--compile", "default"],
    ["--model", "dair", "--where-proposal", "residual"],
], ids=["air", "dair", "nvil", "vimco", "relaxed", "grid", "dair-background-alpha", "air-compiled", "dair-residual"])
def test_steps_between_records_never_read_the_device(monkeypatch, data_dir, tmp_path, flags):
    short = read_backs_of_run(monkeypatch, data_dir, tmp_path / "short", 10, flags)
    long = read_backs_of_run(monkeypatch, data_dir, tmp_path / "long", 20, flags)
    assert short > 0  # the counter sees the reads of the record, the evaluation and the checkpoint
    assert long - short == 0, f"{(long - short) / 10:.1f} read-backs per step between records"
