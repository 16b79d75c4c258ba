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

from licrt.runtime.guard import grid_means
from licrt.runtime.manifest import Padding
from licrt.runtime.schedule import RASTER_POSITION, RASTER_ROW_INDEX, CodingSchedule, ContextStep
from licrt.runtime.tiling import ImageArea, extend_edges

from .entropy_models import SCALE_TABLE, add_uniform_noise, gaussian_likelihood, ste_round


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
    #: How ẑ and ŷ are rounded (``licrt.runtime.manifest.ROUNDINGS``), and their range if clamped.
    rounding: str = "half-even"
    symbol_range: tuple[int, int] | None = None
    #: A grid μ is put on before it is added to a symbol (``mean-shift`` only;
    #: see ``licrt.runtime.guard``). Off by default: on Kodak a grid of 1/16
    #: makes files 2.1 % larger, for robustness beyond the guard's ε only
    #: (bench/results/guard-mean-grid.json).
    mean_step: float | None = None
    #: Gaussian scales the ŷ coding tables are built for.
    scale_table: np.ndarray = SCALE_TABLE
    #: An ``integer`` codec's mean fraction slices: per_scale/σ of them, at most ``most`` (arguments of
    #: ``entropy_models.fraction_bins``).
    fraction_slices: tuple[float, int] = (8.0, 64)
    #: A mixture codec's weight grid (see ``licrt.runtime.guard.MixtureGuard``); None for one Gaussian per element.
    weight_grid: int | None = None
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

    def quantize_hyper(self, z: torch.Tensor) -> torch.Tensor:
        """ẑ at inference."""
        return torch.round(z)

    def quantize_latent(self, y: torch.Tensor, parameters: dict[str, torch.Tensor], exact: bool) -> torch.Tensor:
        """ŷ of the elements a step codes, given the step's entropy parameters: round(y − μ̂) + μ̂ with μ̂ on
        the mean grid, as the runtime codes it (straight-through, μ as it is, while training)."""
        means = parameters["means"]
        if not exact:
            return ste_round(y - means) + means
        if self.mean_step is not None:
            means = torch.from_numpy(grid_means(means.cpu().numpy(), self.mean_step)).to(means.device)
        return torch.round(y - means) + means

    def latent_symbols(self, y_hat: torch.Tensor, parameters: dict[str, torch.Tensor]) -> torch.Tensor:
        """The integers the runtime codes for ŷ (rounded: ŷ − μ is integral only up to float error)."""
        return torch.round(y_hat - parameters["means"])

    def latent_likelihood(self, y_hat: torch.Tensor, parameters: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's probability of each ŷ under the step's entropy parameters (at the same elements)."""
        return gaussian_likelihood(y_hat, parameters["scales"], parameters["means"])

    def initial_caches(self, step: ContextStep, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero caches of a raster step for a latent of y's shape (codecs with raster steps override)."""
        raise NotImplementedError(f"{type(self).__name__} declares no caches for raster step {step.name}")

    def walk_schedule(
        self,
        y: torch.Tensor,
        sources: dict[str, torch.Tensor],
        exact: bool,
        visit: Callable[[ContextStep, dict, dict, torch.Tensor], None] | None = None,
        in_image: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Build ŷ pass by pass, as the runtime does.

        Args:
            y: The latent (B, M, h, w).
            sources: The hyper decoder's outputs.
            exact: Round exactly (inference) rather than straight-through (training).
            visit: Called after each graph run with (step, graph inputs, graph
                outputs, index), where ``outputs`` also holds the run's ``y_hat``
                and ``outputs[name][0][index]`` are the coded elements in the
                runtime's order (channel-major).
            in_image: (h, w) mask of the positions coded, those whose pixels overlap the image (None: all);
                ŷ is zero elsewhere.

        Returns:
            ŷ, and the scales and means of every element of y (of the
            checkerboard and channel steps of a Gaussian codec; raster steps
            train with teacher forcing instead, mixture codecs with their own
            forward).
        """
        state = dict(sources)
        y_hat = torch.zeros_like(y)
        scales_all, means_all = torch.zeros_like(y), torch.zeros_like(y)
        for step in self.schedule.steps:
            state["y_hat"] = y_hat
            mask = step.position_mask(*y.shape[2:]) & (True if in_image is None else in_image)
            if step.raster:
                y_hat = self._walk_raster(step, mask, y, state, exact, visit)
                continue
            inputs = {name: state[name] for name in step.reads}
            outputs = self.context_step(step, inputs)
            state.update({name: outputs[name] for name in step.writes})
            mask = torch.from_numpy(mask).to(y.device)
            channels = slice(*step.channels)
            coded = self.quantize_latent(y[:, channels], outputs, exact)
            y_hat = _merge(y_hat, coded, channels, mask)
            if self.schedule.components == 1:
                scales_all = _merge(scales_all, outputs["scales"], channels, mask)
                means_all = _merge(means_all, outputs["means"], channels, mask)
            if visit is not None:
                visit(step, inputs, {**outputs, "y_hat": coded}, (slice(None), mask))
        return y_hat, scales_all, means_all

    def _walk_raster(self, step, mask, y, state, exact, visit) -> torch.Tensor:
        """One graph run per coded position (``mask``), in raster order, with the step's caches."""
        start, stop = step.channels
        width = y.shape[3]
        y_hat = state["y_hat"].clone()
        caches = self.initial_caches(step, y)
        # ŷ and the caches are updated in place: a run reads neither the position
        # it codes nor the cache row it returns, so its recorded inputs stay valid.
        for position in np.flatnonzero(mask).tolist():
            i, j = divmod(position, width)
            available = {**state, "y_hat": y_hat, RASTER_POSITION: torch.tensor([position]), **caches}
            inputs = {name: available[name] for name in step.graph_inputs}
            outputs = self.context_step(step, inputs)
            row = int(outputs[RASTER_ROW_INDEX][0])
            for name, cache in caches.items():
                cache[..., row, :] = outputs[f"{name}_row"]
            coded = self.quantize_latent(y[:, start:stop, i, j], outputs, exact)
            y_hat[:, start:stop, i, j] = coded
            if visit is not None:
                visit(step, inputs, {**outputs, "y_hat": coded}, slice(None))
        return y_hat

    def forward(self, x: torch.Tensor) -> dict:
        """Training pass: reconstruction and per-element likelihoods of y and z."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_likelihood = self.z_prior.likelihood(add_uniform_noise(z))
        sources = self.hyper_synthesis(ste_round(z))
        y_hat, scales, means = self.walk_schedule(y, sources, exact=False)
        y_likelihood = gaussian_likelihood(add_uniform_noise(y), scales, means)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_likelihood, "z": z_likelihood}}

    @torch.no_grad()
    def reference(self, x: torch.Tensor, record: bool = False, area: ImageArea | None = None) -> ReferenceResult:
        """Code one padded tile (1, 3, H, W) exactly as the runtime does, in PyTorch, the image lying in
        ``area`` of it (None: all of it)."""
        stages: dict[str, tuple[dict, dict]] = {}
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_coded = np.ones(z.shape[2:], bool) if area is None else area.latent_mask(*z.shape[2:])
        y_coded = None if area is None else area.latent_mask(*y.shape[2:])
        z_hat = self.quantize_hyper(z) * torch.from_numpy(z_coded).to(z.device)
        sources = self.hyper_synthesis(z_hat)
        symbols = [z_hat[0][:, z_coded].flatten().to(torch.int32).cpu().numpy()]
        bits = [float(-torch.log2(self.z_prior.likelihood(z_hat)[0][:, z_coded]).sum())]

        step_symbols: dict[str, list[np.ndarray]] = {s.name: [] for s in self.schedule.steps}
        step_bits = dict.fromkeys(step_symbols, 0.0)

        def visit(step, inputs, outputs, index):
            coded = outputs["y_hat"][0][index]
            parameters = {name: outputs[name][0][index] for name in self.schedule.parameters}
            symbols = self.latent_symbols(coded, parameters).flatten().to(torch.int32)
            step_symbols[step.name].append(symbols.cpu().numpy())
            step_bits[step.name] += float(-torch.log2(self.latent_likelihood(coded, parameters)).sum())
            if record:  # a raster step keeps its last run: the one with full caches
                names = step.graph_outputs(self.schedule.parameters)
                stages[step.name] = (dict(inputs), {name: outputs[name] for name in names})

        y_hat, _, _ = self.walk_schedule(y, sources, exact=True, visit=visit, in_image=y_coded)
        symbols += [np.concatenate(step_symbols[name]) for name in step_symbols]
        bits += list(step_bits.values())
        if y_coded is not None:
            y_hat = torch.from_numpy(extend_edges(y_hat.cpu().numpy(), y_coded)).to(y_hat.device)
        x_hat = self.synthesis(y_hat)
        if record:
            stages["g_a"] = ({"x": x}, {"y": y})
            stages["h_a"] = ({"y": y}, {"z": z})
            stages["h_s"] = ({"z_hat": z_hat}, sources)
            stages["g_s"] = ({"y_hat": y_hat}, {"x_hat": x_hat})
        return ReferenceResult(x_hat, symbols, bits, stages)

    def graph_forms(self) -> dict[str, Callable]:
        """Forms of the transforms that export faster graphs, by stage name (``g_a``, ``h_a``, ``h_s``,
        ``g_s``); each computes what the method it stands for computes (same arguments and results) in another
        order or layout. Export checks every graph against the PyTorch methods."""
        return {}

    def stage_modules(self, exported: bool = False) -> dict[str, nn.Module]:
        """One module per stage graph; each takes and returns tensors in graph order.

        Args:
            exported: Use the :meth:`graph_forms` (for ONNX export); the
                PyTorch methods otherwise (the torch backend).
        """
        sources = self.schedule.sources
        forms = {"g_a": type(self).analysis, "h_a": type(self).hyper_analysis,
                 "h_s": type(self).hyper_synthesis, "g_s": type(self).synthesis}
        if exported:
            forms.update(self.graph_forms())
        hyper_synthesis = forms["h_s"]
        modules = {
            "g_a": _Stage(self, forms["g_a"]),
            "h_a": _Stage(self, forms["h_a"]),
            "h_s": _Stage(self, lambda codec, z_hat: tuple(hyper_synthesis(codec, z_hat)[n] for n in sources)),
            "g_s": _Stage(self, forms["g_s"]),
        }
        for step in self.schedule.steps:
            modules[step.name] = _Stage(self, _step_function(step))
        return modules


class TransformModules:
    """The four transforms of a :class:`HyperpriorCodec` as its modules ``g_a``, ``h_a``, ``h_s`` (one source,
    ``hyper``) and ``g_s``, for codecs that hold them so (mix in before HyperpriorCodec)."""

    def analysis(self, x):
        return self.g_a(x)

    def hyper_analysis(self, y):
        return self.h_a(y)

    def hyper_synthesis(self, z_hat):
        return {"hyper": self.h_s(z_hat)}

    def synthesis(self, y_hat):
        return self.g_s(y_hat)


def _merge(into: torch.Tensor, values: torch.Tensor, channels: slice, mask: torch.Tensor) -> torch.Tensor:
    """into with values written at (channels × mask), without in-place ops (autograd-safe)."""
    merged = torch.where(mask, values, into[:, channels])
    return torch.cat([into[:, : channels.start], merged, into[:, channels.stop :]], dim=1)


def _step_function(step: ContextStep):
    def run(codec: HyperpriorCodec, *tensors):
        outputs = codec.context_step(step, dict(zip(step.graph_inputs, tensors, strict=True)))
        return tuple(outputs[name] for name in step.graph_outputs(codec.schedule.parameters))

    return run


class _Stage(nn.Module):
    """One stage of a codec as a module of its own, for torch.onnx.export."""

    def __init__(self, codec: HyperpriorCodec, function):
        super().__init__()
        self.codec = codec
        self.function = function

    def forward(self, *tensors):
        return self.function(self.codec, *tensors)
