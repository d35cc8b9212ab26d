"""The GPU table: training ms/step, time to 95% held-out count accuracy and inference speed, for two versions
of airscene side by side in one run (each a `src` folder: the code before a change and after it), through the
command line and the public API only, so that any version can be measured.

    git archive REV src | tar -x -C .before     # the earlier version's source, beside the current one
    python benchmarks/gpu.py --version before=.before/src --version after=src --device cuda --out results.json
    python benchmarks/gpu.py --version eager=src --version 'graphs=src --compile reduce-overhead' --device cuda

Each training runs in its own process (`airscene train` under PYTHONPATH=VERSION); ms/step is the time between
two training records past the first hundred steps (no evaluation or checkpoint in between); time to 95% is the
`seconds` of the first held-out evaluation at or above 95% (evaluating every 100 steps on 1,000 test scenes)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from versions import compile_mode, last_line, ms_per_step, parse_versions, time_to_accuracy  # noqa: E402


INFERENCE = textwrap.dedent("""
    import json, sys, time
    import torch
    import airscene
    from airscene.data import load_dataset
    run, data, device, mode = sys.argv[1:5]
    # versions from before compiled inference have no compile argument: it is passed only where asked for
    model = airscene.load(run, device=device) if mode == "none" else airscene.load(run, device=device, compile=mode)
    images = load_dataset(data)[1].images
    tensor = model.prepare(images)  # on the device: the batched figure is the model's, not the upload's
    def timed(call, repeats):
        call()
        if device.startswith("cuda"): torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter(); call()
            if device.startswith("cuda"): torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return best
    batched = {size: len(tensor) / timed(lambda: model.infer(tensor, batch_size=size), 5) for size in (1000, 10000)}
    single = timed(lambda: [model.infer(image[None]) for image in images[:200]], 3) / 200
    print(json.dumps({"images_per_second": batched, "single_image_ms": 1000 * single}))
""")


SYNCS = textwrap.dedent("""
    import sys, tempfile, warnings
    import torch
    from airscene.cli import main
    data, device, steps, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    if device.startswith("cuda"):
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["train", "--data", data, "--out", tempfile.mkdtemp() + "/run", "--device", device, "--steps", str(steps),
              "--log-every", str(steps), "--eval-every", str(10 * steps), "--checkpoint-every", str(10 * steps), "--quiet",
              *flags])
    print(sum("synchroniz" in str(warning.message) for warning in caught))
""")


def host_synchronisations(source: str, data: str, device: str, steps: int, *flags: str) -> int:
    """CUDA's count of the host waiting on the device in a whole run of `steps` steps (its start and end
    included), trained with `flags`."""
    return int(last_line(source, SYNCS, data, device, str(steps), *flags))


def synchronisations_per_step(source: str, data: str, device: str, *flags: str) -> float:
    """Per training step between records: the difference between runs of 120 and 20 steps, over 100."""
    runs = [host_synchronisations(source, data, device, steps, *flags) for steps in (20, 120)]
    return (runs[1] - runs[0]) / 100


def inference(source: str, run: str, data: str, device: str, flags: list[str]) -> dict:
    """Batched and one-image inference with the run's model, compiled as the version's --compile says."""
    return json.loads(last_line(source, INFERENCE, run, data, device, compile_mode(flags)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, help="NAME=SRC_FOLDER [--flag value ...] "
                        "(training flags, e.g. --compile reduce-overhead, which inference is loaded with too), once "
                        "per version")
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=400, help="training steps timed per setting")
    parser.add_argument("--minutes", type=float, default=0.75, help="budget of each time-to-95% run")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512], help="batch sizes to time")
    parser.add_argument("--out", default="benchmarks/out/gpu.json")
    parser.add_argument("--synchronisations", nargs="+", metavar="SETTINGS", help="only count the host "
                        "synchronisations per step of the last version, trained with each SETTINGS: NAME=VALUE pairs "
                        "joined by commas, e.g. model=grid,estimator=local ('default' for none)")
    args = parser.parse_args()
    if args.synchronisations:
        source = parse_versions(args.version[-1:]).popitem()[1][0]
        for settings in args.synchronisations:
            flags = [part for pair in settings.split(",") if "=" in pair for part in ("--" + pair.split("=")[0],
                                                                                    pair.split("=")[1])]
            print(json.dumps({"settings": settings, "per_step": synchronisations_per_step(source, args.data, args.device,
                                                                                          *flags)}), flush=True)
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for name, (source, flags) in parse_versions(args.version).items():
        result = results[name] = {}
        if args.device.startswith("cuda"):
            result["host_synchronisations_per_step"] = synchronisations_per_step(source, args.data, args.device, *flags)
        for batch in args.batches:
            result[f"step_ms_batch_{batch}"] = ms_per_step(source, args.data, args.device, batch, args.steps, *flags)
        result["step_ms_batch_64_bf16"] = ms_per_step(source, args.data, args.device, 64, args.steps, *flags,
                                                      "--precision", "bf16")
        for batch in args.batches:
            result[f"time_to_95_batch_{batch}"] = time_to_accuracy(source, args.data, args.device, batch, args.minutes,
                                                                   *flags)
        result["inference"] = inference(source, result[f"time_to_95_batch_{args.batches[-1]}"]["run"], args.data,
                                        args.device, flags)
        print(json.dumps({name: result}), flush=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
