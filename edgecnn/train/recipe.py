"""The training recipe: strict YAML -> frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgecnn import config
from edgecnn.errors import ConfigError


class Optimizer(StrEnum):
    ADAM = "adam"
    SGD = "sgd"


class Strategy(StrEnum):
    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    input_size: int | None = None
    channels: int | None = None
    weights: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitConfig:
    validation: float = 0.15
    test: float = 0.15


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 5
    monitor: str = "val_loss"
    restore_best: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: Optimizer = Optimizer.ADAM
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant | cosine
    momentum: float = 0.9  # SGD only
    batch_size: int = 32
    epochs: int = 20
    early_stopping: EarlyStopping | None = field(default_factory=EarlyStopping)
    l2: float = 0.0
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class Augmentation:
    flip: str = "none"  # none | horizontal | vertical | horizontal_and_vertical
    rotation: float = 0.0  # fraction of a full turn
    translation: float = 0.0  # fraction of the size
    zoom: float = 0.0
    crop: float = 0.0  # random crop of (1 - crop) of each side, resized back
    brightness: float = 0.0
    contrast: float = 0.0
    noise: float = 0.0  # Gaussian stddev in model-input units


@dataclass(frozen=True)
class FineTune:
    layers: int = 20  # unfreeze the top N layers of the base
    from_layer: str | None = None  # or from this named layer upwards
    learning_rate: float = 1e-5
    epochs: int = 10


@dataclass(frozen=True)
class TransferConfig:
    base: str  # imagenet, a weights file, or runs/<name>/model.keras
    head_epochs: int = 10
    head_learning_rate: float = 1e-3
    fine_tune: FineTune | None = None
    cache_features: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    data: str
    model: ModelConfig
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augmentation: Augmentation = field(default_factory=Augmentation)
    transfer: TransferConfig | None = None
    strategy: Strategy = Strategy.DEFAULT
    classes: list[str] | None = None  # restrict to these class names (e.g. digits 5-9)
    max_per_class: int | None = None  # few-shot experiments


def load_recipe(path: str | Path) -> Recipe:
    recipe = config.load(Recipe, path)
    if recipe.training.batch_size < 1 or recipe.training.epochs < 1:
        raise ConfigError(f"{path}: training.batch_size and training.epochs must be >= 1")
    if recipe.training.schedule not in ("constant", "cosine"):
        raise ConfigError(f"{path}: training.schedule must be constant or cosine; received {recipe.training.schedule!r}")
    from edgecnn.models import MODELS

    MODELS.get(recipe.model.name)  # unknown model -> "did you mean"
    return recipe
