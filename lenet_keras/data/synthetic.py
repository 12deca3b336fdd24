"""Writes small, learnable stand-ins for CIFAR-100 and STL-10 in the real TFDS on-disk format.

Tests and benchmarks cannot download the real archives here, so they prepare these into a
``data_dir``; ``tfds.load("cifar100", data_dir=...)`` then reads them through TFDS's own reader,
exactly as it reads the real data. Each class has its own colour and stripe pattern plus noise,
so a model that learns anything scores well above chance, and one fed scrambled labels does not.

    python -m lenet_keras.data.synthetic --data_dir /tmp/tfds --train 2000 --test 500
    python -m lenet_keras.data.synthetic --data_dir /tmp/hard --difficulty hard --train 50000 --test 10000

``--difficulty hard`` makes data as hard as real CIFAR-100 for LeNet-5 (``Difficulty``).
"""

from __future__ import annotations

if __name__ == "__main__":  # first, so Ctrl-C while the command imports is one line too
    from lenet_keras import startup

    startup.exit_on_interrupt()

import dataclasses

import numpy as np

CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables "
    "household_electrical_devices household_furniture insects large_carnivores "
    "large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores "
    "medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2"
).split()
STL10_CLASSES = "airplane bird car cat deer dog horse monkey ship truck".split()
# Each split its own examples (train's offset 0 keeps every earlier data set unchanged).
SPLIT_SEED_OFFSET = {"train": 0, "test": 1, "validation": 2}
# The groups of classes a hard data set confuses: CIFAR-100's coarse classes (the synthetic
# coarse label is label // 5), and pairs of STL-10's.
CIFAR100_GROUP, STL10_GROUP = 5, 2


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """How hard the generated images are to classify.

    Each image's colour and stripes (direction, frequency) encode its class; an image is drawn with
    stripes of ``amplitude`` in a random phase, its colour moved by ``colour_jitter`` per channel
    and ``brightness_jitter`` over all three, its stripes turned by ``angle_jitter`` radians, and
    Gaussian pixel noise of ``noise``. With probability ``confusion`` it shows the look of a random
    class of its own group (``group`` consecutive classes: CIFAR-100's coarse classes, STL-10's
    pairs), as real CIFAR-100's close classes (maple and oak) look alike: no model can tell those
    apart, so accuracy has a ceiling and a model that learned the data is unsure between them.
    """

    amplitude: float
    noise: float
    colour_jitter: float = 0.0
    brightness_jitter: float = 0.0
    angle_jitter: float = 0.0
    random_phase: bool = False
    confusion: float = 0.0


# easy: LeNet-5 scores 90-100% and is sure of itself (what every earlier test was written on).
# hard: LeNet-5 lands in real CIFAR-100's range (docs/data.md has the measured numbers).
DIFFICULTIES = {
    "easy": Difficulty(amplitude=35, noise=12),
    "hard": Difficulty(amplitude=30, noise=15, colour_jitter=8, brightness_jitter=5,
                       angle_jitter=0.05, random_phase=True, confusion=0.8),
}


def class_images(labels: np.ndarray, size: int, num_classes: int, seed: int,
                 difficulty: str = "easy", group: int = 1) -> np.ndarray:
    """uint8 images [n, size, size, 3] whose colour and stripe direction/frequency encode the label,
    at ``difficulty`` (``DIFFICULTIES``), confusing classes within ``group``s of that many."""
    d = DIFFICULTIES[difficulty]
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(1234).integers(40, 216, size=(num_classes, 3))
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        if d.confusion and rng.random() < d.confusion:
            label = label // group * group + rng.integers(0, group)
        angle = np.pi * (label % 7) / 7
        if d.angle_jitter:
            angle += rng.normal(0, d.angle_jitter)
        phase = rng.uniform(0, 2 * np.pi) if d.random_phase else 0.0
        freq = 2 + (label // 7) % 5
        stripes = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        colour = palette[label].astype(np.float64)
        if d.colour_jitter or d.brightness_jitter:
            colour = colour + rng.normal(0, d.colour_jitter, 3) + rng.normal(0, d.brightness_jitter)
        pixels = colour[None, None, :] + d.amplitude * stripes[..., None]
        pixels = pixels + rng.normal(0, d.noise, size=pixels.shape)
        images[i] = np.clip(pixels, 0, 255).astype(np.uint8)
    return images


class _SyntheticMixin:
    """Replaces download + parsing by generated examples; features and layout stay the real ones."""

    SPLIT_SIZES = {"train": 500, "test": 100}
    SEED = 0
    DIFFICULTY = "easy"

    def _split_generators(self, dl_manager):
        self._set_label_names()
        return {
            split: self._generate_examples(split=split, n=n)
            for split, n in self.SPLIT_SIZES.items()
        }


def _cifar100_builder():
    from tensorflow_datasets.image_classification import cifar

    class SyntheticCifar100(_SyntheticMixin, cifar.Cifar100, skip_registration=True):
        name = "cifar100"

        def _set_label_names(self):
            self.info.features["label"].names = CIFAR100_FINE
            self.info.features["coarse_label"].names = CIFAR100_COARSE

        def _generate_examples(self, split, n):
            offset = SPLIT_SEED_OFFSET.get(split, 0)
            rng = np.random.default_rng(self.SEED + offset)
            labels = rng.integers(0, 100, size=n)
            images = class_images(labels, 32, 100, seed=self.SEED + 10 + offset,
                                  difficulty=self.DIFFICULTY, group=CIFAR100_GROUP)
            for i in range(n):
                key = f"{split}_{i:05d}"
                yield key, {
                    "id": key,
                    "image": images[i],
                    "label": int(labels[i]),
                    "coarse_label": int(labels[i]) // 5,
                }

    return SyntheticCifar100


def _stl10_builder():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.stl10 import stl10_dataset_builder as stl10

    class SyntheticStl10(_SyntheticMixin, stl10.Builder, skip_registration=True):
        name = "stl10"

        def _info(self):
            # The real builder reads its description from package files next to its module.
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(96, 96, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }),
                supervised_keys=("image", "label"),
                homepage="http://ai.stanford.edu/~acoates/stl10/",
            )

        def _set_label_names(self):
            self.info.features["label"].names = STL10_CLASSES

        def _generate_examples(self, split, n):
            offset = SPLIT_SEED_OFFSET.get(split, 0)
            rng = np.random.default_rng(self.SEED + 100 + offset)
            if split == "unlabelled":
                labels = np.full(n, -1)
                images = class_images(rng.integers(0, 10, size=n), 96, 10, seed=self.SEED + 200,
                                      difficulty=self.DIFFICULTY, group=STL10_GROUP)
            else:
                labels = rng.integers(0, 10, size=n)
                images = class_images(labels, 96, 10, seed=self.SEED + 110 + offset,
                                      difficulty=self.DIFFICULTY, group=STL10_GROUP)
            for i in range(n):
                yield i, {"image": images[i], "label": int(labels[i])}

    return SyntheticStl10


