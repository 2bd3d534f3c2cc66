"""Writing a network as an ONNX file: the one exporter setting the platform uses.

`experiments.export` writes `model.onnx` of an export folder with it, and `lrunet.latency`'s
`ort-cpu` target times the same graph in ONNX Runtime, so the latency a search logs is the
latency of the file a user gets. torch only (the exporter is part of torch; onnxruntime is not
needed to write).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import torch

ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # the graph's input and output names


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike) -> None:
    """Export `model` (in the mode it is in: eval for a deployable graph) traced on `example`
    (B, C, H, W) to the ONNX file `path`, with a dynamic batch axis, input `ONNX_INPUT` and
    output `ONNX_OUTPUT`, weights inside the file."""
    # The torch.export-based (dynamo) exporter: the legacy TorchScript one is deprecated in
    # torch >= 2.9. external_data=False keeps one self-contained file.
    batch = torch.export.Dim("batch", min=1)
    # the dynamo exporter prints progress lines to stdout: keep the CLI's output clean
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: batch},),  # positional: any forward argument name
            dynamo=True,
            external_data=False,
            verbose=False,
        )
