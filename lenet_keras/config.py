"""The experiment definition: one frozen dataclass whose fields are every hyperparameter.

Named experiments live in the repository's ``experiments/`` folder, installed as
``lenet_keras.experiments``; the CLI overrides fields with
``dataclasses.replace`` and the rest of the code only reads fields.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from lenet_keras.errors import UserError

ACTIVATIONS = ("tanh", "relu")
POOLINGS = ("average", "max")
FREEZE_POLICIES = ("none", "all_but_head")
# Keras dtype policies; `--precision auto` is resolved to one of them (lenet_keras.training.precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs to know, and nothing else."""

    name: str
    # Data: a TFDS name and TFDS split strings. Validation is carved out of the official train split
    # so that the test split is only ever touched once, by the final evaluation.
    dataset: str = "cifar100"
    train_split: str = "train[:90%]"
    val_split: str = "train[90%:]"
    test_split: str = "test"
    image_size: int = 32  # every image is resized (antialiased, once) to image_size x image_size
    # Architecture (LeNet-5 family; see lenet_keras.models.build_lenet5).
    activation: str = "tanh"
    pooling: str = "average"
    batch_norm: bool = False  # BatchNormalization after the first Dense
    hidden_units: Tuple[int, ...] = (120, 84)
    # Optimisation.
    learning_rate: float = 1e-3
    batch_size: int = 64
    eval_batch_size: int = 1024  # validation/test only: a larger batch changes no result, only speed
    # Training steps run inside one tf.function call: the same steps in the same order, with a
    # fraction of the per-step Python/dispatch overhead (see BENCHMARKS.md). Callbacks then see a
    # batch boundary every steps_per_execution steps; epochs are unaffected.
    steps_per_execution: int = 64
    # XLA-compile each training/eval step. Off: XLA's CPU convolutions are Eigen's, and with oneDNN's
    # (on by default through lenet_keras/__init__.py) the unfused step ran 2x faster than the fused
    # one on a 2-core AVX2 CPU (benchmarks/ATTEMPTS.md). On a GPU turn it on.
    jit_compile: bool = False
    # Keras dtype policy of every layer but the float32 head. The 16-bit policies change the numbers:
    # runs under different policies are not comparable bit for bit (docs/performance.md).
    precision: str = "float32"
    epochs: int = 10
    seed: int = 42
    # Transfer: start from another experiment's trained model and train only a new head.
    source_experiment: Optional[str] = None
    freeze: str = "none"
    # A folder of <class>/<image> files instead of the TFDS ``dataset`` (lenet_keras.data.image_folder).
    # Unless it has train/ val/ test/ sub-folders, these shares of each class become val and test.
    image_dir: Optional[str] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def validate(self) -> ExperimentConfig:
        """Raises UserError naming the first field a user set to something unusable."""
        for field in ("epochs", "batch_size", "eval_batch_size", "image_size", "steps_per_execution"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise UserError(f"{field} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.freeze not in FREEZE_POLICIES:
            raise UserError(f"freeze must be one of {FREEZE_POLICIES}, got {self.freeze!r}")
        if not self.hidden_units or any(int(u) <= 0 for u in self.hidden_units):
            raise UserError(f"hidden_units must be positive sizes, got {self.hidden_units!r}")
        for field in ("val_fraction", "test_fraction"):
            value = getattr(self, field)
            if not 0 < value < 1:
                raise UserError(f"{field} must be between 0 and 1 (exclusive), got {value!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError(
                f"val_fraction + test_fraction must leave images to train on, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        return self

    def replace(self, **changes) -> ExperimentConfig:
        """A copy with the given fields set to the given values, None included (which clears an
        optional field such as ``image_dir``), validated."""
        if "hidden_units" in changes:
            changes["hidden_units"] = tuple(int(u) for u in changes["hidden_units"])
        return dataclasses.replace(self, **changes).validate()

    def replace_given(self, **values) -> ExperimentConfig:
        """``replace`` with the values that are not None: a flag left out (None) keeps the field."""
        return self.replace(**{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    @classmethod
    def from_dict(cls, saved: dict) -> ExperimentConfig:
        """The config ``to_dict`` wrote (a run's config.json); keys it does not know are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in saved.items() if k in fields})
        return config.replace(hidden_units=config.hidden_units)  # JSON's list as a tuple, validated
