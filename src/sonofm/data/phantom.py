"""Seeded synthetic B-mode ultrasound phantoms: the built-in data for demos and tests.

Each image simulates a convex probe. Random complex scatterers, whose strength depends on the tissue region, are
filtered by a point-spread function on a polar (depth x angle) grid. The magnitude of the complex echo is the
envelope. Depth attenuation, partly compensated by time-gain control, comes next, then log compression to a
50-60 dB dynamic range. The result is scan-converted to a Cartesian image that is exactly 0 outside the fan.

Lengths are in units of the imaging depth (the distance from the probe face to the bottom of the fan); the apex of
the fan is the origin, ``x`` points right and ``y`` points down. Image classes are :data:`PHANTOM_CLASSES`; mask
values index :data:`PHANTOM_MASK_CLASSES` (the lesion wins where it overlaps the layer).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import secrets
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.signal import fftconvolve
from scipy.special import expit

from sonofm.errors import SonofmError

PHANTOM_CLASSES: tuple[str, ...] = ("none", "cyst", "solid_round", "irregular")
PHANTOM_MASK_CLASSES: tuple[str, ...] = ("background", "lesion", "layer")
PHANTOM_VERSION = 1
MIN_SIZE = 32
MANIFEST_NAME = "phantom.json"
# Fewer subjects than this per process: render in this process (starting a worker costs about as much as 4 subjects).
_MIN_JOBS_PER_WORKER = 8

# Point-spread function of the simulated probe (lengths in imaging depths).
_AXIAL_SIGMA = 0.007
_CARRIER_WAVELENGTH = 0.01
_LATERAL_SIGMA_AT_FOCUS = 0.012
_FOCUS_DEPTH = 0.45
_RAYLEIGH_LENGTH = 0.6
_SAMPLES_PER_SIGMA = 2.0
_PSF_RADIUS_SIGMAS = 4.0
_ANTIALIAS = 0.4  # Gaussian blur before scan conversion, in output pixels


@dataclass(frozen=True)
class FanGeometry:
    """Where the convex-probe sector lies, in physical units and in the image.

    Attributes:
        probe_radius: radius of the probe face = distance from the apex to the first image sample.
        half_angle: half the opening angle of the sector, radians.
        scale: image pixels per unit length, as a fraction of the image size.
        apex_col, apex_row: the apex in the image, as fractions of the image size (``apex_row < 0``: above it).
    """

    probe_radius: float
    half_angle: float
    scale: float
    apex_col: float
    apex_row: float

    def pixel_coordinates(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Physical ``(x, y)`` of the pixel centres of a ``size`` x ``size`` image, each (size, size)."""
        centres = (np.arange(size) + 0.5) / size
        x = (centres[None, :] - self.apex_col) / self.scale
        y = (centres[:, None] - self.apex_row) / self.scale
        return np.broadcast_to(x, (size, size)), np.broadcast_to(y, (size, size))

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean array, shape of ``x``: True where ``(x, y)`` lies inside the imaged sector."""
        radius = np.hypot(x, y)
        angle = np.arctan2(x, y)
        return (radius >= self.probe_radius) & (radius <= self.probe_radius + 1.0) & (np.abs(angle) <= self.half_angle)


@dataclass(frozen=True)
class LayerBand:
    """A bright, horizontal-ish tissue band: centre line ``y(x)`` with a half thickness.

    Used for the fascia/muscle layer (mask class ``"layer"``) and for thin tissue interfaces (not in the mask).
    """

    depth: float
    slope: float
    wave_amplitude: float
    wave_number: float
    wave_phase: float
    half_thickness: float
    strength_db: float
    fibre_period: float
    fibre_contrast: float

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Vertical distance to the nearer band edge, shape of ``x``: negative inside the band."""
        centre = self.depth + self.slope * x + self.wave_amplitude * np.sin(self.wave_number * x + self.wave_phase)
        return np.abs(y - centre) - self.half_thickness

    def fibres(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Multiplicative echo pattern of the muscle fibres inside the band, shape of ``x``."""
        return 1.0 + self.fibre_contrast * np.cos(2 * np.pi * (y - self.slope * x) / self.fibre_period)


@dataclass(frozen=True, eq=False)
class Lesion:
    """A lesion: a rotated ellipse whose radius is modulated by angular harmonics and narrow spicules.

    Attributes:
        center_x, center_y: centre, physical units.
        semi_x, semi_y: semi-axes before rotation; ``angle``: rotation, radians.
        harmonic_orders, harmonic_amplitudes, harmonic_phases: (K,) radius modulation ``sum a cos(k t + p)``.
        spike_angles, spike_heights, spike_widths: (J,) narrow radial spikes (Gaussian in angle, radians).
        strength_db: scatterer power inside, relative to surrounding tissue.
        attenuation_ratio: attenuation inside relative to tissue (<1: posterior enhancement, >1: shadow).
        edge_width: blur of the echogenicity edge, physical units.
        wall_db: extra power of a thin bright wall (cysts), 0 for none.
    """

    center_x: float
    center_y: float
    semi_x: float
    semi_y: float
    angle: float
    harmonic_orders: np.ndarray
    harmonic_amplitudes: np.ndarray
    harmonic_phases: np.ndarray
    spike_angles: np.ndarray
    spike_heights: np.ndarray
    spike_widths: np.ndarray
    strength_db: float
    attenuation_ratio: float
    edge_width: float
    wall_db: float

    def level(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised radius, shape of ``x``: < 1 inside the lesion, 1 on its border."""
        dx, dy = x - self.center_x, y - self.center_y
        cos_a, sin_a = np.cos(self.angle), np.sin(self.angle)
        u = (cos_a * dx + sin_a * dy) / self.semi_x
        v = (-sin_a * dx + cos_a * dy) / self.semi_y
        return np.hypot(u, v) / np.interp(np.arctan2(v, u), *self._border_table(), period=2 * np.pi)

    def _border_table(self, n_angles: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Border radius (relative to the ellipse) sampled at (n_angles,) angles in [-pi, pi)."""
        theta = np.linspace(-np.pi, np.pi, n_angles, endpoint=False)[:, None]
        harmonics = self.harmonic_amplitudes * np.cos(self.harmonic_orders * theta + self.harmonic_phases)
        offset = np.remainder(theta - self.spike_angles + np.pi, 2 * np.pi) - np.pi
        spikes = self.spike_heights * np.exp(-0.5 * (offset / self.spike_widths) ** 2)
        return theta[:, 0], 1.0 + harmonics.sum(-1) + spikes.sum(-1)

    @property
    def reach(self) -> float:
        """Distance from the centre to the outermost border point, physical units."""
        return max(self.semi_x, self.semi_y) * float(self._border_table()[1].max())

    @property
    def mean_radius(self) -> float:
        """Mean of the two semi-axes, physical units."""
        return 0.5 * (self.semi_x + self.semi_y)


@dataclass(frozen=True, eq=False)
class PhantomSubject:
    """Everything that stays fixed across the frames of one simulated subject.

    Attributes:
        kind: one of :data:`PHANTOM_CLASSES`.
        fan: sector geometry.
        layer: the bright tissue layer, or ``None``.
        interfaces: thin faint echogenic lines (not in the mask).
        lesion: the lesion, or ``None`` for ``kind == "none"``.
        texture: (C, 4) smooth echogenicity variation of the tissue, rows ``(kx, ky, phase, amplitude_db)``.
        attenuation_db: round-trip tissue attenuation per imaging depth, dB.
        gain_compensation: fraction of the tissue attenuation undone by time-gain control.
        gain_db: overall receive gain; ``dynamic_range_db``: width of the log-compression window.
        noise_db: electronic noise power relative to tissue echo, before time-gain control.
    """

    kind: str
    fan: FanGeometry
    layer: LayerBand | None
    interfaces: tuple[LayerBand, ...]
    lesion: Lesion | None
    texture: np.ndarray
    attenuation_db: float
    gain_compensation: float
    gain_db: float
    dynamic_range_db: float
    noise_db: float


def draw_subject(rng: np.random.Generator, kind: str) -> PhantomSubject:
    """A random subject (geometry, anatomy, lesion of `kind`, system settings)."""
    _check_kind(kind)
    fan = _draw_fan(rng)
    texture = np.column_stack(
        [
            rng.uniform(-12.0, 12.0, 5),
            rng.uniform(-12.0, 12.0, 5),
            rng.uniform(0.0, 2 * np.pi, 5),
            rng.uniform(0.5, 1.6, 5),
        ]
    )
    layer = _draw_layer(rng, fan) if rng.random() < 0.85 else None
    interfaces = tuple(_draw_interface(rng, fan) for _ in range(rng.integers(0, 4)))
    lesion = None if kind == "none" else _draw_lesion(rng, kind, fan)
    return PhantomSubject(
        kind=kind,
        fan=fan,
        layer=layer,
        interfaces=interfaces,
        lesion=lesion,
        texture=texture,
        attenuation_db=rng.uniform(14.0, 22.0),
        gain_compensation=rng.uniform(0.6, 0.9),
        gain_db=rng.uniform(-6.0, 6.0),
        dynamic_range_db=rng.uniform(50.0, 60.0),
        noise_db=rng.uniform(-44.0, -38.0),
    )


def perturb_subject(subject: PhantomSubject, rng: np.random.Generator) -> PhantomSubject:
    """The same subject a moment later: lesion slightly shifted and rotated, layer slightly moved, gain changed."""
    lesion = subject.lesion
    if lesion is not None:
        shift_x, shift_y = np.clip(rng.normal(0.0, 0.006, 2), -0.012, 0.012)
        lesion = replace(
            lesion,
            center_x=lesion.center_x + shift_x,
            center_y=lesion.center_y + shift_y,
            angle=lesion.angle + float(np.clip(rng.normal(0.0, 0.04), -0.08, 0.08)),
        )
    layer = subject.layer
    if layer is not None:
        layer = replace(layer, depth=layer.depth + float(np.clip(rng.normal(0.0, 0.004), -0.008, 0.008)))
    return replace(subject, lesion=lesion, layer=layer, gain_db=subject.gain_db + float(rng.normal(0.0, 1.0)))


def fan_mask(fan: FanGeometry, size: int) -> np.ndarray:
    """Boolean (size, size): True inside the imaged sector."""
    return fan.contains(*fan.pixel_coordinates(size))


def render_subject(subject: PhantomSubject, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One frame of `subject` with fresh speckle from `rng`: image and mask, both uint8 (size, size)."""
    _check_int("size", size, MIN_SIZE)
    fan = subject.fan
    radii, angles = _polar_axes(fan)
    gray = _polar_bmode(subject, rng, radii, angles)
    # Anti-aliasing: blur the polar image to the pixel size before sampling it (at mid depth laterally).
    pixel = 1.0 / (fan.scale * size)
    spacing = np.array([radii[1] - radii[0], (angles[1] - angles[0]) * (fan.probe_radius + 0.5)])
    gray = gaussian_filter(gray, _ANTIALIAS * pixel / spacing, mode="nearest")
    x, y = fan.pixel_coordinates(size)
    inside = fan.contains(x, y)
    rows = (np.hypot(x, y) - radii[0]) / (radii[1] - radii[0])
    cols = (np.arctan2(x, y) - angles[0]) / (angles[1] - angles[0])
    image = map_coordinates(gray, [rows, cols], order=1, mode="nearest")
    image = np.where(inside, np.rint(image), 0).astype(np.uint8)
    return image, _mask(subject, x, y, inside)


def render_phantom(rng: np.random.Generator, kind: str, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8, (size, size)) and its mask (uint8, (size, size)) of lesion `kind`."""
    _check_int("size", size, MIN_SIZE)
    return render_subject(draw_subject(rng, kind), rng, size)


def write_phantom_dataset(
    out_dir: str | Path,
    n_per_class: int = 48,
    size: int = 128,
    seed: int = 0,
    frames_per_group: int = 4,
) -> Path:
    """Write the phantom set; return out_dir.

    Layout (8-bit grayscale PNGs; both views hold the same images):
    ``cls/<class>/<name>.png`` + ``cls/labels.csv`` and ``seg/images/<name>.png``, ``seg/masks/<name>.png`` +
    ``seg/labels.csv``; both CSVs have columns ``name,class,group``; ``phantom.json`` records the parameters.
    Each class has ``ceil(n_per_class / frames_per_group)`` groups (simulated subjects) of ``frames_per_group``
    frames (the last one shorter if it does not divide), named like ``cyst_g007_f2``, group ``cyst_g007``.
    A complete folder written with the same parameters is returned untouched. The set is written into a hidden
    sibling folder that is renamed at the end, so an interrupted run never leaves a folder that looks complete.
    """
    out = Path(out_dir).absolute()
    params = {
        "generator": "sonofm.data.phantom",
        "version": PHANTOM_VERSION,
        "n_per_class": _check_int("n_per_class", n_per_class, 1),
        "size": _check_int("size", size, MIN_SIZE),
        "seed": _check_int("seed", seed, 0),
        "frames_per_group": _check_int("frames_per_group", frames_per_group, 1),
    }
    if _is_complete(out, params):
        return Path(out_dir)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        partial.mkdir(parents=True)
    except OSError as exc:
        raise SonofmError(f"cannot create the phantom dataset folder: {out} ({exc.strerror})") from None
    try:
        rows = _write_images(partial, n_per_class, size, seed, frames_per_group)
        for view in ("cls", "seg"):
            _write_labels(partial / view / "labels.csv", rows)
        manifest = {
            **params,
            "classes": list(PHANTOM_CLASSES),
            "mask_classes": list(PHANTOM_MASK_CLASSES),
            "n_images": len(rows),
        }
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            partial.rename(out)
        except OSError as exc:
            if not _is_complete(out, params):
                raise SonofmError(f"could not move the finished phantom set into place: {out} ({exc})") from None
            shutil.rmtree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Path(out_dir)


def _check_kind(kind: str) -> None:
    if kind not in PHANTOM_CLASSES:
        raise SonofmError(f"unknown phantom kind: {kind!r} (expected one of {', '.join(PHANTOM_CLASSES)})")


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SonofmError(f"phantom {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _draw_fan(rng: np.random.Generator) -> FanGeometry:
    """Random sector that fits inside the image with small margins."""
    probe_radius = rng.uniform(0.2, 0.4)
    half_angle = np.deg2rad(rng.uniform(22.0, 30.0))
    width = 2 * (probe_radius + 1.0) * np.sin(half_angle)
    top = probe_radius * np.cos(half_angle)
    height = probe_radius + 1.0 - top
    top_margin = rng.uniform(0.02, 0.08)
    scale = min(0.92 / width, (0.97 - top_margin) / height) * rng.uniform(0.93, 1.0)
    side_slack = 0.5 - 0.02 - 0.5 * width * scale
    return FanGeometry(
        probe_radius=float(probe_radius),
        half_angle=float(half_angle),
        scale=float(scale),
        apex_col=float(0.5 + rng.uniform(-side_slack, side_slack)),
        apex_row=float(top_margin - top * scale),
    )


def _draw_layer(rng: np.random.Generator, fan: FanGeometry) -> LayerBand:
    half_thickness = rng.uniform(0.025, 0.05)
    return LayerBand(
        depth=float(fan.probe_radius + rng.uniform(0.1, 0.6)),
        slope=float(rng.uniform(-0.15, 0.15)),
        wave_amplitude=float(rng.uniform(0.0, 0.03)),
        wave_number=float(rng.uniform(3.0, 9.0)),
        wave_phase=float(rng.uniform(0.0, 2 * np.pi)),
        half_thickness=float(half_thickness),
        strength_db=float(rng.uniform(7.0, 12.0)),
        fibre_period=float(half_thickness * rng.uniform(0.6, 1.0)),
        fibre_contrast=0.6,
    )


def _draw_interface(rng: np.random.Generator, fan: FanGeometry) -> LayerBand:
    """A thin, faint echogenic line between tissues."""
    return LayerBand(
        depth=float(fan.probe_radius + rng.uniform(0.05, 0.9)),
        slope=float(rng.uniform(-0.3, 0.3)),
        wave_amplitude=float(rng.uniform(0.0, 0.04)),
        wave_number=float(rng.uniform(2.0, 8.0)),
        wave_phase=float(rng.uniform(0.0, 2 * np.pi)),
        half_thickness=float(rng.uniform(0.003, 0.007)),
        strength_db=float(rng.uniform(3.0, 7.0)),
        fibre_period=1.0,
        fibre_contrast=0.0,
    )


def _draw_lesion(rng: np.random.Generator, kind: str, fan: FanGeometry) -> Lesion:
    """A lesion of `kind` placed so that its outermost border point stays inside the fan."""
    empty = np.zeros(0)
    orders, amplitudes, phases = empty, empty, empty
    spike_angles, spike_heights, spike_widths = empty, empty, empty
    radius = rng.uniform(0.09, 0.16)
    if kind == "cyst":
        aspect = rng.uniform(1.0, 1.5)
        angle = rng.uniform(-np.pi / 2, np.pi / 2)
        strength_db, attenuation_ratio = rng.uniform(-40.0, -32.0), rng.uniform(0.0, 0.1)
        edge_width, wall_db = 0.003, rng.uniform(2.0, 5.0)
    elif kind == "solid_round":
        aspect = rng.uniform(1.2, 1.8)
        angle = rng.uniform(-0.3, 0.3)
        strength_db, attenuation_ratio = rng.uniform(-18.0, -10.0), rng.uniform(0.5, 0.9)
        edge_width, wall_db = 0.008, 0.0
        orders, amplitudes, phases = np.array([2.0]), rng.uniform(0.0, 0.04, 1), rng.uniform(0, 2 * np.pi, 1)
    else:
        aspect = 1.0 / rng.uniform(0.8, 1.4)
        angle = rng.uniform(-0.4, 0.4)
        strength_db, attenuation_ratio = rng.uniform(-18.0, -10.0), rng.uniform(3.0, 5.0)
        edge_width, wall_db = 0.015, 0.0
        orders = rng.choice(np.arange(3.0, 9.0), size=3, replace=False)
        amplitudes = rng.uniform(0.04, 0.1, 3)
        phases = rng.uniform(0.0, 2 * np.pi, 3)
        n_spikes = rng.integers(4, 9)
        spike_angles = rng.uniform(-np.pi, np.pi, n_spikes)
        spike_heights = rng.uniform(0.25, 0.6, n_spikes)
        spike_widths = rng.uniform(0.04, 0.09, n_spikes)
    lesion = Lesion(
        center_x=0.0,
        center_y=0.0,
        semi_x=float(radius * np.sqrt(aspect)),
        semi_y=float(radius / np.sqrt(aspect)),
        angle=float(angle),
        harmonic_orders=orders,
        harmonic_amplitudes=amplitudes,
        harmonic_phases=phases,
        spike_angles=spike_angles,
        spike_heights=spike_heights,
        spike_widths=spike_widths,
        strength_db=float(strength_db),
        attenuation_ratio=float(attenuation_ratio),
        edge_width=edge_width,
        wall_db=float(wall_db),
    )
    # Keep the outermost border point `margin` inside the fan; the margin also covers frame-to-frame perturbations.
    margin = 0.03
    reach = lesion.reach
    top, bottom = fan.probe_radius + 0.08 + margin + reach, fan.probe_radius + 0.95 - margin - reach
    center_radius = rng.uniform(top, max(top, bottom))
    shrink = min(1.0, (center_radius * np.sin(fan.half_angle) - margin) / reach)
    max_angle = max(0.0, fan.half_angle - np.arcsin((reach * shrink + margin) / center_radius))
    center_angle = rng.uniform(-max_angle, max_angle)
    return replace(
        lesion,
        center_x=float(center_radius * np.sin(center_angle)),
        center_y=float(center_radius * np.cos(center_angle)),
        semi_x=lesion.semi_x * shrink,
        semi_y=lesion.semi_y * shrink,
    )


def _lateral_sigma(radius: np.ndarray, probe_radius: float) -> np.ndarray:
    """Lateral PSF width (physical) at each radius: a focused beam, narrowest at the focal depth."""
    offset = (radius - probe_radius - _FOCUS_DEPTH) / _RAYLEIGH_LENGTH
    return _LATERAL_SIGMA_AT_FOCUS * np.sqrt(1.0 + offset**2)


def _polar_axes(fan: FanGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Sample radii (R,) and angles (A,) of the polar grid, fine enough to resolve the PSF everywhere."""
    n_radii = int(np.ceil(_SAMPLES_PER_SIGMA / _AXIAL_SIGMA)) + 1
    far = fan.probe_radius + 1.0
    angle_step = _lateral_sigma(np.array(far), fan.probe_radius).min() / (_SAMPLES_PER_SIGMA * far)
    n_angles = int(np.ceil(2 * fan.half_angle / angle_step)) + 1
    radii = np.linspace(fan.probe_radius, far, n_radii)
    return radii, np.linspace(-fan.half_angle, fan.half_angle, n_angles)


def _polar_bmode(
    subject: PhantomSubject, rng: np.random.Generator, radii: np.ndarray, angles: np.ndarray
) -> np.ndarray:
    """Gray levels in [0, 255] on the polar grid, float (R, A)."""
    radius_step, angle_step = radii[1] - radii[0], angles[1] - angles[0]
    pad_r = int(np.ceil(_PSF_RADIUS_SIGMAS * _AXIAL_SIGMA / radius_step))
    padded_r = radii[0] + radius_step * np.arange(-pad_r, radii.size + pad_r)
    lateral = _lateral_sigma(padded_r, subject.fan.probe_radius) / (padded_r * angle_step)
    pad_a = int(np.ceil(_PSF_RADIUS_SIGMAS * lateral.max()))
    x = radii[:, None] * np.sin(angles[None, :])
    y = radii[:, None] * np.cos(angles[None, :])
    power, lesion_weight = _scatterer_power(subject, x, y)
    # The PSF reaches past the grid edges: mirror the (smooth) scatterer power there.
    power = np.pad(power, ((pad_r, pad_r), (pad_a, pad_a)), mode="reflect")
    shape = power.shape
    scatterers = np.sqrt(power / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))

    # Lateral PSF: a Gaussian whose width in angle samples depends on depth, applied per row in the Fourier domain
    # and normalised to unit energy so that echo power equals scatterer power.
    frequencies = np.fft.fftfreq(shape[1])
    transfer = np.exp(-2.0 * (np.pi * lateral[:, None] * frequencies[None, :]) ** 2)
    transfer /= np.sqrt(np.mean(transfer**2, axis=1, keepdims=True))
    echo = np.fft.ifft(np.fft.fft(scatterers, axis=1) * transfer, axis=1)[:, pad_a : pad_a + angles.size]

    # Axial PSF: analytic Gaussian-modulated pulse (its real part is a Gaussian-modulated cosine); the magnitude of
    # the complex echo is the envelope.
    z = radius_step * np.arange(-pad_r, pad_r + 1)
    pulse = np.exp(-0.5 * (z / _AXIAL_SIGMA) ** 2 + 2j * np.pi * z / _CARRIER_WAVELENGTH)
    pulse /= np.sqrt(np.sum(np.abs(pulse) ** 2))
    echo = fftconvolve(echo, pulse[:, None], mode="valid", axes=0)

    # Round-trip attenuation accumulated along each beam line, then noise, then time-gain compensation.
    lesion_attenuation = subject.lesion.attenuation_ratio - 1.0 if subject.lesion else 0.0
    local = subject.attenuation_db * (1.0 + lesion_attenuation * lesion_weight)
    loss_db = np.cumsum(local, axis=0) * radius_step
    depth = (radii - radii[0])[:, None]
    noise = 10 ** (subject.noise_db / 20) * (rng.standard_normal(echo.shape) + 1j * rng.standard_normal(echo.shape))
    echo = echo * 10 ** (-loss_db / 20) + noise / np.sqrt(2)
    tgc_db = subject.gain_compensation * subject.attenuation_db * depth + subject.gain_db
    level_db = 20 * np.log10(np.abs(echo) + 1e-12) + tgc_db

    top_db = 28.0 + 0.5 * (subject.dynamic_range_db - 55.0)
    gray = (level_db - top_db + subject.dynamic_range_db) / subject.dynamic_range_db * 255.0
    return np.clip(gray, 0.0, 255.0)


def _scatterer_power(subject: PhantomSubject, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scatterer power (linear, tissue = 1) and soft lesion membership in [0, 1] at points ``(x, y)``."""
    texture_db = sum(amplitude * np.cos(kx * x + ky * y + phase) for kx, ky, phase, amplitude in subject.texture)
    tissue = 10 ** (texture_db / 10)
    power = tissue
    for band in (*subject.interfaces, *([subject.layer] if subject.layer else [])):
        inside_band = expit(-band.distance(x, y) / 0.004)
        band_power = 10 ** (band.strength_db / 10) * band.fibres(x, y) * tissue
        power = power + (band_power - power) * inside_band
    skin_depth = np.hypot(x, y) - subject.fan.probe_radius
    power = power * (1.0 + 12.0 * np.exp(-0.5 * (skin_depth / 0.008) ** 2))
    lesion = subject.lesion
    if lesion is None:
        return power, np.zeros_like(power)
    level = lesion.level(x, y)
    weight = expit((1.0 - level) * lesion.mean_radius / lesion.edge_width)
    power = power + (10 ** (lesion.strength_db / 10) * tissue - power) * weight
    if lesion.wall_db:
        wall = np.exp(-0.5 * ((level - 1.0) * lesion.mean_radius / 0.006) ** 2)
        power = power + (10 ** (lesion.wall_db / 10) - 1.0) * tissue * wall
    return power, weight


def _mask(subject: PhantomSubject, x: np.ndarray, y: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Mask uint8 (size, size): 0 background / outside the fan, 1 lesion, 2 layer (lesion wins)."""
    mask = np.zeros(x.shape, np.uint8)
    if subject.layer is not None:
        mask[subject.layer.distance(x, y) < 0] = 2
    if subject.lesion is not None:
        mask[subject.lesion.level(x, y) < 1] = 1
    mask[~inside] = 0
    return mask


def _is_complete(out: Path, params: dict[str, object]) -> bool:
    """True if `out` holds a phantom set written with `params`; False if it is missing or an empty folder."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise SonofmError(f"phantom dataset path exists and is not a folder: {out}")
    manifest_path = out / MANIFEST_NAME
    if not manifest_path.is_file():
        if any(out.iterdir()):
            raise SonofmError(f"folder exists and is not a phantom dataset (no {MANIFEST_NAME}): {out}")
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise SonofmError(f"unreadable phantom manifest: {manifest_path} ({exc})") from None
    found = {key: manifest.get(key) for key in params} if isinstance(manifest, dict) else {}
    if found != params:
        differing = ", ".join(
            f"{key}={found.get(key)!r}, asked {params[key]!r}" for key in params if found.get(key) != params[key]
        )
        raise SonofmError(f"folder holds a phantom dataset with other parameters ({differing}): {out}")
    return True


def _write_images(root: Path, n_per_class: int, size: int, seed: int, frames_per_group: int) -> list[dict[str, str]]:
    """Render and save every frame under `root`, one subject per job, in parallel over the CPUs this process may use;
    return the label rows in writing order (the files do not depend on the number of processes)."""
    for sub in ("seg/images", "seg/masks", *(f"cls/{kind}" for kind in PHANTOM_CLASSES)):
        (root / sub).mkdir(parents=True)
    n_groups = -(-n_per_class // frames_per_group)
    digits = max(3, len(str(n_groups - 1)))
    jobs = [
        _GroupJob(root, class_index, group_index, seed, size, digits,
                  min(frames_per_group, n_per_class - group_index * frames_per_group))
        for class_index in range(len(PHANTOM_CLASSES)) for group_index in range(n_groups)
    ]
    workers = min(len(os.sched_getaffinity(0)), len(jobs) // _MIN_JOBS_PER_WORKER)
    if workers < 2:
        return [row for job in jobs for row in _write_group(job)]
    context = multiprocessing.get_context("fork")  # only numpy, scipy and PIL run in the children
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [row for rows in pool.map(_write_group, jobs) for row in rows]


@dataclass(frozen=True)
class _GroupJob:
    """The frames of one simulated subject (group) to render into ``root``."""

    root: Path
    class_index: int
    group_index: int
    seed: int
    size: int
    digits: int
    n_frames: int


def _write_group(job: _GroupJob) -> list[dict[str, str]]:
    """Render and save the frames of one subject; its label rows."""
    kind = PHANTOM_CLASSES[job.class_index]
    rng = np.random.default_rng([job.seed, job.class_index, job.group_index])
    subject = draw_subject(rng, kind)
    group = f"{kind}_g{job.group_index:0{job.digits}d}"
    rows = []
    for frame in range(job.n_frames):
        image, mask = render_subject(perturb_subject(subject, rng) if frame else subject, rng, job.size)
        name = f"{group}_f{frame}"
        Image.fromarray(image).save(job.root / "cls" / kind / f"{name}.png")
        Image.fromarray(image).save(job.root / "seg" / "images" / f"{name}.png")
        Image.fromarray(mask).save(job.root / "seg" / "masks" / f"{name}.png")
        rows.append({"name": name, "class": kind, "group": group})
    return rows


def _write_labels(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "class", "group"])
        writer.writeheader()
        writer.writerows(rows)
