"""The base class of every licrt codec model, and the one walk of its schedule.

A codec subclasses :class:`HyperpriorCodec`, supplies its networks through
five hooks and declares its :class:`~licrt.runtime.schedule.CodingSchedule`
once. :meth:`HyperpriorCodec.walk_schedule` then serves all three uses of
that declaration:

* training (:meth:`forward`): straight-through rounding for ŷ, noise for the rate;
* the PyTorch reference coder (:meth:`reference`): exact rounding, symbols in
  the runtime's order, −log2 p per pass;
* export (:meth:`stage_modules`): one graph per stage and per step, fed with
  the tensors :meth:`reference` records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from licrt.runtime.manifest import Padding
from licrt.runtime.schedule import ContextStep, CodingSchedule

from .entropy_models import add_uniform_noise, gaussian_likelihood, ste_round


@dataclass
class ReferenceResult:
    """What the PyTorch reference coder produced for one image."""

    x_hat: torch.Tensor
    #: Symbols per pass (ẑ first, then each step), flattened in the runtime's order.
    symbols: list[np.ndarray]
    #: −Σ log2 p per pass under the model's continuous likelihoods.
    bits: list[float]
    #: Inputs and outputs of every stage, by stage name (filled on request).
    stages: dict[str, tuple[dict, dict]] = field(default_factory=dict)


class HyperpriorCodec(nn.Module, ABC):
    """x ─g_a─► y ─h_a─► z;  ẑ ─h_s─► sources;  ŷ coded by the schedule;  ŷ ─g_s─► x̂.

    Subclasses set :attr:`schedule`, :attr:`z_prior` (with ``likelihood`` and
    ``tables``) and implement the hooks below. Images are RGB in [0, 1].
    """

    #: Total downsampling from x to z.
    stride: int = 64
    #: How the runtime pads images up to a bucket.
    padding: Padding = Padding("replicate", "top-left")
    #: How ŷ relates to its symbols (see ``licrt.runtime.manifest.Y_QUANTIZATIONS``).
    y_quantization: str = "mean-shift"
    schedule: CodingSchedule
    z_prior: nn.Module

    @abstractmethod
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """g_a: image (B, 3, H, W) in [0, 1] → y."""

    @abstractmethod
    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        """h_a: y → z."""

    @abstractmethod
    def hyper_synthesis(self, z_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """h_s: ẑ → the schedule's source tensors, by name."""

    @abstractmethod
    def context_step(self, step: ContextStep, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step: reads ``step.reads`` from state; returns scales, means and ``step.writes``."""

    @abstractmethod
    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """g_s: ŷ → image in [0, 1] (unclamped)."""

    def walk_schedule(
        self,
        y: torch.Tensor,
        sources: dict[str, torch.Tensor],
        quantize: Callable[[torch.Tensor], torch.Tensor],
        visit: Callable[[ContextStep, dict, dict, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Build ŷ pass by pass, as the runtime does.

        Args:
            y: The latent (B, M, h, w).
            sources: The hyper decoder's outputs.
            quantize: Rounding used for ŷ = quantize(y − μ) + μ.
            visit: Called after each step with (step, graph inputs, graph
                outputs, position mask).

        Returns:
            ŷ, and the scales and means of every element of y.
        """
        state = dict(sources)
        y_hat = torch.zeros_like(y)
        scales_all, means_all = torch.zeros_like(y), torch.zeros_like(y)
        for step in self.schedule.steps:
            state["y_hat"] = y_hat
            inputs = {name: state[name] for name in step.reads}
            outputs = self.context_step(step, inputs)
            state.update({name: outputs[name] for name in step.writes})
            mask = torch.from_numpy(step.position_mask(*y.shape[2:])).to(y.device)
            start, stop = step.channels
            scales, means = outputs["scales"], outputs["means"]
            coded = quantize(y[:, start:stop] - means) + means

            def place(values, into):
                merged = torch.where(mask, values, into[:, start:stop])
                return torch.cat([into[:, :start], merged, into[:, stop:]], dim=1)

            y_hat = place(coded, y_hat)
            scales_all, means_all = place(scales, scales_all), place(means, means_all)
            if visit is not None:
                visit(step, inputs, outputs, mask)
        return y_hat, scales_all, means_all

    def forward(self, x: torch.Tensor) -> dict:
        """Training pass: reconstruction and per-element likelihoods of y and z."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_likelihood = self.z_prior.likelihood(add_uniform_noise(z))
        sources = self.hyper_synthesis(ste_round(z))
        y_hat, scales, means = self.walk_schedule(y, sources, ste_round)
        y_likelihood = gaussian_likelihood(add_uniform_noise(y), scales, means)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_likelihood, "z": z_likelihood}}

    @torch.no_grad()
    def reference(self, x: torch.Tensor, record: bool = False) -> ReferenceResult:
        """Code one image (1, 3, H, W) exactly as the runtime does, in PyTorch."""
        stages: dict[str, tuple[dict, dict]] = {}
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_hat = torch.round(z)
        sources = self.hyper_synthesis(z_hat)
        symbols = [z_hat.flatten().to(torch.int32).cpu().numpy()]
        bits = [float(-torch.log2(self.z_prior.likelihood(z_hat)).sum())]

        def visit(step, inputs, outputs, mask):
            start, stop = step.channels
            means = outputs["means"]
            step_symbols = torch.round(y[:, start:stop] - means)[0][:, mask]
            likelihood = gaussian_likelihood(step_symbols + means[0][:, mask],
                                             outputs["scales"][0][:, mask], means[0][:, mask])
            symbols.append(step_symbols.flatten().to(torch.int32).cpu().numpy())
            bits.append(float(-torch.log2(likelihood).sum()))
            if record:
                stages[step.name] = (dict(inputs), {k: outputs[k] for k in ("scales", "means", *step.writes)})

        y_hat, _, _ = self.walk_schedule(y, sources, torch.round, visit)
        x_hat = self.synthesis(y_hat)
        if record:
            stages["g_a"] = ({"x": x}, {"y": y})
            stages["h_a"] = ({"y": y}, {"z": z})
            stages["h_s"] = ({"z_hat": z_hat}, sources)
            stages["g_s"] = ({"y_hat": y_hat}, {"x_hat": x_hat})
        return ReferenceResult(x_hat, symbols, bits, stages)

    def stage_modules(self) -> dict[str, nn.Module]:
        """One module per stage graph; each takes and returns tensors in graph order."""
        sources = self.schedule.sources
        modules = {
            "g_a": _Stage(self, lambda codec, x: codec.analysis(x)),
            "h_a": _Stage(self, lambda codec, y: codec.hyper_analysis(y)),
            "h_s": _Stage(self, lambda codec, z_hat: tuple(codec.hyper_synthesis(z_hat)[n] for n in sources)),
            "g_s": _Stage(self, lambda codec, y_hat: codec.synthesis(y_hat)),
        }
        for step in self.schedule.steps:
            modules[step.name] = _Stage(self, _step_function(step))
        return modules


def _step_function(step: ContextStep):
    def run(codec: HyperpriorCodec, *tensors):
        outputs = codec.context_step(step, dict(zip(step.reads, tensors)))
        return tuple(outputs[name] for name in ("scales", "means", *step.writes))

    return run


class _Stage(nn.Module):
    """One stage of a codec as a module of its own, for torch.onnx.export."""

    def __init__(self, codec: HyperpriorCodec, function):
        super().__init__()
        self.codec = codec
        self.function = function

    def forward(self, *tensors):
        return self.function(self.codec, *tensors)
