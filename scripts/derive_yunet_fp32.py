"""Derive the YuNet graph onnxruntime runs from OpenCV Zoo's block-quantised file (a build step, not run time).

Why: OpenCV's DNN runs YuNet at ~110 ms a 1080p frame on one core, onnxruntime at ~45 ms (docs/faces.md,
"Speed"), but onnxruntime 1.32 cannot run the zoo's int8bq file: the session loads, the first run fails on a
bias's DequantizeLinear ("block_size must be 0 for per-tensor quantization"). The int8bq file is weight-only
quantisation: OpenCV itself folds the weights back to float32 and computes in float32. This script does that
fold once, offline: every ``DequantizeLinear`` of a constant becomes the float32 constant ``(q - zero_point) *
scale`` (scale and zero point repeated over each block of ``block_size``: 9 to 64 values here), any constant
also declared as a graph input stops being one (a safeguard: this file declares none), and the input's height
and width become free (YuNet is fully convolutional: one session serves every frame size). No weight is
changed otherwise; the result computes what OpenCV computes.

    .venv/bin/python scripts/derive_yunet_fp32.py            # writes media_api/faces/models/<fp32 file>
    .venv/bin/python scripts/derive_yunet_fp32.py --check    # exit 1 if the vendored file is not what this gives

Needs the ``onnx`` package (requirements-dev.txt); the product needs only onnxruntime and the output file,
whose sha256 ``media_api/faces/zoo.py`` records (tests/test_identity_calibration.py re-derives it).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def derive(source: bytes) -> bytes:
    """The float32 graph (serialised) of the block-quantised YuNet graph ``source``."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(source)
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in constants:
            nodes.append(node)
            continue
        folded[node.output[0]] = _dequantised(constants, node, {a.name: helper.get_attribute_value(a)
                                                                for a in node.attribute})
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in folded.items())
    del graph.node[:]
    graph.node.extend(nodes)
    constant_names = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constant_names and value.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    height, width = graph.input[0].type.tensor_type.shape.dim[2:4]
    height.dim_param, width.dim_param = "height", "width"
    del graph.value_info[:]  # shapes recorded for the fixed 640x640 input
    for output in graph.output:
        for dim in output.type.tensor_type.shape.dim[1:2]:  # the anchors: as many as the input's size makes
            dim.dim_param = f"{output.name}_anchors"
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the vendored file instead of writing it")
    args = parser.parse_args()
    from media_api.faces import zoo

    derived = derive(zoo.verified_bytes(zoo.YUNET).tobytes())
    digest = hashlib.sha256(derived).hexdigest()
    target = zoo.YUNET_FP32.path
    if args.check:
        same = target.exists() and target.read_bytes() == derived
        print(f"{target.name}: {'the same' if same else 'DIFFERS'} (derived {len(derived)} bytes, sha256 {digest})")
        return 0 if same else 1
    target.write_bytes(derived)
    print(f"wrote {target} ({len(derived)} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
