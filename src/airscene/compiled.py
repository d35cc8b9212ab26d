"""--compile: a training step's forward pass and loss (and with them, through autograd, its backward) compiled by
torch.compile. Eagerly a step dispatches about a thousand small operators, each launched from Python; compiled,
they are fused into a few generated kernels (on this project's 2-core CPU a step takes about three quarters of
the eager time: README, "Where the compute is"). Mode reduce-overhead also replays the step as a CUDA graph on a
GPU, so the host launches one graph instead of every kernel. Inference compiles the same way
(infer.TrainedModel's compile): a model's fixed-shape describe, one image per call in about half the eager time.

The compiled step draws its random numbers with eager PyTorch's generators (inductor's fallback_random), so it
samples exactly what an eager step samples, and a run resumes bit for bit. Where torch cannot compile here (no
C++ compiler for the CPU's kernels, a device or Python that torch.compile does not support), one warning says
so and the step runs eagerly."""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import torch
import torch._functorch.config

from airscene.errors import AirsceneWarning, last_line

COMPILE_MODES = ("none", "default", "reduce-overhead")
# The backward compiled with the forward pass rather than at its first use (where torch has the setting).
EAGER_BACKWARD = ({"force_non_lazy_backward_lowering": True}
                  if hasattr(torch._functorch.config, "force_non_lazy_backward_lowering") else {})


class Compiled:
    """`function`, compiled in `mode` (one of COMPILE_MODES; "none" calls it as it is) for tensors on `device`.
    Compiled, it takes its float arguments (the schedules' values) as 0-d tensors, inputs rather than
    constants, so that one graph serves a whole run; eagerly, as the numbers they are. `task` names what runs
    eagerly where it cannot be compiled ("training", "inference"); `options`, inductor's, are added to the
    defaults."""

    def __init__(self, function: Callable, mode: str, device: torch.device, task: str = "training",
                 options: dict | None = None):
        if mode not in COMPILE_MODES:
            raise ValueError(f"mode must be one of {COMPILE_MODES}")
        self.function, self.device, self.task = function, device, task
        self.graphs = mode == "reduce-overhead" and device.type == "cuda"  # torch replays CUDA graphs only there
        self.compiled = None
        if mode != "none":
            unsupported = compile_unsupported(device)
            if unsupported:
                warn_eager(unsupported, task)
            else:
                self.compiled = torch.compile(function, options={"fallback_random": True, "triton.cudagraphs": self.graphs,
                                                                 **(options or {})})

    def __call__(self, *arguments):
        if self.compiled is None:
            return self.function(*arguments)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may now be reused
        inputs = [torch.full((), value, device=self.device) if isinstance(value, float) else
                  with_standard_strides(value) if isinstance(value, torch.Tensor) else value for value in arguments]
        generators = torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        try:
            # The backward compiles with the forward pass, so that a compile that fails fails here (a call without
            # gradients, which has none, is spared the patch's cost); the compiler's warnings of its own internals'
            # deprecations, which no user can act on, are not shown.
            with warnings.catch_warnings(), (torch._functorch.config.patch(**EAGER_BACKWARD) if torch.is_grad_enabled()
                                             else contextlib.nullcontext()):
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\._inductor")
                return self.compiled(*inputs)
        except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.InternalTorchDynamoError) as error:
            # A compile failed before the step ran: the step is taken eagerly, with the random numbers it
            # would have drawn, and so is every later one.
            warn_eager(f"torch.compile failed ({last_line(getattr(error, 'inner_exception', None) or error)})", self.task)
            self.compiled = None
            torch.set_rng_state(generators[0])
            if generators[1] is not None:
                torch.cuda.set_rng_state(generators[1], self.device)
            return self.function(*arguments)


def with_standard_strides(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor laid out as a new tensor of its shape is (a copy only where it is not): a compiled graph is
    kept for the strides it was traced with, so that equal shapes from inputs laid out otherwise (a grey image
    read from a channels-last RGB array) share one graph."""
    strides, step = [], 1
    for size in reversed(tensor.shape):
        strides.append(step)
        step *= size
    return tensor if tensor.stride() == tuple(reversed(strides)) else tensor.clone(memory_format=torch.contiguous_format)


def compile_unsupported(device: torch.device) -> str | None:
    """Why torch.compile cannot run here, or None (every PyTorch airscene installs with has it)."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    if device.type not in ("cpu", "cuda"):
        return f"torch.compile is not used on {device.type} devices here"
    return None


def warn_eager(reason: str, task: str) -> None:
    warnings.warn(f"--compile: {reason}; {task} runs eagerly (the same computation, not compiled)", AirsceneWarning,
                  stacklevel=3)

