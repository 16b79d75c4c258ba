"""The generic coding scheduler: one tile, or one region of an image window by window (:mod:`.stages`,
:mod:`.regions`), through a bundle's stages and schedule.

Encoding and decoding run the *same* graphs in the *same* order on the same
inputs; the encoder builds ŷ exactly as the decoder will (symbol + μ, in
float32, pass by pass), so on the same backend both sides compute identical
entropy parameters, and on another backend the guard (:mod:`.guard`) makes
them take identical coding decisions all the same::

    encode:  x ─g_a─► y ─h_a─► z ─round─► ẑ ──┬─► code ẑ (one row per channel)
                                              └─h_s─► hyper
             for each step: params(hyper, ŷ so far) ─► decisions (+ side stream)
                            ─► code round(y − μ), ŷ += …
    decode:  decode ẑ ─h_s─► hyper; for each step: side stream, params
                            ─► decisions ─► decode, ŷ += …
             ŷ ─g_s─► x̂

Only the latents whose pixels overlap the image are coded (the tile's
:class:`~licrt.runtime.tiling.ImageArea`): the others are zero on both sides,
in ẑ and ŷ alike, and a raster pass does not run at their positions.

Nothing here depends on the codec: stage names, tensor names and the passes
all come from the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import constriction
import numpy as np

from .bundle import Bundle
from .container import pass_digest
from .entropy import UndecodableError, max_coded_bytes
from .guard import decode_side_stream, encode_side_stream, max_side_stream_bytes, side_stream_bits
from .latent_coding import latent_coding
from .errors import BackendError, BitstreamError
from .stages import BucketStages, Convert, Pixels, WindowedStages, check_finite
from .schedule import RASTER_POSITION, RASTER_ROW_INDEX
from .tiling import ImageArea, extend_edges


@dataclass
class CodedPass:
    """One pass of a tile (ẑ, or a schedule step) as coded."""

    name: str
    #: Its symbols, flattened in coding order.
    symbols: np.ndarray = field(repr=False)
    #: Its coding decisions (see :class:`licrt.runtime.guard.Decided`), flattened.
    decisions: np.ndarray = field(repr=False)
    #: −Σ log2 p of the symbols under the coding tables (None: not estimated).
    bits: float | None
    #: What its side stream costs, in bits, and how many decisions it records.
    side_bits: float = 0.0
    guarded: int = 0

    @property
    def digest(self) -> int:
        return pass_digest(self.symbols, self.decisions)


@dataclass
class CodedTile:
    """One tile's coded data, with what was learned on the way."""

    payload: bytes
    digests: tuple[int, ...]
    #: Every pass, ẑ first, then each schedule step.
    passes: list[CodedPass] = field(repr=False)
    #: Reconstruction (1, 3, H, W) float32 (or what the decoder's ``to_pixels`` made of it), set by decoding.
    x_hat: np.ndarray | None = field(default=None, repr=False)
    #: ŷ as g_s takes it (see :func:`licrt.runtime.tiling.extend_edges`), set by decoding without reconstructing.
    y_hat: np.ndarray | None = field(default=None, repr=False)


#: Layouts a coder keeps (one per place an image's edge falls in a tile).
MAX_LAYOUTS = 64
#: Latent rows of a pass coded as one batch: what bounds the coding's temporaries on a large image (an image up
#: to 512 pixels tall is one batch).
BAND_ROWS = 32


