"""The training recipe: strict YAML -> frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgecnn import config
from edgecnn.config import bounded
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
    input_size: int | None = bounded(None, lo=1, hi=8192)  # the model's own minimum is checked in load_recipe
    channels: int | None = bounded(None, lo=1, hi=3)
    weights: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitConfig:
    validation: float = bounded(0.15, lo=0.0, hi=0.9)
    test: float = bounded(0.15, lo=0.0, hi=0.9)


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = bounded(5, lo=0, hi=10_000)
    monitor: str = "val_loss"
    restore_best: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: Optimizer = Optimizer.ADAM
    learning_rate: float = bounded(1e-3, above=0.0, hi=10.0)
    schedule: str = "constant"  # constant | cosine
    momentum: float = bounded(0.9, lo=0.0, hi=0.999)  # SGD only
    batch_size: int = bounded(32, lo=1, hi=65_536)
    epochs: int = bounded(20, lo=1, hi=100_000)
    early_stopping: EarlyStopping | None = field(default_factory=EarlyStopping)
    l2: float = bounded(0.0, lo=0.0, hi=1.0)
    label_smoothing: float = bounded(0.0, lo=0.0, hi=0.99)


@dataclass(frozen=True)
class Augmentation:
    flip: str = "none"  # none | horizontal | vertical | horizontal_and_vertical
    rotation: float = bounded(0.0, lo=0.0, hi=0.5)  # fraction of a full turn
    translation: float = bounded(0.0, lo=0.0, hi=0.9)  # fraction of the size
    zoom: float = bounded(0.0, lo=0.0, hi=0.9)
    crop: float = bounded(0.0, lo=0.0, hi=0.9)  # random crop of (1 - crop) of each side, resized back
    brightness: float = bounded(0.0, lo=0.0, hi=1.0)
    contrast: float = bounded(0.0, lo=0.0, hi=1.0)
    noise: float = bounded(0.0, lo=0.0, hi=10.0)  # Gaussian stddev in model-input units


@dataclass(frozen=True)
class FineTune:
    layers: int = bounded(20, lo=1, hi=10_000)  # unfreeze the top N layers of the base
    from_layer: str | None = None  # or from this named layer upwards
    learning_rate: float = bounded(1e-5, above=0.0, hi=10.0)
    epochs: int = bounded(10, lo=1, hi=100_000)


@dataclass(frozen=True)
class TransferConfig:
    base: str  # imagenet, a weights file, or runs/<name>/model.keras
    head_epochs: int = bounded(10, lo=1, hi=100_000)
    head_learning_rate: float = bounded(1e-3, above=0.0, hi=10.0)
    fine_tune: FineTune | None = None
    cache_features: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    data: str
    model: ModelConfig
    seed: int = bounded(0, lo=0, hi=2**32 - 1)
    split: SplitConfig = field(default_factory=SplitConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augmentation: Augmentation = field(default_factory=Augmentation)
    transfer: TransferConfig | None = None
    strategy: Strategy = Strategy.DEFAULT
    classes: list[str] | None = None  # restrict to these class names (e.g. digits 5-9)
    max_per_class: int | None = bounded(None, lo=1)  # few-shot experiments


def load_recipe(path: str | Path) -> Recipe:
    """Load and check a recipe: keys, types, ranges, and what the model itself allows; no TensorFlow."""
    recipe = config.load(Recipe, path)
    if recipe.training.schedule not in ("constant", "cosine"):
        raise ConfigError(f"{path}: training.schedule must be constant or cosine; received {recipe.training.schedule!r}")
    if recipe.split.validation + recipe.split.test >= 1:
        raise ConfigError(
            f"{path}: split.validation + split.test must stay below 1 (training needs the rest); received "
            f"{recipe.split.validation} + {recipe.split.test}"
        )
    from edgecnn.host.models import MODELS, get_spec, min_input_size

    MODELS.get(recipe.model.name)  # unknown model -> "did you mean"
    spec = get_spec(recipe.model.name)
    if recipe.model.channels not in (None, 1, 3):
        raise ConfigError(f"{path}: 'model.channels' must be 1 or 3; received {recipe.model.channels}")
    smallest = min_input_size(spec)
    if recipe.model.input_size is not None and recipe.model.input_size < smallest:
        raise ConfigError(
            f"{path}: 'model.input_size' {recipe.model.input_size} is below {recipe.model.name}'s smallest input, {smallest}",
            hint=f"use at least {smallest} (edgecnn models lists each model's minimum)",
        )
    return recipe
