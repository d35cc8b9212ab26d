"""Nothing is lost: non-finite steps are skipped and then stop the run, signals checkpoint and exit, a full
disk or a failing write leaves the previous state readable, damaged files are refused, links are never
written through, a run has one writer, and resume trains the run it resumes."""

import errno
import json
import os
import signal
import subprocess

import pytest
import torch

import airscene
from airscene.cli import main
from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import load_dataset, make_multi_mnist
from airscene.errors import AirsceneError
from airscene.estimators.enumerate import Enumerate
from airscene.rundir import read_metrics
from airscene.runs import MAX_BAD_STEPS
from airscene.storage import append_line
from airscene.train import train

TINY_FLAGS = ["--glimpse-size", "10", "--what-size", "8", "--hidden-size", "32", "--embedding-size", "32",
              "--glimpse-hidden-size", "32"]


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
    from airscene.rundir import Run

    Run(tmp_path, resume=False).close()  # the run that died had made the directory
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 999, "loss": 1.0}) + "\n")
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert 999 not in [r["step"] for r in records] and records[0]["step"] == 5


# --- damaged files ---------------------------------------------------------------------------------

def test_a_checkpoint_with_flipped_weight_bytes_is_refused(data_dir, tmp_path):
    import zipfile

    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    with zipfile.ZipFile(path) as archive:
        largest = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda info: info.file_size)
    raw = bytearray(path.read_bytes())
    start = largest.header_offset + 30 + len(largest.filename.encode()) + 64  # inside the tensor's bytes
    raw[start:start + 400] = bytes(255 - byte for byte in raw[start:start + 400])
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # torch itself does not notice
    with pytest.raises(AirsceneError, match="checkpoint.pt is damaged: its content does not match the digest"):
        airscene.load(path)


def test_a_truncated_metrics_line_does_not_break_the_figure(data_dir, tmp_path):
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "eval", "step": 7, "test_cou')  # a kill in the middle of a line
    assert main(["viz", str(tmp_path)]) == 0


# --- full disks and failing writes -----------------------------------------------------------------

@pytest.fixture
def mount_disk(tmp_path):
    """mount_disk(size): a filesystem (tmpfs) of that size in tmp_path; skipped where mounting is not allowed."""
    mounts = []

    def mount(size: str):
        directory = tmp_path / f"disk{len(mounts)}"
        directory.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounts.append(directory)
        return directory

    yield mount
    for directory in mounts:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_training_onto_a_disk_that_fills_up_keeps_the_last_checkpoint(data_dir, mount_disk, capsys):
    run = mount_disk("1200k") / "run"  # a checkpoint of this model is about 1 MB
    code = main(["train", "--data", str(data_dir), "--out", str(run), "--quiet", "--steps", "40", "--batch-size", "16",
                 "--checkpoint-every", "5", "--eval-every", "5", "--eval-images", "16", "--log-every", "1", *TINY_FLAGS])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "free disk space" in error
    assert airscene.load(run).step >= 5  # the last checkpoint that fitted
    assert not [path for path in run.rglob("*") if path.name.endswith(".partial")]


