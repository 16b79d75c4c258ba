"""licrt's ONNX Runtime sessions leave the process's other sessions alone, and their thread pools do not spin."""

import onnxruntime

from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.codec import Codec
from tests.helpers import load_image


def test_sessions_do_not_spin_and_their_thread_count_changes_no_byte(tiny_bundle):
    backend = OnnxRuntimeBackend()
    assert backend.session_options(tiny_bundle).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    image = load_image("lighthouse_250x190.png")
    files = {threads: Codec(tiny_bundle, OnnxRuntimeBackend(threads=threads)).compress(image) for threads in (1, 2)}
    assert files[1] == files[2] == Codec(tiny_bundle, backend).compress(image)


def test_the_host_application_s_own_sessions_still_work(tiny_bundle):
    """ONNX Runtime refuses sessions with pools of their own once a process-wide pool exists: licrt makes none."""
    Codec(tiny_bundle, OnnxRuntimeBackend()).compress(load_image("house_96x64.png"))
    graph = tiny_bundle.manifest.buckets[0].stages["h_a"]
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                     str(tiny_bundle.weights_folder))
    onnxruntime.InferenceSession(tiny_bundle.path(graph.file).read_bytes(), options,
                                 providers=["CPUExecutionProvider"])
