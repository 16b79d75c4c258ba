"""``manifest.json``: the contract between export and runtime.

A bundle is a directory::

    manifest.json        this file's content, described by :class:`Manifest`
    stages/*.onnx        static-shape stage graphs, one set per shape bucket
    stages/weights.bin   their weights, stored once for all buckets
    entropy/*.npz        coding tables (see :mod:`licrt.runtime.entropy`)

Every codec is a hyperprior model with the same stage roles; the tensor names
are the interface::

    x ─► g_a ─► y ─► h_a ─► z ──(code ẑ)──► z_hat ─► h_s ─► sources (e.g. hyper)
    y_hat (built by the coding schedule's steps) ─► g_s ─► x_hat

``x`` and ``x_hat`` are (1, 3, H, W) float32 RGB in [0, 1]; any normalisation a
codec wants happens inside its graphs. The runtime walks the schedule and
never needs to know which codec it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import BundleError
from .schedule import CodingSchedule

FORMAT = "licrt-bundle"
FORMAT_VERSION = 1

#: Graphs every bucket has besides one graph per context step.
TRANSFORM_STAGES = ("g_a", "h_a", "h_s", "g_s")
PADDING_MODES = ("replicate", "constant")
PADDING_ANCHORS = ("top-left", "center")
#: How ŷ relates to its symbols. ``mean-shift``: ŷ = round(y − μ) + μ, the
#: symbol is round(y − μ). ``integer``: ŷ = round(y), the symbol is ŷ − rint(μ),
#: coded with tables chosen by σ and by the fraction μ − rint(μ).
Y_QUANTIZATIONS = ("mean-shift", "integer")
#: Rounding of ẑ (and of ŷ with ``integer``): numpy's rint, or ⌊x + ½⌋.
ROUNDINGS = ("half-even", "half-up")


def _range(value) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> TensorSpec:
        return cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class StageGraph:
    """One static-shape ONNX graph and its inputs and outputs."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict) -> StageGraph:
        return cls(
            file=str(data["file"]),
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )


