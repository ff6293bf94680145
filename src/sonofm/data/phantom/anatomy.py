"""Random anatomy of a phantom subject: the convex-probe sector, tissue layers, a lesion and the system settings.

Lengths are in units of the imaging depth (the distance from the probe face to the bottom of the fan); the apex of
the fan is the origin, ``x`` points right and ``y`` points down. Subject kinds are :data:`PHANTOM_CLASSES`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sonofm.errors import SonofmError

PHANTOM_CLASSES: tuple[str, ...] = ("none", "cyst", "solid_round", "irregular")


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


def _check_kind(kind: str) -> None:
    if kind not in PHANTOM_CLASSES:
        raise SonofmError(f"unknown phantom kind: {kind!r} (expected one of {', '.join(PHANTOM_CLASSES)})")


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
