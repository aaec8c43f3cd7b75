"""Smoke tests of experiments/train_face.py and experiments/face_pipeline.py (tiny sizes).

One recogniser run of two steps on a handful of identities is shared by both tests: the
pipeline reads its workdir (config and checkpoint) and an untrained detector's.
"""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory, load_experiment):
    workdir = tmp_path_factory.mktemp("face") / "recogniser"
    sets = ["steps=2", "log_every=1", "train_identities=6", "images_per_identity=2",
            "test_identities=3", "test_images_per_identity=3", "batch_size=8"]
    argv = ["--workdir", str(workdir)] + [a for s in sets for a in ("--set", s)]
    return workdir, load_experiment("train_face").main(argv)


@pytest.mark.slow
def test_train_face_runs_and_reports(recogniser):
    workdir, summary = recogniser
    assert 0 <= summary["lfw_accuracy"] <= 1 and 0 <= summary["tar_at_far_1e-3"] <= 1
    assert np.isfinite(summary["final_loss"])
    assert (workdir / "crops.png").exists() and (workdir / "embeddings.png").exists()
    assert (workdir / "checkpoints" / "2").is_dir()


@pytest.mark.slow
def test_face_pipeline_runs_on_trained_recogniser_and_untrained_detector(
    recogniser, tmp_path, load_experiment
):
    from flax import nnx  # noqa: F401  (imported by the experiments)

    from jaxvision import parallel, train

    det_module = load_experiment("train_face_detector")
    det_cfg = det_module.Config(image_size=64, widths=(8, 8, 16, 16, 16), fpn_width=8)
    detector = tmp_path / "detector"
    run = train.Run.open(detector, det_cfg)
    graphdef, params, model_state, _ = det_module.build_model(det_cfg)
    state = parallel.TrainState.create(params, det_module.make_optimizer(det_cfg),
                                       model_state=model_state)
    with parallel.CheckpointManager(detector / "checkpoints") as ckpt:
        ckpt.save(0, state, force=True)
    run.close()
    pipeline = load_experiment("face_pipeline")
    sets = ["num_scenes=2", "scene_size=64", "gallery_images=2", "max_detections=3",
            "supersample=2", "batch_size=2", "score_threshold=0.0", "faces_per_scene=2,2",
            "face_sizes=20,30", "real_fraction=0"]
    out = tmp_path / "pipeline"
    summary = pipeline.main(["--workdir", str(out), "--detector", str(detector),
                             "--recogniser", str(recogniser[0])]
                            + [a for s in sets for a in ("--set", s)])
    assert summary["gallery"] == 3 and summary["detector_step"] == 0
    stages = [summary[k] for k in ("gt_boxes_gt_landmarks", "detected_boxes_gt_landmarks",
                                   "fully_detected")]
    assert all(0 <= v <= 1 for v in stages) and stages[1] <= stages[0]
    assert summary["images_per_s"] > 0
    assert (out / "pipeline.png").exists() and (out / "astronaut.png").exists()
    assert json.loads((out / "summary.json").read_text())["probes"] == summary["probes"]


def test_optimizer_gives_the_head_its_own_weight_decay_and_lr(load_experiment):
    import dataclasses

    import jax
    import jax.numpy as jnp
    import optax

    tf = load_experiment("train_face")
    params = {"backbone": {"w": jnp.ones(3)}, "head": {"centres": jnp.ones((2, 3))}}
    grads = jax_tree_full(params, 0.2)
    base = tf.Config(lr=0.1, warmup_steps=1, steps=4, weight_decay=0.5)
    cfg = dataclasses.replace(base, centre_weight_decay=0.0, centre_lr_scale=3.0)
    plain = optax.sgd(optax.warmup_cosine_decay_schedule(0.0, 0.1, 1, 4), momentum=0.9)

    def second_update(opt):  # the first has lr 0 (warm-up from 0)
        state = opt.init(params)
        for _ in range(2):
            updates, state = opt.update(grads, state, params)
        return updates

    opts = (tf.optimizer(base), tf.optimizer(cfg), plain)
    want, got, no_decay = jax.jit(lambda: [second_update(o) for o in opts])()  # one compile
    np.testing.assert_allclose(got["backbone"]["w"], want["backbone"]["w"], rtol=1e-6)
    np.testing.assert_allclose(got["head"]["centres"], 3 * no_decay["head"]["centres"], rtol=1e-6)
    assert not np.allclose(want["head"]["centres"], no_decay["head"]["centres"])


def jax_tree_full(tree, value):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.full_like(x, value), tree)
