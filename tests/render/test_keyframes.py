"""Keyframe mode: interpolation math, keyframe optimisation (warm, independent, batched), frame rendering."""

from __future__ import annotations

import pytest
import torch

from metamusic.errors import InputError
from metamusic.ops import vector_quantize
from metamusic.optim.batched import BatchedStepper
from metamusic.optim.init import random_latent
from metamusic.optim.interpolate import (
    ease,
    interpolate_latents,
    interpolation_position,
    lerp,
    slerp,
)
from metamusic.optim.keyframes import keyframe_start_latent, optimise_keyframes
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepConfig, Stepper, optimise_segment, step_seed
from metamusic.render.keyframe_mode import (
    keyframe_centres,
    segment_frame_ranges,
)
from metamusic.song.timeline import Segment

SIZE = 32  # pixels; the tiny VQGAN has factor 4, so latents are (1, 8, 8, 8)
GRID = (SIZE // 4, SIZE // 4)
SEED = 11


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# lerp / slerp / ease


def test_lerp_endpoints_and_midpoint():
    a, b = rand(2, 3, 4, 4, seed=1), rand(2, 3, 4, 4, seed=2)
    assert torch.equal(lerp(a, b, 0.0), a)
    torch.testing.assert_close(lerp(a, b, 1.0), b)
    torch.testing.assert_close(lerp(a, b, 0.5), (a + b) / 2)


def test_slerp_endpoints_shape_and_dtype():
    a, b = rand(3, 8, 4, 4, seed=1), rand(3, 8, 4, 4, seed=2)
    torch.testing.assert_close(slerp(a, b, 0.0), a, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(slerp(a, b, 1.0), b, atol=1e-6, rtol=1e-6)
    out = slerp(a, b, 0.3)
    assert out.shape == a.shape and out.dtype == torch.float32


def test_slerp_keeps_the_norm_of_equal_norm_latents():
    a, b = rand(2, 8, 4, 4, seed=3), rand(2, 8, 4, 4, seed=4)
    b = b / b.flatten(1).norm(dim=1)[:, None, None, None] * a.flatten(1).norm(dim=1)[:, None, None, None]
    for t in (0.1, 0.25, 0.5, 0.8):
        torch.testing.assert_close(slerp(a, b, t).flatten(1).norm(dim=1), a.flatten(1).norm(dim=1))
        # lerp shrinks: nearly orthogonal 128-d vectors lose ~1/sqrt(2) of their norm at t = 0.5
    assert (lerp(a, b, 0.5).flatten(1).norm(dim=1) < 0.85 * a.flatten(1).norm(dim=1)).all()


def test_slerp_norm_is_linear_and_angles_split_evenly():
    a, b = rand(1, 64, seed=5), 3 * rand(1, 64, seed=6)
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid.norm(), (a.norm() + b.norm()) / 2)
    angle = lambda x, y: torch.arccos(torch.nn.functional.cosine_similarity(x, y)).item()  # noqa: E731
    assert angle(a, mid) == pytest.approx(angle(mid, b), abs=1e-5)
    assert angle(a, mid) == pytest.approx(angle(a, b) / 2, abs=1e-5)


def test_slerp_falls_back_to_lerp_for_parallel_and_antiparallel():
    a = rand(2, 16, seed=7)
    for b in (2.5 * a, -a):
        torch.testing.assert_close(slerp(a, b, 0.3), lerp(a, b, 0.3))
        assert torch.isfinite(slerp(a, b, 0.5)).all()


def test_slerp_takes_a_position_per_sample():
    a, b = rand(3, 10, seed=8), rand(3, 10, seed=9)
    out = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out[0], a[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1:2], slerp(a[1:2], b[1:2], 0.5))
    torch.testing.assert_close(out[2], b[2], atol=1e-6, rtol=0)
    with pytest.raises(InputError):
        slerp(a, b, torch.tensor([0.1, 0.2]))
    with pytest.raises(InputError):
        slerp(a, b[:2], 0.5)


