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
from torch.jit import TracerWarning  # pyright: ignore[reportPrivateImportUsage] (documented; not in __all__)

from fitnets.checkpoint import load_weights, save_checkpoint
from fitnets.core.outputs import logits_of
from fitnets.data.augment import CentreCrop, to_float
from fitnets.data.datasets import Normalize
from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model, model_spec

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # of the logits' largest magnitude, or absolute below 1
EXPORT_BATCH = 4
# The ONNX file declares a dynamic batch; the legacy exporter traces one forward at EXPORT_BATCH, and a size the
# model reads as a Python int (``len(x)``, ``int(x.shape[0])``) is recorded as a constant. Batch 1 and a batch
# other than the export's catch that, and an odd one catches a size halved or doubled inside the model.
PARITY_BATCHES = (1, 3, EXPORT_BATCH)


class _LogitsOnly(nn.Module):
    """The model with its forward's logits as its one output (``fitnets.core.outputs``), for ONNX."""

    def __init__(self, model: nn.Module, key: str | int | None):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return logits_of(self.model(x), self.key)


def export_student(model: nn.Module, name: str, out_dir: str | Path, model_args: dict[str, Any] | None = None,
                   onnx: bool = True, logits_key: str | int | None = None,
                   input_shape: tuple[int, ...] | None = None,
                   eval_view: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` (a registered architecture ``name`` built with ``model_args``) to ``out_dir``:
    ``model.safetensors``, ``model.json`` and, with ``onnx``, ``model.onnx`` (batch dimension dynamic).
    ``eval_view`` (``fitnets.training.record.eval_view``): how the run prepared an image for the accuracy it
    reported — centre crop, pixels / 255, mean and std — recorded in ``model.json`` for ``load_exported``.

    The ONNX graph's one output is the logits, found in the forward's output by ``fitnets.core.outputs``'s rule
    (or ``logits_key``).

    Returns:
        What was written, with ``onnx_max_abs_diff`` (the largest over ``PARITY_BATCHES``) when ONNX Runtime
        could check the ONNX file.

    Raises:
        FitNetsError: the ONNX export failed, or ONNX Runtime cannot run the file at one of ``PARITY_BATCHES`` or
            its outputs differ from PyTorch's by more than ``PARITY_TOLERANCE`` (``model.onnx`` is then removed).
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
    if eval_view is not None:
        info["eval_view"] = eval_view
    if onnx:
        model = _LogitsOnly(model, logits_key).eval()
        with torch.no_grad():
            model(torch.randn(1, *shape))  # no logits by the rule: one line, before the exporter's own messages
        fixed_at = _export_onnx(model, name, out / "model.onnx", shape)
        info["onnx"] = "model.onnx"
        try:
            diff = onnx_parity(model, out / "model.onnx", shape)
        except FitNetsError as err:
            (out / "model.onnx").unlink()  # no file that declares a batch it cannot run
            raise FitNetsError(f"{err}{fixed_at}; model.onnx removed") from None
        if diff is not None:
            info["onnx_max_abs_diff"] = diff
            info["onnx_batches_checked"] = list(PARITY_BATCHES)
    (out / "model.json").write_text(json.dumps(info, indent=2))
    return info


def _export_onnx(model: nn.Module, name: str, path: Path, shape: tuple[int, ...]) -> str:
    """Trace ``model`` at ``EXPORT_BATCH`` into ``path``, batch dynamic. Returns where the model's own code made
    the trace take a size as a constant (``" (the trace fixed a size at vit.py:47: ...)"``), or ``""``, for the
    parity check's message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the tracer's warnings are read below, not shown
        try:
            torch.onnx.export(model, (torch.randn(EXPORT_BATCH, *shape),), str(path), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as err:  # the exporter raises many types; all mean the model can't be exported
            raise FitNetsError(f"ONNX export of {name} failed: {str(err).splitlines()[0]}") from None
    torch_dir = str(Path(torch.__file__).parent)
    for w in caught:  # torch's own modules warn too (nn.MultiheadAttention's checks); the model's code is the lead
        if issubclass(w.category, TracerWarning) and not w.filename.startswith(torch_dir):
            return (f" (the trace fixed a size at {Path(w.filename).name}:{w.lineno}: "
                    f"read it as x.shape[0], not len(x) or int(...))")
    return ""


@torch.no_grad()
def onnx_parity(model: nn.Module, path: Path, shape: tuple[int, ...]) -> float | None:
    """Max absolute difference between ONNX Runtime's and PyTorch's outputs on random inputs of ``shape`` at each
    of ``PARITY_BATCHES``; ``None`` without onnxruntime.

    Raises:
        FitNetsError: ONNX Runtime cannot run the file at a batch, or its outputs differ from PyTorch's by more
            than ``PARITY_TOLERANCE`` (relative to the logits' largest magnitude when above 1).
    """
    try:
        import onnxruntime
    except ImportError:
        log.info("onnxruntime is not installed: ONNX parity not checked (pip install 'fitnets[export]')")
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # a failed run is reported below, in one line, not also in ONNX Runtime's log
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in PARITY_BATCHES:
        x = torch.randn(batch, *shape)
        try:
            got = session.run(None, {"images": x.numpy()})[0]
        except Exception as err:  # onnxruntime's own error types; any of them means this batch does not run
            cause = str(err).splitlines()[0].rsplit("Status Message: ", 1)[-1]
            raise FitNetsError(f"the ONNX file, exported at batch {EXPORT_BATCH}, does not run at batch {batch} "
                               f"in ONNX Runtime ({cause})") from None
        expected = model(x)
        diff = float((torch.from_numpy(got) - expected).abs().max())
        # float32 rounding grows with the logits: an untrained deep ResNet's reach 1e8
        allowed = PARITY_TOLERANCE * max(1.0, float(expected.abs().max()))
        if not diff <= allowed:  # NaN too
            raise FitNetsError(f"ONNX Runtime's output differs from PyTorch's by {diff:.3g} at batch {batch} "
                               f"(> {allowed:.3g}): the ONNX file does not compute what the model does")
        worst = max(worst, diff)
    return worst


class EvalView(nn.Module):
    """An exported student behind the evaluation view its accuracy was measured with (``model.json``'s
    ``eval_view``): raw images — uint8 pixels ``(N, C, H, W)``, or floats in [0, 1] — are centre-cropped (when
    the run trained on random-resized crops), scaled to [0, 1] and normalised by the run's mean and std."""

    def __init__(self, model: nn.Module, view: dict[str, Any]):
        super().__init__()
        self.model = model
        size = tuple(view["input_shape"][1:])
        self.crop = CentreCrop(size, view["centre_crop"]) if view.get("centre_crop") else None
        self.normalize = Normalize(view["mean"], view["std"]) if view.get("mean") is not None else None

    def forward(self, images: torch.Tensor):
        x = self.crop(images) if self.crop is not None else to_float(images)
        return self.model(self.normalize(x) if self.normalize is not None else x)


def load_exported(out_dir: str | Path, model: nn.Module | None = None, *, view: bool = False) -> nn.Module:
    """Rebuild the exported student from ``model.json`` and ``model.safetensors``.

    Args:
        model: the architecture to load the weights into — needed for a student exported from a Python object
            (``model.json`` names it ``python:module.Class``, which cannot be built by name).
        view: put the recorded evaluation view in front (``EvalView``): the module then takes raw images, as
            the run's test split gave them, and sees what the reported accuracy was measured on.
    """
    out = Path(out_dir)
    if not (out / "model.json").is_file():
        raise FitNetsError(f"{out} holds no exported model (model.json missing)")
    info = json.loads((out / "model.json").read_text())
    if model is None:
        if info["model"].startswith("python:"):
            raise FitNetsError(f"{out} holds a student exported from a Python object ({info['model']}): give "
                               "load_exported an instance to load the weights into (model=...)")
        model = create_model(info["model"], **info["model_args"])
    model = load_weights(model, out / info["weights"]).eval()
    if view:
        if "eval_view" not in info:
            raise FitNetsError(f"{out}/model.json records no evaluation view (exported before exports recorded "
                               "one): export it again from its run folder")
        model = EvalView(model, info["eval_view"]).eval()
    return model