@dataclass(frozen=True)
class Bucket:
    """A padded image shape and the stage graphs exported for it."""

    height: int
    width: int
    stages: dict[str, StageGraph]

    @property
    def name(self) -> str:
        return f"{self.height}x{self.width}"

    def to_json(self) -> dict:
        return {
            "height": self.height,
            "width": self.width,
            "stages": {name: g.to_json() for name, g in self.stages.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Bucket:
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            stages={str(k): StageGraph.from_json(v) for k, v in data["stages"].items()},
        )


@dataclass(frozen=True)
class Padding:
    """How an image is padded up to its bucket: edge mode and where it sits."""

    mode: str = "replicate"
    anchor: str = "top-left"


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about a bundle.

    Args:
        codec: Codec id, e.g. ``s2c-hybrid-s``.
        config: The codec's hyperparameters (informational for the runtime).
        stride: Total downsampling from x to z; every bucket is a multiple of it.
        padding: How images are padded up to a bucket.
        buckets: Shape buckets, each with its stage graphs.
        schedule: The coding schedule for ŷ.
        z_tables, y_tables: Paths of the entropy tables inside the bundle.
        y_quantization: One of :data:`Y_QUANTIZATIONS`.
        precision: Numeric precision of the graphs (``fp32``).
        files: sha256 of every file in the bundle, by relative path.
        rounding: One of :data:`ROUNDINGS`.
        symbol_range: (low, high) that ẑ and ŷ are clamped to, if any.
    """

    codec: str
    config: dict
    stride: int
    padding: Padding
    buckets: tuple[Bucket, ...]
    schedule: CodingSchedule
    z_tables: str
    y_tables: str
    y_quantization: str
    precision: str
    files: dict[str, str]
    rounding: str = "half-even"
    symbol_range: tuple[int, int] | None = None

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "codec": {"id": self.codec, "config": self.config},
            "image": {
                "stride": self.stride,
                "padding": {"mode": self.padding.mode, "anchor": self.padding.anchor},
            },
            "buckets": [b.to_json() for b in self.buckets],
            "schedule": self.schedule.to_json(),
            "entropy": {
                "z": {"tables": self.z_tables},
                "y": {"tables": self.y_tables, "quantization": self.y_quantization},
                "rounding": self.rounding,
                "symbol_range": list(self.symbol_range) if self.symbol_range else None,
            },
            "precision": self.precision,
            "files": dict(sorted(self.files.items())),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str) -> Manifest:
        """Parse and validate manifest JSON.

        Raises:
            BundleError: the text is not a licrt manifest of a supported version,
                or it is internally inconsistent.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"manifest.json is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BundleError("manifest.json is not a licrt bundle manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is not supported by this licrt "
                f"(supports {FORMAT_VERSION}); re-export the bundle or upgrade licrt"
            )
        try:
            manifest = cls(
                codec=str(data["codec"]["id"]),
                config=dict(data["codec"]["config"]),
                stride=int(data["image"]["stride"]),
                padding=Padding(**data["image"]["padding"]),
                buckets=tuple(Bucket.from_json(b) for b in data["buckets"]),
                schedule=CodingSchedule.from_json(data["schedule"]),
                z_tables=str(data["entropy"]["z"]["tables"]),
                y_tables=str(data["entropy"]["y"]["tables"]),
                y_quantization=str(data["entropy"]["y"]["quantization"]),
                precision=str(data["precision"]),
                files={str(k): str(v) for k, v in data["files"].items()},
                rounding=str(data["entropy"].get("rounding", "half-even")),
                symbol_range=_range(data["entropy"].get("symbol_range")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"manifest.json is incomplete or malformed ({exc!r})") from None
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Check internal consistency. Raises :class:`BundleError`."""
        if self.padding.mode not in PADDING_MODES or self.padding.anchor not in PADDING_ANCHORS:
            raise BundleError(f"manifest.json: unknown padding rule {self.padding}")
        if self.rounding not in ROUNDINGS:
            raise BundleError(f"manifest.json: rounding {self.rounding!r} is not one of {', '.join(ROUNDINGS)}")
        if self.symbol_range is not None and self.symbol_range[0] >= self.symbol_range[1]:
            raise BundleError(f"manifest.json: empty symbol range {self.symbol_range}")
        if self.y_quantization not in Y_QUANTIZATIONS:
            raise BundleError(
                f"manifest.json: y quantization {self.y_quantization!r} is not supported "
                f"(supports {', '.join(Y_QUANTIZATIONS)})"
            )
        if not self.buckets:
            raise BundleError("manifest.json: the bundle has no shape buckets")
        for path in (self.z_tables, self.y_tables):
            if path not in self.files:
                raise BundleError(f"manifest.json: table file {path} is not listed in files")
        stage_names = set(TRANSFORM_STAGES) | {s.name for s in self.schedule.steps}
        for bucket in self.buckets:
            if bucket.height % self.stride or bucket.width % self.stride:
                raise BundleError(
                    f"manifest.json: bucket {bucket.name} is not a multiple of stride {self.stride}"
                )
            if set(bucket.stages) != stage_names:
                raise BundleError(
                    f"manifest.json: bucket {bucket.name} has stages "
                    f"{sorted(bucket.stages)}, expected {sorted(stage_names)}"
                )
            for graph in bucket.stages.values():
                if graph.file not in self.files:
                    raise BundleError(f"manifest.json: {graph.file} is not listed in files")
            self._check_stage_io(bucket)

    def _check_stage_io(self, bucket: Bucket) -> None:
        def names(specs):
            return [t.name for t in specs]

        expected = {
            "g_a": (["x"], ["y"]),
            "h_a": (["y"], ["z"]),
            "h_s": (["z_hat"], list(self.schedule.sources)),
            "g_s": (["y_hat"], ["x_hat"]),
        }
        for step in self.schedule.steps:
            expected[step.name] = (list(step.graph_inputs), list(step.graph_outputs))
        for name, (inputs, outputs) in expected.items():
            graph = bucket.stages[name]
            if sorted(names(graph.inputs)) != sorted(inputs) or sorted(
                names(graph.outputs)
            ) != sorted(outputs):
                raise BundleError(
                    f"manifest.json: stage {name} of bucket {bucket.name} has inputs "
                    f"{names(graph.inputs)} and outputs {names(graph.outputs)}; the "
                    f"schedule expects {inputs} and {outputs}"
                )