@pytest.mark.parametrize("kind", ["smoothstep", "cosine", "linear"])
def test_ease_endpoints_symmetry_monotone(kind):
    assert ease(0.0, kind) == 0.0 and ease(1.0, kind) == pytest.approx(1.0)
    assert ease(0.5, kind) == pytest.approx(0.5)
    assert ease(-1.0, kind) == 0.0 and ease(2.0, kind) == pytest.approx(1.0)  # clamped
    ts = torch.linspace(0, 1, 101)
    values = ease(ts, kind)
    assert (values[1:] >= values[:-1]).all()
    torch.testing.assert_close(values, torch.tensor([ease(float(t), kind) for t in ts]))
    for t in (0.2, 0.7):
        assert ease(t, kind) + ease(1 - t, kind) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["smoothstep", "cosine"])
def test_easing_rests_at_keyframes(kind):
    h = 1e-4
    assert ease(h, kind) / h < 1e-3  # zero slope at 0
    assert (1 - ease(1 - h, kind)) / h < 1e-3  # and at 1
    assert (ease(0.5 + h, kind) - ease(0.5 - h, kind)) / (2 * h) > 1.4  # fastest in the middle


def test_ease_rejects_unknown_kind():
    with pytest.raises(InputError):
        ease(0.5, "bounce")


# ---------------------------------------------------------------------------------------------
# keyframe times and interpolation


def seg(i: int, start: float, end: float) -> Segment:
    return Segment(index=i, start=start, end=end, steps=1, kind="text", text=f"prompt {i}", lyric_index=None,
                   text_weight=1.0, audio_weight=0.0, audio_start=start, audio_end=end)


def test_keyframes_sit_at_segment_midpoints():
    segments = [seg(0, 0.0, 1.0), seg(1, 1.0, 1.5), seg(2, 1.5, 3.5)]
    assert keyframe_centres(segments) == [0.5, 1.25, 2.5]


def test_interpolation_position_holds_outside_and_is_linear_inside():
    times = [0.5, 1.0, 2.0]
    assert interpolation_position(times, 0.0) == (0, 0.0)
    assert interpolation_position(times, 0.5) == (0, 0.0)
    assert interpolation_position(times, 0.75) == (0, pytest.approx(0.5))
    assert interpolation_position(times, 1.0) == (1, 0.0)
    assert interpolation_position(times, 1.25) == (1, pytest.approx(0.25))
    assert interpolation_position(times, 2.0) == (2, 0.0)
    assert interpolation_position(times, 9.0) == (2, 0.0)
    with pytest.raises(InputError):
        interpolation_position([], 1.0)


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_interpolate_latents_hits_keyframes_and_holds_the_ends(method):
    keys = [rand(1, 4, 3, 3, seed=s) for s in (1, 2, 3)]
    times = [0.5, 1.0, 2.0]
    out = interpolate_latents(keys, times, [0.0, 0.5, 1.0, 2.0, 3.0], method)  # (5, 4, 3, 3)
    assert out.shape == (5, 4, 3, 3)
    for row, key in zip(out, [keys[0], keys[0], keys[1], keys[2], keys[2]]):
        torch.testing.assert_close(row[None], key, atol=1e-6, rtol=1e-6)
    # Between two keyframes the eased position is used: at the midpoint ease(0.5) = 0.5.
    mid = interpolate_latents(torch.cat(keys), times, 0.75, method)
    ref = slerp(keys[0], keys[1], 0.5) if method == "slerp" else lerp(keys[0], keys[1], 0.5)
    torch.testing.assert_close(mid, ref, atol=1e-6, rtol=1e-6)
    quarter = interpolate_latents(keys, times, 0.625, method, easing="smoothstep")
    ref = lerp(keys[0], keys[1], ease(0.25)) if method == "lerp" else slerp(keys[0], keys[1], ease(0.25))
    torch.testing.assert_close(quarter, ref, atol=1e-6, rtol=1e-6)


