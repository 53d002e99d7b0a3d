"""Makes the YuNet model's input height and width dynamic, so frames are detected at their own
aspect ratio (padded to a multiple of 32) rather than letterboxed to a square.

YuNet's graph is shape-agnostic already: its Reshapes use -1 and its Resizes scales, which is how
OpenCV's FaceDetectorYN runs it at any input size. Only the declared input and output shapes are
fixed (1x3x640x640, and 6400/1600/400 cells per output). This script renames those dimensions to
symbols and leaves every weight and node as it is.

    pip install onnx              # from PyPI, in any venv (1.23.2 made the shipped file)
    python scripts/yunet_dynamic.py IN.onnx OUT.onnx

models/README.md records the input and output sha256 of the run that made the shipped file.
"""

import sys

import onnx


def main() -> int:
    src, dst = sys.argv[1:3]
    model = onnx.load(src)
    graph = model.graph
    (inp,) = graph.input
    dims = inp.type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 640, 640], "expected YuNet's 1x3x640x640 input"
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in graph.output:
        cells = out.type.tensor_type.shape.dim[1]
        cells.dim_param = f"cells_{out.name.split('_')[1]}"
    # Intermediate shapes inferred for 640x640 would contradict other sizes.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