def _bands(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A pass's (h, w) mask of positions as (rows, columns) index arrays of bands of at most
    :data:`BAND_ROWS` rows, top to bottom, each in the mask's row-major order (the empty mask stays one batch).
    Index arrays, not a mask per band: picking a band costs its positions, not the whole map."""
    rows, cols = np.nonzero(mask)
    cuts = np.searchsorted(rows, np.arange(BAND_ROWS, mask.shape[0], BAND_ROWS))
    bands = [(r, c) for r, c in zip(np.split(rows, cuts), np.split(cols, cuts), strict=True) if r.size]
    return bands or [(rows, cols)]


@dataclass(frozen=True)
class _Layout:
    """What a tile codes: the latents whose pixels overlap the image (see :class:`licrt.runtime.tiling.ImageArea`)."""

    #: (h, w) masks of the coded ẑ and ŷ positions, and the table row of each coded ẑ symbol (channel-major).
    z_coded: np.ndarray
    y_coded: np.ndarray
    z_rows: np.ndarray
    #: Per step: the (h, w) mask of the positions it codes, and its number of coding decisions (what its side
    #: stream's positions index).
    masks: dict[str, np.ndarray]
    decisions: dict[str, int]


@dataclass
class _PassWalk:
    """What one pass has decided and coded so far."""

    #: The decoder's: the positions of the decisions its side stream pins.
    pinned: np.ndarray | None
    #: The encoder's with the guard on: pin and record the decisions near a boundary.
    record: bool
    #: Add up −Σ log2 p of the symbols (a mixture's tables are built once more for it).
    estimate: bool
    near: list = field(default_factory=list)
    codes: list = field(default_factory=list)
    symbols: list = field(default_factory=list)
    bits: float = 0.0
    #: Decisions taken so far.
    done: int = 0

    def recorded(self) -> np.ndarray:
        return np.concatenate(self.near) if self.near else np.empty(0, np.int64)


def _bytes(encoder) -> bytes:
    """A range encoder's words as payload bytes."""
    return encoder.get_compressed().astype("<u4").tobytes()


class DivergenceError(BitstreamError):
    """Decoded symbols differ from the encoder's although the bytes are intact."""


class TileCoder:
    """Codes tiles of one shape: a bucket's, or a region's canvas coded window by window.

    Args:
        bundle: The opened bundle.
        stages: Runs its stage graphs: a bucket's (:class:`~licrt.runtime.stages.BucketStages`) or a grid's
            windows over its canvas (:class:`~licrt.runtime.stages.WindowedStages`).
        guard: Record the decisions near a boundary in side streams (see
            :mod:`licrt.runtime.guard`), so that other backends decode the
            tiles. Without it a tile decodes only where the floats agree.
    """

    def __init__(self, bundle: Bundle, stages: BucketStages | WindowedStages, guard: bool = True):
        self.bundle = bundle
        self.stages = stages
        self.schedule = bundle.manifest.schedule
        self.coding = latent_coding(bundle)
        self.record_near = guard
        #: Called after every stage graph run with how many ran (each raster position counts): what a progress
        #: bar follows.
        self.on_run: Callable[[int], object] | None = None
        self._input_shapes = stages.input_shapes
        self.z_shape, self.y_shape = self._input_shapes["h_s"]["z_hat"], self._input_shapes["g_s"]["y_hat"]
        self._layouts: dict[ImageArea | None, _Layout] = {}
        whole = self._layout(None)
        #: The most bytes a tile's payload can hold: what the coder writes at most for its symbols and side streams.
        self.max_payload = max_coded_bytes(math.prod(self.z_shape) + math.prod(self.y_shape)) + sum(
            max_side_stream_bytes(size) for size in whole.decisions.values())

    def _layout(self, area: ImageArea | None) -> _Layout:
        """What a tile codes when its image lies in ``area`` (None: the whole tile)."""
        if area not in self._layouts:
            if len(self._layouts) >= MAX_LAYOUTS:  # a long-running coder sees ever new image sizes
                self._layouts.clear()
            (z_rows, z_cols), (y_rows, y_cols) = self.z_shape[2:], self.y_shape[2:]
            z_coded = np.ones((z_rows, z_cols), bool) if area is None else area.latent_mask(z_rows, z_cols)
            y_coded = np.ones((y_rows, y_cols), bool) if area is None else area.latent_mask(y_rows, y_cols)
            masks = {step.name: step.position_mask(y_rows, y_cols) & y_coded for step in self.schedule.steps}
            self._layouts[area] = _Layout(
                z_coded,
                y_coded,
                np.repeat(np.arange(self.z_shape[1], dtype=np.int16), int(z_coded.sum())),
                masks,
                {step.name: self.coding.kinds * (step.channels[1] - step.channels[0]) * int(masks[step.name].sum())
                 for step in self.schedule.steps},
            )
        return self._layouts[area]

    def _run(self, stage: str, feed: dict, convert: Convert | None = None) -> dict[str, np.ndarray]:
        outputs = self.stages.run(stage, feed, convert)
        self._ran(self.stages.runs)
        return outputs

    def _ran(self, count: int = 1) -> None:
        if self.on_run is not None:
            self.on_run(count)

    def runs(self, encode: bool, reconstruct: bool = True, area: ImageArea | None = None) -> int:
        """Stage graph runs per tile: g_a and h_a to encode, h_s, each pass (a raster pass once per coded
        position), and g_s to reconstruct; each once per window."""
        masks = self._layout(area).masks
        passes = sum(int(masks[step.name].sum()) if step.raster else 1 for step in self.schedule.steps)
        return (1 + passes + (2 if encode else int(reconstruct))) * self.stages.runs

    def _round(self, values: np.ndarray) -> np.ndarray:
        """The bundle's rounding (and clamp) of ẑ, or of ŷ with ``integer`` quantization."""
        manifest = self.bundle.manifest
        rounded = np.rint(values) if manifest.rounding == "half-even" else np.floor(values + np.float32(0.5))
        if manifest.symbol_range is not None:
            rounded = np.clip(rounded, *manifest.symbol_range)
        return rounded

    def _passes(self, layout: _Layout, state: dict[str, np.ndarray], code: Callable, batches: list | None,
                read_side: Callable[[int], np.ndarray] | None, estimate: bool) -> Iterator[CodedPass]:
        """Walk the schedule, filling ``state["y_hat"]`` where the layout codes; yields each step's
        :class:`CodedPass`.

        Args:
            code: ``code(index, decided) -> symbols`` gives the symbols of
                one batch of elements: ``index`` picks them out of an
                (M, h, w) array, channel-major; the encoder takes them from y,
                the decoder decodes them. Encoder and decoder share this walk,
                so both compute every graph input identically.
            batches: The encoder's writers ``write(range_encoder)``, in coding
                order (see :meth:`_payload`): ``code`` appends one per batch of
                symbols, and each pass's side stream goes before its symbols.
            read_side: The decoder's (with ``batches`` None): reads a pass's
                side stream, given the pass's number of decisions, before its
                symbols. Without it (the encoder) the decisions near a
                boundary are recorded.
            estimate: Estimate each pass's bits (:attr:`CodedPass.bits`).
        """
        for step in self.schedule.steps:
            size = layout.decisions[step.name]
            side_at = len(batches) if read_side is None else 0
            walk = _PassWalk(read_side(size) if read_side is not None else None,
                             record=read_side is None and self.record_near, estimate=estimate)

            def decide(parameters: dict[str, np.ndarray], index, walk: _PassWalk = walk) -> None:
                self._code_batch(walk, parameters, index, code, state["y_hat"][0])

            start, stop = step.channels
            if not step.raster:
                outputs = self._run(step.name, {name: state[name] for name in step.reads})
                state.update({name: outputs[name] for name in step.writes})
                for rows, cols in _bands(layout.masks[step.name]):
                    decide({name: outputs[name][0][:, rows, cols] for name in self.schedule.parameters},
                           (slice(start, stop), rows, cols))
            else:
                self._raster(step, layout.masks[step.name], state, decide)
            if walk.pinned is None:
                positions = walk.recorded()
                batches.insert(side_at, partial(encode_side_stream, positions=positions, size=size))
            else:
                positions = walk.pinned
            yield CodedPass(step.name, np.concatenate(walk.symbols), np.concatenate(walk.codes),
                            walk.bits if estimate else None, side_stream_bits(positions, size), positions.size)

    def _raster(self, step, mask: np.ndarray, state: dict[str, np.ndarray], decide: Callable) -> None:
        """One coded position (``mask``) per run of the step graph, its inputs and key/value caches held on
        the backend's device: per position only the position and the new ŷ values go there, and only the
        entropy parameters come back; each run's cache rows are stored into the caches where they are."""
        runner = self.stages.runner(step.name)
        start, stop = step.channels
        width = self.y_shape[3]
        runner.hold({**{name: state[name] for name in step.reads},
                     **{name: np.zeros(self._input_shapes[step.name][name], np.float32) for name in step.caches}})
        try:
            for position in np.flatnonzero(mask).tolist():
                outputs = runner.step({RASTER_POSITION: np.array([position])},
                                      fetch=(*self.schedule.parameters, RASTER_ROW_INDEX))
                check_finite(step.name, outputs)
                self._ran()
                row = int(outputs[RASTER_ROW_INDEX][0])
                for name in step.caches:
                    if not 0 <= row < self._input_shapes[step.name][name][-2]:
                        raise BackendError(f"stage {step.name} put a cache row at {row}, outside its "
                                           f"{self._input_shapes[step.name][name][-2]} rows")
                    runner.store(f"{name}_row", name, (..., row, slice(None)))
                index = (slice(start, stop), *divmod(position, width))
                decide({name: outputs[name][0] for name in self.schedule.parameters}, index)
                if "y_hat" in step.reads:
                    runner.write("y_hat", (0, *index), state["y_hat"][0][index])
        finally:
            runner.release()

    def _code_batch(self, walk: _PassWalk, parameters: dict[str, np.ndarray], index, code: Callable,
                    y_hat: np.ndarray) -> None:
        """Decide one batch of a pass's elements, code them, and add them to ŷ."""
        shape = np.shape(y_hat[index])
        count = self.coding.kinds * math.prod(shape)
        pinned = None
        if walk.pinned is not None:
            low, high = np.searchsorted(walk.pinned, [walk.done, walk.done + count])
            pinned = walk.pinned[low:high] - walk.done
        decided = self.coding.decide(parameters, pinned, pin_near=walk.record)
        if walk.record:
            walk.near.append(decided.near + walk.done)
        walk.done += count
        symbols = code(index, decided)
        y_hat[index] = self.coding.latent(symbols, decided).reshape(shape)
        walk.codes.append(decided.codes.ravel())
        walk.symbols.append(symbols.ravel())
        if walk.estimate:
            walk.bits += self.coding.bits(symbols, decided)

    def _hyper(self, z_hat: np.ndarray) -> dict[str, np.ndarray]:
        state = self._run("h_s", {"z_hat": z_hat})
        state["y_hat"] = np.zeros(self.y_shape, dtype=np.float32)
        return state

    @staticmethod
    def _payload(batches: list) -> bytes:
        """Range-code every batch, in order, into one payload."""
        encoder = constriction.stream.queue.RangeEncoder()
        for write in batches:
            write(encoder)
        return _bytes(encoder)

    def _z_pass(self, layout: _Layout, z_symbols: np.ndarray, estimate: bool) -> tuple[CodedPass, np.ndarray]:
        """The ẑ pass of the coded symbols (channel-major), and ẑ: the symbols where coded, zero elsewhere."""
        z_tables = self.bundle.z_tables
        z_hat = np.zeros(self.z_shape, np.float32)
        z_hat[0][:, layout.z_coded] = z_symbols.reshape(self.z_shape[1], -1)
        bits = z_tables.information_bits(z_symbols, layout.z_rows) if estimate else None
        coded = CodedPass("z", z_symbols, np.empty(0, np.int32), bits)
        return coded, z_hat

    def encode(self, x: np.ndarray | Pixels, area: ImageArea | None = None, estimate: bool = False) -> CodedTile:
        """Encode one padded tile, (1, 3, H, W) float32 in [0, 1] or its :class:`Pixels`, whose image lies in
        ``area`` (None: the whole tile); with ``estimate``, each pass's bits under the coding tables too."""
        return self.encode_latents(self._run("g_a", {"x": x})["y"], area, estimate)

    def encode_latents(self, y: np.ndarray, area: ImageArea | None = None, estimate: bool = False) -> CodedTile:
        """Encode a tile's latents y, (1, M, h, w) as g_a makes them (see :meth:`encode`)."""
        layout = self._layout(area)
        z = self._run("h_a", {"y": y})["z"]
        z_symbols = self._round(z[0][:, layout.z_coded]).astype(np.int32).ravel()
        batches: list = [partial(self.bundle.z_tables.encode, values=z_symbols, rows=layout.z_rows)]
        z_pass, z_hat = self._z_pass(layout, z_symbols, estimate)
        passes = [z_pass]

        def code(index, decided):
            symbols = self.coding.symbols(y[0][index].ravel(), decided, self._round)
            batches.append(self.coding.writer(symbols, decided))
            return symbols

        passes += self._passes(layout, self._hyper(z_hat), code, batches, None, estimate)
        return CodedTile(self._payload(batches), tuple(p.digest for p in passes), passes)

    def decode(
        self, payload: bytes, digests: tuple[int, ...], profile_note: str, reconstruct: bool = True,
        area: ImageArea | None = None, estimate: bool = False, to_pixels: Convert | None = None,
    ) -> CodedTile:
        """Decode one tile whose bytes passed the container's checks.

        Args:
            area: Where the tile's image lies (None: the whole tile), as when it was encoded.
            digests: The encoder's digest of every pass, ẑ first.
            profile_note: Appended to a divergence error (which backends encoded
                and decode the file).
            reconstruct: Run g_s for the pixels; without it only ŷ (:attr:`CodedTile.y_hat`).
            estimate: Estimate each pass's bits under the coding tables (:attr:`CodedPass.bits`).
            to_pixels: What the reconstruction is turned into, part by part as g_s makes it (default: kept
                as floats).

        Raises:
            DivergenceError: the symbols or decisions of a pass after ẑ differ
                from the encoder's (its digest) or cannot be decoded: this
                decoder's floats differ from the encoder's by more than the
                guard covers.
            BitstreamError: the same at pass ẑ, which no float decides (the
                data was forged), or the payload is not exactly what the
                encoder writes for the decoded symbols.
        """
        names = ["z", *(step.name for step in self.schedule.steps)]
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        passes: list[CodedPass] = []

        def failure(index: int, what: str) -> BitstreamError:
            if index == 0:  # ẑ is coded against fixed tables: no float of this decoder takes part
                return BitstreamError(f"the coded data is corrupted or forged: at pass z, which no stage graph "
                                      f"takes part in, {what}")
            return DivergenceError(f"decoding diverged at pass {names[index]}: {what}, although the file's "
                                   f"checks hold. {profile_note}")

        def decoded(coded: CodedPass) -> None:
            passes.append(coded)
            if coded.digest != digests[len(passes) - 1]:
                raise failure(len(passes) - 1, "the decoded symbols or coding decisions differ from the encoder's")

        layout = self._layout(area)
        # What the encoder writes for what is decoded, written as it is decoded (with the tables just built):
        # a payload is accepted only if it is exactly that, so no trailing or altered word goes unnoticed.
        echo = constriction.stream.queue.RangeEncoder()
        try:
            z_symbols = self.bundle.z_tables.decode(decoder, layout.z_rows, echo)
            z_pass, z_hat = self._z_pass(layout, z_symbols, estimate)
            decoded(z_pass)
            state = self._hyper(z_hat)

            def read(index, decided):
                return self.coding.read(decoder, decided, echo)

            def read_side(size):
                positions = decode_side_stream(decoder, size)
                encode_side_stream(echo, positions, size)
                return positions

            for coded in self._passes(layout, state, read, None, read_side, estimate):
                decoded(coded)
        except UndecodableError as exc:
            raise failure(len(passes), f"{exc}, with the decisions this decoder takes") from None
        if _bytes(echo) != payload:
            raise BitstreamError("a tile is corrupted: its coded data is not what the encoder writes for the "
                                 "symbols it decodes to (forged or altered)")
        y_hat = extend_edges(state["y_hat"], layout.y_coded)
        if not reconstruct:
            return CodedTile(payload, digests, passes, y_hat=y_hat)
        return CodedTile(payload, digests, passes, self._run("g_s", {"y_hat": y_hat}, to_pixels)["x_hat"])