def test_interpolate_latents_checks_its_input():
    keys = torch.zeros(2, 4, 3, 3)
    with pytest.raises(InputError):
        interpolate_latents(keys, [0.0, 1.0, 2.0], 0.5)
    with pytest.raises(InputError):
        interpolate_latents(keys, [1.0, 0.0], 0.5)
    with pytest.raises(InputError):
        interpolate_latents(keys, [0.0, 1.0], 0.5, method="cubic")


def test_slerp_midpoint_avoids_low_norm_codes_after_quantisation():
    """The docstring's justification, measured small: lerp's midpoint snaps to the low-norm codes."""
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(2048, 64, generator=gen) * torch.empty(2048, 1).uniform_(0.2, 1.5, generator=gen)
    low = codebook.norm(dim=1).quantile(0.25)
    a = random_latent(codebook, (8, 8), torch.Generator().manual_seed(1))
    b = random_latent(codebook, (8, 8), torch.Generator().manual_seed(2))

    def low_share(z: torch.Tensor) -> float:
        codes = vector_quantize(z, codebook).permute(0, 2, 3, 1).reshape(-1, 64)
        return (codes.norm(dim=1) < low).float().mean().item()

    assert low_share(lerp(a, b, 0.5)) > 0.4
    assert low_share(slerp(a, b, 0.5)) < 0.2


# ---------------------------------------------------------------------------------------------
# keyframe optimisation with the tiny checkpoints


@pytest.fixture(scope="module")
def models(tiny_models):
    from metamusic.models.clip import load_clip
    from metamusic.models.vqgan_loader import load_vqgan

    vqgan = load_vqgan(tiny_models["vqgan_config"], tiny_models["vqgan_checkpoint"], "cpu")
    perceptor = load_clip(tiny_models["clip"], "cpu")
    return vqgan, perceptor


@pytest.fixture(scope="module")
def step_config() -> StepConfig:
    return StepConfig(cutn=3, precision="fp32", lr=0.2)


def make_targets(n: int, dim: int = 512) -> list[list[Target]]:
    """Per segment: one or two random unit targets (segments differ in their number of targets)."""
    out = []
    for k in range(n):
        ts = [Target(rand(dim, seed=100 + k))]
        if k % 2:
            ts.append(Target(rand(dim, seed=200 + k), weight=0.5))
        out.append(ts)
    return out


def start_latent(vqgan) -> torch.Tensor:
    return random_latent(vqgan.codebook.float(), GRID, torch.Generator().manual_seed(SEED))


@pytest.mark.parametrize("independent", [False, True])
def test_number_of_steps_is_keyframes_times_steps(models, step_config, independent):
    vqgan, perceptor = models
    calls = []
    keys = optimise_keyframes(vqgan, perceptor, step_config, start_latent(vqgan), make_targets(3), 2, SEED,
                              independent=independent, batch=2, on_step=lambda k, i, r: calls.append((k, i)))
    assert len(calls) == 3 * 2
    assert sorted(calls) == [(k, i) for k in range(3) for i in range(2)]
    assert len(keys) == 3 and all(k.shape == (1, 8, *GRID) for k in keys)
    assert not torch.equal(keys[0], keys[1])


def test_warm_started_keyframes_carry_latent_and_optimiser_state(models, step_config):
    vqgan, perceptor = models
    z0, targets = start_latent(vqgan), make_targets(3)
    keys = optimise_keyframes(vqgan, perceptor, step_config, z0, targets, 2, SEED)
    # The same chain through optimise_segment, carrying z and the optimiser state by hand.
    z, state, chained = z0, None, []
    for k in range(3):
        z, state = optimise_segment(vqgan, perceptor, step_config, z, targets[k], 2, SEED,
                                    stepper_state=state, segment_index=k, z_init=z0)
        chained.append(z)
    for a, b in zip(keys, chained):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Dropping the optimiser state between keyframes changes keyframe 1: the state is carried.
    z1, _ = optimise_segment(vqgan, perceptor, step_config, chained[0], targets[1], 2, SEED, segment_index=1)
    assert not torch.allclose(z1, keys[1])


