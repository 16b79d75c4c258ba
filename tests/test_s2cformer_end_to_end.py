"""Issue "Foundation", must-show 1 and 2: the real s2c-hybrid-s through export and runtime."""

import numpy as np
import torch

from tests.helpers import load_image
from licrt.runtime.backends import open_backend
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.stages import BucketStages


def to_tensor(image):
    return torch.from_numpy(image.transpose(2, 0, 1)[None] / np.float32(255)).float()


def to_uint8(x):
    return np.rint(np.clip(x[0].numpy().transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def test_hybrid_s_matches_pytorch(full_bundle):
    bundle, model = full_bundle
    codec = Codec.open(bundle, backend="onnxruntime")
    image = load_image("parrots_256x256.png")
    data = codec.compress(image)
    assert codec.compress(image) == data
    decoded = codec.decompress(data)

    reference = model.reference(to_tensor(image))
    expected = to_uint8(reference.x_hat)
    mse = np.mean((decoded.astype(float) - expected.astype(float)) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 50

    bucket = bundle.manifest.buckets[0]
    backend = open_backend("onnxruntime")
    coder = TileCoder(bundle, BucketStages(bundle, bucket, backend))
    coded = coder.encode(to_tensor(image).numpy())
    runtime_symbols = [coded_pass.symbols for coded_pass in coded.passes]
    differing = sum(int(np.sum(a != b)) for a, b in zip(runtime_symbols, reference.symbols, strict=True))
    total = sum(s.size for s in reference.symbols)
    assert differing <= total * 1e-4, f"{differing} of {total} symbols differ from PyTorch"

    # The file is within 1 % of the model's own estimate, plus header and framing.
    estimate = sum(reference.bits) / 8
    container = Container.from_bytes(data)
    framing = container.framing
    assert framing == container.header.size + 8 + 2 * container.header.passes
    assert abs((len(data) - framing) - estimate) <= 0.01 * estimate


def test_hybrid_s_odd_size(full_bundle):
    bundle, _ = full_bundle
    codec = Codec.open(bundle, backend="onnxruntime")
    image = load_image("lighthouse_250x190.png")
    data = codec.compress(image)
    assert Container.from_bytes(data).header.tile_rows == 1
    assert codec.decompress(data).shape == (190, 250, 3)