def test_a_checkpoint_write_that_fails_midway_leaves_the_previous_one(data_dir, tmp_path, monkeypatch):
    original, saves = torch.save, {"n": 0}

    def save(obj, handle, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            handle.write(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1024 vs 517")
        return original(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(AirsceneError, match="cannot write checkpoint .* free disk space; the previous checkpoint is intact"):
        train(tiny_config(data_dir, steps=20), tmp_path, progress=False)
    assert airscene.load(tmp_path / "checkpoint.pt").step == 5
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".partial")]


def test_a_full_disk_during_a_metrics_append_leaves_whole_lines(data_dir, tmp_path, monkeypatch):
    import airscene.storage as storage

    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    real_write = os.write

    def full(descriptor, data):
        real_write(descriptor, data[:7])  # a few bytes fit, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "write", full)
    with pytest.raises(AirsceneError, match="cannot write metrics .*metrics.jsonl \\(No space left on device\\): free disk "
                                            "space; the last good checkpoint .* is intact; resume with --resume"):
        train(tiny_config(data_dir, steps=10), tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_a_data_set_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import airscene.data.files as files

    make_multi_mnist(tmp_path, train=30, test=10, seed=1, progress=False)
    before = {name: (tmp_path / name).read_bytes() for name in ("train.npz", "test.npz", "dataset.json")}
    real_staged, calls = files.write_staged, {"n": 0}

    def staged(path, write):
        calls["n"] += 1
        if calls["n"] == 2:  # the new train split is written; the disk fills up during the test split
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_staged(path, write)

    monkeypatch.setattr(files, "write_staged", staged)
    with pytest.raises(AirsceneError, match="cannot write data set .* free disk space; the data set there is as it was"):
        make_multi_mnist(tmp_path, train=50, test=20, seed=2, progress=False, force=True)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == [
        "dataset.json", "test.npz", "train.npz"]
    assert not list(tmp_path.glob(".*.partial"))


def test_splits_of_two_data_sets_are_refused(tmp_path):
    make_multi_mnist(tmp_path / "a", train=30, test=10, seed=1, progress=False)
    make_multi_mnist(tmp_path / "b", train=30, test=10, seed=2, progress=False)
    (tmp_path / "a" / "test.npz").write_bytes((tmp_path / "b" / "test.npz").read_bytes())
    with pytest.raises(AirsceneError, match="test.npz is not the one .* was written with"):
        load_dataset(tmp_path / "a")


# --- links, locks, resume --------------------------------------------------------------------------

def test_training_never_writes_through_links_it_did_not_make(data_dir, tmp_path):
    victim, elsewhere = tmp_path / "victim.txt", tmp_path / "elsewhere"
    victim.write_text("precious")
    elsewhere.mkdir()
    run = tmp_path / "run"
    from airscene.rundir import Run

    Run(run, resume=False).close()  # a run directory of airscene's, where someone then planted links
    (run / ".lock").unlink()
    for name in ("checkpoint.pt.partial", ".checkpoint.pt.partial", ".writable", "config.json", "train_summary.json",
                 ".lock"):
        (run / name).symlink_to(victim)
    (run / "tensorboard").symlink_to(elsewhere)
    train(tiny_config(data_dir, steps=5), run, progress=False)
    assert victim.read_text() == "precious" and list(elsewhere.iterdir()) == []
    assert airscene.load(run).step == 5
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    train(tiny_config(data_dir, steps=8), run, resume=True, progress=False)  # the link is replaced, not followed
    assert victim.read_text() == "precious" and not (run / "metrics.jsonl").is_symlink()
    (run / "appended.jsonl").symlink_to(victim)
    with pytest.raises(AirsceneError, match="appended.jsonl is a symbolic link"):
        append_line(run / "appended.jsonl", "{}")
    assert victim.read_text() == "precious"


def test_a_run_directory_has_one_writer(data_dir, tmp_path):
    from airscene.rundir import Run

    with Run(tmp_path, resume=False):
        with pytest.raises(AirsceneError, match=f"in use by another airscene process \\(pid {os.getpid()}\\)"):
            train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
        assert not (tmp_path / "config.json").exists()
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)  # free once the first writer is done


def test_resume_refuses_another_configuration_and_keeps_its_budget(data_dir, tmp_path, capsys):
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    other = tiny_config(data_dir, steps=10)
    other.train.learning_rate, other.model.max_objects = 0.01, 4
    with pytest.raises(AirsceneError, match="another configuration than the checkpoint's \\(model.max_objects: 3 -> 4; "
                                            "train.learning_rate: 0.001 -> 0.01\\)"):
        train(other, tmp_path, resume=True, progress=False)
    flags = ["train", "--data", str(data_dir), "--out", str(tmp_path), "--quiet", "--resume"]
    assert main([*flags, "--estimator", "vimco"]) == 2
    assert "train.estimator: 'enumerate' -> 'vimco'" in capsys.readouterr().err
    assert main([*flags, "--steps", "8"]) == 0  # the flags not given are the run's own
    assert airscene.load(tmp_path).step == 8


def test_records_written_after_the_last_checkpoint_are_dropped_on_resume(data_dir, tmp_path):
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as handle:  # what a run killed after its checkpoint had logged
        for step in (6, 7):
            handle.write(json.dumps({"kind": "train", "step": step, "loss": 1.0}) + "\n")
    train(tiny_config(data_dir, steps=10), tmp_path, resume=True, progress=False)
    steps = [record["step"] for record in read_metrics(tmp_path) if record["kind"] == "train"]
    assert steps == [5, 10]


def test_a_signal_stops_the_command_with_the_shells_exit_code(data_dir, tmp_path, monkeypatch):
    def terminate(loss):
        os.kill(os.getpid(), signal.SIGTERM)
        return loss

    patch_estimator(monkeypatch, from_call=2, action=terminate)
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path), "--quiet", "--steps", "20",
                 "--batch-size", "16", "--eval-images", "16", *TINY_FLAGS]) == 143
    assert airscene.load(tmp_path).step == 2