def test_independent_keyframes_start_from_their_own_seeded_latents(models, step_config):
    vqgan, perceptor = models
    z0, targets = start_latent(vqgan), make_targets(3)
    keys = optimise_keyframes(vqgan, perceptor, step_config, z0, targets, 2, SEED, independent=True)
    for k in range(3):
        start = z0 if k == 0 else keyframe_start_latent(vqgan.codebook, GRID, SEED, k)
        ref, _ = optimise_segment(vqgan, perceptor, step_config, start, targets[k], 2, SEED, segment_index=k)
        torch.testing.assert_close(keys[k], ref, atol=1e-5, rtol=0)
    # Keyframe 0 is the same in both modes; later ones are not warm-started.
    warm = optimise_keyframes(vqgan, perceptor, step_config, z0, targets, 2, SEED)
    torch.testing.assert_close(keys[0], warm[0], atol=1e-5, rtol=0)
    assert not torch.allclose(keys[2], warm[2], atol=1e-3)
    # Without fresh starts (an init image) every keyframe starts from z0.
    same = optimise_keyframes(vqgan, perceptor, step_config, z0, targets[:2], 2, SEED, independent=True,
                              fresh_starts=False)
    ref, _ = optimise_segment(vqgan, perceptor, step_config, z0, targets[1], 2, SEED, segment_index=1)
    torch.testing.assert_close(same[1], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [2, 4])
def test_batched_independent_keyframes_equal_the_unbatched_run(models, batch):
    vqgan, perceptor = models
    cfg = StepConfig(cutn=3, precision="fp32", lr=0.1, init_weight=0.5)  # per-sample init anchors too
    z0, targets = start_latent(vqgan), make_targets(5)  # 5 keyframes: the last batch is partial
    losses = {1: {}, batch: {}}

    def record(b):
        return lambda k, i, r: losses[b].__setitem__((k, i), r.loss)

    single = optimise_keyframes(vqgan, perceptor, cfg, z0, targets, 3, SEED, independent=True, batch=1,
                                on_step=record(1))
    batched = optimise_keyframes(vqgan, perceptor, cfg, z0, targets, 3, SEED, independent=True, batch=batch,
                                 on_step=record(batch))
    assert len(single) == len(batched) == 5
    # Batched convolutions round differently (~1e-6 relative in the gradient); Adam's update
    # lr * m / (sqrt(v) + 1e-8) magnifies that for the odd element whose gradient is ~1e-8, so a
    # few elements of 512 differ by up to ~2e-5 at lr 0.1, the rest by ~1e-7.
    for a, b in zip(single, batched):
        torch.testing.assert_close(b, a, atol=5e-5, rtol=0)
        assert (b - a).abs().mean() < 1e-6
    assert losses[1].keys() == losses[batch].keys()
    for key, value in losses[1].items():
        assert losses[batch][key] == pytest.approx(value, abs=1e-5)
    assert any(not torch.allclose(a, b) for a, b in zip(single, single[1:]))  # keyframes do differ


