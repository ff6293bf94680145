"""B-mode images of phantom subjects: a convex-probe simulation on a polar grid, scan-converted to pixels.

Random complex scatterers, whose strength depends on the tissue region, are filtered by a point-spread function on a
polar (depth x angle) grid. The magnitude of the complex echo is the envelope. Depth attenuation, partly compensated
by time-gain control, comes next, then log compression to a 50-60 dB dynamic range. The result is scan-converted to
a Cartesian image that is exactly 0 outside the fan. Mask values index :data:`PHANTOM_MASK_CLASSES` (the lesion wins
where it overlaps the layer).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.signal import fftconvolve
from scipy.special import expit

from sonofm.data.phantom.anatomy import FanGeometry, PhantomSubject, draw_subject
from sonofm.data.phantom.arguments import check_int

PHANTOM_MASK_CLASSES: tuple[str, ...] = ("background", "lesion", "layer")
MIN_SIZE = 32

# Point-spread function of the simulated probe (lengths in imaging depths).
_AXIAL_SIGMA = 0.007
_CARRIER_WAVELENGTH = 0.01
_LATERAL_SIGMA_AT_FOCUS = 0.012
_FOCUS_DEPTH = 0.45
_RAYLEIGH_LENGTH = 0.6
_SAMPLES_PER_SIGMA = 2.0
_PSF_RADIUS_SIGMAS = 4.0
_ANTIALIAS = 0.4  # Gaussian blur before scan conversion, in output pixels


def sector_mask(fan: FanGeometry, size: int) -> np.ndarray:
    """Boolean (size, size): True inside the known sector `fan` (the ground truth that
    :func:`sonofm.data.fan_mask.detect_fan_mask` estimates from an image)."""
    return fan.contains(*fan.pixel_coordinates(size))


def render_subject(subject: PhantomSubject, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One frame of `subject` with fresh speckle from `rng`: image and mask, both uint8 (size, size)."""
    check_int("size", size, MIN_SIZE)
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
    check_int("size", size, MIN_SIZE)
    return render_subject(draw_subject(rng, kind), rng, size)


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
