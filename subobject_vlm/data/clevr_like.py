"""A deterministic, procedurally rendered CLEVR-like captioning and question-answering set (no downloads).

Every scene holds 3-10 objects on a non-uniform floor-and-wall background. An object has a shape (sphere,
cube or cylinder, drawn with shading), one of CLEVR's 8 colours, a size (small or large), a material
(matte, or shiny with a specular highlight) and a position; objects are drawn back to front, so nearer
ones occlude farther ones. Each scene gets a caption naming every object's attributes, horizontal place and
position relative to its nearest already-named neighbour, and one question (counting, or the colour, shape
or material of an object that the question identifies uniquely).

>>> path = make_clevr_like("runs/clevr", split="train", num_images=1000, size=128, seed=0)
>>> records = json.loads(path.read_text())   # LLaVA format + "task" ("caption", "count", "colour", ...)

Scene ``i`` of a split depends only on ``(seed, split, i)``: splits are disjoint streams of one seed, and
asking for more images only appends scenes. The same arguments always give byte-identical files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import save_image, write_text

COLOURS: dict[str, tuple[int, int, int]] = {  # CLEVR's palette
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SHAPES = ("sphere", "cube", "cylinder")
SIZES = {"small": 0.065, "large": 0.11}  # radius as a fraction of the image side (at mid depth)
MATERIALS = ("matte", "shiny")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ATTRIBUTE_WORDS = (*NUMBERS[1:], *SIZES, *MATERIALS, *COLOURS, *SHAPES)  # what only the image can tell
SPLITS = {"train": 0, "val": 1, "test": 2}
CAPTION_PROMPT = "Describe the scene."
MIN_VISIBLE = 0.4  # an object must show at least this fraction of the area of its disc
SUPERSAMPLE = 2  # render at 2x and area-downsample: anti-aliased edges

_LIGHT = np.array([-0.45, -0.65, 0.62]) / np.linalg.norm([-0.45, -0.65, 0.62])  # from the upper left
_HALF = (_LIGHT + np.array([0.0, 0.0, 1.0])) / np.linalg.norm(_LIGHT + np.array([0.0, 0.0, 1.0]))


@dataclass(frozen=True)
class SceneObject:
    """One object: attributes and its place on the floor (``x``, ``y``: where it touches the floor, in [0, 1]
    of the image width / height; larger ``y`` is nearer the camera)."""

    shape: str
    colour: str
    size: str
    material: str
    x: float
    y: float

    @property
    def name(self) -> str:
        return f"{self.size} {self.material} {self.colour} {self.shape}"

    def radius(self, side: int) -> float:
        """Radius in pixels of an image ``side`` wide; nearer objects look larger."""
        return SIZES[self.size] * side * (0.75 + 0.5 * (self.y - 0.45) / 0.5)


def sample_scene(rng: np.random.Generator, min_objects: int = 3, max_objects: int = 10) -> list[SceneObject]:
    """3-10 random objects whose floor positions keep any two from covering each other completely."""
    count = int(rng.integers(min_objects, max_objects + 1))
    objects: list[SceneObject] = []
    while len(objects) < count:
        for _attempt in range(200):
            candidate = SceneObject(
                shape=SHAPES[rng.integers(len(SHAPES))],
                colour=list(COLOURS)[rng.integers(len(COLOURS))],
                size=list(SIZES)[rng.integers(len(SIZES))],
                material=MATERIALS[rng.integers(len(MATERIALS))],
                x=float(rng.uniform(0.12, 0.88)),
                y=float(rng.uniform(0.5, 0.93)),
            )
            r = candidate.radius(1)
            if all(
                np.hypot(candidate.x - o.x, (candidate.y - o.y) * 1.6) > 0.75 * (r + o.radius(1))
                for o in objects
            ):
                objects.append(candidate)
                break
        else:  # the floor is full: fewer objects
            break
    return objects


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side, 3) float32 in [0, 255]: a lit wall above a floor, both with smooth random shading."""
    ys = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None]  # (S, 1)
    horizon = float(rng.uniform(0.32, 0.42))
    wall = 150 + 40 * (1 - ys / horizon)  # brighter towards the top
    floor = 120 + 50 * (ys - horizon) / (1 - horizon)  # brighter towards the camera
    base = np.where(ys < horizon, wall, floor) * np.ones((1, side), np.float32)  # (S, S)
    noise = cv2.resize(
        rng.normal(0, 9, (6, 6)).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC
    )
    tint = np.array([1.0, 0.98, 0.94], np.float32) * float(rng.uniform(0.9, 1.05))  # warm grey, varying light
    return np.clip((base + noise)[..., None] * tint, 0, 255)


