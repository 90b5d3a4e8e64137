"""The board's charts as geometry for inline SVG drawn on the server (no script, nothing fetched)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from portal.compliance.measures import Cell

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 14, 34


@dataclass(frozen=True)
class BurnUp:
    """Share done over time against the deadline: one polyline, the deadline line, axis ticks."""

    width: int
    height: int
    points: str  # "x,y x,y ..." of the share done, day by day
    dots: list[tuple[float, float, str, int]]  # x, y, day (dd/mm/yyyy), percent
    deadline_x: float
    deadline_label: str
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]
    empty: bool


def _fmt(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def burn_up(series: dict[date, tuple[int, int]], deadline: date, today: date) -> BurnUp:
    """The chart of `series` (day -> done, total), from its first day to past the deadline or today."""
    days = sorted(series)
    start = min([*days, deadline - timedelta(days=30), today]) if days else min(deadline - timedelta(days=30), today)
    end = max([*days, deadline + timedelta(days=7), min(today, deadline + timedelta(days=120))])
    span = max((end - start).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        return round(LEFT + plot_w * (day - start).days / span, 1)

    def y(percent: float) -> float:
        return round(TOP + plot_h * (1 - percent / 100), 1)

    dots = []
    for day in days:
        done, total = series[day]
        percent = done * 100 // total if total else 0
        dots.append((x(day), y(percent), _fmt(day), percent))
    step = max(span // 6, 1)
    ticks = [start + timedelta(days=d) for d in range(0, span + 1, step)]
    x_ticks = [(x(day), day.strftime("%d/%m")) for day in ticks]
    return BurnUp(WIDTH, HEIGHT, " ".join(f"{dx},{dy}" for dx, dy, _d, _p in dots), dots, x(deadline), _fmt(deadline),
                  x_ticks, [(y(p), p) for p in (0, 25, 50, 75, 100)], not dots)


@dataclass(frozen=True)
class Bar:
    label: str
    code: str
    y: float
    width: float
    percent: int | None
    state: str
    state_label: str


@dataclass(frozen=True)
class Positions:
    """Every school's share done on one milestone, as horizontal bars, lowest first."""

    width: int
    height: int
    left: int
    bar_height: int
    bars: list[Bar]


def positions(cells: list[tuple[str, str, Cell]]) -> Positions:
    """`cells`: (school name, school code, cell) for each school."""
    left, bar_height, plot_w = 260, 16, WIDTH - 260 - 60
    ordered = sorted(cells, key=lambda item: (item[2].percent if item[2].percent is not None else 101, item[0]))
    bars = [Bar(name, code, 8 + i * (bar_height + 6), round(plot_w * (cell.percent or 0) / 100, 1), cell.percent,
                cell.state.value, cell.state.label) for i, (name, code, cell) in enumerate(ordered)]
    return Positions(WIDTH, 16 + len(bars) * (bar_height + 6), left, bar_height, bars)
