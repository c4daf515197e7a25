"""Polyline helpers for building road geometry (numpy, build time only).

Points are `(K, 2)` float64 arrays in the world frame, metres.
"""

from __future__ import annotations

import numpy as np

DENSE_SPACING = 0.25  # m, spacing of the dense polylines composite paths are cut from


def arc_lengths(points: np.ndarray) -> np.ndarray:
    """Cumulative chord length `(K,)` from point 0 (what linear interpolation travels)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate(([0.0], np.cumsum(seg)))


def resample(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points at equal arc length along the polyline, keeping both ends."""
    s = arc_lengths(points)
    targets = np.linspace(0.0, s[-1], count)
    return np.stack([np.interp(targets, s, points[:, k]) for k in range(2)], axis=1)


def line(start: tuple[float, float], end: tuple[float, float], count: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, count)[:, None]
    return (1.0 - t) * np.asarray(start, float) + t * np.asarray(end, float)


def arc(center: tuple[float, float], radius: float, theta0: float, theta1: float, count: int) -> np.ndarray:
    """Points on a circle from angle `theta0` to `theta1` (counter-clockwise when theta1 > theta0)."""
    theta = np.linspace(theta0, theta1, count)
    return np.asarray(center, float) + radius * np.stack((np.cos(theta), np.sin(theta)), axis=1)


def dense_line(start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    length = float(np.hypot(end[0] - start[0], end[1] - start[1]))
    return line(start, end, max(2, int(np.ceil(length / DENSE_SPACING)) + 1))


def dense_arc(center: tuple[float, float], radius: float, theta0: float, theta1: float) -> np.ndarray:
    length = abs(theta1 - theta0) * radius
    return arc(center, radius, theta0, theta1, max(2, int(np.ceil(length / DENSE_SPACING)) + 1))


def join(*parts: np.ndarray) -> np.ndarray:
    """Concatenate polylines that share their joint points (the duplicate is dropped)."""
    out = [parts[0]]
    for part in parts[1:]:
        out.append(part[1:] if np.allclose(part[0], out[-1][-1], atol=1e-6) else part)
    return np.concatenate(out, axis=0)


def headings(points: np.ndarray) -> np.ndarray:
    """Tangent heading at each point `(K,)`, rad.

    Interior points use the chord from the previous to the next point, which is
    the exact tangent for points spaced equally on a circle; each end point
    extrapolates the turn of its neighbour so arcs stay exact there too.
    """
    seg = np.diff(points, axis=0)
    seg_yaw = np.arctan2(seg[:, 1], seg[:, 0])  # (K-1,)
    if len(points) == 2:
        return np.repeat(seg_yaw, 2)
    chord = points[2:] - points[:-2]
    inner = np.arctan2(chord[:, 1], chord[:, 0])
    first = seg_yaw[0] - _wrap(inner[0] - seg_yaw[0])
    last = seg_yaw[-1] + _wrap(seg_yaw[-1] - inner[-1])
    return _wrap(np.concatenate(([first], inner, [last])))


def curvatures(points: np.ndarray) -> np.ndarray:
    """Signed curvature at each point `(K,)`, 1/m, left turn > 0.

    Menger curvature of each point and its two neighbours: exactly 1/R for
    three points on a circle of radius R. End points copy their neighbour.
    """
    if len(points) < 3:
        return np.zeros(len(points))
    a = points[1:-1] - points[:-2]
    b = points[2:] - points[1:-1]
    c = points[2:] - points[:-2]
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) * np.linalg.norm(c, axis=1)
    inner = 2.0 * cross / np.maximum(denom, 1e-12)
    return np.concatenate(([inner[0]], inner, [inner[-1]]))


def offset(points: np.ndarray, d: float) -> np.ndarray:
    """The polyline shifted `d` metres to its left (right when d < 0)."""
    yaw = headings(points)
    normal = np.stack((-np.sin(yaw), np.cos(yaw)), axis=1)
    return points + d * normal


def strip_polygon(points: np.ndarray, width: float) -> np.ndarray:
    """Outline `(2K, 2)` of a strip of `width` centred on the polyline."""
    return np.concatenate((offset(points, width / 2), offset(points, -width / 2)[::-1]), axis=0)


def rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate points counter-clockwise about the origin."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _wrap(angle: np.ndarray | float) -> np.ndarray:
    return np.remainder(np.asarray(angle) + np.pi, 2 * np.pi) - np.pi
