"""Live metrics of one pane: headline figures and a tok/s + acceptance plot.

Fed with GenerationStats (about every 0.25 s, coalesced by the bridge) on the GUI
thread. The instantaneous rate is tokens per second between two stats updates; the
cumulative rate is the engine's own figure. The figures follow every update; the
curves are redrawn at most every ``REDRAW_S`` of generation time (and at the end), as
each redraw costs the GUI thread a few milliseconds the engine would rather have.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from app import theme
from engine.events import GenerationStats

pg.setConfigOptions(antialias=True)
REDRAW_S = 0.5


class Figure(QWidget):
    """A value over a caption, e.g. '42.1' over 'tok/s'."""

    def __init__(self, caption: str, parent: QWidget | None = None, colour_role: str = ""):
        super().__init__(parent)
        self.value = QLabel("\u2013", self)
        self.value.setObjectName("FigureValue")
        self.caption = QLabel(caption, self)
        self.caption.setObjectName("Figure")
        self._colour_role = colour_role
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)
        self._on_theme_changed(theme.current())
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def set(self, value: str) -> None:
        self.value.setText(value)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        if self._colour_role:
            # A coloured dot ties the figure to its curve in the plot.
            colour = getattr(pal, self._colour_role)
            self.caption.setText(
                f'<span style="color:{colour}">\u25cf</span> {self.caption.text().split("</span> ")[-1]}'
            )


class RatePlot(pg.PlotWidget):
    """tok/s (instantaneous, cumulative) on the left axis, acceptance % on the right."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=None)
        self.setMinimumHeight(84)
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        item = self.getPlotItem()
        item.setContentsMargins(0, 4, 0, 0)
        item.showAxis("right")
        self.accept_box = pg.ViewBox(enableMouse=False)
        item.scene().addItem(self.accept_box)
        item.getAxis("right").linkToView(self.accept_box)
        self.accept_box.setXLink(item)
        self.accept_box.setYRange(0, 1, padding=0.02)
        item.vb.sigResized.connect(self._on_view_resized)
        self._ranges: tuple[float, float] | None = None
        self.rate_curve = self.plot([], [])
        self.cumulative_curve = self.plot([], [])
        self.accept_curve = pg.PlotDataItem([], [])
        self.accept_box.addItem(self.accept_curve)
        for name in ("left", "bottom", "right"):
            axis = item.getAxis(name)
            axis.setStyle(tickLength=-4, tickTextOffset=4)
            # Redrawn from a pixmap while only the curves change (they change 4x/s).
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        item.getAxis("right").setTicks([[(0, "0%"), (0.5, "50%"), (1, "100%")]])
        item.getAxis("left").setWidth(34)
        item.getAxis("right").setWidth(36)
        item.getAxis("bottom").setHeight(18)
        self.set_drafting(False)
        self._on_theme_changed(theme.current())
        theme.manager().sig_changed.connect(self._on_theme_changed)

    def _on_view_resized(self) -> None:
        item = self.getPlotItem()
        self.accept_box.setGeometry(item.vb.sceneBoundingRect())
        self.accept_box.linkedViewChanged(item.vb, self.accept_box.XAxis)

    def set_drafting(self, on: bool) -> None:
        self.accept_curve.setVisible(on)
        self.getPlotItem().getAxis("right").setStyle(showValues=on)

    def set_data(
        self, t: list[float], rate: list[float], cum: list[float], acc: list[float]
    ) -> None:
        self.rate_curve.setData(t, rate)
        self.cumulative_curve.setData(t, cum)
        if self.accept_curve.isVisible() or not t:
            self.accept_curve.setData(t, acc)
        # Axes move in round steps: steady to read, and a range change redraws the
        # axes and grid, which costs more than the curves themselves.
        ranges = (nice_ceiling(max([*t, 1.0])), nice_ceiling(max([*rate, *cum, 1.0]) * 1.1))
        if ranges != self._ranges:
            self._ranges = ranges
            self.setXRange(0, ranges[0], padding=0.02)
            self.setYRange(0, ranges[1], padding=0)

    def _on_theme_changed(self, pal: theme.Palette) -> None:
        self.setBackground(pal.surface)
        fill = QColor(pal.plot_rate)
        fill.setAlpha(50)
        self.rate_curve.setPen(pg.mkPen(pal.plot_rate, width=1.6))
        self.rate_curve.setFillLevel(0)
        self.rate_curve.setBrush(fill)
        self.cumulative_curve.setPen(pg.mkPen(pal.plot_cumulative, width=2))
        self.accept_curve.setPen(pg.mkPen(pal.plot_accept, width=1.6, style=Qt.PenStyle.DashLine))
        for name in ("left", "bottom", "right"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(pg.mkPen(pal.border))
            axis.setTextPen(pg.mkPen(pal.faint))
        self.getPlotItem().showGrid(x=False, y=True, alpha=0.12)


class MetricsStrip(QWidget):
    """Figures (tok/s, tokens, first token, acceptance, memory) above the rate plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MetricsStrip")
        self.rate = Figure("tok/s now", self, "plot_rate")
        self.average = Figure("tok/s average", self, "plot_cumulative")
        self.tokens = Figure("tokens", self)
        self.ttft = Figure("first token", self)
        self.acceptance = Figure("drafts accepted", self, "plot_accept")
        self.memory = Figure("memory", self)
        self._figures = (
            self.rate,
            self.average,
            self.acceptance,
            self.tokens,
            self.ttft,
            self.memory,
        )
        self._grid = QGridLayout()
        self._grid.setHorizontalSpacing(20)
        self._grid.setVerticalSpacing(6)
        self._columns = 0
        self._arrange(6)
        self.plot = RatePlot(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 10, 6)
        layout.setSpacing(4)
        row = QHBoxLayout()
        row.addLayout(self._grid)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.plot)
        self.reset(drafting=False)

    def _arrange(self, columns: int) -> None:
        """Lay the figures out in one row, or in two when the pane is narrow."""
        if columns == self._columns:
            return
        self._columns = columns
        for fig in self._figures:
            self._grid.removeWidget(fig)
        for i, fig in enumerate(self._figures):
            self._grid.addWidget(fig, i // columns, i % columns)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange(6 if event.size().width() >= 600 else 3)

    def reset(self, drafting: bool) -> None:
        """Clear the curves for a new generation."""
        self._t: list[float] = []
        self._rate: list[float] = []
        self._cum: list[float] = []
        self._acc: list[float] = []
        self._last: GenerationStats | None = None
        self._drawn_at = -REDRAW_S  # generation time of the last curve redraw
        self.drafting = drafting
        self.plot.set_drafting(drafting)
        self.acceptance.setVisible(drafting)
        self.plot.set_data([], [], [], [])
        for fig in (self.rate, self.average, self.tokens, self.ttft, self.acceptance):
            fig.set("\u2013")

    def add_stats(self, stats: GenerationStats) -> None:
        last = self._last
        if last is not None and stats.elapsed_s <= last.elapsed_s:
            self._show_figures(stats)
            return
        if last is None:
            span = max(stats.elapsed_s - stats.ttft_s, 1e-3)
            rate = max(stats.generation_tokens - 1, 0) / span
        else:
            span = max(stats.elapsed_s - last.elapsed_s, 1e-3)
            rate = (stats.generation_tokens - last.generation_tokens) / span
        self._last = stats
        self._t.append(stats.elapsed_s)
        self._rate.append(rate)
        self._cum.append(stats.generation_tps)
        self._acc.append(stats.acceptance_rate)
        if stats.elapsed_s - self._drawn_at >= REDRAW_S:
            self._draw()
        self._show_figures(stats, rate)

    def _draw(self) -> None:
        self._drawn_at = self._t[-1] if self._t else -REDRAW_S
        self.plot.set_data(self._t, self._rate, self._cum, self._acc)

    def _show_figures(self, s: GenerationStats, rate: float | None = None) -> None:
        if rate is not None:
            self.rate.set(f"{rate:.1f}")
        self.average.set(f"{s.generation_tps:.1f}")
        self.tokens.set(str(s.generation_tokens))
        self.ttft.set(_seconds(s.ttft_s) if s.ttft_s else "\u2013")
        if self.drafting or s.drafted:
            self.acceptance.setVisible(True)
            mal = f" \u00b7 {s.mean_accepted_length:.1f}/step" if s.mean_accepted_length else ""
            self.acceptance.set(f"{s.acceptance_rate:.0%}{mal}")
            self.acceptance.setToolTip(
                "Share of drafted tokens the model accepted; tokens per model step"
            )
        if s.memory_gb:
            share = f" ({s.decoder_memory_gb:.2f} dec.)" if s.decoder_memory_gb else ""
            self.memory.set(f"{s.memory_gb:.2f} GB{share}")

    def finish(self, stats: GenerationStats) -> None:
        """Final figures. The last point is plotted only if tokens came since the
        previous one: the closing stats would otherwise draw a false drop to 0."""
        if self._last is None or stats.generation_tokens > self._last.generation_tokens:
            self.add_stats(stats)
        self._draw()
        self._show_figures(stats)
        if not self._t:
            self.rate.set(f"{stats.generation_tps:.1f}")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n that is at least ``value`` (> 0)."""
    scale = 10.0 ** math.floor(math.log10(value))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= value * (1 - 1e-9))


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"
