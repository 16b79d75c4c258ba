"""The generic coding scheduler: one tile through a bundle's stages and schedule.

Encoding and decoding run the *same* graphs in the *same* order on the same
inputs; the encoder builds ŷ exactly as the decoder will (symbol + μ, in
float32, pass by pass), so both sides compute identical entropy parameters::

    encode:  x ─g_a─► y ─h_a─► z ─round─► ẑ ──┬─► code ẑ (one row per channel)
                                              └─h_s─► hyper
             for each step: params(hyper, ŷ so far) ─► code round(y − μ), ŷ += …
    decode:  decode ẑ ─h_s─► hyper; for each step: params ─► decode, ŷ += …
             ŷ ─g_s─► x̂

Nothing here depends on the codec: stage names, tensor names and the passes
all come from the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import constriction
import numpy as np

from .bundle import Bundle
from .container import symbol_digest
from .errors import BackendError, BitstreamError
from .manifest import Bucket
from .backends.base import StageRunner
from .schedule import RASTER_POSITION, RASTER_ROW_INDEX


@dataclass
class CodedTile:
    """One tile's coded data, with what was learned on the way."""

    payload: bytes
    digests: tuple[int, ...]
    #: Symbols of every pass (ẑ first, then each schedule step), flattened.
    symbols: list[np.ndarray] = field(repr=False)
    #: −Σ log2 p of every pass under the coding tables.
    bits: list[float]
    #: Reconstruction (1, 3, H, W) float32, set by decoding.
    x_hat: np.ndarray | None = field(default=None, repr=False)


class DivergenceError(BitstreamError):
    """Decoded symbols differ from the encoder's although the bytes are intact."""