def test_a_non_finite_loss_before_any_checkpoint_says_so(data_dir, tmp_path, monkeypatch):
    patch_estimator(monkeypatch, from_call=1, action=lambda loss: loss * float("nan"))
    with pytest.raises(AirsceneError, match="in a row; no checkpoint had been written yet"):
        train(tiny_config(data_dir, steps=50), tmp_path, progress=False)


def test_commands_check_their_output_directory_before_the_work(data_dir, mount_disk, monkeypatch):
    disk = mount_disk("20m")
    run = disk / "run"
    train(tiny_config(data_dir, steps=5), run, progress=False)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    work = []
    monkeypatch.setattr("airscene.pipeline.evaluate", lambda *args, **kwargs: work.append("evaluate"))
    monkeypatch.setattr("airscene.viz.figure3", lambda *args, **kwargs: work.append("figure"))
    monkeypatch.setattr("airscene.gradvar.measure", lambda *args, **kwargs: work.append("gradvar"))
    for command in (["eval", str(run)], ["viz", str(run)], ["gradvar", str(run)],
                    ["data", "preview", str(data_dir), "--out", str(run / "preview.png")]):
        assert main(command) == 2
    assert work == []


# --- from the second round of attempts to break it ---------------------------------------------------

@pytest.mark.parametrize("decay", ["none", "cosine"])  # records hold the learning rate: the decay carries on
def test_a_run_stopped_by_a_signal_and_resumed_writes_the_records_of_an_uninterrupted_one(data_dir, tmp_path,
                                                                                          monkeypatch, decay):
    config = tiny_config(data_dir, steps=15)
    config.train.log_every, config.train.eval_every, config.train.checkpoint_every = 5, 5, 100
    config.train.learning_rate_decay = decay
    if decay != "none":
        config.train.learning_rate_hold = 0.2
    train(config, tmp_path / "whole", progress=False)

    def terminate(loss):
        os.kill(os.getpid(), signal.SIGTERM)
        return loss

    patch_estimator(monkeypatch, from_call=12, action=terminate)  # stops after step 12, mid-record
    assert train(config, tmp_path / "split", progress=False)["stopped_by"] == "SIGTERM"
    monkeypatch.undo()
    train(config, tmp_path / "split", resume=True, progress=False)
    train(config, tmp_path / "split", resume=True, progress=False)  # a finished run, resumed: nothing more
    drop = ("seconds",)
    whole, split = ([{k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / name)]
                    for name in ("whole", "split"))
    assert split == whole


def test_a_hard_link_at_the_lock_is_not_written_through(data_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    from airscene.rundir import Run

    Run(tmp_path / "run", resume=False).close()  # airscene's run directory, where someone then planted the link
    (tmp_path / "run" / ".lock").unlink()
    os.link(victim, tmp_path / "run" / ".lock")
    train(tiny_config(data_dir, steps=2), tmp_path / "run", progress=False)
    assert victim.read_text() == "precious"


def test_pipes_are_refused_instead_of_read(data_dir, tmp_path):
    import airscene.images

    os.mkfifo(tmp_path / "scene.png")
    with pytest.raises(AirsceneError, match="scene.png is not a regular file"):
        airscene.images.read_image(tmp_path / "scene.png")
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "dataset.json")
    with pytest.raises(AirsceneError, match="dataset.json is not a regular file"):
        load_dataset(tmp_path / "data")


