"""Files decode on backends other than the encoder's: ONNX Runtime without fusions, OpenVINO, PyTorch, fault
injection."""

from importlib.util import find_spec

import numpy as np
import pytest

from tests.helpers import load_image
from licrt.export.torch_backend import TorchBackend
from licrt.runtime.backends import open_backend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.codec import Codec
from licrt.runtime.scheduler import DivergenceError

IMAGE = "parrots_256x256.png"


def decode(bundle, backend, data):
    return Codec(bundle, backend).decompress(data)


@pytest.fixture(scope="module")
def files(tiny_bundle):
    """The test image encoded on ONNX Runtime, with and without the guard."""
    image = load_image(IMAGE)
    onnxruntime = open_backend("onnxruntime")
    return {guard: Codec(tiny_bundle, onnxruntime, guard=guard).compress(image) for guard in (True, False)}


def test_the_bundle_says_what_the_guard_covers(tiny_bundle):
    assert tiny_bundle.manifest.guard_epsilon == 1e-5 and tiny_bundle.manifest.guard_tolerance > 1e-5


def test_floats_within_epsilon_decode_to_the_encoders_symbols_and_without_the_guard_they_do_not():
    # The default bundle: a trained model has many more decisions near a boundary than a random one.
    onnxruntime = open_backend("onnxruntime")
    bundle = Codec.open(None, onnxruntime).bundle
    image = load_image(IMAGE)
    guarded, unguarded = (Codec(bundle, onnxruntime, guard=guard).compress(image) for guard in (True, False))
    epsilon = bundle.manifest.guard_epsilon
    perturbed = [Codec(bundle, PerturbedBackend(onnxruntime, epsilon, seed)) for seed in range(6)]
    for codec in perturbed:
        codec.inspect(guarded)
    with pytest.raises(DivergenceError, match="without the guard"):
        for codec in perturbed:
            codec.inspect(unguarded)


def test_floats_beyond_the_guard_stop_with_an_error_naming_the_pass(tiny_bundle, files):
    with pytest.raises(DivergenceError, match="diverged at pass .* more than the bundle's guard covers"):
        decode(tiny_bundle, PerturbedBackend(open_backend("onnxruntime"), 1e-3), files[True])


OPENVINO = pytest.mark.skipif(find_spec("openvino") is None, reason="needs OpenVINO (licrt[openvino])")


@pytest.mark.parametrize("encoder, decoder", [
    ("onnxruntime", "torch"), ("torch", "onnxruntime"), ("onnxruntime", "onnxruntime-noopt"),
    pytest.param("onnxruntime", "openvino", marks=OPENVINO), pytest.param("openvino", "onnxruntime", marks=OPENVINO),
    pytest.param("openvino", "torch", marks=OPENVINO),
])
def test_a_file_decodes_on_another_backend(tiny_bundle, encoder, decoder):
    backends = {name: TorchBackend("cpu") if name == "torch" else open_backend(name) for name in (encoder, decoder)}
    image = load_image(IMAGE)
    data = Codec(tiny_bundle, backends[encoder]).compress(image)
    same = decode(tiny_bundle, backends[encoder], data)
    other = decode(tiny_bundle, backends[decoder], data)
    assert np.abs(other.astype(int) - same).max() <= 1


def test_the_torch_backend_registers_itself():
    assert isinstance(open_backend("torch"), TorchBackend)


@OPENVINO
def test_openvino_repeats_itself_byte_for_byte_from_its_cache_too(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("LICRT_ENGINE_CACHE", str(tmp_path))
    image = load_image(IMAGE)
    first, second = (Codec(tiny_bundle, open_backend("openvino")).compress(image) for _ in range(2))
    assert first == second
    assert list((tmp_path / "openvino").iterdir()), "compiled graphs were not cached"


@OPENVINO
def test_entroformer_files_cross_between_openvino_and_onnxruntime(tmp_path):
    """OpenVINO reads the top-k attention op once its ONNX function is inlined."""
    from licrt.export.bundle_writer import write_bundle
    from tests.export.test_entroformer import small

    write_bundle(small("entroformer"), [(64, 64)], tmp_path / "bundle", progress=False)
    image = load_image("house_96x64.png")
    codecs = {name: Codec.open(tmp_path / "bundle", backend=name) for name in ("openvino", "onnxruntime")}
    for encoder, decoder in (("openvino", "onnxruntime"), ("onnxruntime", "openvino")):
        data = codecs[encoder].compress(image)
        same, other = codecs[encoder].decompress(data), codecs[decoder].decompress(data)
        assert np.abs(other.astype(int) - same).max() <= 1


def open_bfloat16_or_skip():
    from licrt.runtime.errors import BackendError

    try:
        return open_backend("openvino-bf16")
    except BackendError as exc:  # a CPU without bfloat16 arithmetic: nothing to test here
        pytest.skip(str(exc))


@OPENVINO
def test_bfloat16_free_stages_code_the_same_symbols_as_float32_backends(tiny_bundle):
    """g_a, h_a and g_s in bfloat16 move pixels by a few levels; the symbols stay what the guard says."""
    bfloat16, onnxruntime = open_bfloat16_or_skip(), open_backend("onnxruntime")
    assert bfloat16.profile.endswith("fp32 free-stages bf16")
    image = load_image(IMAGE)
    for encoder, decoder in ((bfloat16, onnxruntime), (onnxruntime, bfloat16)):
        data = Codec(tiny_bundle, encoder).compress(image)
        assert Codec(tiny_bundle, encoder).compress(image) == data
        same, other = decode(tiny_bundle, encoder, data), decode(tiny_bundle, decoder, data)
        difference = np.abs(other.astype(int) - same)
        assert difference.mean() < 0.5 and difference.max() <= 4


@OPENVINO
def test_bfloat16_reaches_the_free_stages_only(tiny_bundle):
    from licrt.runtime.manifest import FREE_STAGES

    bfloat16, float32 = open_bfloat16_or_skip(), open_backend("openvino")
    rng = np.random.default_rng(0)
    for name, graph in tiny_bundle.manifest.buckets[0].stages.items():
        feed = {spec.name: rng.standard_normal(spec.shape).astype(np.float32) for spec in graph.inputs}
        outputs = [backend.load(tiny_bundle, name, graph).run(feed) for backend in (bfloat16, float32)]
        same = all(np.array_equal(outputs[0][key], outputs[1][key]) for key in outputs[1])
        assert same != (name in FREE_STAGES), name


@OPENVINO
def test_bfloat16_is_refused_on_one_thread_before_openvino_could_crash():
    from licrt.runtime.backends.openvino import OpenVinoBackend
    from licrt.runtime.errors import BackendError

    with pytest.raises(BackendError, match="needs two CPU threads or more"):
        OpenVinoBackend(threads=1, free_stages_in_bfloat16=True)


@OPENVINO
def test_bfloat16_kernels_that_disagree_with_float32_are_refused(monkeypatch):
    from licrt.runtime.backends import openvino
    from licrt.runtime.errors import BackendError

    open_bfloat16_or_skip()
    monkeypatch.setattr(openvino, "BFLOAT16_PROBE_TOLERANCE", 1e-6)  # stricter than bfloat16's own rounding
    with pytest.raises(BackendError, match=r"bfloat16 kernels on this CPU are .* off its float32"):
        open_backend("openvino-bf16")
