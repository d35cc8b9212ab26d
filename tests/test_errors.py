"""Bad input gets a one-line error naming the thing and the fix, and a non-zero exit from the CLI."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import airscene
from airscene.checkpoint import save_checkpoint
from airscene.cli import main
from airscene.config import Config, ModelConfig
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneError
from airscene.infer import TrainedModel
from airscene.model import AIR


@pytest.fixture(scope="module")
def model():
    config = Config(model=ModelConfig(image_size=20, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    return TrainedModel(AIR(config.model), config)


@pytest.mark.parametrize("images, message", [
    (np.zeros((20, 20), np.uint8), r"a single image: add a batch axis"),
    (np.zeros((2, 1, 1, 20, 20), np.uint8), r"give \(B, H, W\), \(B, C, H, W\) or \(B, H, W, C\)"),
    (np.zeros((2, 30, 30), np.uint8), r"30x30 but the model was trained on 20x20"),
    (np.zeros((0, 20, 20), np.uint8), r"no images given"),
    (np.full((2, 20, 20), np.nan, np.float32), r"NaN or infinite pixels"),
    (-np.ones((2, 20, 20), np.float32), r"not \[0, 1\]"),
    (np.full((2, 20, 20), 255.0), r"divide uint8-range values by 255"),
    (np.zeros((2, 20, 20), "<U1"), r"dtype <U1"),
    (np.zeros((2, 5, 20, 20), np.float32), r"C = 1, 3"),
    (np.zeros((2, 20, 20), np.int64), r"dtype int64, which has no range read as \[0, 1\]: give uint8"),
    ([np.zeros((20, 20)), np.zeros((21, 20))], r"ragged list"),
])
def test_bad_images(model, images, message):
    with pytest.raises(AirsceneError, match=message):
        model.infer(images)


def test_colour_images_are_made_grey(model):
    grey = np.random.default_rng(0).random((3, 20, 20)).astype(np.float32)
    colour = np.repeat(grey[:, None], 3, axis=1)
    np.testing.assert_allclose(model.infer(colour).presence, model.infer(grey).presence, atol=1e-6)
    as_uint8 = np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)  # channel-last uint8 RGB
    np.testing.assert_allclose(model.infer(as_uint8).presence, model.infer(np.round(grey * 255) / 255).presence, atol=1e-5)


def checkpoint_state(trained: TrainedModel) -> dict:
    """What a run's checkpoint holds, for an untrained model."""
    return {"kind": "air", "config": trained.config.to_dict(), "model": trained.model.state_dict(), "estimator": {},
            "optimizer": {"state": {}, "param_groups": []}, "rng": [{"cpu": torch.get_rng_state()}], "step": 0,
            "elapsed_seconds": 0.0}