def test_resume_on_another_data_set_of_the_same_name_is_refused(tmp_path):
    make_multi_mnist(tmp_path / "data", train=64, test=16, seed=0, progress=False)
    train(tiny_config(tmp_path / "data", steps=3), tmp_path / "run", progress=False)
    make_multi_mnist(tmp_path / "data", train=64, test=16, seed=7, progress=False, force=True)
    with pytest.raises(AirsceneError, match="is not the one the checkpoint was trained on"):
        train(tiny_config(tmp_path / "data", steps=6), tmp_path / "run", resume=True, progress=False)
    relative = tiny_config(os.path.relpath(tmp_path / "data"), steps=3)  # the same directory, written otherwise
    train(relative, tmp_path / "other", progress=False)
    train(tiny_config(tmp_path / "data", steps=4), tmp_path / "other", resume=True, progress=False)


def test_the_main_job_never_writes_over_a_folder_that_is_not_a_data_set(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.npz").write_bytes(b"the user's own")
    assert main(["run", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "holds files but no dataset.json" in capsys.readouterr().err
    assert (tmp_path / "mine" / "train.npz").read_bytes() == b"the user's own"


def test_commands_on_paths_that_do_not_exist_create_nothing(tmp_path, capsys):
    for command in (["eval", str(tmp_path / "a" / "b")], ["viz", str(tmp_path / "a" / "b" / "checkpoint.pt")],
                    ["gradvar", str(tmp_path / "a")], ["graphics", "eval", str(tmp_path / "a")],
                    ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "a" / "run")]):
        assert main(command) == 2
    assert list(tmp_path.iterdir()) == []


def test_budgets_can_be_cleared_and_settings_that_nothing_reads_are_refused(data_dir, tmp_path, capsys):
    flags = ["train", "--data", str(data_dir), "--out", str(tmp_path), "--quiet", "--batch-size", "16",
             "--eval-images", "16", *TINY_FLAGS]
    assert main([*flags, "--steps", "3", "--minutes", "0.0001"]) == 0
    assert json.loads((tmp_path / "train_summary.json").read_text())["stopped_by"] == "minutes"
    assert main([*flags, "--steps", "3", "--minutes", "none", "--resume"]) == 0
    assert airscene.load(tmp_path).step == 3
    assert main([*flags, "--vimco-samples", "8"]) == 2
    assert "setting vimco_samples = 8 is only read by --estimator vimco" in capsys.readouterr().err


def test_corrupt_and_bombed_idx_files_are_refused(tmp_path):
    import gzip

    from airscene.data import read_idx

    payload = gzip.compress(b"\x00\x00\x08\x01" + (1 << 30).to_bytes(4, "big") + b"\x00" * (1 << 22))
    damaged = bytearray(payload)
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "damaged.gz").write_bytes(bytes(damaged))
    with pytest.raises(AirsceneError, match="damaged.gz is a corrupt gzip archive"):
        read_idx(tmp_path / "damaged.gz")
    (tmp_path / "huge").write_bytes(b"\x00\x00\x08\x03" + (2**31).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big"))
    with pytest.raises(AirsceneError, match="needs 18446744073709551616"):  # 2**64: no overflow
        read_idx(tmp_path / "huge")


# --- nothing of anyone else's is written ---------------------------------------------------------------

def test_training_never_writes_into_a_folder_that_is_not_a_run(data_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "events").write_text("my events")
    (folder / "config.json").write_text("my config")
    (folder / "metrics.jsonl").write_text("my metrics")
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    for command in (["train", "--data", str(data_dir)], ["graphics", "train", "--renderer", "torch"]):
        assert main([*command, "--out", str(folder), "--quiet", "--steps", "1"]) == 2
        error = capsys.readouterr().err
        assert f"run directory {folder} holds files that airscene did not write (config.json, metrics.jsonl, " \
               "tensorboard): airscene writes only into a new or empty folder" in error and error.count("\n") == 1
    assert main(["train", "--data", str(data_dir), "--out", str(folder), "--quiet", "--seeds", "0,1"]) == 2
    assert f"seeds directory {folder} holds files that airscene did not write" in capsys.readouterr().err
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before
    assert (folder / "config.json").read_text() == "my config" and (folder / "metrics.jsonl").read_text() == "my metrics"
    assert (folder / "tensorboard" / "events").read_text() == "my events"
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")  # a checkpoint of someone else's makes no run
    assert main(["train", "--data", str(data_dir), "--out", str(folder), "--quiet", "--resume"]) == 2
    assert "is truncated or not an airscene checkpoint" in capsys.readouterr().err
    assert (folder / "config.json").read_text() == "my config" and not (folder / ".lock").exists()


def test_resuming_to_a_step_the_run_has_passed_is_refused_and_changes_nothing(data_dir, tmp_path, capsys):
    train(tiny_config(data_dir, steps=6), tmp_path / "run", progress=False)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--quiet", "--resume", "--steps", "3"]) == 2
    assert "the run is at step 6, past --steps 3: resume with --steps above 6" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved


def test_a_run_from_before_the_marker_still_resumes(data_dir, tmp_path):
    from airscene.rundir import RUN_MARKER

    train(tiny_config(data_dir, steps=5), tmp_path / "run", progress=False)
    (tmp_path / "run" / RUN_MARKER).unlink()  # as a run written by an earlier airscene
    train(tiny_config(data_dir, steps=10), tmp_path / "run", resume=True, progress=False)
    assert airscene.load(tmp_path / "run").step == 10 and (tmp_path / "run" / RUN_MARKER).is_file()


def test_nothing_is_written_beside_a_checkpoint_copied_into_a_folder_of_ones_own(data_dir, tmp_path, capsys):
    """A checkpoint alone does not make a run directory: results go only into a folder training made (its marker),
    or a run from before the marker (its config and records beside the checkpoint)."""
    train(tiny_config(data_dir, steps=5), tmp_path / "run", progress=False)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "figure.png").write_text("my figure")
    (folder / "checkpoint.pt").write_bytes((tmp_path / "run" / "checkpoint.pt").read_bytes())
    for command in (["eval", str(folder)], ["eval", str(folder / "checkpoint.pt")], ["viz", str(folder)],
                    ["gradvar", str(folder)]):
        assert main(command) == 2
        assert "is not a run directory airscene made" in capsys.readouterr().err
    assert main(["train", "--data", str(data_dir), "--out", str(folder), "--quiet", "--resume"]) == 2
    assert "holds files that airscene did not write" in capsys.readouterr().err
    assert sorted(entry.name for entry in folder.iterdir()) == ["checkpoint.pt", "figure.png"]
    assert (folder / "figure.png").read_text() == "my figure"
    assert main(["eval", str(tmp_path / "run" / "checkpoint.pt"), "--samples", "2"]) == 0  # the run itself


