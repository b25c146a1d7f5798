"""Derive the graphs our runtimes run from OpenCV Zoo's block-quantised files (a build step, not run time).

The zoo's ``int8bq`` files are weight-only quantisation: each weight is an int8 with a float32 scale and an
int8 zero point per block of 9 to 64 values, restored by ``DequantizeLinear`` with a ``block_size``. OpenCV
folds them back to float32 at load and computes in float32. onnxruntime 1.32 and OpenVINO 2026.4 cannot read
those nodes (a bias's blocked ``DequantizeLinear``: "block_size must be 0 for per-tensor quantization" /
"the number of dequantization scale elements must match"), so this script rewrites them once, offline, with
no weight changed:

* **YuNet for onnxruntime** (``zoo.YUNET_FP32``, 0.24 MB): every ``DequantizeLinear`` of a constant becomes
  the float32 constant ``(q - zero_point) * scale``, and the input's height and width become free (YuNet is
  fully convolutional: one session serves every frame size).
* **SFace for OpenVINO** (``zoo.SFACE_UNBLOCKED``, 11 MB rather than 39 MB folded): each blocked
  ``DequantizeLinear`` of a 2-D weight becomes the same arithmetic in standard operators — the int8 weight
  reshaped into its blocks, cast to float32, its zero point (cast) subtracted, times its scale, reshaped
  back — which the runtime folds into float32 weights at load; the few small ones (biases) are folded here.
  Both compute ``(float(q) - float(zero_point)) * scale`` in float32, so the weights are the ones OpenCV uses.

In both, a constant also declared as a graph input stops being one (SFace's file declares 29; a runtime may
otherwise expect them fed).

    .venv/bin/python scripts/derive_models.py            # writes both files into media_api/faces/models/
    .venv/bin/python scripts/derive_models.py --check    # exit 1 if a vendored file is not what this gives

Needs the ``onnx`` package (requirements-dev.txt); the product needs only the runtimes and the output files,
whose sha256 ``media_api/faces/zoo.py`` records (tests/test_identity_calibration.py re-derives them).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Blocked weights with at most this many values are folded to float32 here (biases: 1-2 blocks) rather than
#: rewritten as operators.
_FOLD_AT_MOST = 4096


def derive_yunet_fp32(source: bytes) -> bytes:
    """The float32 graph (serialised) of the block-quantised YuNet graph ``source``."""
    import onnx

    model = onnx.load_from_string(source)
    graph = model.graph
    _rewrite_dequantisation(graph, unblock=False)
    height, width = graph.input[0].type.tensor_type.shape.dim[2:4]
    height.dim_param, width.dim_param = "height", "width"
    del graph.value_info[:]  # shapes recorded for the fixed 640x640 input
    for output in graph.output:
        for dim in output.type.tensor_type.shape.dim[1:2]:  # the anchors: as many as the input's size makes
            dim.dim_param = f"{output.name}_anchors"
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def derive_sface_unblocked(source: bytes) -> bytes:
    """The block-quantised SFace graph ``source`` (serialised) with its blocks restored by standard operators."""
    import onnx

    model = onnx.load_from_string(source)
    _rewrite_dequantisation(model.graph, unblock=True)
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def _rewrite_dequantisation(graph, unblock: bool) -> None:
    """Replace every ``DequantizeLinear`` of a constant in ``graph``: by its float32 value, or (``unblock``, a
    2-D weight blocked along its second axis) by :func:`_unblocked_nodes`; then drop the constants no node
    reads any more and graph inputs that are constants."""
    from onnx import helper, numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    added = []
    nodes = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in constants:
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = constants[node.input[0]]
        block = attributes.get("block_size", 0)
        if (unblock and weight.ndim == 2 and weight.size > _FOLD_AT_MOST and attributes.get("axis", 1) % 2 == 1
                and block and weight.shape[1] % block == 0):
            new_nodes, new_constants = _unblocked_nodes(node, constants, block)
            nodes.extend(new_nodes)
            added.extend(new_constants)
        else:
            folded[node.output[0]] = _dequantised(constants, node, attributes)
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(added)
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in folded.items())
    del graph.node[:]
    graph.node.extend(nodes)
    constant_names = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constant_names and value.name in used]
    del graph.input[:]
    graph.input.extend(inputs)


def _unblocked_nodes(node, constants: dict[str, np.ndarray], block: int) -> tuple[list, list]:
    """(nodes, new constants) computing ``node``'s float32 weight from its int8 one: reshaped to (rows, blocks,
    block), cast, minus the zero point, times the scale (both (rows, blocks, 1)), reshaped back."""
    import onnx
    from onnx import helper, numpy_helper

    weight, scale = constants[node.input[0]], constants[node.input[1]]
    zero = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, np.int8)
    rows, columns = weight.shape
    out = node.output[0]
    blocked = (rows, columns // block, 1)
    new_constants = [numpy_helper.from_array(weight, f"{out}/int8"),
                     numpy_helper.from_array(np.array([rows, columns // block, block], np.int64), f"{out}/blocks"),
                     numpy_helper.from_array(zero.reshape(blocked), f"{out}/zero_point"),
                     numpy_helper.from_array(scale.astype(np.float32).reshape(blocked), f"{out}/scale"),
                     numpy_helper.from_array(np.array([rows, columns], np.int64), f"{out}/shape")]
    nodes = [helper.make_node("Reshape", [f"{out}/int8", f"{out}/blocks"], [f"{out}/int8_blocks"]),
             helper.make_node("Cast", [f"{out}/int8_blocks"], [f"{out}/float_blocks"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Cast", [f"{out}/zero_point"], [f"{out}/float_zero_point"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Sub", [f"{out}/float_blocks", f"{out}/float_zero_point"], [f"{out}/centred"]),
             helper.make_node("Mul", [f"{out}/centred", f"{out}/scale"], [f"{out}/scaled"]),
             helper.make_node("Reshape", [f"{out}/scaled", f"{out}/shape"], [out])]
    return nodes, new_constants


def _dequantised(constants: dict[str, np.ndarray], node, attributes: dict) -> np.ndarray:
    quantised = constants[node.input[0]].astype(np.float32)
    scale = constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else 0 * scale
    axis, block = attributes.get("axis", 1) % max(1, quantised.ndim), attributes.get("block_size", 0)
    if block:  # a scale per block of `block` values along `axis`
        scale, zero = (np.repeat(a, block, axis=axis).take(range(quantised.shape[axis]), axis=axis)
                       for a in (scale, zero))
    elif scale.ndim == 1 and quantised.ndim > 1:  # a scale per channel along `axis`
        shape = [1] * quantised.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((quantised - zero) * scale).astype(np.float32)


def derivations() -> list[tuple]:
    """(source model, derived model, derivation) of every vendored derived file."""
    from media_api.faces import zoo

    return [(zoo.YUNET, zoo.YUNET_FP32, derive_yunet_fp32), (zoo.SFACE, zoo.SFACE_UNBLOCKED, derive_sface_unblocked)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the vendored files instead of writing")
    args = parser.parse_args()
    from media_api.faces import zoo

    differs = 0
    for source, target, derive in derivations():
        derived = derive(zoo.verified_bytes(source).tobytes())
        digest = hashlib.sha256(derived).hexdigest()
        if args.check:
            same = target.path.exists() and target.path.read_bytes() == derived
            differs += not same
            print(f"{target.filename}: {'the same' if same else 'DIFFERS'} (derived {len(derived)} bytes, "
                  f"sha256 {digest})")
            continue
        target.path.write_bytes(derived)
        print(f"wrote {target.path} ({len(derived)} bytes, sha256 {digest})")
    return 1 if differs else 0


if __name__ == "__main__":
    raise SystemExit(main())