def test_bad_checkpoints(tmp_path, model):
    with pytest.raises(AirsceneError, match="does not exist"):
        airscene.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(AirsceneError, match="truncated or not an airscene checkpoint"):
        airscene.load(tmp_path / "junk.pt")
    state = checkpoint_state(model)
    save_checkpoint(tmp_path / "good.pt", state)
    assert airscene.load(tmp_path / "good.pt").config.model.image_size == 20
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    with pytest.raises(AirsceneError, match="truncated or not an airscene checkpoint"):
        airscene.load(tmp_path / "cut.pt")
    torch.save({**state, "format": 99}, tmp_path / "future.pt")
    with pytest.raises(AirsceneError, match="has format 99"):
        airscene.load(tmp_path / "future.pt")
    other = state["config"] | {"model": state["config"]["model"] | {"hidden_size": 32}}
    save_checkpoint(tmp_path / "mismatch.pt", {**state, "config": other})
    with pytest.raises(AirsceneError, match="does not match its own config"):
        airscene.load(tmp_path / "mismatch.pt")
    save_checkpoint(tmp_path / "foreign.pt", {**state, "config": state["config"] | {"model": {"unknown_setting": 1}}})
    with pytest.raises(AirsceneError, match="settings this airscene does not know \\(unknown_setting\\)"):
        airscene.load(tmp_path / "foreign.pt")
    wrong_type = state["config"] | {"train": state["config"]["train"] | {"batch_size": "sixty-four"}}
    save_checkpoint(tmp_path / "typed.pt", {**state, "config": wrong_type})
    with pytest.raises(AirsceneError, match="typed.pt: setting batch_size = 'sixty-four' is invalid"):
        airscene.load(tmp_path / "typed.pt")
    missing = state["config"] | {"model": {k: v for k, v in state["config"]["model"].items() if k != "likelihood"}}
    save_checkpoint(tmp_path / "missing.pt", {**state, "config": missing})
    with pytest.raises(AirsceneError, match="missing.pt: configuration's model lacks the settings likelihood"):
        airscene.load(tmp_path / "missing.pt")
    weights = {name: tensor.clone() for name, tensor in state["model"].items()}
    next(iter(weights.values()))[0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", {**state, "model": weights})
    with pytest.raises(AirsceneError, match="nan.pt is damaged \\(its model entry .* holds non-finite numbers\\)"):
        airscene.load(tmp_path / "nan.pt")
    for part, value in (("step", "ten"), ("optimizer", {}), ("rng", [3]), ("step", 2**40), ("progress", {"metrics": None}),
                        ("optimizer", {"state": {}, "param_groups": [{"lr": float("nan")}]})):
        save_checkpoint(tmp_path / "part.pt", {**state, part: value})
        with pytest.raises(AirsceneError, match="part.pt is damaged"):
            airscene.load(tmp_path / "part.pt")

    sparse = {**state, "format": 2, "model": {**state["model"], "extra": torch.eye(3).to_sparse()}}
    torch.save(sparse, tmp_path / "sparse.pt")  # the digest cannot even be computed over a sparse tensor
    with pytest.raises(AirsceneError, match="sparse.pt is damaged"):
        airscene.load(tmp_path / "sparse.pt")
    nested: list = []
    for _ in range(40):
        nested = [nested]
    save_checkpoint(tmp_path / "nested.pt", {**state, "progress": {"metrics": nested}})  # a valid digest, absurd content
    with pytest.raises(AirsceneError, match="nested.pt is damaged \\(it nests deeper than a run's state"):
        airscene.load(tmp_path / "nested.pt")
    for huge, message in ((10**30, "huge.pt: setting eval_every = an integer of about 31 digits is invalid "
                                   "\\(--eval-every\\): use a whole number >= 1 and <= 9007199254740992"),
                          (10**5000, "huge.pt is truncated or not an airscene checkpoint")):  # torch's unpickler refuses it
        too_big = state["config"] | {"train": state["config"]["train"] | {"eval_every": huge}}
        save_checkpoint(tmp_path / "huge.pt", {**state, "config": too_big})
        with pytest.raises(AirsceneError, match=message):
            airscene.load(tmp_path / "huge.pt")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    make_multi_mnist(directory, train=32, test=16, seed=0, progress=False)
    return directory


@pytest.mark.parametrize("options, message", [
    (["--max-objects", "0"], "max_objects = 0 is invalid (--max-objects): use a whole number >= 1"),
    (["--learning-rate", "0"], "learning_rate = 0.0 is invalid (--learning-rate): use a finite number > 0.0"),
    (["--learning-rate", "-1"], "learning_rate = -1.0 is invalid"),
    (["--learning-rate", "inf"], "learning_rate = inf is invalid"),
    (["--seed", "-1"], "seed = -1 is invalid (--seed): use a whole number >= 0"),
    (["--threads", "-2"], "threads = -2 is invalid"),
    (["--what-size", "0"], "what_size = 0 is invalid"),
    (["--vimco-samples", "100000"], "vimco_samples = 100000 is invalid"),
    (["--where-prior-sd", "0.1,1"], "where_prior_sd = (0.1, 1.0) is invalid (--where-prior-sd): give 3 comma-separated"),
    (["--where-prior-sd=-0.1,1,1"], "where_prior_sd = (-0.1, 1.0, 1.0) is invalid"),
    (["--batch-size", "64"], "batch size 64 x 1 process(es) exceeds the 32 training images"),
    (["--max-objects", "1"], "scenes with 2 objects but the model has N = 1 steps"),
    (["--estimator", "magic"], "estimator = 'magic' is invalid (--estimator): use one of enumerate"),
    (["--estimator", "marginal"], "estimator 'marginal' is for inverse graphics"),
    (["--count-prior", "2"], "count_prior = 2.0 is invalid"),
    (["--image-size", "28"], "image_size = 28 contradicts the data"),
    (["--object-size", "4000"], "object_size = (4000.0,) is larger than the data's 50-pixel canvases"),
    (["--model", "grid", "--estimator", "local", "--cell-size", "4", "--object-size", "50", "--window-limit", "10",
      "--batch-size", "32"], "the grid's tiles would take 10.2 GiB a step, more than the 8 GiB airscene allows"),
    (["--eval-every", str(10**30)], "eval_every = an integer of about 31 digits is invalid"),
    (["--learning-rate", str(10**400)], "learning_rate = inf is invalid"),
])
def test_nonsensical_settings(small_data, tmp_path, capsys, options, message):
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "run"), "--quiet", "--steps", "1",
                 "--batch-size", "8", *options]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    ('{"train": {"clip_norm": 1' + "0" * 400 + '}}', "clip_norm = an integer of about 401 digits is invalid"),
    ('{"train": {"log_every": 1' + "0" * 5000 + '}}', "is not valid JSON text"),
    ('{"model": {"what_size": ' + "[" * 10000 + "]" * 10000 + '}}', "is not valid JSON text"),
])
def test_config_files_with_absurd_numbers(small_data, tmp_path, capsys, text, message):
    (tmp_path / "config.json").write_text(text)
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "run"), "--quiet", "--config",
                 str(tmp_path / "config.json")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and not (tmp_path / "run").exists()


