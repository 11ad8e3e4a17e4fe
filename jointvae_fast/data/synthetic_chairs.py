"""Built-in procedural 3D chairs: 64x64 grayscale renders on white from known factors (NumPy only).

Each chair is a set of solid primitives (boxes, elliptic cylinders, open cylinder rings, ellipsoids) whose
sizes and positions are functions of the shape factors. A primitive's surface is sampled once per chair
type as a dense point template in unit coordinates; an image is made by mapping the template through
    p_view = V(azimuth, elevation) @ (centre + R_yaw @ (half_size * local))
for every point (one small batched matmul per primitive), projecting orthographically onto a
supersampled pixel grid and keeping the nearest point of each pixel with a z-buffer written by
`np.maximum.at` on the key (quantised depth << 8 | shade). Shade = albedo * (ambient + diffuse * max(n.L, 0))
with a fixed light in view space. The supersampled buffer is box-filtered down to 64x64.

Factors (`FACTOR_NAMES`), stored with the images:
  type          int64, index into `CHAIR_TYPES`
  azimuth       float32 degrees in [0, 360); 0 shows the chair's front, seat width horizontal
  elevation     float32 degrees, one of `ELEVATIONS` (camera above the horizon, like the real set)
  seat_width    float32 in FACTOR_RANGES["seat_width"]   (chair units; a bench is twice as wide)
  seat_height   float32 in FACTOR_RANGES["seat_height"]  (a bar stool's seat is 1.45 times higher)
  back_height   float32 in FACTOR_RANGES["back_height"]  (no effect on the backless stool and bench)
  leg_thickness float32 in FACTOR_RANGES["leg_thickness"]
Each type has one fixed scale (its largest chair at any view fits the frame), so within a type a factor
changes the drawn size; the floor is at a fixed height per type.

Splits. The four shape factors are cut into 4 equal bins each; together with the type that gives
7 * 256 cells. A fixed 1/8 of the cells (a permutation seeded independently of `seed`) is held out:
training images come only from the other cells, test images only from the held-out ones, so every test
image shows a combination of factor values never seen in training (each value alone is seen).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..progress import Progress

CHAIR_TYPES = ("four_leg", "armchair", "stool", "office", "bar_stool", "bench", "lounge")
FACTOR_NAMES = ("type", "azimuth", "elevation", "seat_width", "seat_height", "back_height", "leg_thickness")
SHAPE_FACTORS = ("seat_width", "seat_height", "back_height", "leg_thickness")
FACTOR_RANGES = {
    "seat_width": (0.8, 1.3),
    "seat_height": (0.75, 1.15),
    "back_height": (0.55, 1.15),
    "leg_thickness": (0.05, 0.13),
}
ELEVATIONS = (20.0, 30.0)
IMAGE_SIZE = 64
SUPERSAMPLE = 2          # render at 128x128, box-filter to 64x64
POINT_SPACING_PX = 0.55  # surface sample spacing in supersampled pixels (< 1: no holes)
HELD_OUT_FRACTION = 1 / 8
BINS = 4
DEFAULT_TRAIN = 60_000
DEFAULT_TEST = 6_000
GENERATOR_VERSION = 2    # bump when the rendering changes (invalidates caches)

_LIGHT = np.array([-0.45, 0.6, 0.66])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_AMBIENT, _DIFFUSE = 0.28, 0.72
_SEAT_DEPTH = 0.9


@dataclass
class Part:
    """One primitive for a batch of B chairs: kind in {box, cyl, ring, ball}; centre, half [B, 3]; yaw (rad)."""
    kind: str
    centre: np.ndarray
    half: np.ndarray
    yaw: float = 0.0
    albedo: float = 0.9


def _v(*cols, n):
    return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in cols], axis=1)


WOOD, DARK, CLOTH = 0.92, 0.62, 0.85  # albedos


class _Parts:
    """The parts list of one batch of B chairs, with shorthands for boxes and cylinders (factor arrays [B])."""

    def __init__(self, n: int):
        self.n = n
        self.parts: list[Part] = []

    def v(self, *cols) -> np.ndarray:
        return _v(*cols, n=self.n)

    def box(self, cx, cy, cz, hx, hy, hz, albedo=WOOD, yaw=0.0) -> None:
        self.parts.append(Part("box", self.v(cx, cy, cz), self.v(hx, hy, hz), yaw, albedo))

    def cyl(self, cx, cy, cz, rx, ry, hz, albedo=WOOD, kind="cyl") -> None:
        self.parts.append(Part(kind, self.v(cx, cy, cz), self.v(rx, ry, hz), 0.0, albedo))


def _four_leg(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.09
    b.box(0, 0, sh - st / 2, sw / 2, dp / 2, st / 2)
    leg_h = (sh - st) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.box(sx * (sw / 2 - lt / 2), sy * (dp / 2 - lt / 2), leg_h, lt / 2, lt / 2, leg_h, DARK)
        b.box(sx * (sw / 2 - lt / 2), dp / 2 - lt / 2, sh + bh / 2, lt / 2, lt / 2, bh / 2, DARK)  # back posts
    b.box(0, dp / 2 - lt / 2, sh + bh * 0.62, sw / 2 - lt, 0.035, bh * 0.33)  # back panel (upper part)
    b.box(0, dp / 2 - lt / 2, sh + bh * 0.18, sw / 2 - lt, 0.025, 0.03, DARK)  # lower rail


def _armchair(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.16
    fh = 0.75 * sh  # upholstered seat top, lower than a dining chair
    b.box(0, 0, fh - st / 2, sw / 2, dp / 2, st / 2, CLOTH)
    leg_h = (fh - st) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.box(sx * (sw / 2 - lt / 2), sy * (dp / 2 - lt / 2), leg_h, lt / 2, lt / 2, leg_h, DARK)
        # solid arm: from the seat's underside to 0.3 above the seat, along the whole depth
        b.box(sx * (sw / 2 + 0.08), 0.02, (fh - st + fh + 0.3) / 2, 0.08, dp / 2 + 0.02, (st + 0.3) / 2, CLOTH)
    b.box(0, dp / 2 + 0.07, (fh - st + fh + bh) / 2, sw / 2 + 0.16, 0.07, (st + bh) / 2, CLOTH)  # full back


def _stool(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.11
    top = 0.8 * sh  # a low stool with a thick round cushion
    b.cyl(0, 0, top - st / 2, sw * 0.36, sw * 0.36, st / 2, CLOTH)
    r = sw * 0.25
    for a in (45, 135, 225, 315):
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        b.cyl(r * c, r * s, (top - st) / 2, lt / 2, lt / 2, (top - st) / 2, DARK)
    for sx, sy, hx, hy in ((0, -1, r * 0.72, lt / 3), (0, 1, r * 0.72, lt / 3),
                           (-1, 0, lt / 3, r * 0.72), (1, 0, lt / 3, r * 0.72)):
        b.box(sx * r * 0.71, sy * r * 0.71, top * 0.35, hx, hy, 0.025, DARK)  # cross rails


def _office(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.09
    b.box(0, 0, sh - st / 2, sw / 2, dp / 2 * 0.95, st / 2, CLOTH)
    b.box(0, dp / 2 + 0.03, sh + 0.12 + bh / 2, sw / 2 * 0.9, 0.06, bh / 2, CLOTH)  # backrest
    b.box(0, dp / 2 + 0.03, sh + 0.03, 0.06, 0.04, 0.12, DARK)  # back stalk
    col_top = sh - st
    b.cyl(0, 0, (0.11 + col_top) / 2, 0.045 + lt * 0.4, 0.045 + lt * 0.4, (col_top - 0.11) / 2, DARK)
    reach = 0.24 + sw * 0.22
    for k in range(5):
        a = 2 * math.pi * k / 5 + math.pi / 2
        c, s = math.cos(a), math.sin(a)
        b.parts.append(Part("box", b.v(reach / 2 * c, reach / 2 * s, 0.1),
                            b.v(reach / 2, 0.03 + lt * 0.25, 0.03), a, DARK))
        b.parts.append(Part("ball", b.v(reach * c, reach * s, 0.045), b.v(0.05, 0.05, 0.045), 0.0, 0.4))


def _bar_stool(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.08
    top = 1.45 * sh
    b.cyl(0, 0, top - st / 2, sw * 0.33, sw * 0.33, st / 2, CLOTH)
    r = sw * 0.26
    for a in (45, 135, 225, 315):
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        b.cyl(r * c, r * s, (top - st) / 2, lt / 2, lt / 2, (top - st) / 2, DARK)
    b.cyl(0, 0, top * 0.33, r + lt / 2 + 0.02, r + lt / 2 + 0.02, 0.03, DARK, kind="ring")  # footrest
    b.cyl(0, 0, top * 0.33 + 0.05, r + lt / 2 + 0.02, r + lt / 2 + 0.02, 0.012, DARK, kind="ring")
    # a low back: two posts and a rail, its height a third of back_height
    for sx in (-1, 1):
        b.box(sx * sw * 0.2, r * 0.9, top + bh * 0.16, 0.025, 0.025, bh * 0.16, DARK)
    b.box(0, r * 0.9, top + bh * 0.3, sw * 0.24, 0.03, 0.05, WOOD)


def _bench(b: _Parts, sw, sh, bh, lt, dp) -> None:
    st = 0.1
    hw = sw  # a bench is twice as wide as a chair of the same seat_width
    bd = 0.55
    b.box(0, 0, sh - st / 2, hw, bd / 2, st / 2)
    for sx in (-1, 1):
        b.box(sx * (hw - 0.12), 0, (sh - st) / 2, lt / 2 + 0.02, bd / 2 - 0.03, (sh - st) / 2, DARK)  # slab legs
    b.box(0, 0, (sh - st) * 0.35, hw - 0.12, 0.03, 0.03, DARK)  # stretcher


def _lounge(b: _Parts, sw, sh, bh, lt, dp) -> None:
    base = 0.08 + lt * 0.4
    fh = 0.62 * sh
    w = sw / 2 + 0.08
    b.box(0, -0.03, (base + fh) / 2, w, 0.5, (fh - base) / 2, CLOTH)  # seat block
    b.box(0, 0.43, (base + fh + bh * 0.9) / 2, w + 0.16, 0.12, (fh + bh * 0.9 - base) / 2, CLOTH)  # back
    for sx in (-1, 1):
        b.box(sx * (w + 0.08), -0.03, (base + fh + 0.25) / 2, 0.08, 0.5, (fh + 0.25 - base) / 2, CLOTH)  # arms
        for sy in (-1, 1):
            b.box(sx * (w + 0.08), sy * 0.45 - 0.03, base / 2, lt / 2 + 0.01, lt / 2 + 0.01, base / 2, 0.35)  # feet


_RECIPES = {"four_leg": _four_leg, "armchair": _armchair, "stool": _stool, "office": _office,
            "bar_stool": _bar_stool, "bench": _bench, "lounge": _lounge}


def chair_parts(kind: int, sw, sh, bh, lt) -> list[Part]:
    """The primitives of chair type `kind` for factor arrays sw, sh, bh, lt (each [B]); z is up, the
    front faces -y, width along x."""
    sw, sh, bh, lt = (np.asarray(a, dtype=np.float64) for a in (sw, sh, bh, lt))
    name = CHAIR_TYPES[kind]
    if name not in _RECIPES:  # pragma: no cover - CHAIR_TYPES and _RECIPES are kept together
        raise ValueError(f"unknown chair type {kind}")
    b = _Parts(sw.shape[0])
    _RECIPES[name](b, sw, sh, bh, lt, _SEAT_DEPTH)
    return b.parts


# ---------------------------------------------------------------- surface templates


def _grid(n):
    return np.linspace(-1.0, 1.0, max(int(n), 2))


def _template(kind: str, hmax: np.ndarray, density: float):
    """Unit-coordinate surface points and normals of one primitive, dense enough for half sizes <= hmax."""
    hx, hy, hz = hmax
    pts, nrm = [], []
    if kind == "box":
        for ax in range(3):
            a1, a2 = [i for i in range(3) if i != ax]
            u, v = np.meshgrid(_grid(math.ceil(2 * hmax[a1] * density) + 1),
                               _grid(math.ceil(2 * hmax[a2] * density) + 1), indexing="ij")
            for sgn in (-1.0, 1.0):
                p = np.zeros((u.size, 3))
                p[:, a1], p[:, a2], p[:, ax] = u.ravel(), v.ravel(), sgn
                nn = np.zeros_like(p)
                nn[:, ax] = sgn
                pts.append(p)
                nrm.append(nn)
    elif kind in ("cyl", "ring"):
        nt = math.ceil(2 * math.pi * max(hx, hy) * density) + 1
        th = np.linspace(0, 2 * math.pi, nt, endpoint=False)
        t, z = np.meshgrid(th, _grid(math.ceil(2 * hz * density) + 1), indexing="ij")
        p = np.stack([np.cos(t).ravel(), np.sin(t).ravel(), z.ravel()], 1)
        pts.append(p)
        nrm.append(np.stack([p[:, 0], p[:, 1], np.zeros(len(p))], 1))
        if kind == "cyl":
            g = _grid(math.ceil(2 * max(hx, hy) * density) + 1)
            u, v = np.meshgrid(g, g, indexing="ij")
            inside = u.ravel() ** 2 + v.ravel() ** 2 <= 1.0
            for sgn in (-1.0, 1.0):
                p = np.stack([u.ravel()[inside], v.ravel()[inside], np.full(inside.sum(), sgn)], 1)
                pts.append(p)
                nrm.append(np.tile([0.0, 0.0, sgn], (len(p), 1)))
    elif kind == "ball":
        m = max(int(math.ceil(4 * math.pi * max(hx, hy, hz) ** 2 * density ** 2 * 1.3)), 16)
        i = np.arange(m) + 0.5
        phi = np.arccos(1 - 2 * i / m)
        th = math.pi * (1 + 5 ** 0.5) * i
        p = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
        pts.append(p)
        nrm.append(p.copy())
    else:  # pragma: no cover
        raise ValueError(kind)
    return np.concatenate(pts).astype(np.float32), np.concatenate(nrm).astype(np.float32)


class _TypeModel:
    """Per chair type: the frame (centre, scale) and surface templates, built from the factor-range corners."""

    def __init__(self, kind: int, supersample: int):
        lo = [FACTOR_RANGES[k][0] for k in SHAPE_FACTORS]
        hi = [FACTOR_RANGES[k][1] for k in SHAPE_FACTORS]
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(4, -1)
        parts = chair_parts(kind, *corners)
        pts = []
        for p in parts:
            c, h = p.centre, p.half
            r = np.array([[math.cos(p.yaw), -math.sin(p.yaw), 0], [math.sin(p.yaw), math.cos(p.yaw), 0], [0, 0, 1]])
            for sx in (-1, 1):
                for sy in (-1, 1):
                    for sz in (-1, 1):
                        pts.append(c + (h * [sx, sy, sz]) @ r.T)
        pts = np.concatenate(pts)
        lo3, hi3 = pts.min(0), pts.max(0)
        self.kind = kind
        self.centre = np.array([0.0, 0.0, (lo3[2] + hi3[2]) / 2])
        # the largest chair's corners seen from every view on a fine grid: the half extent to fit
        views = view_matrices(np.repeat(np.arange(0.0, 360.0, 2.5), len(ELEVATIONS)),
                              np.tile(ELEVATIONS, 144))
        proj = (pts - self.centre) @ views[:, :2].reshape(-1, 3).T
        extent = np.abs(proj).max() * 1.02
        size = IMAGE_SIZE * supersample
        self.scale = (size / 2 - 1.5 * supersample) / extent  # pixels per unit
        density = self.scale / POINT_SPACING_PX
        # templates[quadrant][part] = (points [3, P] float32, normal index [P], unique normals [U, 3]):
        # only the points facing the camera for some view in the azimuth quadrant (back-face culling)
        self.templates = [[] for _ in range(4)]
        for p in parts:
            loc, nrm = _template(p.kind, np.abs(p.half).max(0), density)
            uniq, inv = np.unique(nrm, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            for quad in range(4):
                az = np.repeat(90.0 * quad + np.linspace(0.25, 89.75, 37), len(ELEVATIONS))
                el = np.tile(ELEVATIONS, 37)
                cy, sy = math.cos(p.yaw), math.sin(p.yaw)
                ryaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
                toward = (view_matrices(az, el) @ ryaw)[:, 2, :]  # camera direction in part coordinates
                facing = (uniq @ toward.T).max(1) > 0.0  # per distinct normal
                keep = facing[inv] if p.kind != "ring" else np.ones(len(loc), bool)
                self.templates[quad].append((np.ascontiguousarray(loc[keep].T), inv[keep], uniq))


_MODELS: dict[tuple[int, int], _TypeModel] = {}



def _model(kind: int, supersample: int) -> _TypeModel:
    key = (kind, supersample)
    if key not in _MODELS:
        _MODELS[key] = _TypeModel(kind, supersample)
    return _MODELS[key]


def view_matrices(azimuth_deg, elevation_deg) -> np.ndarray:
    """[B, 3, 3]: rows = screen right, screen up, toward the camera, in chair coordinates.
    The azimuth is reduced mod 360 first, so 0 and 360 give bit-identical matrices."""
    az = np.radians(np.mod(np.asarray(azimuth_deg, dtype=np.float64), 360.0))
    el = np.radians(np.asarray(elevation_deg, dtype=np.float64))
    ca, sa, ce, se = np.cos(az), np.sin(az), np.cos(el), np.sin(el)
    rz = np.zeros(az.shape + (3, 3))
    rz[..., 0, 0], rz[..., 0, 1], rz[..., 1, 0], rz[..., 1, 1], rz[..., 2, 2] = ca, -sa, sa, ca, 1.0
    cam = np.zeros(el.shape + (3, 3))
    cam[..., 0, 0] = 1.0
    cam[..., 1, 1], cam[..., 1, 2] = se, ce
    cam[..., 2, 1], cam[..., 2, 2] = -ce, se
    return cam @ rz


def render_chairs(factors: dict[str, np.ndarray], supersample: int = SUPERSAMPLE, batch: int = 64) -> np.ndarray:
    """uint8 [N, 1, 64, 64] renders of the chairs described by `factors` (arrays of length N, keys
    FACTOR_NAMES). Deterministic: the same factors give the same bytes."""
    missing = [k for k in FACTOR_NAMES if k not in factors]
    if missing:
        raise ValueError(f"factors: missing {missing}")
    n = len(np.asarray(factors["type"]))
    types = np.asarray(factors["type"]).astype(np.int64)
    if n and (types.min() < 0 or types.max() >= len(CHAIR_TYPES)):
        raise ValueError(f"factors['type'] must be in [0, {len(CHAIR_TYPES)}), got {types.min()}..{types.max()}")
    out = np.empty((n, 1, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for kind in range(len(CHAIR_TYPES)):
        idx = np.nonzero(types == kind)[0]
        for lo in range(0, len(idx), batch):
            sel = idx[lo : lo + batch]
            out[sel, 0] = _render_type(kind, {k: np.asarray(factors[k])[sel] for k in FACTOR_NAMES}, supersample)
    return out


def _render_type(kind: int, f: dict[str, np.ndarray], ss: int) -> np.ndarray:
    model = _model(kind, ss)
    b = len(f["type"])
    size = IMAGE_SIZE * ss
    buf = np.zeros(b * size * size, np.int32)
    quads = np.floor(np.mod(np.asarray(f["azimuth"], np.float64), 360.0) / 90.0).astype(np.int64).clip(0, 3)
    for quad in range(4):
        sel = np.nonzero(quads == quad)[0]
        if len(sel):
            _splat(model, quad, {k: v[sel] for k, v in f.items()}, sel, buf, size)
    img = np.where(buf == 0, 255, buf & 255).astype(np.float32).reshape(b, size // ss, ss, size // ss, ss)
    return np.round(img.mean(axis=(2, 4))).astype(np.uint8)


def _splat(model: _TypeModel, quad: int, f: dict[str, np.ndarray], slots: np.ndarray, buf: np.ndarray, size: int):
    """z-buffer the surface points of chairs `f` (one azimuth quadrant) into image slots `slots` of `buf`."""
    view = view_matrices(f["azimuth"], f["elevation"])  # [B, 3, 3]
    parts = chair_parts(model.kind, f["seat_width"], f["seat_height"], f["back_height"], f["leg_thickness"])
    # screen coordinates straight from the matmul: (column, row, depth * 8) all >= 0, so int truncation = floor
    out_scale = np.array([model.scale, -model.scale, 8.0 * model.scale])[None, :, None]
    out_shift = np.array([size / 2.0, size / 2.0, 4096.0])[None, :]
    base = (slots.astype(np.int32) * (size * size))[:, None]  # b * size^2 < 2^31 for batch <= 8192
    light = _LIGHT.astype(np.float64)
    for part, (loc, nid, uniq) in zip(parts, model.templates[quad]):
        if loc.shape[1] == 0:
            continue
        cy, sy = math.cos(part.yaw), math.sin(part.yaw)
        ryaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        vr = view @ ryaw  # [B, 3, 3]
        a = (vr * part.half[:, None, :] * out_scale).astype(np.float32)
        t = (np.einsum("bij,bj->bi", view, part.centre - model.centre) * out_scale[:, :, 0] + out_shift).astype(np.float32)
        q = np.matmul(a, loc)
        q += t[:, :, None]
        qi = q.astype(np.int32)  # [B, 3, P]
        np.clip(qi[:, :2], 0, size - 1, out=qi[:, :2])  # a no-op by construction of the scale; a guard
        # shade per unique normal: n_view ~ V R diag(1/h) n
        nv = np.einsum("bij,uj->bui", vr / np.maximum(part.half, 1e-9)[:, None, :], uniq)
        lam = (nv @ light) / (np.linalg.norm(nv, axis=2) + 1e-12)  # [B, U]
        if part.kind == "ring":
            lam = np.abs(lam)
        shade8 = np.clip(part.albedo * (_AMBIENT + _DIFFUSE * np.maximum(lam, 0.0)) * 250.0, 0, 250).astype(np.int32)
        key = qi[:, 2] << 8
        key |= shade8[:, nid]
        flat = qi[:, 1] * size + qi[:, 0] + base
        np.maximum.at(buf, flat.ravel(), key.ravel())


# ---------------------------------------------------------------- factor sampling and the dataset


def held_out_cells() -> np.ndarray:
    """bool [types, 4, 4, 4, 4]: the (type, seat_width bin, seat_height bin, back_height bin,
    leg_thickness bin) cells reserved for the test split (fixed, independent of the data seed)."""
    n = len(CHAIR_TYPES) * BINS ** 4
    perm = np.random.default_rng(20180528).permutation(n)
    mask = np.zeros(n, bool)
    mask[perm[: int(round(n * HELD_OUT_FRACTION))]] = True
    return mask.reshape((len(CHAIR_TYPES),) + (BINS,) * 4)


def sample_factors(count: int, seed: int, split: str) -> dict[str, np.ndarray]:
    """`count` factor draws for `split` ("train": cells not held out; "test": held-out cells). Type and
    cell uniform over the split's cells, values uniform within the cell, azimuth uniform in [0, 360),
    elevation uniform over ELEVATIONS."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    held = held_out_cells().ravel()
    cells = np.nonzero(held if split == "test" else ~held)[0]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    pick = cells[rng.integers(0, len(cells), count)]
    coords = np.unravel_index(pick, (len(CHAIR_TYPES),) + (BINS,) * 4)
    out = {"type": coords[0].astype(np.int64)}
    u = (np.stack(coords[1:], 1) + rng.random((count, 4))) / BINS
    for j, k in enumerate(SHAPE_FACTORS):
        a, b = FACTOR_RANGES[k]
        out[k] = (a + (b - a) * u[:, j]).astype(np.float32)
    out["azimuth"] = (rng.random(count) * 360.0).astype(np.float32)
    out["elevation"] = np.asarray(ELEVATIONS, np.float32)[rng.integers(0, len(ELEVATIONS), count)]
    return {k: out[k] for k in FACTOR_NAMES}


