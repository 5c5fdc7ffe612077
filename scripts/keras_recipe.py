"""The competition's fixed-model recipe in tf-keras, as the organisers ran it: the baseline dcloop is timed against.

    .venv-keras/bin/python scripts/keras_recipe.py ../shared/data/roman-numerals [--epochs 100] [--seed 1]
        [--threads N]

The Data-Centric AI Competition 2021 trained one fixed model on the participants' images: ResNet50
without weights, cut after its first stage (``conv2_block3_out``), global average pooling and a
10-way dense layer on 32x32 images; Adam 1e-4, batch 8, categorical cross-entropy on logits,
100 epochs, the best validation epoch checkpointed and scored. This script follows that recipe
with tf-keras (Keras 2, the ``tf.keras`` of 2021): images loaded by
``image_dataset_from_directory`` from train/ and val/, the best model scored on label_book/.

--seed seeds the weights, the batch order and the dataset shuffle (the organisers fixed the
shuffle's seed at 123 and left the weights unseeded). --threads N limits TensorFlow to N intra-op
and N inter-op threads (default: TensorFlow's own choice, as the organisers ran it).

Prints one JSON object on stdout: val_accuracy, label_book_accuracy, seconds (the whole script,
imports included), fit_seconds, epochs, best_epoch, seed, threads, tf_version. Keras' progress
and TensorFlow's logs go to stderr. Needs tensorflow and tf-keras, not dcloop (pyproject's
``keras-baseline`` extra); the images are read where they lie.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before TensorFlow's import, which takes seconds

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

IMAGE_SIZE = (32, 32)
BATCH = 8
LEARNING_RATE = 1e-4
CUT_AT = "conv2_block3_out"  # the end of ResNet50's first stage


def load_split(keras, folder: Path, classes: list[str], seed: int, shuffle: bool):
    return keras.utils.image_dataset_from_directory(
        str(folder), labels="inferred", label_mode="categorical", class_names=classes,
        batch_size=BATCH, image_size=IMAGE_SIZE, seed=seed, shuffle=shuffle)


def build_model(keras, classes: int):
    """ResNet50 from scratch, cut after its first stage, pooled, one dense layer of logits."""
    base = keras.applications.ResNet50(input_shape=IMAGE_SIZE + (3,), include_top=False, weights=None)
    base = keras.Model(base.inputs, outputs=[base.get_layer(CUT_AT).output])
    inputs = keras.Input(shape=IMAGE_SIZE + (3,))
    x = keras.applications.resnet.preprocess_input(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def import_keras(threads: int):
    """tf_keras, with TensorFlow's thread pools set before its first op (they cannot change after)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # errors only
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras is Keras 2 too, not Keras 3
    import tensorflow as tf
    import tf_keras as keras
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf, keras


def run(data: Path, epochs: int, seed: int, threads: int) -> dict:
    tf, keras = import_keras(threads)
    keras.utils.set_random_seed(seed)
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    train = load_split(keras, data / "train", classes, seed, shuffle=True)
    val = load_split(keras, data / "val", classes, seed, shuffle=True)
    label_book = load_split(keras, data / "label_book", classes, seed, shuffle=False)
    model = build_model(keras, len(classes))
    with tempfile.TemporaryDirectory(prefix="keras-recipe-") as folder:
        best = str(Path(folder) / "best_model")  # a SavedModel folder, as the organisers' script saved
        checkpoint = keras.callbacks.ModelCheckpoint(best, save_best_only=True, monitor="val_accuracy")
        fit_started = time.perf_counter()
        history = model.fit(train, validation_data=val, epochs=epochs, callbacks=[checkpoint], verbose=2)
        fit_seconds = time.perf_counter() - fit_started
        model = keras.models.load_model(best)
        val_accuracy = model.evaluate(val, verbose=0)[1]
        label_book_accuracy = model.evaluate(label_book, verbose=0)[1]
    val_history = history.history["val_accuracy"]
    return {"val_accuracy": float(val_accuracy), "label_book_accuracy": float(label_book_accuracy),
            "fit_seconds": round(fit_seconds, 2), "epochs": len(val_history),
            "best_epoch": 1 + val_history.index(max(val_history)), "tf_version": tf.__version__,
            "keras_version": keras.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/, val/, label_book/, one subfolder per class")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-op and inter-op threads (default 0: TensorFlow's choice)")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints its progress on stdout
        found = run(args.data.resolve(), args.epochs, args.seed, args.threads)
    found.update(seed=args.seed, threads=args.threads, seconds=round(time.perf_counter() - STARTED, 2))
    print(json.dumps(found))


if __name__ == "__main__":
    main()
