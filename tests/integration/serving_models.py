"""Small real SavedModels for the serving tests, each made in well under a second.

- digits: a tf_keras CNN saved the way ``cellship.job.save`` saves (``model.save(path,
  save_format="tf")``): input "image" [-1, 8, 8, 1] float32, output named after its last layer.
- half_plus_three: TF Serving's own documentation model (y = 0.5 x + 3) with the regress and
  classify signatures its REST examples call, made with ``tf.saved_model.save``.
- strings: DT_STRING in (b64 on the wire); a ``*_bytes`` output (b64 back), a string and an int.
- multi: two named inputs, two outputs (row objects vs columns).
- slow: ~50 ms of matrix products per call whatever the batch, to fill a queue on purpose.
- sleepy: y = 2x after max(x) matrix products: a request in flight for as long as it asks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf


def digits(path: Path) -> Path:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.Input(shape=(8, 8, 1), name="image"),
        tf_keras.layers.Conv2D(8, 3, activation="relu", padding="same"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ])
    model.save(str(path), save_format="tf")
    return path


class HalfPlusThree(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        return {"y": 0.5 * x + 3.0}

    def _parse(self, serialized):
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"][:, 0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": 0.5 * self._parse(inputs) + 3.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = tf.sigmoid(self._parse(inputs))
        n = tf.shape(p)[0]
        classes = tf.tile(tf.constant([["negative", "positive"]]), [n, 1])
        return {"classes": classes, "scores": tf.stack([1.0 - p, p], axis=1)}


def half_plus_three(path: Path) -> Path:
    module = HalfPlusThree()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.predict,
        "tensorflow/serving/regress": module.regress,
        "tensorflow/serving/classify": module.classify,
    })
    return path


class Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return {"length": tf.strings.length(text), "upper": tf.strings.upper(text),
                "echo_bytes": tf.strings.join([text, tf.constant(b"\xff")])}


def strings(path: Path) -> Path:
    module = Strings()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


class Multi(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int32, name="b")])
    def serve(self, a, b):
        return {"sum": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32),
                "scaled": a * tf.cast(b, tf.float32)[:, None]}


def multi(path: Path) -> Path:
    module = Multi()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


class Slow(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([384, 384], seed=[1, 2]) / 20.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x):
        y = self.w
        for _ in range(40):  # a fixed cost per call, whatever the batch
            y = tf.tanh(tf.matmul(y, self.w))
        return {"y": x + 0.0 * tf.reduce_sum(y)}


def slow(path: Path) -> Path:
    module = Slow()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def digits_input(n: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    return images[seed: seed + n]


class Sleepy(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([128, 128], seed=[3, 4]) / 12.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x):
        steps = tf.cast(tf.reduce_max(x), tf.int32)  # the request chooses how long its call takes

        def body(i, y):
            return i + 1, tf.tanh(tf.matmul(y, self.w))

        _, y = tf.while_loop(lambda i, y: i < steps, body, [tf.constant(0), tf.identity(self.w)])
        return {"y": x * 2.0 + 0.0 * tf.reduce_sum(y)}


def sleepy(path: Path) -> Path:
    """y = 2x, after max(x) rounds of a 128x128 matrix product: a call as long as asked."""
    module = Sleepy()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
