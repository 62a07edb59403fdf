"""Each dataset's facts and the paper's recipe for it, in one place: shape, classes, where it comes from,
default preprocessing, validation hold-out and the "+ augmentation" setting.

Sources: "local" reads files already on disk (or generates in memory) with no network and no
TensorFlow; "tfds" reads tensorflow-datasets' prepared array_record files (gap_jax.data.tfds_source).
`config.data_source = "auto"` takes the first source a dataset lists.
"""

import dataclasses
from typing import Callable

from gap_jax.data import arrangement, counterexample, fashion_mnist, position, shapes, synthetic


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int | None  # None: the loader says (synthetic: from the config)
  image_shape: tuple[int, int, int] | None
  tfds_name: str | None = None  # the tensorflow-datasets builder, for source "tfds"
  local: Callable | None = None  # load(config) -> (train, test, num_classes), for source "local"
  preprocess: str = "standardize"  # what config.preprocess="auto" means (gap_jax.data.preprocess)
  # Examples per class held out of each split when config.eval_split="validation" (None: no recipe,
  # set config.validation_per_class). Drawn at random with a fixed seed, the same in every run.
  validation: dict[str, int] | None = None
  extra_split: str | None = None  # more training data, used when config.train_extra
  # The paper's "+ augmentation" rows: values to give config.crop_padding and config.flip.
  crop_padding: int = 0
  flip: bool = False

  @property
  def sources(self) -> tuple[str, ...]:
    return tuple(s for s, has in (("local", self.local), ("tfds", self.tfds_name)) if has)


# CIFAR: GCN (scale 55) + ZCA (0.1) as in pylearn2's maxout recipe, tuned on 40k/10k; translations of up
# to 8 px (maxout's WindowAndFlip pad 8; NiN does not give its size) and flips. SVHN: LCN; validation is
# 400 per class from train + 200 per class from extra (the extra part only with train_extra); no flips
# for digits. MNIST: no augmentation, no preprocessing beyond scaling. Fashion-MNIST: no paper recipe;
# local IDX files first so it needs no network.
SPECS = {
    "cifar10": DatasetSpec(10, (32, 32, 3), "cifar10", preprocess="gcn_zca", validation={"train": 1000},
                           crop_padding=8, flip=True),
    "cifar100": DatasetSpec(100, (32, 32, 3), "cifar100", preprocess="gcn_zca",
                            validation={"train": 100}, crop_padding=8, flip=True),
    "svhn_cropped": DatasetSpec(10, (32, 32, 3), "svhn_cropped", preprocess="lcn",
                                validation={"train": 400, "extra": 200}, extra_split="extra"),
    "mnist": DatasetSpec(10, (28, 28, 1), "mnist", validation={"train": 1000}),
    "fashion_mnist": DatasetSpec(10, (28, 28, 1), "fashion_mnist", local=fashion_mnist.load,
                                 validation={"train": 1000}),
    "synthetic": DatasetSpec(None, None, local=synthetic.load),
    # Procedural, with ground-truth masks and boxes (their generate() functions) for the experiments.
    "arrangement": DatasetSpec(len(arrangement.CLASS_NAMES), None, local=arrangement.load),
    "counterexample": DatasetSpec(len(counterexample.CLASS_NAMES), None, local=counterexample.load),
    "shapes": DatasetSpec(len(shapes.CLASS_NAMES), None, local=shapes.load),
    "position": DatasetSpec(len(position.CLASS_NAMES), None, local=position.load),
}
