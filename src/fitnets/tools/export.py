"""Shipping the student alone — no regressor, no teacher: safetensors weights with a JSON description of the
architecture, and ONNX, with an output-parity check against ONNX Runtime when it is installed."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fitnets.checkpoint import load_weights, save_checkpoint
from fitnets.core.outputs import logits_of
from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model, model_spec

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4


class _LogitsOnly(nn.Module):
    """The model with its forward's logits as its one output (``fitnets.core.outputs``), for ONNX."""

    def __init__(self, model: nn.Module, key: str | None):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return logits_of(self.model(x), self.key)


def export_student(model: nn.Module, name: str, out_dir: str | Path, model_args: dict[str, Any] | None = None,
                   onnx: bool = True, logits_key: str | None = None,
                   input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Write ``model`` (a registered architecture ``name`` built with ``model_args``) to ``out_dir``:
    ``model.safetensors``, ``model.json`` and, with ``onnx``, ``model.onnx`` (batch dimension dynamic).

    The ONNX graph's one output is the logits, found in the forward's output by ``fitnets.core.outputs``'s rule
    (or ``logits_key``).

    Returns:
        What was written, with ``onnx_max_abs_diff`` when ONNX Runtime could check the ONNX file.

    Raises:
        FitNetsError: the ONNX export failed, or ONNX Runtime's outputs differ from PyTorch's by more than
            ``PARITY_TOLERANCE``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(input_shape or model_spec(name).input_shape)
    if not shape:
        raise FitNetsError(f"the input shape of {name} is not known: export it from its run folder")
    model = model.eval().to("cpu")
    # A tensor of another memory format or a shared one cannot go into safetensors as is.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(out / "model.safetensors", state, {"model": name, "model_args": model_args or {}})
    info: dict[str, Any] = {"model": name, "model_args": model_args or {}, "input_shape": list(shape),
                            "parameters": sum(p.numel() for p in model.parameters()),
                            "weights": "model.safetensors", "torch": torch.__version__}
    if onnx:
        x = torch.randn(4, *shape)
        model = _LogitsOnly(model, logits_key).eval()
        model(x[:1])  # no logits by the rule: one line, before the exporter's own messages
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
                torch.onnx.export(model, (x,), str(out / "model.onnx"), dynamo=False, opset_version=17,
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as err:  # the exporter raises many types; all mean the model can't be exported
            raise FitNetsError(f"ONNX export of {name} failed: {str(err).splitlines()[0]}") from None
        info["onnx"] = "model.onnx"
        diff = onnx_parity(model, out / "model.onnx", x)
        if diff is not None:
            info["onnx_max_abs_diff"] = diff
            if diff > PARITY_TOLERANCE:
                raise FitNetsError(f"ONNX Runtime output differs from PyTorch by {diff:.3g} (> {PARITY_TOLERANCE})")
    (out / "model.json").write_text(json.dumps(info, indent=2))
    return info


@torch.no_grad()
def onnx_parity(model: nn.Module, path: Path, x: torch.Tensor) -> float | None:
    """Max absolute difference between ONNX Runtime's and PyTorch's outputs on ``x``; ``None`` without
    onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        log.info("onnxruntime is not installed: ONNX parity not checked (pip install 'fitnets[export]')")
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    return float((torch.from_numpy(got) - model(x)).abs().max())


def load_exported(out_dir: str | Path) -> nn.Module:
    """Rebuild the exported student from ``model.json`` and ``model.safetensors``."""
    out = Path(out_dir)
    if not (out / "model.json").is_file():
        raise FitNetsError(f"{out} holds no exported model (model.json missing)")
    info = json.loads((out / "model.json").read_text())
    model = create_model(info["model"], **info["model_args"])
    return load_weights(model, out / info["weights"]).eval()