def test_batched_stepper_sample_equals_its_own_stepper(models, step_config):
    """Sample b of a batched step is the step a lone Stepper takes with seed b (AdamP: per-sample state)."""
    vqgan, perceptor = models
    cfg = StepConfig(cutn=3, precision="fp32", optimiser="AdamP", lr=0.2)
    z = torch.cat([keyframe_start_latent(vqgan.codebook, GRID, SEED, k) for k in range(3)])  # (3, C, h, w)
    targets = make_targets(3)
    batched = BatchedStepper(vqgan, perceptor, cfg, z)
    lone = [Stepper(vqgan, perceptor, cfg, z[b : b + 1]) for b in range(3)]
    for i in range(2):
        seeds = [step_seed(SEED, b, i) for b in range(3)]
        results = batched.step(targets, seeds, index=i)
        for b in range(3):
            r = lone[b].step(targets[b], seeds[b], index=i)
            assert results[b].loss == pytest.approx(r.loss, abs=1e-5)
            torch.testing.assert_close(results[b].image, r.image, atol=1e-5, rtol=0)
    # Tolerance: see test_batched_independent_keyframes_equal_the_unbatched_run; Ji's HSV steps
    # (kornia 0.5.4 colour jitter) and AdamP at lr 0.2 stretch the odd element to ~1e-4.
    for b in range(3):
        torch.testing.assert_close(batched.latents[b : b + 1], lone[b].latent, atol=2e-4, rtol=0)
        assert (batched.latents[b : b + 1] - lone[b].latent).abs().mean() < 1e-6
    with pytest.raises(InputError):
        batched.step(targets[:2], seeds[:2], index=0)


def test_batched_keyframes_with_low_memory_checkpoint_the_decoder(models):
    """--low_memory in batched keyframes: the decoder's levels run again in backward (checkpointing)."""
    vqgan, perceptor = models
    z0, targets = start_latent(vqgan), make_targets(2)
    passes, keys = {}, {}
    for low_memory in (False, True):
        cfg = StepConfig(cutn=2, precision="fp32", lr=0.1, low_memory=low_memory)
        calls: list[int] = []
        hook = vqgan.decoder.up[0].block[0].register_forward_hook(
            lambda m, args, out, calls=calls: calls.append(args[0].shape[0])
        )
        try:
            keys[low_memory] = optimise_keyframes(vqgan, perceptor, cfg, z0, targets, 2, SEED, independent=True,
                                                  batch=2)
        finally:
            hook.remove()
        passes[low_memory] = calls
    assert passes[False] == [2, 2]  # one batched decode of both keyframes per step
    assert passes[True] == [2, 2, 2, 2]  # ... and its recomputation in each backward pass
    assert vqgan.decoder.use_checkpointing is False  # the flag is restored
    for a, b in zip(keys[False], keys[True]):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_optimise_keyframes_rejects_bad_settings(models, step_config):
    vqgan, perceptor = models
    z0 = start_latent(vqgan)
    with pytest.raises(InputError):
        optimise_keyframes(vqgan, perceptor, step_config, z0, make_targets(2), 0, SEED)
    with pytest.raises(InputError):
        optimise_keyframes(vqgan, perceptor, step_config, z0, make_targets(2), 1, SEED, independent=True, batch=0)


# ---------------------------------------------------------------------------------------------
# frames


def test_segment_frame_ranges_cover_every_frame_once():
    segments = [seg(0, 0.0, 0.37), seg(1, 0.37, 0.38), seg(2, 0.38, 1.3)]
    ranges = segment_frame_ranges(segments, 30, 39)
    assert ranges[0][0] == 0 and ranges[-1][1] == 39
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert ranges[1][0] == ranges[1][1]  # a segment shorter than a frame owns none


def _context(models, tmp_path, segments, keys=None, **keyframe_settings):
    """A keyframe-mode task context on the tiny models (fps 30, 32x32)."""
    from metamusic.config import Config
    from metamusic.render.plan import Plan, plan_tasks
    from metamusic.render.prepare import Models
    from metamusic.render.tasks import Context, Job

    vqgan, perceptor = models
    config = Config()
    config.seed = SEED
    config.output.fps = 30.0
    config.output.size = (SIZE, SIZE)
    config.keyframes.enabled = True
    config.keyframes.steps = 2
    for k, v in keyframe_settings.items():
        setattr(config.keyframes, k, v)
    step = StepConfig(cutn=2, precision="fp32", augments=())
    tasks = plan_tasks(len(segments), keyframes=True, independent=config.keyframes.independent,
                       batch=config.keyframes.batch)
    plan = Plan(tuple(segments), tuple(tasks), 30.0, segments[-1].end, (SIZE, SIZE), True, SEED)
    job = Job(config, plan, make_targets(len(segments)), start_latent(vqgan), step)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return Context(job, Models(vqgan, perceptor, None), torch.device("cpu"), scratch)