def _render_chunk(f: dict[str, np.ndarray]) -> np.ndarray:
    return render_chairs(f, batch=64)


def generate_synthetic_chairs(train_count: int = DEFAULT_TRAIN, test_count: int = DEFAULT_TEST, seed: int = 0,
                              progress: bool | None = None, workers: int | None = None, chunk: int = 1024):
    """(train images uint8 [N,1,64,64], train factors, test images [M,1,64,64], test factors).
    The same (counts, seed) give identical arrays, whatever `workers` (processes; default: all cores,
    at most 8; 1 for small counts)."""
    import os

    workers = workers or min(os.cpu_count() or 1, 8)
    pool = None
    if workers > 1 and train_count + test_count >= 4 * chunk:
        import multiprocessing as mp

        for kind in range(len(CHAIR_TYPES)):  # build the templates once, before the workers are forked
            _model(kind, SUPERSAMPLE)
        pool = mp.get_context("fork").Pool(workers)
    try:
        result = []
        for split, count in (("train", train_count), ("test", test_count)):
            f = sample_factors(count, seed, split)
            imgs = np.empty((count, 1, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
            order = np.argsort(f["type"], kind="stable")  # chunks of (mostly) one type
            sels = [order[lo : lo + chunk] for lo in range(0, count, chunk)]
            jobs = [{k: v[sel] for k, v in f.items()} for sel in sels]
            rendered = pool.imap(_render_chunk, jobs) if pool is not None else map(_render_chunk, jobs)
            with Progress(count, f"rendering synthetic chairs ({split})", enable=progress) as bar:
                for sel, block in zip(sels, rendered):
                    imgs[sel] = block
                    bar.update(len(sel))
            result += [imgs, f]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return tuple(result)


if __name__ == "__main__":  # python -m jointvae_fast.data.synthetic_chairs: time the full set
    t0 = time.perf_counter()
    tr, _, te, _ = generate_synthetic_chairs()
    print(f"{len(tr)} + {len(te)} images in {time.perf_counter() - t0:.1f} s")
