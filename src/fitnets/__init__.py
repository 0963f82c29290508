"""fitnets: FitNets (Romero et al., ICLR 2015) — hint-based knowledge distillation for any PyTorch model."""

from fitnets.errors import FitNetsError
from fitnets.core.fitnet import FitNet
from fitnets.core.losses import hint_loss, kd_loss, kd_weight_at, soft_cross_entropy
from fitnets.models import create_model, list_models, model_spec, register_model
from fitnets.core.regressor import build_regressor
from fitnets.core.taps import tap, trace
from fitnets.core.teacher import FrozenTeacher
from fitnets.training.config import RunConfig, load_config
from fitnets.training.run import Run
from fitnets.api import distill, train
from fitnets.trained import evaluate, export
from fitnets.checkpoint import load_weights

__version__ = "0.1.0"

__all__ = ["FitNet", "FitNetsError", "FrozenTeacher", "build_regressor", "create_model", "distill", "evaluate",
           "export", "hint_loss", "kd_loss", "load_weights", "train", "kd_weight_at", "list_models", "load_config",
           "model_spec", "register_model", "Run", "RunConfig", "soft_cross_entropy", "tap", "trace"]