def test_resume_refuses_a_config_file_it_would_not_read(data_dir, tmp_path, capsys):
    train(tiny_config(data_dir, steps=5), tmp_path, progress=False)
    (tmp_path / "other.json").write_text(json.dumps({"train": {"learning_rate": 0.5}}))
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path), "--quiet", "--resume", "--config",
                 str(tmp_path / "other.json")]) == 2
    assert "is not read when resuming" in capsys.readouterr().err
    assert airscene.load(tmp_path).step == 5


def test_a_rename_that_fails_leaves_no_temporaries(tmp_path):
    from airscene.storage import write_text

    (tmp_path / "taken").mkdir()  # a folder where the file would go: the rename fails
    with pytest.raises(AirsceneError, match="cannot write file .*taken"):
        write_text(tmp_path / "taken", "text")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]


def test_names_that_look_like_airscenes_do_not_make_a_folder_its_own(data_dir, tmp_path, capsys):
    for name, text in ((".airscene-run", "precious"), (".lock", "my precious lock")):
        folder = tmp_path / name.strip(".")
        folder.mkdir()
        (folder / name).write_text(text)
        assert main(["train", "--data", str(data_dir), "--out", str(folder), "--quiet", "--steps", "1"]) == 2
        assert "holds files that airscene did not write" in capsys.readouterr().err
        assert main(["data", "sprites", "--out", str(folder), "--train", "8", "--test", "8", "--force"]) == 2
        assert "holds files that are not an airscene data set" in capsys.readouterr().err
        assert (folder / name).read_text() == text
    seeds = tmp_path / "seeds"
    (seeds / "seed-1").mkdir(parents=True)
    (seeds / "seeds.json").write_text("mine")
    assert main(["train", "--data", str(data_dir), "--out", str(seeds), "--quiet", "--seeds", "1,2"]) == 2
    assert (seeds / "seeds.json").read_text() == "mine" and sorted(p.name for p in seeds.iterdir()) == ["seed-1", "seeds.json"]
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "dataset.json").write_text('{"hello": 1}')
    assert main(["data", "sprites", "--out", str(fake), "--train", "8", "--test", "8", "--force"]) == 2
    assert "holds files that are not an airscene data set" in capsys.readouterr().err


