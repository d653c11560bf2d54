"""TensorBoard's own ``main``, run without importing TensorFlow (a script, run by path).

Why: TensorBoard imports TensorFlow when it is installed (``tensorboard.compat.tf``), only to
read files through ``tf.io.gfile``; that import is most of its start-up (measured here: 6.7-11 s
to the first HTTP answer with it, 0.9-1.1 s without). TensorBoard's TensorFlow-free build is
marked by a module ``tensorboard.compat.notf``; registering that marker before TensorBoard
starts gives the same reduced feature set (scalars, histograms, images, text, graphs, hparams,
custom scalars, PR curves read through TensorBoard's own ``tensorflow_stub`` file layer), which
is all a cellship job's logdir holds. :func:`cellship.watch.tensorboard.launch.tensorboard_command`
chooses this script unless ``CELLSHIP_TENSORBOARD_TF=1`` asks for TensorBoard with TensorFlow
(plugins that read checkpoints, such as the projector, or logdirs on a filesystem only
TensorFlow's gfile knows).

Run by path rather than ``-m`` so that nothing of cellship is imported first, and so that its
command line still says ``tensorboard`` (how cellship recognises its servers).
"""

import sys
import types

if __name__ == "__main__":
    sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
    from tensorboard.main import run_main

    sys.argv[0] = "tensorboard"
    run_main()