def test_frames_tasks_write_round_duration_times_fps_frames(models, tmp_path):
    from metamusic.media.video import count_video_frames, read_frames
    from metamusic.render.keyframe_mode import run_frames

    vqgan, _ = models
    segments = [seg(0, 0.0, 0.37), seg(1, 0.37, 0.38), seg(2, 0.38, 0.9), seg(3, 0.9, 1.3)]
    keys = [keyframe_start_latent(vqgan.codebook, GRID, SEED, k) for k in range(4)]
    ctx = _context(models, tmp_path, segments)
    outputs = []
    for task in ctx.job.plan.tasks:
        if task.kind == "frames":
            i = task.segments[0]
            near = {k: keys[k] for k in (i - 1, i, i + 1) if 0 <= k < 4}
            outputs.append(run_frames(ctx, task, {"keyframes": near}))
    assert [o.frames for o in outputs] == [b - a for a, b in segment_frame_ranges(segments, 30, 39)]
    assert sum(o.frames for o in outputs) == round(1.3 * 30) == 39
    assert outputs[1].files == {}  # a segment shorter than a frame owns none
    videos = [o.files.get(f"segments/segment_{i:05d}.mp4") for i, o in enumerate(outputs)]
    assert [count_video_frames(v) for v in videos if v] == [o.frames for o in outputs if o.frames]
    # The first frame holds keyframe 0 (it lies before keyframe 0's time); the last holds keyframe 3.
    from metamusic.optim.keyframes import decode_frames

    def to_bytes(img: torch.Tensor):
        return (img[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy().astype(int)

    decoded = [to_bytes(decode_frames(vqgan, k)) for k in keys]
    first = next(read_frames(videos[0])).astype(int)
    *_, last = read_frames(videos[3])
    errors_first = [abs(first - d).mean() for d in decoded]
    errors_last = [abs(last.astype(int) - d).mean() for d in decoded]
    # x264 (yuv420p) blurs the tiny model's noise-like 32x32 images, so compare to the other keyframes.
    assert errors_first[0] < 0.6 * min(errors_first[1:]), errors_first
    assert errors_last[3] < 0.6 * min(errors_last[:3]), errors_last


@pytest.mark.parametrize("independent,batch", [(False, 1), (True, 2)])
def test_keyframe_tasks_equal_one_optimise_keyframes_call(models, tmp_path, independent, batch):
    """Keyframes optimised task by task (warm chain pieces, or fixed batches) equal one whole run."""
    from metamusic.render.keyframe_mode import run_keyframes

    vqgan, perceptor = models
    segments = [seg(0, 0.0, 0.4), seg(1, 0.4, 0.75), seg(2, 0.75, 1.0)]
    ctx = _context(models, tmp_path, segments, independent=independent, batch=batch)
    whole = optimise_keyframes(vqgan, perceptor, ctx.job.step, ctx.job.z0, ctx.job.targets, 2, SEED,
                               independent=independent, batch=batch)
    saved: dict[int, dict] = {}
    for task in ctx.job.plan.tasks:
        if task.kind != "keyframes":
            continue
        previous = saved.get(task.segments[0] - 1) if task.needs else None
        out = run_keyframes(ctx, task, {"previous": previous})
        assert out.steps == 2 * len(task.segments)
        for name, state in out.states.items():
            saved[state["segment"]] = state
    assert sorted(saved) == [0, 1, 2]
    for k in range(3):
        assert torch.equal(saved[k]["z"], whole[k]), k
        assert saved[k]["image"].dtype == torch.uint8 and saved[k]["image"].shape == (1, 3, SIZE, SIZE)