def _paint(canvas, ids, mask, colour, shade, index):
    """Where ``mask`` (S, S) bool: canvas = colour x shade (S, S) + highlight; ids = index."""
    canvas[mask] = np.clip(np.asarray(colour, np.float32) * shade[mask][:, None], 0, 255)
    ids[mask] = index


def _highlight(canvas, mask, strength):
    """Blend towards white by ``strength`` (S, S) in [0, 1] inside ``mask``."""
    s = strength[mask][:, None]
    canvas[mask] = canvas[mask] * (1 - s) + 255.0 * s


def _draw_object(canvas: np.ndarray, ids: np.ndarray, obj: SceneObject, index: int) -> None:
    """Draw one object in place on ``canvas`` (S, S, 3) float32; mark its pixels with ``index`` in ``ids``."""
    side = canvas.shape[0]
    r = obj.radius(side)
    cx, ground = obj.x * side, obj.y * side
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5  # pixel centres
    colour = COLOURS[obj.colour]
    shiny = obj.material == "shiny"
    if obj.shape == "sphere":
        cy = ground - r
        dx, dy = (xx - cx) / r, (yy - cy) / r
        inside = dx * dx + dy * dy <= 1.0
        nz = np.sqrt(np.clip(1.0 - dx * dx - dy * dy, 0, 1))
        normal_dot = np.clip(dx * _LIGHT[0] + dy * _LIGHT[1] + nz * _LIGHT[2], 0, 1)
        _paint(canvas, ids, inside, colour, 0.35 + 0.75 * normal_dot, index)
        if shiny:
            spec = np.clip(dx * _HALF[0] + dy * _HALF[1] + nz * _HALF[2], 0, 1) ** 40
            _highlight(canvas, inside, 0.9 * spec)
    elif obj.shape == "cube":
        s = 1.5 * r
        ox, oy = 0.38 * s, -0.3 * s  # receding edge: to the upper right
        x0, x1, y1 = cx - s / 2 - ox / 2, cx + s / 2 - ox / 2, ground
        y0 = y1 - s
        faces = {
            "front": ([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], 0.85),
            "side": ([(x1, y0), (x1 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1, y1)], 0.55),
            "top": ([(x0, y0), (x0 + ox, y0 + oy), (x1 + ox, y0 + oy), (x1, y0)], 1.1),
        }
        for polygon, light in faces.values():
            mask = np.zeros((side, side), np.uint8)
            cv2.fillPoly(mask, [np.round(np.array(polygon) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
            mask = mask.astype(bool)
            gradient = light * (1.0 - 0.15 * (yy - y0) / max(s, 1.0))  # faces darken downwards
            _paint(canvas, ids, mask, colour, gradient, index)
            if shiny:
                glint = np.exp(-(((xx - (x0 + 0.3 * s)) ** 2 + (yy - (y0 + 0.25 * s)) ** 2) / (0.02 * s * s)))
                _highlight(canvas, mask, 0.85 * glint * (light > 1.0) + 0.35 * glint * (light <= 1.0))
    else:  # cylinder: a shaded body between two ellipses, a lighter top
        w, h = 1.7 * r, 1.9 * r
        ry = 0.22 * w
        dx = (xx - cx) / (w / 2)
        body = (
            (np.abs(dx) <= 1.0)
            & (yy >= ground - h)
            & ((yy <= ground) | (((yy - ground) / ry) ** 2 + dx**2 <= 1.0))
        )
        top = ((yy - (ground - h)) / ry) ** 2 + dx**2 <= 1.0
        across = np.sqrt(np.clip(1 - dx * dx, 0, 1))  # body normal's z along x
        light = np.clip(dx * _LIGHT[0] + across * _LIGHT[2], 0, 1)
        _paint(canvas, ids, body, colour, 0.3 + 0.75 * light, index)
        _paint(canvas, ids, top, colour, np.full_like(xx, 1.05), index)
        if shiny:
            stripe = np.exp(-((dx + 0.35) ** 2) / 0.01)
            _highlight(canvas, body & ~top, 0.8 * stripe)


def render_scene(
    objects: list[SceneObject], side: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene (``rng`` draws the background and the sensor noise): ``(image, instance_map)``.

    Returns ``image`` (side, side, 3) uint8 RGB and ``instance_map`` (side, side) int32: ``k + 1`` where object
    ``k`` is visible (after occlusion, nearest-neighbour downsampled), ``0`` on the background.
    """
    big = side * SUPERSAMPLE
    canvas = _background(rng, big)
    ids = np.zeros((big, big), np.int32)
    for k in sorted(range(len(objects)), key=lambda k: objects[k].y):  # far to near: painter's algorithm
        _draw_object(canvas, ids, objects[k], k + 1)
    image = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA)
    grain = rng.normal(0, 2.0, image.shape).astype(np.float32)  # sensor noise, so no region is flat
    image = np.clip(np.round(image + grain), 0, 255).astype(np.uint8)
    instance_map = ids[SUPERSAMPLE // 2 :: SUPERSAMPLE, SUPERSAMPLE // 2 :: SUPERSAMPLE]
    return image, np.ascontiguousarray(instance_map)


def _place(obj: SceneObject) -> str:
    return "on the left" if obj.x < 0.37 else ("on the right" if obj.x > 0.63 else "in the middle")


def _relation(obj: SceneObject, ref: SceneObject) -> str:
    """Where ``obj`` is relative to ``ref``: depth first when it differs clearly, else left / right."""
    if obj.y < ref.y - 0.06:
        return "behind"
    if obj.y > ref.y + 0.06:
        return "in front of"
    return "left of" if obj.x < ref.x else "right of"


def caption(objects: list[SceneObject]) -> str:
    """Every object, left to right: ``"<count> objects . a <size> <material> <colour> <shape> <place> ,
    <relation> the <colour> <shape> . ..."``; the relation is to the nearest object already named."""
    order = sorted(objects, key=lambda o: o.x)
    parts = [f"{NUMBERS[len(objects)]} objects ."]
    for k, obj in enumerate(order):
        text = f"a {obj.name} {_place(obj)}"
        if k:
            ref = min(order[:k], key=lambda o: np.hypot(o.x - obj.x, o.y - obj.y))
            text += f" , {_relation(obj, ref)} the {ref.colour} {ref.shape}"
        parts.append(text + " .")
    return " ".join(parts)


def question(objects: list[SceneObject], rng: np.random.Generator) -> tuple[str, str, str]:
    """One question with a unique answer: ``(task, question, answer)``; tasks ``count``, ``colour``,
    ``shape``, ``material``."""
    options = [("count", "how many objects are there ?", NUMBERS[len(objects)])]

    def unique(key) -> list[SceneObject]:
        keys = [key(o) for o in objects]
        return [o for o in objects if keys.count(key(o)) == 1]

    for o in unique(lambda o: (o.size, o.shape)):
        options.append(("colour", f"what colour is the {o.size} {o.shape} ?", o.colour))
    for o in unique(lambda o: (o.size, o.colour)):
        options.append(("shape", f"what shape is the {o.size} {o.colour} object ?", o.shape))
    for o in unique(lambda o: (o.size, o.colour, o.shape)):
        options.append(("material", f"what material is the {o.size} {o.colour} {o.shape} ?", o.material))
    kinds = sorted({task for task, _, _ in options})
    kind = kinds[rng.integers(len(kinds))]  # question types balanced, whatever the scene
    chosen = [option for option in options if option[0] == kind]
    return chosen[rng.integers(len(chosen))]


def vocabulary() -> list[str]:
    """Every word that captions, questions and answers can contain."""
    words = {"objects", ".", ",", "a", "the", "on", "left", "right", "in", "middle", "behind", "front", "of"}
    words |= {"how", "many", "are", "there", "?", "what", "colour", "is", "shape", "object", "material"}
    words |= set(CAPTION_PROMPT.replace(".", " .").split())
    words |= set(COLOURS) | set(SHAPES) | set(SIZES) | set(MATERIALS) | set(NUMBERS)
    return sorted(words)


@dataclass
class Scene:
    """One generated scene: its objects, ``image`` (S, S, 3) uint8, ``instance_map`` (S, S) int32 (object
    ``k`` visible where it is ``k + 1``) and its question ``(task, question, answer)``."""

    objects: list[SceneObject]
    image: np.ndarray
    instance_map: np.ndarray
    qa: tuple[str, str, str]


def generate_scene(
    seed: int, split: str, index: int, size: int = 128, min_objects: int = 3, max_objects: int = 10
) -> Scene:
    """Scene ``index`` of ``split``: a function of ``(seed, split, index)`` and the options only."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    streams = np.random.SeedSequence([seed, SPLITS[split], index]).spawn(3)
    scene_rng, render_rng, question_rng = (np.random.default_rng(s) for s in streams)
    render_state = render_rng.bit_generator.state
    while True:
        objects = sample_scene(scene_rng, min_objects, max_objects)
        render_rng.bit_generator.state = render_state
        image, instance_map = render_scene(objects, size, render_rng)
        visible = np.bincount(instance_map.ravel(), minlength=len(objects) + 1)[1:]  # (n,) pixels per object
        kept = [o for o, v in zip(objects, visible) if v >= MIN_VISIBLE * np.pi * o.radius(size) ** 2]
        if len(kept) == len(objects):
            break
        if len(kept) >= min_objects:  # an object hidden behind nearer ones is left out of the scene
            objects = kept
            render_rng.bit_generator.state = render_state
            image, instance_map = render_scene(objects, size, render_rng)
            break
    return Scene(objects, image, instance_map, question(objects, question_rng))


def _record(image: str, task: str, scene: int, prompt: str, reply: str) -> dict:
    """One LLaVA-format record: the image, a human turn (``<image>`` then ``prompt``) and the reply."""
    conversations = [{"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": reply}]
    return {"image": image, "task": task, "scene": scene, "conversations": conversations}


def make_clevr_like(
    out_dir: str | os.PathLike,
    split: str = "train",
    num_images: int = 1000,
    size: int = 128,
    seed: int = 0,
    min_objects: int = 3,
    max_objects: int = 10,
) -> Path:
    """Render ``num_images`` scenes of ``split`` into ``out_dir/images`` and write ``out_dir/data.json``.

    Each image gives two LLaVA records (``image``, ``conversations``, ``task``, ``scene``): a caption
    (``task="caption"``, prompt ``"Describe the scene."``) and one question (``task`` = its type).
    ``out_dir/scenes.json`` lists every scene's objects. Files are written under temporary names and renamed,
    so an interrupted call leaves no half-written file. Returns the path of ``data.json``.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if not 1 <= min_objects <= max_objects <= len(NUMBERS) - 1:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 10, got {min_objects}, {max_objects}")
    from PIL import Image

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records, scenes = [], []
    for i in range(num_images):
        scene = generate_scene(seed, split, i, size, min_objects, max_objects)
        name = f"images/{split}_{i:06d}.png"
        save_image(out_dir / name, Image.fromarray(scene.image))
        task, text, answer = scene.qa
        records.append(_record(name, "caption", i, CAPTION_PROMPT, caption(scene.objects)))
        records.append(_record(name, task, i, text, answer))
        scenes.append({"image": name, "objects": [asdict(o) for o in scene.objects]})
    for file_name, payload in (("scenes.json", scenes), ("data.json", records)):
        write_text(out_dir / file_name, json.dumps(payload, indent=1))
    return out_dir / "data.json"


__all__ = [
    "ATTRIBUTE_WORDS",
    "CAPTION_PROMPT",
    "COLOURS",
    "MATERIALS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "caption",
    "generate_scene",
    "make_clevr_like",
    "question",
    "render_scene",
    "sample_scene",
    "vocabulary",
]
