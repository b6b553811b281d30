"""Does the SSL learner's pretraining lift its features? Held-out probe accuracy along SSL steps from random init.

A continued-pretraining env is only a test of task design if continuing the learner's own SSL objective with the
standard recipe improves what the probe measures. This script trains the small preset's ViT (``--size``) from
its random initialization with the standard augmentation recipe (the recipe the base pretraining and the
``fixed`` designer use), one AdamW step per batch at a constant ``--lr``, and at each checkpoint fits fresh probe
heads on the feedback split and measures them on the eval split (``ProbeFeedback.evaluate``, the metrics of an
episode's ``info["eval"]``). For DINO the EMA teacher's features are probed as well.

Measured for the README ("Reward validity", SSL-Augment-v2): at the small preset DINO never lifts the probe
accuracy above that of the random-init features, SimCLR does; so ``vpt/SSL-Augment-v2`` continues a SimCLR base.

Usage:
    python benchmarks/ssl_base_curve.py --objective dino --lr 5e-4 --steps 800
    python benchmarks/ssl_base_curve.py --objective simclr --lr 1e-3 --steps 800 --json curve.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--size", default="small", choices=["tiny", "small"], help="architecture and splits of this preset")
    p.add_argument("--objective", default="dino", choices=["dino", "simclr"])
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate, constant (> 0)")
    p.add_argument("--steps", type=int, default=800, help="SSL steps from random init (>= 1)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=None,
                   help="steps at which to probe (default: 0 50 100 200 300 400 600 800, up to --steps)")
    p.add_argument("--batch-size", type=int, default=None, help="images per SSL step (default: the preset's)")
    p.add_argument("--num-local", type=int, default=0, help="DINO local crops per image (default 0, as the base)")
    p.add_argument("--seed", type=int, default=0, help="seed of the init, the batches and the views")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write the curve here")
    return p


def _check(args: argparse.Namespace) -> list[int]:
    """Validate before any work. Raises SystemExit naming the bad value and the accepted range."""
    if not args.lr > 0:
        raise SystemExit(f"--lr must be > 0, got {args.lr}")
    if args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}")
    if args.num_local < 0:
        raise SystemExit(f"--num-local must be >= 0, got {args.num_local}")
    if args.batch_size is not None and args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    points = args.checkpoints or [c for c in (0, 50, 100, 200, 300, 400, 600, 800) if c <= args.steps]
    bad = [c for c in points if not 0 <= c <= args.steps]
    if bad:
        raise SystemExit(f"--checkpoints must lie in [0, --steps={args.steps}], got {bad}")
    if args.json is not None and args.json.is_dir():
        raise SystemExit(f"--json {args.json} is a directory")
    return sorted(set(points))


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    points = _check(args)
    torch.set_num_threads(args.threads)
    from vpt_gym.envs.vision import VISION_PRESETS, _local_size
    from vpt_gym.vision.base import build_model
    from vpt_gym.vision.data import ImageBatch, load_images, split_images
    from vpt_gym.vision.feedback import ProbeFeedback
    from vpt_gym.vision.ssl import SSLLearner
    from vpt_gym.vision.tasks import VisionTaskSpace, augment_tasks

    preset = VISION_PRESETS[args.size]
    pool = load_images(None, preset.model.image_size)
    splits = split_images(pool, feedback_size=preset.feedback_size, eval_size=preset.eval_size)
    config = replace(preset.model, objective=args.objective, base_steps=0, seed=args.seed,
                     in_channels=int(pool.images.shape[1]))
    learner = SSLLearner(build_model(config), objective=args.objective, lr=args.lr, alignment_blocks=1,
                         teacher_momentum=preset.teacher_momentum, device="cpu")
    probe = ProbeFeedback(splits.feedback, splits.eval, feature_dim=learner.model.student_backbone.dim,
                          batch_size=preset.feedback_batch_size, probe_size=preset.probe_size,
                          eval_fit_steps=preset.eval_fit_steps)
    space = VisionTaskSpace(augment_tasks(), image_size=config.image_size, grid=config.grid,
                            num_local=args.num_local if args.objective == "dino" else 0,
                            local_size=_local_size(config.image_size, config.patch_size))
    g = torch.Generator().manual_seed(args.seed + 1)
    space.reset(g)
    task = space.tasks[space.standard_action]
    images = splits.unlabeled.images
    batch_size = min(args.batch_size or preset.batch_size, len(images))

    def measure(step: int) -> dict:
        row = {"step": step, **{k: round(v, 4) for k, v in probe.evaluate(learner).items() if k != "eval_images"}}
        if learner.model.teacher_backbone is not None:
            twin = copy.deepcopy(learner)
            twin.model.student_backbone.load_state_dict(learner.model.teacher_backbone.state_dict())
            row["teacher_probe_accuracy"] = round(probe.evaluate(twin)["probe_accuracy"], 4)
        return row

    curve, losses, start = [], [], time.perf_counter()
    print(f"{args.objective} from random init, size {args.size}, lr {args.lr:g}, batch {batch_size}, "
          f"local crops {space.num_local}, seed {args.seed}")
    for step in range(args.steps + 1):
        if step in points:
            row = measure(step)
            row["ssl_loss"] = round(sum(losses[-20:]) / max(len(losses[-20:]), 1), 4) if losses else None
            curve.append(row)
            teacher = f"  teacher {row['teacher_probe_accuracy']:.3f}" if "teacher_probe_accuracy" in row else ""
            print(f"step {step:5d}  probe_accuracy {row['probe_accuracy']:.3f}  probe_loss {row['probe_loss']:.3f}"
                  f"{teacher}  ssl_loss {row['ssl_loss']}  ({time.perf_counter() - start:.0f} s)", flush=True)
        if step == args.steps:
            break
        index = torch.randperm(len(images), generator=g)[:batch_size]
        loss = learner.forward(space.materialize(ImageBatch(images=images[index], num_examples=batch_size), task)).loss
        learner.backward(loss)
        learner.apply_update()
        losses.append(float(loss.detach()))
    out = {"objective": args.objective, "size": args.size, "lr": args.lr, "batch_size": batch_size,
           "num_local": space.num_local, "seed": args.seed, "curve": curve}
    if args.json is not None:
        from vpt_gym.atomic import write_text_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