def test_missing_data_and_unwritable_run(small_data, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "data directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--data", str(small_data), "--out", str(blocker / "run"), "--quiet", "--batch-size", "8"]) == 2
    assert "file is a file, not a folder" in capsys.readouterr().err
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "fresh"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_infer_command_bad_image_files(tmp_path, capsys, model):
    save_checkpoint(tmp_path / "c.pt", checkpoint_state(model))
    (tmp_path / "fake.png").write_text("not an image")
    assert main(["infer", str(tmp_path / "c.pt"), str(tmp_path / "fake.png")]) == 2
    assert "fake.png is not a readable image" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "c.pt"), str(tmp_path / "absent.png")]) == 2
    assert "absent.png does not exist" in capsys.readouterr().err


def test_infer_writes_only_files_of_its_own_and_never_where_it_reads(tmp_path, capsys, model, small_data):
    save_checkpoint(tmp_path / "c.pt", checkpoint_state(model))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((20, 20), 90, np.uint8)).save(photos / name)
    originals = {path.name: path.read_bytes() for path in photos.iterdir()}
    infer = ["infer", str(tmp_path / "c.pt"), str(photos)]
    assert main([*infer, "--draw", str(photos), "--force"]) == 2  # never over what it reads, even when forced
    assert "holds images this command reads: choose another --draw" in capsys.readouterr().err
    (tmp_path / "drawn").mkdir()
    (tmp_path / "drawn" / "a.png").write_bytes(b"my own picture")
    (tmp_path / "notes.csv").write_text("my notes\n")
    for flags, message in ((["--draw", str(tmp_path / "drawn")], "drawn holds files airscene did not draw (a.png): give "
                                                                 "a new or empty folder"),
                           (["--out", str(tmp_path / "notes.csv")], "notes.csv is a file airscene did not write")):
        assert main([*infer, *flags]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "drawn" / "a.png").read_bytes() == b"my own picture"
    assert (tmp_path / "notes.csv").read_text() == "my notes\n"
    for _ in range(2):  # its own drawings and inferences it may replace
        assert main([*infer, "--draw", str(tmp_path / "mine"), "--out", str(tmp_path / "found.csv")]) == 0
        assert main([*infer, "--out", str(tmp_path / "found.json")]) == 0
    assert main([*infer, "--draw", str(tmp_path / "drawn"), "--out", str(tmp_path / "notes.csv"), "--force"]) == 0
    assert (tmp_path / "drawn" / "a.png").read_bytes() != b"my own picture"
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == originals
    figure = tmp_path / "preview.png"
    figure.write_bytes(b"my own figure")
    assert main(["data", "preview", str(small_data), "--out", str(figure)]) == 2
    assert "preview.png is a file airscene did not write" in capsys.readouterr().err
    assert main(["data", "preview", str(small_data), "--out", str(figure), "--force"]) == 0
    assert main(["data", "preview", str(small_data), "--out", str(figure)]) == 0  # now airscene's


