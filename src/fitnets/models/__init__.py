"""The model zoo: one module per family, all reachable through ``create_model``."""

from fitnets.core.maxout import Maxout, MaxoutConv2d
from fitnets.models import (  # noqa: F401
                            cifar_resnet,
                            depth_study,
                            mobilenetv2,
                            paper_cifar,
                            paper_mnist,
                            shufflenetv1,
                            shufflenetv2,
                            vgg,
                            vit,
                            wide_resnet,
)
from fitnets.models.registry import ModelSpec, create_model, list_models, model_spec, register_model

__all__ = ["Maxout", "MaxoutConv2d", "ModelSpec", "create_model", "list_models", "model_spec",
           "register_model"]
