"""The study's named experiments; each module holds one declarative config."""

from lenet_keras.config import ExperimentConfig
from lenet_keras.errors import UserError
from lenet_keras.experiments import transfer, tuned, vanilla

EXPERIMENTS = {
    "vanilla": vanilla.CONFIG,
    "tuned": tuned.CONFIG,
    "transfer": transfer.CONFIG,
}
# The order `--exp all` runs them in: transfer needs tuned's model.
STUDY_ORDER = ("vanilla", "tuned", "transfer")


def get_config(name: str) -> ExperimentConfig:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UserError(
            f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)} or all"
        ) from None
