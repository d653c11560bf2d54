"""Small programs the integration tests run as jobs."""

TRAIN_DIGITS = '''
import tensorflow as tf
from sklearn.datasets import load_digits
import cellship

EPOCHS = {epochs}
SLEEP = {sleep}

strategy = tf.distribute.MultiWorkerMirroredStrategy()
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(2000, seed=0).repeat()
dataset = dataset.batch(32 * cellship.job.num_workers())


class Pace(tf.keras.callbacks.Callback):
    """Slows epochs down so a test can act between them."""

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch-done {{epoch + 1}} loss={{logs['loss']:.4f}}", flush=True)
        import time
        time.sleep(SLEEP)


with strategy.scope():
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="image"),
        tf.keras.layers.Conv2D(8, 3, activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(dataset, epochs=EPOCHS, steps_per_epoch=15, verbose=2,
                    callbacks=[cellship.job.tensorboard(), cellship.job.backup(), Pace()])
print("final-accuracy", history.history["accuracy"][-1], flush=True)
cellship.job.save(model, "digits")
'''

TRAIN_PS = '''
import tensorflow as tf
from sklearn.datasets import load_digits
import cellship

assert cellship.job.is_chief() and cellship.job.task_type() == "chief"
resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32")


def dataset_fn(context):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(2000).repeat().batch(32)
    return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)


with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((64,), name="image"),
                                 tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=5)
history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=3,
                    steps_per_epoch=20, verbose=2)
print("ps-variables", [v.device for v in model.trainable_variables][:2], flush=True)
print("final-loss", history.history["loss"][-1], flush=True)
cellship.job.save(model, "digits-ps")
'''

# Fails on one worker while the other keeps running: no TensorFlow strategy involved,
# only the supervisor's process handling.
CRASH_ONE_WORKER = '''
import time
import cellship

if cellship.job.task_index() == 1:
    time.sleep(1.0)
    raise ValueError("boom from worker 1")
print("worker 0 waiting forever", flush=True)
while True:
    time.sleep(1)
'''

SLEEPER = '''
import time
for i in range({count}):
    print(f"tick {{i}}", flush=True)
    time.sleep({interval})
print("sleeper done", flush=True)
'''

# Worker 1 never reaches the strategy; worker 0 waits for it in the strategy constructor.
PEER_NEVER_COMES = '''
import time
import tensorflow as tf
import cellship

if cellship.job.task_index() == 1:
    print("worker 1 is stuck before the strategy", flush=True)
    while True:
        time.sleep(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy()
print("unreachable: the cluster came up", flush=True)
'''

# TRAIN_DIGITS (formatted) with a backup dir per worker, as in pods whose job dirs are not
# shared; on its second attempt worker 1 has lost its copy, as a recreated pod would have.
OWN_BACKUPS_PRELUDE = '''
import os, shutil
import cellship
OWN_BACKUP = os.path.join(str(cellship.job.job_dir()), f"backup-{cellship.job.task_index()}")
_marker = os.path.join(str(cellship.job.job_dir()), f"attempt-{cellship.job.task_index()}")
if os.path.exists(_marker) and cellship.job.task_index() == 1:
    shutil.rmtree(OWN_BACKUP, ignore_errors=True)
    print("worker 1 lost its backup", flush=True)
open(_marker, "w").close()
'''


def own_backups(epochs: int, sleep: float) -> str:
    program = TRAIN_DIGITS.format(epochs=epochs, sleep=sleep)
    return OWN_BACKUPS_PRELUDE + program.replace("cellship.job.backup()",
                                                 "cellship.job.backup(backup_dir=OWN_BACKUP)")