class TileCoder:
    """Codes tiles of one bucket's shape.

    Args:
        bundle: The opened bundle.
        bucket: One of its buckets.
        load_stage: Returns the runner of a stage graph by name; called once
            per stage, on first use, so a decoder never loads the encoder's
            graphs and vice versa.
    """

    def __init__(self, bundle: Bundle, bucket: Bucket, load_stage: Callable[[str], StageRunner]):
        self.bundle = bundle
        self.bucket = bucket
        self.schedule = bundle.manifest.schedule
        self._load_stage = load_stage
        self._runners: dict[str, StageRunner] = {}
        (z_spec,) = bucket.stages["h_s"].inputs
        (y_spec,) = bucket.stages["g_s"].inputs
        self.z_shape, self.y_shape = z_spec.shape, y_spec.shape
        self._z_rows = np.broadcast_to(
            np.arange(self.z_shape[1], dtype=np.int16)[:, None, None], self.z_shape[1:]
        ).ravel()
        height, width = self.y_shape[2:]
        self._masks = {s.name: s.position_mask(height, width) for s in self.schedule.steps}
        self._input_shapes = {
            s.name: {spec.name: spec.shape for spec in bucket.stages[s.name].inputs} for s in self.schedule.steps
        }

    def _run(self, stage: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if stage not in self._runners:
            self._runners[stage] = self._load_stage(stage)
        outputs = self._runners[stage].run(feed)
        for name, array in outputs.items():
            if not np.all(np.isfinite(array)):
                raise BackendError(f"stage {stage} produced non-finite values in {name!r}")
        return outputs

    def _round(self, values: np.ndarray) -> np.ndarray:
        """The bundle's rounding (and clamp) of ẑ, or of ŷ with ``integer`` quantization."""
        manifest = self.bundle.manifest
        rounded = np.rint(values) if manifest.rounding == "half-even" else np.floor(values + np.float32(0.5))
        if manifest.symbol_range is not None:
            rounded = np.clip(rounded, *manifest.symbol_range)
        return rounded

    def _rows_and_centers(self, scales: np.ndarray, means: np.ndarray):
        """Table rows and centers of coded elements; a symbol is ŷ − center.

        With ``mean-shift`` the center is μ; with ``integer`` it is rint(μ), and
        the fraction μ − rint(μ) selects the row together with σ.
        """
        if self.bundle.manifest.y_quantization == "mean-shift":
            return self.bundle.scale_table.rows(scales).ravel(), means
        centers = np.rint(means)
        return self.bundle.scale_table.rows(scales, means - centers).ravel(), centers

    def _passes(self, state: dict[str, np.ndarray], code: Callable) -> Iterator[tuple[str, np.ndarray, float]]:
        """Walk the schedule, filling ``state["y_hat"]``; yields (pass, symbols, bits) per step.

        Args:
            code: ``code(index, rows, centers) -> symbols`` codes one batch of
                elements: ``index`` picks them out of an (M, h, w) array,
                channel-major; the encoder encodes what it picks from y, the
                decoder decodes.
                Encoder and decoder share this walk, so both compute every
                graph input identically.
        """
        y_hat = state["y_hat"][0]
        tables = self.bundle.y_tables
        for step in self.schedule.steps:
            start, stop = step.channels
            if not step.raster:
                outputs = self._run(step.name, {name: state[name] for name in step.reads})
                state.update({name: outputs[name] for name in step.writes})
                mask = self._masks[step.name]
                rows, centers = self._rows_and_centers(outputs["scales"][0][:, mask], outputs["means"][0][:, mask])
                index = (slice(start, stop), mask)
                symbols = code(index, rows, centers).reshape(centers.shape)
                y_hat[index] = symbols + centers
                yield step.name, symbols.ravel(), tables.information_bits(symbols, rows)
                continue
            caches = {name: np.zeros(self._input_shapes[step.name][name], np.float32) for name in step.caches}
            feed = {name: state[name] for name in step.reads}
            width = self.y_shape[3]
            step_symbols, bits = [], 0.0
            for position in range(self.y_shape[2] * width):
                outputs = self._run(step.name, {**feed, RASTER_POSITION: np.array([position]), **caches})
                row = int(outputs[RASTER_ROW_INDEX][0])
                for name, cache in caches.items():
                    cache[..., row, :] = outputs[f"{name}_row"]
                index = (slice(start, stop), *divmod(position, width))
                rows, centers = self._rows_and_centers(outputs["scales"][0], outputs["means"][0])
                symbols = code(index, rows, centers)
                y_hat[index] = symbols + centers
                step_symbols.append(symbols)
                bits += tables.information_bits(symbols, rows)
            yield step.name, np.concatenate(step_symbols), bits

    def _hyper(self, z_symbols: np.ndarray) -> dict[str, np.ndarray]:
        state = self._run("h_s", {"z_hat": z_symbols.reshape(self.z_shape).astype(np.float32)})
        state["y_hat"] = np.zeros(self.y_shape, dtype=np.float32)
        return state

    def encode(self, x: np.ndarray) -> CodedTile:
        """Encode one padded tile, (1, 3, H, W) float32 in [0, 1]."""
        y = self._run("g_a", {"x": x})["y"]
        z = self._run("h_a", {"y": y})["z"]
        encoder = constriction.stream.queue.RangeEncoder()
        z_symbols = self._round(z).astype(np.int32).ravel()
        self.bundle.z_tables.encode(encoder, z_symbols, self._z_rows)
        symbols, bits = [z_symbols], [self.bundle.z_tables.information_bits(z_symbols, self._z_rows)]
        mean_shift = self.bundle.manifest.y_quantization == "mean-shift"

        def code(index, rows, centers):
            values = y[0][index]
            coded = np.rint(values - centers) if mean_shift else self._round(values) - centers
            step_symbols = coded.astype(np.int32)
            self.bundle.y_tables.encode(encoder, step_symbols.ravel(), rows)
            return step_symbols

        for _, step_symbols, step_bits in self._passes(self._hyper(z_symbols), code):
            symbols.append(step_symbols)
            bits.append(step_bits)
        payload = encoder.get_compressed().astype("<u4").tobytes()
        return CodedTile(payload, tuple(symbol_digest(s) for s in symbols), symbols, bits)

    def decode(
        self, payload: bytes, digests: tuple[int, ...], profile_note: str, reconstruct: bool = True
    ) -> CodedTile:
        """Decode one tile; raises :class:`DivergenceError` when a pass's digest differs.

        Args:
            profile_note: Appended to a divergence error (which backends encoded
                and decode the file).
            reconstruct: Run g_s for the pixels; without it only symbols and bits.
        """
        if len(digests) != 1 + len(self.schedule.steps):
            raise BitstreamError(
                f"the file codes {len(digests)} passes per tile; this bundle codes "
                f"{1 + len(self.schedule.steps)}"
            )
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)

        def check(index: int, name: str, values: np.ndarray) -> None:
            if symbol_digest(values) != digests[index]:
                raise DivergenceError(
                    f"decoding diverged at pass {name}: the decoded symbols differ from the "
                    f"encoder's although the data is intact. {profile_note}"
                )

        z_symbols = self.bundle.z_tables.decode(decoder, self._z_rows)
        check(0, "z", z_symbols)
        symbols, bits = [z_symbols], [self.bundle.z_tables.information_bits(z_symbols, self._z_rows)]
        state = self._hyper(z_symbols)
        passes = self._passes(state, lambda index, rows, centers: self.bundle.y_tables.decode(decoder, rows))
        for index, (name, step_symbols, step_bits) in enumerate(passes, start=1):
            check(index, name, step_symbols)
            symbols.append(step_symbols)
            bits.append(step_bits)
        x_hat = self._run("g_s", {"y_hat": state["y_hat"]})["x_hat"] if reconstruct else None
        return CodedTile(payload, digests, symbols, bits, x_hat)