def test_inferences_escape_formulas_and_keep_file_names_of_any_bytes(tmp_path, model, monkeypatch):
    from airscene.infer import infer_files
    from airscene.outputs import write_inferences

    names = [b"=cmd.png", b"+1.png", b"-2.png", b"@sum.png", b"plain.png", b"\xff\xfe.png"]
    monkeypatch.chdir(tmp_path)  # names given as they are, so that each cell starts with the name's first character
    for name in names:
        Image.fromarray(np.full((20, 20), 120, np.uint8)).save(name)
    results = infer_files(model, [os.fsdecode(name) for name in names])
    write_inferences(results, "found.csv")
    write_inferences(results, "found.json")
    with open("found.csv", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    files = list(dict.fromkeys(row["file"] for row in rows))
    assert sorted(files[:4]) == ["'+1.png", "'-2.png", "'=cmd.png", "'@sum.png"]
    for row in rows:  # numbers stay numbers
        assert all(value == "" or float(value) == float(value) for key, value in row.items() if key != "file")
    assert [os.fsencode(file.removeprefix("'")) for file in files] == names  # the name that is not UTF-8 keeps its bytes
    saved = json.loads((tmp_path / "found.json").read_text())
    assert [os.fsencode(record["image"]) for record in saved] == names


@given(st.text())
def test_spreadsheet_text_never_starts_a_formula_and_is_undone_by_dropping_the_quote(text):
    from airscene.outputs import FORMULA_STARTS, spreadsheet_text

    escaped = spreadsheet_text(text)
    assert not escaped.startswith(tuple(start for start in FORMULA_STARTS if start != "'"))
    assert escaped == text or (escaped == "'" + text and text.startswith(FORMULA_STARTS))
    assert (escaped[1:] if escaped.startswith("'") else escaped) == text


def test_the_inference_api_refuses_arguments_it_cannot_use(model, tmp_path):
    from airscene.infer import infer_files

    images = np.zeros((3, 20, 20), np.uint8)
    assert model.infer(images, batch_size=np.int64(2)).counts.shape == (3,)
    save_checkpoint(tmp_path / "checkpoint.pt", checkpoint_state(model))
    for call, message in ((lambda: model.infer(images, batch_size=0), "setting batch_size = 0 is invalid"),
                          (lambda: model.decompose(images, batch_size="2"), "setting batch_size = '2' is invalid"),
                          (lambda: infer_files(model, 5), "images are 5: give an image file"),
                          (lambda: airscene.load(tmp_path, device=5), "device 5 is not a device name")):
        with pytest.raises(AirsceneError, match=message):
            call()


def test_running_out_of_memory_is_one_line(small_data, tmp_path, capsys, monkeypatch):
    import airscene.train

    def allocate(*arguments, **options):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 57830630400 bytes")

    monkeypatch.setattr(airscene.train, "make_model", allocate)
    assert main(["train", "--data", str(small_data), "--out", str(tmp_path / "run"), "--quiet", "--batch-size", "8"]) == 2
    error = capsys.readouterr().err
    assert "training ran out of memory" in error and "lower --batch-size" in error and error.count("\n") == 1
    with pytest.raises(SystemExit) as stopped:  # a usage error, refused while the flags are parsed
        main(["data", "multi-mnist", "--out", str(tmp_path / "x"), "--counts", "0-100000000000"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "holds more than 1000 counts" in error and len(error) < 300


def test_each_program_offers_only_the_settings_it_reads(capsys):
    for command, unread in ((["train", "--data", "nowhere"], "--yaw-proposals"), (["run"], "--yaw-proposals"),
                            (["graphics", "train"], "--vimco-samples"), (["graphics", "train"], "--temperature-start")):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert unread not in capsys.readouterr().out
        with pytest.raises(SystemExit) as refused:
            main([*command, "--out", "never-made", unread, "3"])  # not a flag of this command at all
        assert refused.value.code == 2 and f"unrecognized arguments: {unread} 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["graphics", "train", "--help"])
    assert "--yaw-proposals" in capsys.readouterr().out  # where it is read, it is offered