BUILDERS = {"cifar100": _cifar100_builder, "stl10": _stl10_builder}


def prepare(
    name: str, data_dir: str, train: int = 500, test: int = 100, seed: int = 0, validation: int = 0,
    difficulty: str = "easy",
) -> str:
    """Writes synthetic ``name`` ("cifar100" or "stl10") into ``data_dir``; returns its folder.

    ``validation`` > 0 adds a "validation" split of that size, as many TFDS data sets have.
    ``difficulty`` is one of ``DIFFICULTIES``.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    # Imported here, not at the top: the command imports TensorFlow first, without its chatter.
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    cls = BUILDERS[name]()
    sizes = {"train": train, "test": test}
    if validation:
        sizes["validation"] = validation
    if name == "stl10":
        sizes["unlabelled"] = 8  # STL-10 has this split; the study never reads it
    builder_cls = type(cls.__name__, (cls,), {"SPLIT_SIZES": sizes, "SEED": seed, "name": name,
                                              "DIFFICULTY": difficulty}, skip_registration=True)
    builder = builder_cls(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return str(builder.data_path)


def mislabel(data_path: str, split: str, label: int, every: int = 10) -> int:
    """Sets ``label`` on every ``every``-th example of ``split`` in the prepared ``data_path``.

    TFDS refuses to write a label outside a data set's classes, so a data set that holds one (the
    damage validation must catch) is made by rewriting the prepared records in place; their count,
    and so TFDS's split sizes, stay the same. Returns how many examples were changed.
    """
    import glob
    import os

    import tensorflow as tf

    changed = seen = 0
    for path in sorted(glob.glob(os.path.join(data_path, f"*-{split}.tfrecord-*"))):
        records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                if seen % every == 0:
                    example = tf.train.Example.FromString(record)
                    example.features.feature["label"].int64_list.value[:] = [label]
                    record = example.SerializeToString()
                    changed += 1
                seen += 1
                writer.write(record)
    return changed


def _define_flags() -> None:
    """The command's flags; defined only when it runs (tests import this module beside train's)."""
    from absl import flags

    from lenet_keras import cli

    flags.DEFINE_string("data_dir", None, "TFDS data dir to write the data sets into.", required=True)
    flags.DEFINE_list("datasets", ["cifar100", "stl10"], "Data sets to write: cifar100, stl10.")
    flags.register_validator("datasets", lambda names: bool(names) and set(names) <= set(BUILDERS),
                             message=f"--datasets takes {', '.join(BUILDERS)}, comma-separated")
    flags.DEFINE_integer("train", 500, "Training images per data set.", **cli.COUNT_BOUNDS)
    flags.DEFINE_integer("test", 100, "Test images per data set.", **cli.COUNT_BOUNDS)
    flags.DEFINE_integer("seed", 0, "Seed of the images' noise.", **cli.SEED_BOUNDS)
    flags.DEFINE_enum("difficulty", "easy", list(DIFFICULTIES),
                      "easy: LeNet-5 scores 90-100%; hard: real CIFAR-100's range (docs/data.md).")
    cli.require_writable_folder("data_dir")


def main() -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    for name in FLAGS.datasets:
        print(prepare(name, FLAGS.data_dir, FLAGS.train, FLAGS.test, FLAGS.seed,
                      difficulty=FLAGS.difficulty))


if __name__ == "__main__":
    from lenet_keras import cli

    _define_flags()
    cli.run(main, on_interrupt="rerun the same command: TFDS prepares a data set "
            "in a temporary folder and renames it into place when it is complete")
