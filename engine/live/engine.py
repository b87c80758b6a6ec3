"""The live engine: landmark packets in, one pose frame per input frame out.

    engine = LiveEngine(model, normalizer, body, cfg.engine)
    for pose in engine.push(packets):     # streamer.packets.LandmarkPacket, oldest first
        ...                               # engine.live.pose_frame.PoseFrame

Estimation. Every push runs the denoiser once over a rolling window of the last `window` frames
(at most the model's own window; a partial window from the very first frame): estimation mode
for 1 step, DDIM for more, warm-started from the previous window's estimate noised to
`warm_start_step`. Several packets arriving together (the engine fell behind) share one pass, and
each still gets its pose. With `lag` > 0 a frame's pose is emitted once that many newer frames
have arrived, so it sees some future.

A causal denoiser (ModelConfig.causal) in estimation mode runs a frame at a time instead
(engine.model.streaming): each new frame's row is computed once, against the cached keys and
values of the frames before it, and equals a pass over the window. Its lag averages the cached
rows over the lag's frames on both sides. More steps and mirror averaging run window passes.
The frames' conditions and their poses (engine.live.decode) are made for many frames, and many
streams (engine.live.batch), in one call each.

Occlusion. A frame whose body is missing (fewer than `min_body_landmarks` of MediaPipe's 12 body
landmarks present) for more than `generation_after` frames in a row is *generated*: a plan of
`generation_horizon` frames is sampled with the active text prompt (DDIM, classifier-free
guidance on the text only), inpainted onto the frames already emitted so it continues them, and
re-planned when used up; a plan's new frames are turned to the emitted heading and joined onto
the emitted frames. When the person returns the output cross-fades back to estimation over
`blend_s` seconds (*blended* frames, eased out), rotations on SO(3) (engine.model.motion.shift_rows).

Frame rate. The model knows motion at TRAINED_FPS; a slower source (a 15 or 20 fps webcam, most
video files) would look 1.5-2x as fast to it. So each input frame becomes `substeps` model frames
(round(TRAINED_FPS / fps), at least 1; `match_fps`): the ones before it interpolated from the
landmarks of the frame before, the last its own. `fps` is the source's own rate; a camera
(`measure_rate`) or a source that tells none is timed by its packets' capture times. Every model frame is in the window
and in the trajectory; only the input frames are emitted, one pose each. Counts told in frames
(`lag`, `generation_after`) are input frames; the window, the generated horizon and its smoothing
are model frames.

Smoothing. Each emitted frame's motion row goes through a One-Euro filter (engine.live.filters;
`smooth_min_cutoff`, `smooth_beta`): a one-pass estimate sees its newest frame at the window's
edge, with no future, and wobbles; the filter steadies a still pose and lets fast motion through.
It measured half the acceleration error against ground truth for 4 mm of MPJPE (bench/README.md).

Trajectory. The pelvis is integrated frame by frame from the emitted frames' heading-frame
velocities (engine.model.motion), skipped passes included. Foot lock: while the contact head says a foot
is planted, the root is shifted (LOCK_RATE of the slide per 1/TRAINED_FPS s, at most
FOOT_LOCK_MAX_M in that time) so that foot keeps its place on the ground, and the height is pulled
towards the planted feet's rest height (the floor). In seconds, not frames: an emitted frame of a
slower source takes back as much as the frames of a 30 fps source would in the same time.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from engine.body.body_model import Body
from engine.body.skeleton import FOOT_JOINTS
from engine.live.decode import decode_rows
from engine.live.filters import one_euro_step
from engine.live.pose_frame import PoseFrame, seen_joints
from engine.model.conditions import assumed_focal, batch_conditions, landmark_conditions
from engine.model.denoiser import TEXT_DIM, Conditions, Denoiser
from engine.model.diffusion import cosine_alpha_bar, ddim, guided, q_sample
from engine.model.mirror import mirror_averaged
from engine.model.streaming import KVCache, embed_rows, step
from engine.model.motion import Normalizer, align_heading, shift_rows
from streamer.frame_rate import FrameRate
from streamer.landmarks import BODY_LANDMARKS, LEG_LANDMARKS
from streamer.packets import LandmarkPacket

log = logging.getLogger(__name__)

# The foot lock's constants, per 1/TRAINED_FPS s (follow_rate and the frame rate make them per frame).
FOOT_LOCK_MAX_M = 0.05         # largest root shift, so a wrong contact cannot teleport
FLOOR_RATE = 0.2               # share of the planted feet's height error corrected
# Share of the planted feet's slide taken back: all of it at once moved the root with every
# wobble of a planted foot (most of the jitter of a seated person: bench/README.md); a share of it
# follows smoothly and still ends with the foot where it was planted.
LOCK_RATE = 0.3
TRAINED_FPS = 30.0             # the frame rate of the training data: the model's idea of time
RATE_WINDOW = 30               # capture intervals a measured input rate is the median of
PROMPT_CACHE = 32              # prompts kept encoded: users may send any number of them
# The share of a frame's time the steps a client asks for may take: the rest is for the pass's
# other work, the outputs, and jitter (on 2 cores MediaPipe has the other core).
REALTIME_SHARE = 0.75
STEP_EMA = 0.1                 # weight of the newest pass in step_ms: a few seconds of passes


@dataclass
class _Slot:
    """One model frame: its packet (an input frame's, or one interpolated between two), conditions,
    how many body landmarks are present, its time (seconds), how many model frames it is on from
    the input frame before it (`span`; 0 for an interpolated frame, which is never emitted), and
    (once emitted) its normalised motion row."""

    seq: int
    packet: LandmarkPacket
    t: float
    span: int = 1
    cond: dict | None = None  # made by condition_slots, for many slots at once
    body_seen: int = 0
    legs_hidden: bool = False  # no knee or ankle present: the legs prompt drives this frame
    x: torch.Tensor | None = None
    embedding: torch.Tensor | None = None  # (width,) the denoiser's embed_frames of cond, made once
    # A causal denoiser's estimate of this frame (x0 (144,), contact logits (6,)), made once on arrival.
    est: torch.Tensor | None = None
    est_logits: torch.Tensor | None = None


@dataclass
class _Due:
    """A frame whose pose is due: its slot, the normalised rows (span + 1, D) of the model frames
    since the input frame before it (the last its emitted row), its contact logits (6,), and its
    source (estimated, generated or blended)."""

    slot: _Slot
    rows: torch.Tensor
    logits: torch.Tensor
    source: str


@dataclass
class _Track:
    """A sampled stretch of motion: rows (L, 144) normalised and contact logits (L, 6), row 0
    being arrival number `first`."""

    x: torch.Tensor
    logits: torch.Tensor
    first: int

    def has(self, seq: int) -> bool:
        return 0 <= seq - self.first < len(self.x)

    def rows(self, seq: int, span: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(x of frames seq - span .. seq, (span + 1, D); contact logits of frame seq). Before the
        track's start the rows are its first, and past its end the track holds its last rows."""
        i = min(max(seq - self.first, 0), len(self.x) - 1)
        rows = self.x[max(i - span, 0):i + 1]
        if i < span:
            rows = torch.cat([rows[:1].expand(span - i, -1), rows])
        return rows, self.logits[i]


def smooth_in_time(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(L, D) rows filtered along L with a Gaussian of `sigma` frames (ends padded by repetition)."""
    if sigma <= 0 or len(x) < 2:
        return x
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) / sigma) ** 2)
    padded = torch.cat([x[:1].expand(r, -1), x, x[-1:].expand(r, -1)])
    return torch.nn.functional.conv1d(padded.T[:, None], (k / k.sum())[None, None])[:, 0].T


def between(a: LandmarkPacket, b: LandmarkPacket, w: float) -> LandmarkPacket:
    """The packet `w` (0..1) of the way from frame a to frame b, in b's image: landmarks moved
    linearly, each as visible as the less visible of its two (NaN, not seen, where either frame
    lacks it). A browser's camera may change resolution between frames: a's pixels are scaled
    to b's image first."""
    scale = np.array([b.width / a.width, b.height / a.height], np.float32)
    return LandmarkPacket(b.frame_id, a.t_capture + w * (b.t_capture - a.t_capture), b.width, b.height,
                          ((1 - w) * a.keypoints * scale + w * b.keypoints).astype(np.float32),
                          np.minimum(a.visibility, b.visibility))


def substeps_for(fps: float) -> int:
    """Model frames per input frame for a source at `fps`: the whole number that brings its rate
    nearest TRAINED_FPS (15 and 20 fps -> 2, 24 and above -> 1)."""
    return max(1, round(TRAINED_FPS / fps))


def follow_rate(rate: float, frames: float) -> float:
    """The share of an error a first-order follower takes back over `frames` TRAINED_FPS frames
    (fractional for a source at another rate) when it takes back `rate` of it per frame."""
    return 1.0 - (1.0 - rate) ** frames


def packets_conditions(packets: list[LandmarkPacket]) -> dict[str, np.ndarray]:
    """The fields of engine.model.denoiser.Conditions of frames (of one stream or many, each image
    its own size), stacked, in one engine.model.conditions.landmark_conditions call, the focal
    length assumed from each image's width."""
    width = np.array([p.width for p in packets], np.float64)
    # np.array, not np.stack: the same array from equal shapes, in a quarter of the time.
    return landmark_conditions(np.array([p.keypoints for p in packets]), np.array([p.visibility for p in packets]),
                               width, np.array([p.height for p in packets], np.float64), assumed_focal(width))


def stacked(conds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Frames' packet_conditions, one array a field (oldest first)."""
    return {k: np.stack([d[k] for d in conds]) for k in conds[0]}


def packet_conditions(p: LandmarkPacket) -> dict[str, np.ndarray]:
    """One frame's packets_conditions."""
    return {k: v[0] for k, v in packets_conditions([p]).items()}


def decode_due(due: list[_Due], norm: Normalizer, rest64: torch.Tensor, parents) -> dict[str, np.ndarray]:
    """The poses of the frames `due` (of one stream or many) in one engine.live.decode.decode_rows."""
    return decode_rows(norm, torch.stack([d.rows[-1] for d in due]), torch.cat([d.rows[:-1] for d in due]),
                       [len(d.rows) - 1 for d in due], torch.stack([d.logits for d in due]), rest64, parents)


def condition_slots(slots: list[_Slot]) -> dict[str, np.ndarray]:
    """Each slot's conditions, body_seen and legs_hidden, all of them in one packets_conditions
    call. Returns the stacked fields."""
    cond = packets_conditions([s.packet for s in slots])
    seen = cond["visible"][:, list(BODY_LANDMARKS)].sum(-1)
    legs = cond["visible"][:, list(LEG_LANDMARKS)].any(-1)
    for i, slot in enumerate(slots):
        slot.cond = {k: v[i] for k, v in cond.items()}
        slot.body_seen, slot.legs_hidden = int(seen[i]), not legs[i]
    return cond


def row_texts(texts: list[tuple[torch.Tensor, torch.Tensor] | None], device) -> tuple | None:
    """engine.model.streaming.step's `text` for rows each with a text (tokens (Lt, 384), mask (Lt,))
    or None: tokens padded to the longest, or None when no row has one."""
    if all(t is None for t in texts):
        return None
    length = max(len(t[0]) for t in texts if t is not None)
    tokens = torch.zeros(len(texts), length, TEXT_DIM, device=device)
    mask = torch.zeros(len(texts), length, dtype=torch.bool, device=device)
    for i, t in enumerate(texts):
        if t is not None:
            tokens[i, :len(t[0])], mask[i, :len(t[1])] = t
    return tokens, mask, torch.tensor([t is not None for t in texts], device=device)


@torch.inference_mode()
def stream_slots(model: Denoiser, cache: KVCache,
                 streams: list[tuple[list[_Slot], int, tuple[torch.Tensor, torch.Tensor] | None]]) -> None:
    """Each new slot's conditions and estimate from a causal denoiser, one row each: streams are
    (new slots, oldest first; the stream's row in `cache`; its legs text (LiveEngine.legs_text)
    or None). Every frame's conditions in one call, their embeddings in one more; then one
    batched step for the new slots of every stream (a 20 fps camera's two model frames a frame
    too; `window` of a stream at a time), the legs text on the slots whose legs are hidden. Every
    slot goes through, generated stretches included, so the cache always holds the stream."""
    slots = [s for fresh, _, _ in streams for s in fresh]
    if not slots:
        return
    device = cache.count.device
    conds = condition_slots(slots)
    for slot, embedding in zip(slots, embed_rows(model, conds, device)):
        slot.embedding = embedding
    for first in range(0, max(len(fresh) for fresh, _, _ in streams), cache.window):
        due = [(slot, row, legs if slot.legs_hidden else None)
               for fresh, row, legs in streams for slot in fresh[first:first + cache.window]]
        x0, logits = step(model, cache, torch.stack([slot.embedding for slot, _, _ in due]),
                          [row for _, row, _ in due], row_texts([legs for _, _, legs in due], device))
        for (slot, _, _), x, c in zip(due, x0, logits):
            slot.est, slot.est_logits = x, c


class LiveEngine:
    """The rolling window and everything it carries between frames."""

    def __init__(self, model: Denoiser, norm: Normalizer, body: Body, cfg, text_encoder=None,
                 fps: float | None = None, seed: int = 0, cache: tuple[KVCache, int] | None = None):
        self.model, self.norm, self.body, self.cfg = model.eval(), norm, body, cfg
        self._estimator = mirror_averaged(self.model, norm) if cfg.mirror_average else self.model
        self.device = next(model.parameters()).device
        self._rest64 = body.rest_joints.double().to(self.device)  # metres: forward kinematics in float64
        self._foot_rest_y = body.rest_joints[list(FOOT_JOINTS), 1].double().numpy()  # (4,) metres
        self.alpha_bar = cosine_alpha_bar().to(self.device)
        self.window = model.cfg.window  # the model's: generated stretches continue this much history
        self.estimation_window = min(cfg.window, self.window)
        self.steps, self.prompt, self.legs = cfg.steps, cfg.prompt, cfg.legs
        self.step_ms: float | None = None  # an estimation pass's time per denoising step (a moving average)
        self.set_lag(cfg.lag)
        self.fps = fps                # the source's rate; None: measured from the packets
        self.measure_rate = False     # a camera: its packets' capture times over its told rate
        self._measured = FrameRate(RATE_WINDOW)
        self._k = 1                   # model frames per input frame, as the last packet was taken
        self._text_encoder = text_encoder
        self._text_failed = False
        self._failed_prompts: set[str] = set()  # prompts the text model could not encode (at most PROMPT_CACHE)
        self._gen = torch.Generator(device="cpu").manual_seed(seed)
        self._slots: deque[_Slot] = deque()
        self._seq = 0
        self._clock = 0.0            # model time of the newest slot, seconds
        self._pending: deque[_Slot] = deque()
        self._estimate: _Track | None = None
        self._plan: _Track | None = None
        self._missing_run = 0
        self._generating = False
        self._since_return = 0
        self._root = None            # last integrated pelvis position (3,), GV metres
        self._offset = np.zeros(3)   # foot lock / floor / re-centre correction added to the root
        self._locks: dict[int, np.ndarray] = {}
        self._recenter = False
        self._smooth_state = None
        # A causal denoiser runs a frame at a time (engine.model.streaming): its cache holds every
        # layer's keys and values of the last `window` frames, so a new frame costs one row. The
        # cache is the engine's own, or a row of one that many engines share (engine.live.batch).
        self._cache, self.cache_row = None, 0
        if isinstance(model, Denoiser) and model.cfg.causal:
            self._cache, self.cache_row = cache or (KVCache(model.cfg, 1, self.device), 0)
        self._uncached: list[_Slot] = []  # slots not yet through the cache, oldest first

    @property
    def timed_by_capture(self) -> bool:
        """Whether the input's rate is measured from its capture times: a camera, or a source that
        tells no rate."""
        return self.measure_rate or not self.fps

    @property
    def rate(self) -> float:
        """Input frames per second: measured (streamer.frame_rate) when timed_by_capture and
        measured yet, else the source's own, else TRAINED_FPS."""
        measured = self._measured.fps if self.timed_by_capture else None
        return measured or self.fps or TRAINED_FPS

    # Control (the WebSocket's messages and the CLI call these).
    def set_prompt(self, prompt: str | None) -> None:
        self.prompt = prompt or self.cfg.prompt

    def set_legs(self, prompt: str | None) -> None:
        """The legs prompt from the next frame on (None: the configured one); encoded now."""
        self.legs = prompt or self.cfg.legs
        self.legs_text()

    def load_prompt(self) -> None:
        """Encode the active prompt and the legs prompt now (loading the text model), not at the
        first occlusion."""
        self._text(torch.ones(1, 1, dtype=torch.bool, device=self.device))
        self.legs_text()

    def set_steps(self, steps: int) -> None:
        """Denoising steps from now on. More than the configured steps only while an estimation
        pass of that many would fit REALTIME_SHARE of a frame's time, by the passes timed so far
        (step_ms), unless cfg.slow_steps: a client must not be able to make the engine fall behind."""
        steps = int(steps)
        if not 1 <= steps <= 50:
            raise ValueError(f"steps must be 1..50, got {steps}")
        if steps > max(self.steps, self.cfg.steps) and not self.cfg.slow_steps:
            budget = REALTIME_SHARE * 1000.0 / self.rate
            if self.step_ms is None and self._slots:  # a cached causal engine has run no window pass
                self._run_window_estimation()
            if self.step_ms is None:
                raise ValueError("the engine has not timed a pass yet: ask again once poses flow")
            if steps * self.step_ms > budget:
                raise ValueError(f"{steps} steps would take about {steps * self.step_ms:.0f} ms a frame here, more than "
                                 f"the {budget:.0f} ms a frame at {self.rate:.0f} fps leaves "
                                 f"(engine.slow_steps: true allows it)")
        self.steps = steps

    def set_lag(self, lag: int) -> None:
        if not 0 <= int(lag) <= self.estimation_window // 2:
            raise ValueError(f"lag must be 0..{self.estimation_window // 2} frames, got {lag}")
        self.lag = int(lag)

    def recenter(self) -> None:
        """Put the world origin under the person at the next frame."""
        self._recenter = True

    # The stream.
    def push(self, packets: list[LandmarkPacket]) -> list[PoseFrame]:
        """Add frames (oldest first); return the poses now due, oldest first."""
        self.add(packets)
        if self._cache is not None:
            stream_slots(self.model, self._cache,
                         [(self.take_uncached(), self.cache_row, self.legs_text())])
        return self.emit_due()

    def add(self, packets: list[LandmarkPacket]) -> None:
        """The first half of push: the frames (oldest first) join the window. A causal engine's
        new slots then go through the cache (take_uncached, stream_slots: their conditions too)
        before emit_due."""
        new = []
        for p in packets:
            last = self._slots[-1].packet if self._slots else None
            self._measured.add(p.t_capture)
            rate = self.rate
            k = substeps_for(rate) if self.cfg.match_fps else 1
            if k != self._k:
                log.info("input at %.1f fps: %d model frames per input frame (%d interpolated), so the model sees "
                         "motion at the speed it trained on", rate, k, k - 1)
                self._k = k
            span = k if last is not None else 1
            new += [self._add_slot(between(last, p, j / span), span=0, dt=1.0 / (k * rate)) for j in range(1, span)]
            new.append(self._add_slot(p, span=span, dt=1.0 / (k * rate)))
            self._pending.append(new[-1])
        if self._cache is not None:
            self._uncached += new
        elif new:
            condition_slots(new)

    def take_uncached(self) -> list[_Slot]:
        """The slots that have not been through the cache yet, oldest first (now the caller's)."""
        fresh, self._uncached = self._uncached, []
        return fresh

    def emit_due(self) -> list[PoseFrame]:
        """The second half of push: the poses now due, oldest first."""
        return self._decoded(self.take_due())

    def take_due(self) -> list[_Due]:
        """emit_due up to the poses: the frames now due, oldest first, with their rows. `finish`
        turns them into poses once decoded (decode_due), which a batch of streams does for all
        its streams' frames at once (engine.live.batch)."""
        # Kept: the window, the frames waiting for their lag, and a window of emitted history.
        while len(self._slots) > 2 * self.window + self.lag * self._k:
            self._slots.popleft()
        due = []
        while len(self._pending) > self.lag:
            due.append(self._pending.popleft())
        return self._select(due)

    def _add_slot(self, p: LandmarkPacket, span: int, dt: float) -> _Slot:
        if self._slots:
            self._clock += dt
        slot = _Slot(self._seq, p, self._clock, span)
        self._seq += 1
        self._slots.append(slot)
        return slot

    def flush(self) -> list[PoseFrame]:
        """The poses still held back by the lag, oldest first: the stream has ended, no newer
        frames will come (a file's last `lag` frames would otherwise never be emitted)."""
        due = list(self._pending)
        self._pending.clear()
        return self._decoded(self._select(due))

    def _decoded(self, due: list[_Due]) -> list[PoseFrame]:
        return self.finish(due, decode_due(due, self.norm, self._rest64, self.body.parents)) if due else []

    def _select(self, due: list[_Slot]) -> list[_Due]:
        """The rows of the arrived frames `due` (oldest first), from one estimation over the
        window as it is now and the plans of generated stretches."""
        if not due:
            return []
        sources = [self._source_of(s) for s in due]
        if any(src != "generated" for src, _ in sources):
            self._estimate = self._run_estimation(due[0].seq - due[0].span)
        out = []
        for slot, (src, weight) in zip(due, sources):
            if src == "estimated":
                self._plan = None
                rows, logits = self._estimate.rows(slot.seq, slot.span)
            else:
                # A blend fades out of the plan it has (held at its end), it does not plan anew.
                if self._plan is None or (src == "generated" and not self._plan.has(slot.seq)):
                    self._plan = self._run_generation(slot.seq - max(slot.span - 1, 0))
                rows, logits = self._plan.rows(slot.seq, slot.span)
                if src == "blended":
                    e_rows, e_logits = self._estimate.rows(slot.seq, slot.span)
                    rows = self._toward(rows, e_rows, weight)
                    logits = torch.lerp(logits, e_logits, weight)
            # The frames interpolated before this one keep their rows as history for generation.
            for i, s in enumerate(self._since_last(slot)):
                s.x = rows[i + 1]
            cur = self._smooth(rows[-1], slot.t)
            slot.x = cur
            out.append(_Due(slot, torch.cat([rows[:-1], cur[None]]), logits, src))
        return out

    def _since_last(self, slot: _Slot) -> list[_Slot]:
        """The interpolated slots between `slot` and the input frame before it, oldest first."""
        i = slot.seq - self._slots[0].seq
        return [self._slots[j] for j in range(max(i - slot.span + 1, 0), i)]

    def _toward(self, row: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
        """A normalised motion row moved `weight` of the way to `target` (engine.model.motion.shift_rows)."""
        raw = self.norm.inverse(row)
        return self.norm(shift_rows(raw, raw, self.norm.inverse(target), weight))

    def _smooth(self, row: torch.Tensor, t: float) -> torch.Tensor:
        """The One-Euro filtered (144,) normalised motion row of the frame at time `t` (seconds)."""
        if self.cfg.smooth_min_cutoff <= 0:
            return row
        x, self._smooth_state = one_euro_step(row.double().cpu().numpy(), t, self._smooth_state,
                                              self.cfg.smooth_min_cutoff, self.cfg.smooth_beta)
        return torch.from_numpy(x).to(row)

    def _source_of(self, slot: _Slot) -> tuple[str, float]:
        """(source, weight of estimation) for the next frame to emit; updates the occlusion state."""
        if slot.body_seen < self.cfg.min_body_landmarks:
            self._missing_run += 1
            if self._missing_run > self.cfg.generation_after:
                self._generating, self._since_return = True, 0
                return "generated", 0.0
            return ("generated", 0.0) if self._generating else ("estimated", 1.0)
        self._missing_run = 0
        if not self._generating:
            return "estimated", 1.0
        fade = max(1, round(self.cfg.blend_s * self.rate))
        self._since_return += 1
        if self._since_return >= fade:
            self._generating = False
            return "estimated", 1.0
        # Eased out: most of the way is made while the person has just come back, and the avatar
        # joins the estimate without a kink in its speed (a linear fade adds its whole rate on
        # top of the person's own motion up to the last blended frame).
        return "blended", 1.0 - (1.0 - self._since_return / fade) ** 2

    def _window(self, conds: list[dict]) -> Conditions:
        """One window's Conditions from its frames' packet_conditions, oldest first."""
        return batch_conditions([stacked(conds)], self.device)

    def _estimator_on(self, slots: list[_Slot]):
        """The estimator over the window of `slots`: (x_t, t) -> (x0, contact logits). Each frame's
        landmark and box embedding is made once, when it first enters a window, not again in each
        of the `window` passes that see it (with stacking the window's conditions, a fifth of a pass's
        time on one thread: bench/README.md). The legs prompt drives the frames whose legs are hidden."""
        denoiser = isinstance(self.model, Denoiser)  # the per-frame lifter reads no text
        legs = None
        if denoiser and self.legs:
            hidden = [s.legs_hidden for s in slots]
            legs = self._text(torch.tensor([hidden], device=self.device), self.legs) if any(hidden) else None
        if self._estimator is not self.model or not denoiser:
            cond = self._window([s.cond for s in slots])
            cond = Conditions(cond.keypoints, cond.visible, cond.box, cond.has_box, **legs) if legs else cond
            return lambda x_t, t: self._estimator(x_t, t, cond)
        fresh = [s for s in slots if s.embedding is None]
        if fresh:
            for s, e in zip(fresh, embed_rows(self.model, stacked([s.cond for s in fresh]), self.device)):
                s.embedding = e
        frames = torch.stack([s.embedding for s in slots])[None]
        # With `frames` given the model reads only the text fields of its Conditions.
        c = Conditions(None, None, None, None, **legs) if legs else None
        return lambda x_t, t: self.model(x_t, t, c, frames)

    def _run_estimation(self, first: int) -> _Track:
        """The estimate of the frames from arrival `first` on: a causal denoiser's cached rows in
        estimation mode (1 step, no mirror averaging), else a pass over the window.

        A causal row never sees the frames after it, so with a lag the cached rows are averaged
        over the lag's frames on both sides (smooth_in_time, a Gaussian reaching `lag` frames each
        way): the newer frames a lagged pose waits for then shape it, as a window pass's do."""
        if self._cache is not None and self.steps == 1 and self._estimator is self.model:
            reach = self.lag * self._k
            count = min(self._slots[-1].seq - first + 1 + reach, self.estimation_window)
            slots = list(itertools.islice(reversed(self._slots), count))[::-1]
            x, logits = torch.stack([s.est for s in slots]), torch.stack([s.est_logits for s in slots])
            if reach:
                x, logits = smooth_in_time(x, reach / 3), smooth_in_time(logits, reach / 3)
            return _Track(x, logits, slots[0].seq)
        return self._run_window_estimation()

    @torch.inference_mode()
    def _run_window_estimation(self) -> _Track:
        slots = list(self._slots)[-self.estimation_window:]
        estimator = self._estimator_on(slots)
        shape = (1, len(slots), self.norm.mean.shape[0])
        start = len(self.alpha_bar) - 1
        x = torch.zeros(shape, device=self.device)
        prev = self._estimate
        if self.steps > 1 and prev is not None:
            # Warm start: last window's estimate, shifted to this window, noised part of the way.
            rows = [prev.x[min(max(s.seq - prev.first, 0), len(prev.x) - 1)] for s in slots]
            start = self.cfg.warm_start_step
            noise = torch.randn(shape, generator=self._gen).to(self.device)
            x = q_sample(torch.stack(rows)[None], torch.tensor([start], device=self.device), noise, self.alpha_bar)
        logits = {}

        def model(x_t, t):
            x0, logits["c"] = estimator(x_t, t)
            return x0

        t0 = time.perf_counter()
        x0 = ddim(model, x, self.steps, self.alpha_bar, start=start)
        per_step = (time.perf_counter() - t0) * 1000.0 / self.steps
        self.step_ms = per_step if self.step_ms is None else self.step_ms + STEP_EMA * (per_step - self.step_ms)
        return _Track(x0[0], logits["c"][0], slots[0].seq)

    def _encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(tokens (Lt, 384), mask (Lt,)) of `prompt`, or None when the text model is not installed
        or cannot encode it (the frames it would drive run without it)."""
        if self._text_failed or not prompt or prompt in self._failed_prompts:
            return None
        if self._text_encoder is None:
            from engine.model.text import TextEncoder

            self._text_encoder = TextEncoder(cache_size=PROMPT_CACHE)
        try:
            tokens, mask = self._text_encoder.tokens([prompt])
        except ImportError as e:
            log.warning("no text model (%s): prompts are not followed", e)
            self._text_failed = True
            return None
        except Exception as e:  # a prompt the tokenizer rejects: the frames are still made
            log.warning("the text model cannot encode the prompt %r (%s): going on without it", prompt[:60], e)
            if len(self._failed_prompts) >= PROMPT_CACHE:
                self._failed_prompts.clear()
            self._failed_prompts.add(prompt)
            return None
        return tokens[0].to(self.device), mask[0].to(self.device)

    def _text(self, frames: torch.Tensor, prompt: str | None = None) -> dict | None:
        """Text fields of Conditions for `prompt` (default: the active prompt) over `frames` (1, L)
        bool, or None where _encode gives none."""
        encoded = self._encode(self.prompt if prompt is None else prompt)
        if encoded is None:
            return None
        tokens, mask = encoded
        return {"text": tokens[None, None], "text_mask": mask[None, None], "text_frames": frames[:, None]}

    def legs_text(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The legs prompt's (tokens, mask) (_encode) for the frames whose legs are hidden, or None."""
        return self._encode(self.legs) if self.legs else None

    @torch.inference_mode()
    def _run_generation(self, seq: int) -> _Track:
        """A plan starting at arrival `seq`: the emitted frames before it (kept as they were) and
        `generation_horizon` new ones, sampled with the prompt."""
        horizon = self.cfg.generation_horizon
        history = [s for s in self._slots if s.x is not None and s.seq < seq][-(self.window - horizon):]
        arrived = [s for s in self._slots if s.seq >= seq][:horizon]
        blank = packet_conditions(LandmarkPacket.empty(-1, 0.0, arrived[0].packet.width, arrived[0].packet.height))
        conds = [s.cond for s in history] + [s.cond for s in arrived] + [blank] * (horizon - len(arrived))
        c = self._window(conds)
        L, H = len(conds), len(history)
        frames = torch.arange(L, device=self.device)[None] >= H
        text = self._text(frames)
        c_text = Conditions(c.keypoints, c.visible, c.box, c.has_box, **text) if text else c
        logits = {}

        def conditional(x_t, t):
            x0, logits["c"] = self.model(x_t, t, c_text)
            return x0

        model = conditional
        if text and self.cfg.guidance != 1.0:
            model = guided(conditional, lambda x_t, t: self.model(x_t, t, c)[0], self.cfg.guidance)
        D = self.norm.mean.shape[0]
        x = torch.randn((1, L, D), generator=self._gen).to(self.device)
        known = mask = None
        if H:
            known = torch.zeros(1, L, D, device=self.device)
            known[0, :H] = torch.stack([s.x for s in history])
            mask = torch.zeros_like(known)
            mask[0, :H] = 1
        x0 = ddim(model, x, self.cfg.generation_steps, self.alpha_bar, known=known, known_mask=mask)[0]
        if H:
            # A few-step sample holds the known frames only loosely: its first new frame can face
            # elsewhere and stand in another pose. Turn the new frames to the emitted heading (for
            # good: a generated heading means nothing) and fade in the rest of the difference.
            raw = self.norm.inverse(x0)
            last, first = raw[H - 1], raw[H]
            new = align_heading(raw[H:], first, last)
            fade = torch.exp(-torch.arange(1, L - H + 1, device=x0.device) / (3 * max(self.cfg.generation_smooth, 1.0)))
            x0[H:] = self.norm(shift_rows(new, new[0], last, fade))
        # It also wobbles from frame to frame; smoothing it in time (the emitted history included,
        # then put back) removes that.
        x0 = smooth_in_time(x0, self.cfg.generation_smooth)
        if H:
            x0[:H] = known[0, :H]
        return _Track(x0, smooth_in_time(logits["c"][0], self.cfg.generation_smooth), seq - H)

    def finish(self, due: list[_Due], poses: dict[str, np.ndarray]) -> list[PoseFrame]:
        """The pose frames of `due` (take_due), given their decode_due `poses`: each frame's
        pelvis carried on by its step, re-centred on request, and held by the foot lock."""
        out = []
        for i, d in enumerate(due):
            first = self._root is None
            self._root = np.zeros(3) if first else self._root + poses["step"][i]
            if self._recenter:
                self._offset[[0, 2]] = -self._root[[0, 2]]
                self._locks.clear()
                self._recenter = False
            contacts = poses["contacts"][i]
            root = self._root + self._offset
            root, joints = self._foot_lock(root, poses["joints"][i] + root, contacts, first)
            p, generated = d.slot.packet, d.source == "generated"
            out.append(PoseFrame(frame_id=p.frame_id, t_capture=p.t_capture, t_emit=time.time(),
                                 pose_aa=poses["pose_aa"][i], pose_quat=poses["pose_quat"][i], root=root,
                                 joints=joints, contacts=contacts, source=d.source,
                                 confidence=0.0 if generated else d.slot.body_seen / len(BODY_LANDMARKS),
                                 stature=self.body.stature, joints_cam=poses["joints_cam"][i],
                                 seen=seen_joints(d.slot.cond["visible"] & (not generated))))
        return out

    def _foot_lock(self, root: np.ndarray, joints: np.ndarray, contacts: np.ndarray, first: bool):
        """Shift the root so planted feet stay put and rest on the floor. Returns (root, joints)."""
        rest_y = self._foot_rest_y
        planted = [i for i in range(len(FOOT_JOINTS)) if contacts[i] > self.cfg.contact_threshold]
        if first:  # stand the lowest foot joint at its rest height
            lift = float(np.max(rest_y - joints[list(FOOT_JOINTS), 1]))
            self._offset[1] += lift
            root, joints = root + [0, lift, 0], joints + [0, lift, 0]
        if not self.cfg.foot_lock:
            return root, joints
        for i in list(self._locks):
            if i not in planted:
                del self._locks[i]
        shift = np.zeros(3)
        errors = []
        for i in planted:
            foot = joints[FOOT_JOINTS[i]]
            if i in self._locks:
                errors.append(self._locks[i] - foot[[0, 2]])
            else:
                self._locks[i] = foot[[0, 2]].copy()
        frames = TRAINED_FPS / self.rate  # of the time the constants are given for, in this frame
        if errors:
            d = follow_rate(LOCK_RATE, frames) * np.mean(errors, 0)
            n = np.linalg.norm(d)
            shift[[0, 2]] = d * min(1.0, FOOT_LOCK_MAX_M * frames / max(n, 1e-9))
        if planted:
            below = rest_y[planted] - joints[[FOOT_JOINTS[i] for i in planted], 1]  # metres under its rest height
            # Towards the floor by a share a frame, but a planted foot is never under it: a
            # person standing up from a chair sank up to 7.5 cm into the floor before.
            shift[1] = max(follow_rate(FLOOR_RATE, frames) * float(np.mean(below)), float(np.max(below)))
        self._offset += shift
        return root + shift, joints + shift