def test_no_command_writes_inside_what_it_reads(data_dir, tmp_path, capsys):
    assert main(["train", "--data", str(data_dir), "--out", str(data_dir / "run"), "--quiet", "--steps", "1"]) == 2
    assert "--out " + str(data_dir / "run") + " is where this command reads from" in capsys.readouterr().err
    assert main(["data", "preview", str(data_dir), "--out", str(data_dir / "preview.png")]) == 2
    assert "is where this command reads from" in capsys.readouterr().err
    train(tiny_config(data_dir, steps=2), tmp_path / "run", progress=False)
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.fromarray(load_dataset(data_dir)[1].images[0]).save(tmp_path / "images" / "a.png")
    for flags in (["--draw", str(tmp_path / "run")], ["--out", str(tmp_path / "run" / "config.json"), "--force"]):
        assert main(["infer", str(tmp_path / "run"), str(tmp_path / "images"), *flags]) == 2
        assert "is where this command reads from" in capsys.readouterr().err
    assert not (tmp_path / "run" / "a.png").exists() and not (data_dir / "run").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 2


def test_a_skipped_step_changes_nothing_the_next_step_reads(data_dir, tmp_path, monkeypatch):
    from airscene.estimators.nvil import NVIL
    from airscene.runs import train_step
    from airscene.train import AIRJob

    config = tiny_config(data_dir, steps=5)
    config.train.estimator = "nvil"
    train_set, test_set, _ = load_dataset(data_dir)
    from airscene.train import fit_model_to_data

    fit_model_to_data(config, train_set, test_set)
    job = AIRJob(config, train_set, test_set, torch.device("cpu"))
    train_step(job, 0, job.model, job.estimator)  # one real step, so that Adam has moments to keep
    before = {"model": {k: v.clone() for k, v in job.model.state_dict().items()},
              "estimator": {k: v.clone() for k, v in job.estimator.state_dict().items()},
              "adam": [v.clone() for state in job.optimiser.state.values() for v in state.values()]}
    original = NVIL.forward
    monkeypatch.setattr(NVIL, "forward", lambda self, model, trace: (lambda loss, stats: (loss * float("nan"), stats))(
        *original(self, model, trace)))
    statistics = train_step(job, 1, job.model, job.estimator)
    assert statistics["skipped"].item() == 1
    assert all(torch.equal(v, before["model"][k]) for k, v in job.model.state_dict().items())
    assert all(torch.equal(v, before["estimator"][k]) for k, v in job.estimator.state_dict().items())
    assert all(torch.equal(v, w) for v, w in zip((v for s in job.optimiser.state.values() for v in s.values()),
                                                  before["adam"]))


def test_outputs_are_as_readable_as_the_umask_allows_and_a_file_is_no_folder(tmp_path):
    import os

    from airscene.errors import AirsceneError
    from airscene.storage import check_writable, write_text

    write_text(tmp_path / "out.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    (tmp_path / "file").write_text("mine")
    with pytest.raises(AirsceneError, match="file is a file, not a folder"):
        check_writable(tmp_path / "file" / "inside", "figure directory")
    assert (tmp_path / "file").read_text() == "mine"
