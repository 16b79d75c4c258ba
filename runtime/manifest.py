"""``manifest.json``: the contract between export and runtime.

A bundle is a directory::

    manifest.json              this file's content, described by :class:`Manifest`
    stages/*.onnx              static-shape stage graphs, one set per shape bucket
    levels/NAME/transforms.bin the weights of g_a, h_a and g_s at one quality
                               level, stored once for all buckets, at the same
                               offsets in every level (so all levels share the graphs)
    levels/NAME/entropy.bin    the same for the entropy-parameter path: h_s and
                               the context steps
    levels/NAME/z.npz          the level's ẑ coding tables
    levels/NAME/params.npz     the level's model parameters that no graph holds by
                               name (with the graphs' named weights, the PyTorch
                               model; the runtime never reads it)
    entropy/y.npz              ŷ coding tables, shared by all levels
                               (see :mod:`licrt.runtime.entropy`)

Every codec is a hyperprior model with the same stage roles; the tensor names
are the interface::

    x ─► g_a ─► y ─► h_a ─► z ──(code ẑ)──► z_hat ─► h_s ─► sources (e.g. hyper)
    y_hat (built by the coding schedule's steps) ─► g_s ─► x_hat

``x`` and ``x_hat`` are (1, 3, H, W) float32 RGB in [0, 1]; any normalisation a
codec wants happens inside its graphs. The runtime walks the schedule and
never needs to know which codec it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

from .entropy import ESCAPE_LIMIT
from .errors import BundleError
from .json_fields import Field, parse_json
from .schedule import NAME, RASTER_POSITION, RASTER_ROW_INDEX, CodingSchedule

FORMAT = "licrt-bundle"
FORMAT_VERSION = 4

#: Graphs every bucket has besides one graph per context step.
TRANSFORM_STAGES = ("g_a", "h_a", "h_s", "g_s")
#: Stages whose floats decide no symbol: g_a and h_a run on the encoder only
#: and their outputs are coded, g_s runs once the symbols are decoded. They may
#: differ between bundles that decode each other's files (another precision);
#: the entropy-parameter path, h_s and the context steps, may not.
FREE_STAGES = ("g_a", "h_a", "g_s")
PADDING_MODES = ("replicate", "constant")
PADDING_ANCHORS = ("top-left", "center")
#: How ŷ relates to its symbols. ``mean-shift``: ŷ = round(y − μ) + μ, the
#: symbol is round(y − μ). ``integer``: ŷ = round(y), the symbol is ŷ − rint(μ),
#: coded with tables chosen by σ and by the fraction μ − rint(μ).
Y_QUANTIZATIONS = ("mean-shift", "integer")
#: Rounding of ẑ (and of ŷ with ``integer``): numpy's rint, or ⌊x + ½⌋.
ROUNDINGS = ("half-even", "half-up")
#: Precisions a stage graph may compute in (float32 unless the manifest names another).
PRECISIONS = ("fp32", "fp16", "int8")
#: A mean-shift codec's mean grid is 2⁻ᵏ for k in this range (a power of two keeps μ/step exact).
MEAN_STEP_EXPONENTS = range(0, 11)
#: The guard (see :mod:`licrt.runtime.guard`): ε, the relative difference
#: between backends' stage outputs it covers, and the margin for how such
#: differences grow on their way to a coding decision. Export writes the
#: defaults unless told otherwise: ε covers the largest difference measured
#: between backends, the margin its growth through h_s and the context graphs
#: (see README, "Decoding anywhere").
MAX_GUARD_EPSILON = 1e-3
MAX_GUARD_MARGIN = 100.0
GUARD_EPSILON = 1e-5
GUARD_MARGIN = 3.0
DTYPES = ("float32", "int64")

#: Bounds on what a manifest may declare, so that a hostile one is refused
#: before it costs memory or time. Each is far beyond any real bundle.
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_STRIDE = 1024
#: A file's bucket index and quality level are one byte each.
MAX_BUCKETS = 255
MAX_LEVELS = 255
MAX_BUCKET_SIDE = 2**15
MAX_BUCKET_PIXELS = 2**26
MAX_TENSOR_RANK = 8
MAX_TENSOR_ELEMENTS = 2**28
MAX_TENSORS_PER_GRAPH = 64
MAX_STAGES = 4 + 1024
MAX_FILES = 4096
MAX_WEIGHT_GRID = 2**16
#: A bundle file's path: relative, POSIX separators, no ``..`` (checked when opened).
FILE_PATH = r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"
SHA256 = r"[0-9a-f]{64}"
LEVEL_NAME = r"[A-Za-z0-9_.-]{1,32}"
#: The files of a quality level, in its directory; the graphs name their weights file.
LEVEL_TRANSFORM_WEIGHTS, LEVEL_ENTROPY_WEIGHTS = "transforms.bin", "entropy.bin"
LEVEL_Z_TABLES, LEVEL_PARAMETERS = "z.npz", "params.npz"
CODEC_ID = r"[A-Za-z0-9_.-]{1,64}"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @classmethod
    def from_json(cls, field: Field) -> TensorSpec:
        dims = field["shape"].list(MAX_TENSOR_RANK, min_items=1)
        spec = cls(field["name"].str(NAME), tuple(d.int(1, MAX_TENSOR_ELEMENTS) for d in dims),
                   field["dtype"].str(choices=DTYPES))
        if spec.elements > MAX_TENSOR_ELEMENTS:
            raise field["shape"].error(f"has {spec.elements:,} elements, more than {MAX_TENSOR_ELEMENTS:,}")
        return spec


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

    def input(self, name: str) -> TensorSpec:
        return next(spec for spec in self.inputs if spec.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(spec for spec in self.outputs if spec.name == name)

    @classmethod
    def from_json(cls, field: Field) -> StageGraph:
        def specs(key: str) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec.from_json(t) for t in field[key].list(MAX_TENSORS_PER_GRAPH, min_items=1))

        return cls(file=field["file"].str(FILE_PATH), inputs=specs("inputs"), outputs=specs("outputs"))


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
    def from_json(cls, field: Field, stride: int) -> Bucket:
        height, width = (field[side].int(stride, MAX_BUCKET_SIDE) for side in ("height", "width"))
        if height * width > MAX_BUCKET_PIXELS:
            raise field.error(f"is {height}x{width}, more than {MAX_BUCKET_PIXELS:,} pixels")
        if height % stride or width % stride:
            raise field.error(f"is {height}x{width}, not a multiple of stride {stride}")
        stages = {name: StageGraph.from_json(graph) for name, graph in field["stages"].items(MAX_STAGES)}
        return cls(height=height, width=width, stages=stages)


@dataclass(frozen=True)
class Level:
    """A quality level: the weights all stage graphs run with, and the ẑ tables that go with them."""

    name: str
    directory: str

    @property
    def transform_weights(self) -> str:
        """Weights of the free stages (:data:`FREE_STAGES`)."""
        return f"{self.directory}/{LEVEL_TRANSFORM_WEIGHTS}"

    @property
    def entropy_weights(self) -> str:
        """Weights of the entropy-parameter path: h_s and the context steps."""
        return f"{self.directory}/{LEVEL_ENTROPY_WEIGHTS}"

    @property
    def weights(self) -> tuple[str, str]:
        return self.transform_weights, self.entropy_weights

    @property
    def z_tables(self) -> str:
        return f"{self.directory}/{LEVEL_Z_TABLES}"

    @property
    def parameters(self) -> str:
        return f"{self.directory}/{LEVEL_PARAMETERS}"

    def to_json(self) -> dict:
        return {"name": self.name, "directory": self.directory}

    @classmethod
    def from_json(cls, field: Field) -> Level:
        return cls(field["name"].str(LEVEL_NAME), field["directory"].str(FILE_PATH))


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
        levels: Quality levels, from the lowest rate to the highest.
        default_level: Index of the level used when none is asked for.
        y_tables: Path of the ŷ entropy tables inside the bundle.
        y_quantization: One of :data:`Y_QUANTIZATIONS`.
        precision: The stages that compute in another precision than float32, by name (e.g. ``int8`` for
            g_a and g_s in a calibrated bundle).
        files: sha256 of every file in the bundle, by relative path.
        rounding: One of :data:`ROUNDINGS`.
        symbol_range: (low, high) that ẑ and ŷ are clamped to, if any.
        mean_step: The grid of μ for ``mean-shift`` (None: μ as computed).
        weight_grid: How many steps a mixture codec's weights are decided on (None: no mixture; see
            :class:`~licrt.runtime.guard.MixtureGuard`).
        guard_epsilon: The relative difference between backends' stage outputs the guard covers.
        guard_margin: Decisions within ``guard_epsilon × guard_margin`` of a boundary are recorded.
    """

    codec: str
    config: dict
    stride: int
    padding: Padding
    buckets: tuple[Bucket, ...]
    schedule: CodingSchedule
    levels: tuple[Level, ...]
    default_level: int
    y_tables: str
    y_quantization: str
    precision: dict[str, str]
    files: dict[str, str]
    rounding: str = "half-even"
    symbol_range: tuple[int, int] | None = None
    mean_step: float | None = None
    weight_grid: int | None = None
    guard_epsilon: float = 0.0
    guard_margin: float = 1.0

    @property
    def guard_tolerance(self) -> float:
        """The guard's band around every decision boundary, relative."""
        return self.guard_epsilon * self.guard_margin

    @property
    def reduced_precision(self) -> str:
        """The stages not in float32 with their precision, e.g. ``g_a int8, g_s int8`` (empty: none)."""
        return ", ".join(f"{stage} {value}" for stage, value in sorted(self.precision.items()))

    def coding_contract(self) -> bytes:
        """8 bytes naming everything that decides how a file's symbols are coded: the bucket shapes and padding,
        the schedule, quantisation, rounding and guard, the ẑ and ŷ tables, and the entropy-parameter path's
        graphs and weights at every level (by their sha256 in :attr:`files`).

        A file records its encoder's contract; any bundle with the same contract
        decodes it, whatever its free stages (:data:`FREE_STAGES`) compute in.
        """
        coded = self.to_json()
        entropy = {**coded["entropy"], "y": {**coded["entropy"]["y"], "tables": self.files[self.y_tables]}}
        terms = {
            "codec": self.codec,
            "image": coded["image"],
            "schedule": coded["schedule"],
            "entropy": entropy,
            "levels": [[level.name, self.files[level.z_tables], self.files[level.entropy_weights]]
                       for level in self.levels],
            "buckets": [[bucket.height, bucket.width,
                         {name: {**graph.to_json(), "file": self.files[graph.file]}
                          for name, graph in bucket.stages.items() if name not in FREE_STAGES}]
                        for bucket in self.buckets],
        }
        return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).digest()[:8]

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
            "levels": [level.to_json() for level in self.levels],
            "default_level": self.default_level,
            "entropy": {
                "y": {"tables": self.y_tables, "quantization": self.y_quantization, "mean_step": self.mean_step,
                      **({"weight_grid": self.weight_grid} if self.weight_grid is not None else {})},
                "guard": {"epsilon": self.guard_epsilon, "margin": self.guard_margin},
                "rounding": self.rounding,
                "symbol_range": list(self.symbol_range) if self.symbol_range else None,
            },
            "precision": dict(sorted(self.precision.items())),
            "files": dict(sorted(self.files.items())),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str) -> Manifest:
        """Parse and validate manifest JSON, every field typed and bounded.

        Raises:
            BundleError: the text is not a licrt manifest of a supported version,
                a field is missing, of the wrong type or out of range (the
                message names it), or the manifest is internally inconsistent.
        """
        root = parse_json(text, "manifest.json")
        if not isinstance(root.value, dict) or root.value.get("format") != FORMAT:
            raise BundleError("manifest.json is not a licrt bundle manifest")
        version = root.value.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {str(version)[:20]} is not supported by this licrt "
                f"(supports {FORMAT_VERSION}); re-export the bundle or upgrade licrt"
            )
        image, entropy = root["image"], root["entropy"]
        stride = image["stride"].int(1, MAX_STRIDE)
        symbol_range = None
        if entropy.get("symbol_range").value is not None:
            low, high = entropy["symbol_range"].list(max_items=2, min_items=2)
            symbol_range = (low.int(-ESCAPE_LIMIT, ESCAPE_LIMIT), high.int(-ESCAPE_LIMIT, ESCAPE_LIMIT))
        schedule = CodingSchedule.from_json(root["schedule"])
        mean_step = entropy["y"]["mean_step"]
        mean_step = None if mean_step.value is None else mean_step.float(2.0 ** -MEAN_STEP_EXPONENTS[-1], 1.0)
        weight_grid = entropy["y"].get("weight_grid")
        root["codec"]["config"].items(max_items=256)  # informational, but an object
        levels = tuple(Level.from_json(level) for level in root["levels"].list(MAX_LEVELS, min_items=1))
        manifest = cls(
            codec=root["codec"]["id"].str(CODEC_ID),
            config=root["codec"]["config"].value,
            stride=stride,
            padding=Padding(
                mode=image["padding"]["mode"].str(choices=PADDING_MODES),
                anchor=image["padding"]["anchor"].str(choices=PADDING_ANCHORS),
            ),
            buckets=tuple(Bucket.from_json(b, stride) for b in root["buckets"].list(MAX_BUCKETS, min_items=1)),
            schedule=schedule,
            levels=levels,
            default_level=root["default_level"].int(0, len(levels) - 1),
            y_tables=entropy["y"]["tables"].str(FILE_PATH),
            y_quantization=entropy["y"]["quantization"].str(choices=Y_QUANTIZATIONS),
            precision={stage: value.str(choices=PRECISIONS)
                       for stage, value in root["precision"].items(MAX_STAGES)},
            files={path: digest.str(SHA256) for path, digest in root["files"].items(MAX_FILES)},
            rounding=entropy.get("rounding", "half-even").str(choices=ROUNDINGS),
            symbol_range=symbol_range,
            mean_step=mean_step,
            weight_grid=None if weight_grid.value is None else weight_grid.int(1, MAX_WEIGHT_GRID),
            guard_epsilon=entropy["guard"]["epsilon"].float(0.0, MAX_GUARD_EPSILON),
            guard_margin=entropy["guard"]["margin"].float(1.0, MAX_GUARD_MARGIN),
        )
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Check internal consistency. Raises :class:`BundleError`."""
        if self.symbol_range is not None and self.symbol_range[0] >= self.symbol_range[1]:
            raise BundleError(f"manifest.json: empty symbol range {self.symbol_range}")
        if self.mean_step is not None and (self.y_quantization != "mean-shift" or math.log2(self.mean_step) not in
                                           [-k for k in MEAN_STEP_EXPONENTS]):
            raise BundleError(f"manifest.json: a mean grid ({self.mean_step:g}) needs mean-shift quantization and "
                              f"a power of two from 2^-{MEAN_STEP_EXPONENTS[-1]} to 1")
        if self.schedule.components > 1 and self.y_quantization != "integer":
            raise BundleError("manifest.json: a mixture codec's components are coded as an integer codec's; "
                              f"its quantization is {self.y_quantization!r}")
        if (self.schedule.components > 1) != (self.weight_grid is not None):
            raise BundleError("manifest.json: entropy.y.weight_grid is given for a mixture codec, and only for one "
                              "(bundles exported by licrt 0.7 lack it: export them again)")
        for path in self.files:
            if not re.fullmatch(FILE_PATH, path) or ".." in path.split("/"):
                raise BundleError(f"manifest.json: files names {path[:80]!r}, a path that is not relative or leads "
                                  "outside the bundle")
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names) or len({level.directory for level in self.levels}) != len(names):
            raise BundleError("manifest.json: two quality levels share a name or a directory")
        level_files = (p for level in self.levels for p in (*level.weights, level.z_tables, level.parameters))
        for path in (self.y_tables, *level_files):
            if path not in self.files:
                raise BundleError(f"manifest.json: {path} is not listed in files")
        stage_names = set(TRANSFORM_STAGES) | {s.name for s in self.schedule.steps}
        for name in sorted(set(self.precision) - stage_names):
            raise BundleError(f"manifest.json: precision names {name[:64]!r}, which is not a stage")
        for bucket in self.buckets:
            for name in sorted(set(bucket.stages) ^ stage_names):
                what = "has an unexpected stage" if name in bucket.stages else "lacks the stage"
                raise BundleError(f"manifest.json: bucket {bucket.name} {what} {name[:64]!r}")
            for graph in bucket.stages.values():
                if graph.file not in self.files:
                    raise BundleError(f"manifest.json: {graph.file} is not listed in files")
            self._check_stage_io(bucket)

    def _check_stage_io(self, bucket: Bucket) -> None:
        """Check every graph's inputs and outputs: names, dtypes, and shapes that agree along the pipeline."""

        def names(specs):
            return [t.name for t in specs]

        expected = {
            "g_a": (["x"], ["y"]),
            "h_a": (["y"], ["z"]),
            "h_s": (["z_hat"], list(self.schedule.sources)),
            "g_s": (["y_hat"], ["x_hat"]),
        }
        for step in self.schedule.steps:
            expected[step.name] = (list(step.graph_inputs), list(step.graph_outputs(self.schedule.parameters)))
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

        def expect(stage: str, spec: TensorSpec, shape: tuple[int, ...], dtype: str = "float32") -> None:
            if spec.shape != shape or spec.dtype != dtype:
                raise BundleError(f"manifest.json: stage {stage} of bucket {bucket.name} declares {spec.name} as "
                                  f"{spec.dtype}{list(spec.shape)}; it must be {dtype}{list(shape)}")

        stages = bucket.stages
        image = (1, 3, bucket.height, bucket.width)
        expect("g_a", stages["g_a"].input("x"), image)
        expect("g_s", stages["g_s"].output("x_hat"), image)
        y = stages["g_a"].output("y").shape
        if len(y) != 4 or y[:2] != (1, self.schedule.channels):
            raise BundleError(f"manifest.json: stage g_a of bucket {bucket.name} declares y as {list(y)}; it must be "
                              f"[1, {self.schedule.channels}, height, width] (the schedule's channels)")
        z = stages["h_a"].output("z").shape
        if len(z) != 4 or z[0] != 1:
            raise BundleError(f"manifest.json: stage h_a of bucket {bucket.name} declares z as {list(z)}; it must be "
                              "[1, channels, height, width]")
        z = (1, z[1], bucket.height // self.stride, bucket.width // self.stride)
        expect("h_a", stages["h_a"].input("y"), y)
        expect("h_a", stages["h_a"].output("z"), z)
        expect("h_s", stages["h_s"].input("z_hat"), z)
        expect("g_s", stages["g_s"].input("y_hat"), y)
        state = {"y_hat": y, **{spec.name: spec.shape for spec in stages["h_s"].outputs}}
        for step in self.schedule.steps:
            graph = stages[step.name]
            for name in step.reads:
                expect(step.name, graph.input(name), state[name])
            channels = (step.channels[1] - step.channels[0]) * self.schedule.components
            parameters = (1, channels) if step.raster else (1, channels, *y[2:])
            for name in self.schedule.parameters:
                expect(step.name, graph.output(name), parameters)
            state.update({name: graph.output(name).shape for name in step.writes})
            if step.raster:
                expect(step.name, graph.input(RASTER_POSITION), (1,), "int64")
                expect(step.name, graph.output(RASTER_ROW_INDEX), (1,), "int64")
                for cache in step.caches:
                    shape = graph.input(cache).shape
                    if len(shape) < 2:
                        raise BundleError(f"manifest.json: stage {step.name} of bucket {bucket.name} declares "
                                          f"the cache {cache} with fewer than 2 axes")
                    expect(step.name, graph.output(f"{cache}_row"), (*shape[:-2], shape[-1]))
