"""The board's charts as geometry for inline SVG drawn on the server (no script, nothing fetched)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from portal.compliance.measures import Cell, CellState

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
    x_ticks = [(x(day), _fmt(day)) for day in ticks]  # with the year: a plan spans two calendar years
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


@dataclass(frozen=True)
class Overview:
    """The whole plan over time: the share of (school, milestone) tasks due by each day, and the share done."""

    width: int
    height: int
    plan_points: str
    done_points: str
    today_x: float
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]
    due_percent: int
    done_percent: int
    empty: bool


UNCOUNTED = (CellState.NOT_MEASURABLE, CellState.NO_ONE_IN_SCOPE, CellState.NOT_COUNTED)


def plan_overview(board: object) -> Overview:
    """From the board's own cells: each task is due at its milestone's deadline and done on its completion day."""
    tasks = [(m.deadline, cell) for m in board.milestones for school in board.schools  # type: ignore[attr-defined]
             if (cell := board.cell(school, m)).state not in UNCOUNTED]  # type: ignore[attr-defined]
    today: date = board.today  # type: ignore[attr-defined]
    if not tasks:
        return Overview(WIDTH, HEIGHT, "", "", 0, [], [], 0, 0, True)
    deadlines = sorted(d for d, _c in tasks)
    start = min(deadlines[0], today) - timedelta(days=30)
    end = max(deadlines[-1] + timedelta(days=14), min(today, deadlines[-1] + timedelta(days=120)))
    span = max((end - start).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    total = len(tasks)

    def x(day: date) -> float:
        return round(LEFT + plot_w * (min(max(day, start), end) - start).days / span, 1)

    def y(count: int) -> float:
        return round(TOP + plot_h * (1 - count / total), 1)

    def steps(days: list[date], until: date) -> str:
        points, count = [f"{x(start)},{y(0)}"], 0
        for day in sorted(days):
            points.append(f"{x(day)},{y(count)}")
            count += 1
            points.append(f"{x(day)},{y(count)}")
        points.append(f"{x(until)},{y(count)}")
        return " ".join(points)

    done_days = [min(cell.completed_on or today, today) for _d, cell in tasks if cell.is_done]
    step = max(span // 6, 1)
    ticks = [start + timedelta(days=d) for d in range(0, span + 1, step)]
    return Overview(WIDTH, HEIGHT, steps(deadlines, end), steps(done_days, min(today, end)), x(today),
                    [(x(day), _fmt(day)) for day in ticks], [(TOP + plot_h * (1 - p / 100), p) for p in (0, 50, 100)],
                    sum(1 for d in deadlines if d <= today) * 100 // total, len(done_days) * 100 // total, False)
