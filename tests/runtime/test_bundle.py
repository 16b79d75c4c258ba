import hashlib
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licrt.runtime.bundle import Bundle, sha256_file
from licrt.runtime.codec import Codec
from licrt.runtime.errors import BitstreamError, BundleError
from licrt.runtime.manifest import Manifest

from ..helpers import load_image


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_bundle.root, root)
    return root


def test_manifest_round_trips_and_fingerprint_is_the_manifest_hash(tiny_bundle):
    text = (tiny_bundle.root / "manifest.json").read_text()
    assert Manifest.loads(text) == tiny_bundle.manifest
    assert Manifest.loads(tiny_bundle.manifest.dumps()) == tiny_bundle.manifest
    assert tiny_bundle.fingerprint == hashlib.sha256(text.encode()).digest()[:8]


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        Bundle.open(tmp_path)


def test_missing_file(bundle_copy):
    next((bundle_copy / "stages").glob("y0-anchor*.onnx")).unlink()
    with pytest.raises(BundleError, match="incomplete: stages/y0-anchor"):
        Bundle.open(bundle_copy)


def test_altered_file(bundle_copy):
    weights = bundle_copy / "levels" / "default" / "entropy.bin"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="damaged: levels/default/entropy.bin"):
        Bundle.open(bundle_copy)


def edit_manifest(root, change):
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=99), "format version 99 is not supported"),
    (lambda d: d.update(format="other"), "not a licrt bundle manifest"),
    (lambda d: d.pop("schedule"), "schedule is missing"),
    (lambda d: d["files"].update({"../../etc/passwd": "0" * 64}), "outside the bundle"),
    (lambda d: d["buckets"][0].update(height=100), "not a multiple of stride"),
    (lambda d: d["schedule"]["steps"].pop(), "not coded exactly once"),
    (lambda d: d["buckets"][0]["stages"]["g_s"]["inputs"][0].update(name="y"), "stage g_s"),
    (lambda d: d["entropy"]["y"].update(quantization="dithered"), "quantization must be one of"),
    (lambda d: d["entropy"]["y"].update(weight_grid=31), "weight_grid is given for a mixture codec, and only"),
    (lambda d: d.update(default_level=1), "default_level"),
    (lambda d: d["levels"].append(dict(d["levels"][0])), "two quality levels share a name"),
    (lambda d: d["levels"][0].update(directory="../elsewhere"), "../elsewhere/transforms.bin is not listed"),
    (lambda d: d.update(levels=[]), "levels"),
])
def test_inconsistent_manifests_are_refused(bundle_copy, change, message):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        Bundle.open(bundle_copy)


def test_invalid_json(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(bundle_copy)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def json_slots(value, slots=None):
    """Every (container, key) of parsed JSON: each place a value can be replaced."""
    slots = [] if slots is None else slots
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        slots.append((value, key))
        json_slots(child, slots)
    return slots


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(slot=st.integers(0, 2**32 - 1), value=JSON_VALUES)
def test_any_manifest_field_replaced_by_anything_is_refused_cleanly(tiny_bundle, slot, value):
    data = json.loads((tiny_bundle.root / "manifest.json").read_text())
    slots = json_slots(data)
    container, key = slots[slot % len(slots)]
    container[key] = value
    try:
        Manifest.loads(json.dumps(data))
    except BundleError:
        pass


def alter(root, relative: str) -> None:
    """Change a byte of one of the bundle's files and list its new sha256, as another export would."""
    path = root / relative
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    edit_manifest(root, lambda d: d["files"].update({relative: sha256_file(path)}))


def test_the_coding_contract_covers_the_entropy_path_not_the_free_stages(tiny_bundle, bundle_copy, tmp_path):
    image = load_image("house_96x64.png")
    data = Codec.open(tiny_bundle).compress(image)

    alter(bundle_copy, "levels/default/transforms.bin")  # g_a, h_a, g_s: another precision, say
    other_transforms = Bundle.open(bundle_copy)
    assert other_transforms.fingerprint != tiny_bundle.fingerprint
    assert other_transforms.contract == tiny_bundle.contract
    assert Codec.open(other_transforms).decompress(data).shape == image.shape

    alter(bundle_copy, "levels/default/entropy.bin")  # h_s and the context steps
    other_entropy = Bundle.open(bundle_copy)
    assert other_entropy.contract != tiny_bundle.contract
    with pytest.raises(BitstreamError, match="entropy coding differs from this one's"):
        Codec.open(other_entropy).decompress(data)


@pytest.mark.parametrize("change", [
    lambda d: d["entropy"]["guard"].update(epsilon=2e-5),
    lambda d: d["image"]["padding"].update(mode="constant"),
    lambda d: d["files"].update({"entropy/y.npz": "0" * 64}),
    lambda d: d["files"].update({"levels/default/z.npz": "0" * 64}),
    lambda d: d["files"].update({d["buckets"][0]["stages"]["h_s"]["file"]: "0" * 64}),
])
def test_the_coding_contract_covers_coding_settings_and_tables(tiny_bundle, change):
    changed = json.loads(tiny_bundle.manifest.dumps())
    change(changed)
    assert Manifest.loads(json.dumps(changed)).coding_contract() != tiny_bundle.contract
