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

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import constriction
import numpy as np

from .bundle import Bundle
from .container import symbol_digest
from .entropy import UndecodableError, max_coded_bytes
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
        #: The most bytes a tile's payload can hold: what the coder writes at most for its symbols.
        self.max_payload = max_coded_bytes(math.prod(self.z_shape) + math.prod(self.y_shape))
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

    def _passes(
        self, state: dict[str, np.ndarray], code: Callable, batches: list
    ) -> Iterator[tuple[str, np.ndarray, float]]:
        """Walk the schedule, filling ``state["y_hat"]``; yields (pass, symbols, bits) per step.

        Args:
            code: ``code(index, rows, centers) -> symbols`` gives the symbols
                of one batch of elements: ``index`` picks them out of an
                (M, h, w) array, channel-major; the encoder takes them from y,
                the decoder decodes them. Encoder and decoder share this walk,
                so both compute every graph input identically.
            batches: Receives (tables, symbols, rows) of every batch, in
                coding order (see :meth:`_payload`).
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
                batches.append((tables, symbols.ravel(), rows))
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
                    if not 0 <= row < cache.shape[-2]:
                        raise BackendError(f"stage {step.name} put a cache row at {row}, outside its "
                                           f"{cache.shape[-2]} rows")
                    cache[..., row, :] = outputs[f"{name}_row"]
                index = (slice(start, stop), *divmod(position, width))
                rows, centers = self._rows_and_centers(outputs["scales"][0], outputs["means"][0])
                symbols = code(index, rows, centers)
                batches.append((tables, symbols, rows))
                y_hat[index] = symbols + centers
                step_symbols.append(symbols)
                bits += tables.information_bits(symbols, rows)
            yield step.name, np.concatenate(step_symbols), bits

    def _hyper(self, z_symbols: np.ndarray) -> dict[str, np.ndarray]:
        state = self._run("h_s", {"z_hat": z_symbols.reshape(self.z_shape).astype(np.float32)})
        state["y_hat"] = np.zeros(self.y_shape, dtype=np.float32)
        return state

    @staticmethod
    def _payload(batches: list) -> bytes:
        """Range-code every batch of symbols, in order, into one payload.

        The decoder runs this too, on what it decoded: a payload is accepted
        only if it is exactly what the encoder writes for its symbols, so no
        trailing or altered word goes unnoticed.
        """
        encoder = constriction.stream.queue.RangeEncoder()
        for tables, symbols, rows in batches:
            tables.encode(encoder, symbols, rows)
        return encoder.get_compressed().astype("<u4").tobytes()

    def encode(self, x: np.ndarray) -> CodedTile:
        """Encode one padded tile, (1, 3, H, W) float32 in [0, 1]."""
        y = self._run("g_a", {"x": x})["y"]
        z = self._run("h_a", {"y": y})["z"]
        z_tables = self.bundle.z_tables
        z_symbols = self._round(z).astype(np.int32).ravel()
        batches = [(z_tables, z_symbols, self._z_rows)]
        symbols, bits = [z_symbols], [z_tables.information_bits(z_symbols, self._z_rows)]
        mean_shift = self.bundle.manifest.y_quantization == "mean-shift"

        def code(index, rows, centers):
            values = y[0][index]
            coded = np.rint(values - centers) if mean_shift else self._round(values) - centers
            return coded.astype(np.int32)

        for _, step_symbols, step_bits in self._passes(self._hyper(z_symbols), code, batches):
            symbols.append(step_symbols)
            bits.append(step_bits)
        payload = self._payload(batches)
        return CodedTile(payload, tuple(symbol_digest(s) for s in symbols), symbols, bits)

    def decode(
        self, payload: bytes, digests: tuple[int, ...], profile_note: str, reconstruct: bool = True
    ) -> CodedTile:
        """Decode one tile whose bytes passed the container's checks.

        Args:
            digests: The encoder's digest of every pass, ẑ first.
            profile_note: Appended to a divergence error (which backends encoded
                and decode the file).
            reconstruct: Run g_s for the pixels; without it only symbols and bits.

        Raises:
            DivergenceError: the symbols of a pass after ẑ differ from the
                encoder's (its digest) or cannot be decoded: this decoder's
                floats chose other table rows.
            BitstreamError: the same at pass ẑ, which no float decides (the
                data was forged), or the payload is not exactly what the
                encoder writes for the decoded symbols.
        """
        names = ["z", *(step.name for step in self.schedule.steps)]
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        z_tables, y_tables = self.bundle.z_tables, self.bundle.y_tables
        symbols: list[np.ndarray] = []
        bits: list[float] = []

        def failure(index: int, what: str) -> BitstreamError:
            if index == 0:  # ẑ is coded against fixed tables: no float of this decoder takes part
                return BitstreamError(f"the coded data is corrupted or forged: at pass z, which no stage graph "
                                      f"takes part in, {what}")
            return DivergenceError(f"decoding diverged at pass {names[index]}: {what}, although the file's "
                                   f"checks hold. {profile_note}")

        def decoded(pass_symbols: np.ndarray, pass_bits: float) -> None:
            symbols.append(pass_symbols)
            bits.append(pass_bits)
            if symbol_digest(pass_symbols) != digests[len(symbols) - 1]:
                raise failure(len(symbols) - 1, "the decoded symbols differ from the encoder's")

        try:
            z_symbols = z_tables.decode(decoder, self._z_rows)
            batches = [(z_tables, z_symbols, self._z_rows)]
            decoded(z_symbols, z_tables.information_bits(z_symbols, self._z_rows))
            state = self._hyper(z_symbols)

            def read(index, rows, centers):
                return y_tables.decode(decoder, rows)

            for _, step_symbols, step_bits in self._passes(state, read, batches):
                decoded(step_symbols, step_bits)
        except UndecodableError:
            raise failure(len(symbols), "the coded data cannot be decoded with the table rows this decoder selects") \
                from None
        if self._payload(batches) != payload:
            raise BitstreamError("a tile is corrupted: its coded data is not what the encoder writes for the "
                                 "symbols it decodes to (forged or altered)")
        x_hat = self._run("g_s", {"y_hat": state["y_hat"]})["x_hat"] if reconstruct else None
        return CodedTile(payload, digests, symbols, bits, x_hat)
