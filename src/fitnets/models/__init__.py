"""The model zoo: one module per family, all reachable through ``create_model``."""

from fitnets.models import (cifar_resnet, depth_study, mobilenetv2, paper_cifar, paper_mnist, vit,  # noqa: F401
                            shufflenetv1, shufflenetv2, vgg, wide_resnet)
from fitnets.core.maxout import Maxout, MaxoutConv2d
from fitnets.models.registry import ModelSpec, create_model, list_models, model_spec, register_model

__all__ = ["Maxout", "MaxoutConv2d", "ModelSpec", "create_model", "list_models", "model_spec",
           "register_model"]
