"""The pieces every notebook explorer is made of: a study's data, controls, one redrawn
figure with its export row, and the "train more points" row.

An :class:`Explorer` wires ipywidgets controls to a ``render(fig, values)``
function (which queries a frame and calls a :mod:`toolkit.ui.plots` function with
``fig=``). The figure is one matplotlib ``Figure`` reused at every redraw and
shown as a PNG image widget, so a redraw replaces the picture in place; the PNG
has twice the pixels of its size on the page, so text stays sharp on
high-density screens. Sliders are created with ``continuous_update=False``: they
redraw when released, not at every pixel of a drag. When nothing can be drawn
the figure area says why in a line of text (an :class:`~toolkit.errors.InputError`'s
message, such as a setting whose runs all diverged; for any other error, its type
and message), never with a traceback and never leaving the previous picture
under the new settings; the traceback goes to the ``toolkit.ui`` logger (at
ERROR for anything but an ``InputError``). Controls that do not apply to the
current view are greyed out, and anything slow (training) shows a busy line and
disables the controls while it runs. An export row writes the current view
with :func:`toolkit.ui.style.export`. A :class:`RunMore` given to an explorer adds
a button that trains more points into the store with a progress bar; the
explorer redraws when they arrive.

An explorer owns its state: everything it needs comes through its constructor,
and it draws on :meth:`Explorer.redraw` or when first displayed, never while it
is being built.
"""

from __future__ import annotations

import html
import io
import logging
import textwrap
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import ipywidgets as widgets
import polars as pl
from matplotlib.figure import Figure

from toolkit import store as results
from toolkit.analysis.optima import losses_at_steps
from toolkit.errors import InputError
from toolkit.paths import is_shipped, user_store
from toolkit.ui.layout import page
from toolkit.ui.style import FORMATS, VENUES, export, ordered

log = logging.getLogger("toolkit.ui")

LABELS = {"description_width": "initial"}
"""Control style: the label takes the width it needs, never truncated."""

SCREEN_SCALE = 2
"""Pixels of the PNG shown per pixel of its size on the page (a 2x, "retina" picture)."""

SCREEN_PNG = {"compress_level": 1}
"""How the picture on screen is compressed: fast (a tenth of a redraw saved); it is shown,
never kept, and exports are drawn anew."""


def _on_click(button: widgets.Button, action: Callable[[], object], note: widgets.HTML) -> None:
    """Run ``action`` when ``button`` is clicked; if it fails, ``note`` says so in one line
    and the traceback goes to the log (at ERROR unless it is an ``InputError``)."""

    def clicked(_button: widgets.Button) -> None:
        note.value = ""
        try:
            action()
        except Exception as error:  # a click must not print a traceback into the notebook
            user = isinstance(error, InputError)
            log.log(logging.INFO if user else logging.ERROR, "%s failed", button.description,
                    exc_info=True)  # fmt: skip
            kind = "" if user else f"{type(error).__name__}: "
            note.value = f"{button.description} failed: {kind}{error}"

    button.on_click(clicked)


class StudyData:
    """A study's results read once and kept in memory; :meth:`reload` after new runs.

    ``runs`` and ``curves`` are the store's tables as polars frames. A shipped store
    (in ``data/``) is read-only: runs trained from a notebook go to the user's store
    for the study (:func:`toolkit.paths.user_store`, or ``user`` if given), which is
    read on top of it. Any other store is its own user store.
    """

    def __init__(self, path: str | Path, *, user: str | Path | None = None) -> None:
        self.path = Path(path)
        self.store = results.open(self.path)
        if user is not None:
            self.user_path = Path(user)
        else:
            self.user_path = user_store(self.path.name) if is_shipped(self.path) else self.path

    def _stores(self) -> list[results.Store]:
        extra = self.user_path != self.path and (self.user_path / "store.json").exists()
        return [self.store, results.open(self.user_path)] if extra else [self.store]

    def _stacked(self, table: str) -> pl.DataFrame:
        """``table`` of every store, tagged with its store's place (0: this one, 1: user's)."""
        frames = [
            getattr(store, table)().collect().with_columns(_source=pl.lit(i))
            for i, store in enumerate(self._stores())
        ]
        return pl.concat(frames, how="diagonal_relaxed")

    @cached_property
    def _kept(self) -> pl.DataFrame:
        """Each run once, from the first store that has it (this one before the user's)."""
        return self._stacked("runs").unique("run_id", keep="first", maintain_order=True)

    @cached_property
    def runs(self) -> pl.DataFrame:
        """One row per run: the store's runs table, with the user's runs on top."""
        return self._kept.drop("_source")

    @cached_property
    def curves(self) -> pl.DataFrame:
        """The evaluation curves (``run_id, step, split, metric, value``) of those runs,
        batch losses left out."""
        curves = self._stacked("curves").filter(pl.col("split") != "batch")
        kept = self._kept.select("run_id", "_source")
        return curves.join(kept, on=["run_id", "_source"], how="semi").drop("_source")

    @cached_property
    def losses(self) -> pl.DataFrame:
        """Every run's train and val loss at every evaluation step (``split`` column)."""
        return pl.concat(
            losses_at_steps(self.runs, self.curves, split=split).with_columns(split=pl.lit(split))
            for split in ("train", "val")
        )

    def reload(self) -> None:
        """Forget the frames read so far; the next access reads the store again."""
        for name in ("_kept", "runs", "curves", "losses"):
            self.__dict__.pop(name, None)

    def values(self, column: str) -> list:
        """Distinct values of a runs column in the order shown
        (:func:`~toolkit.ui.style.ordered`), for a control's options."""
        return ordered(self.runs, column)


def dropdown(options: list, value: object = None, description: str = "") -> widgets.Dropdown:
    """A dropdown over ``options``, on ``value`` (the first option by default)."""
    return widgets.Dropdown(
        options=options, value=options[0] if value is None else value, description=description,
        style=LABELS,
    )  # fmt: skip


def choose_many(options: list, description: str = "") -> widgets.SelectMultiple:
    """Pick several values (e.g. which widths to show); all selected at first."""
    return widgets.SelectMultiple(
        options=options, value=tuple(options), description=description,
        rows=min(len(options), 6), style=LABELS,
    )  # fmt: skip


def step_slider(steps: list[int], description: str = "step") -> widgets.SelectionSlider:
    """A slider over the recorded training steps that redraws on release only."""
    return widgets.SelectionSlider(
        options=steps, value=steps[-1], description=description, continuous_update=False,
        style=LABELS,
    )  # fmt: skip


class RunMore:
    """A row that extends a study to a new size: a dropdown of sizes and a button that
    trains the chosen one into the study's user store (never a shipped store, see
    :class:`StudyData`) with a progress bar.

    ``specs`` are the study's sweeps (e.g. ``SweepSpec.from_toml(study_spec(name))``);
    ``axis`` is the grid field to extend (``widths``, ``depths`` or ``steps``) and
    ``options`` the values offered. Runs already in the store are skipped, so a
    second click with the same choice trains nothing. The sweep's progress bar
    (tqdm, a widget in a notebook) shows in this row's output area; while it runs
    the button is disabled and reads "training...". Give it to an explorer
    (``run_more=``), which shows the row and redraws after new runs.
    """

    LABEL = "Train more points"

    def __init__(self, data: StudyData, specs: list, *, axis: str, options: list) -> None:
        self.data, self.specs, self.axis = data, list(specs), axis
        self.choice = dropdown(list(options), description="train " + axis.removesuffix("s"))
        self.button = widgets.Button(
            description=self.LABEL, icon="play", layout=widgets.Layout(width="auto")
        )
        self.output = widgets.Output()
        self.note = widgets.HTML()
        _on_click(self.button, self.run, self.note)
        self.widget = widgets.VBox(
            [widgets.HBox([self.choice, self.button, self.note]), self.output]
        )
        self._callbacks: list[Callable[[], None]] = []

    def on_trained(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every :meth:`run`, once the store has been re-read."""
        self._callbacks.append(callback)

    def run(self) -> int:
        """Train the study at the chosen size; returns how many runs were trained."""
        from toolkit.studies.sweep import run_local

        specs = [spec.with_(**{self.axis: (self.choice.value,)}) for spec in self.specs]
        self.button.disabled, self.button.description = True, "training..."
        self.output.clear_output()
        try:
            with self.output:  # the progress bar shows here; an error is raised, not printed
                try:
                    work = run_local(specs, self.data.user_path)
                except Exception as error:
                    failure = error
                else:
                    failure = None
        finally:
            self.button.disabled, self.button.description = False, self.LABEL
        if failure is not None:
            raise failure
        self.data.reload()
        for callback in self._callbacks:
            callback()
        return work.runs


def _unused_name(directory: Path, stem: str, suffix: str) -> Path:
    """``directory/stem.suffix``, or ``stem-2``, ``stem-3``, ... if taken: never overwrite."""
    path, copy = directory / f"{stem}.{suffix}", 1
    while path.exists():
        copy += 1
        path = directory / f"{stem}-{copy}.{suffix}"
    return path


def labels(fig: Figure) -> list[str]:
    """The words of a figure, once each, in reading order: its title, then each panel's
    title, x and y label. An explorer's export names those of the view it wrote."""
    texts = [fig.get_suptitle()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return list(dict.fromkeys(text for text in texts if text.strip()))


def _message(fig: Figure, text: str) -> None:
    """Draw ``text`` in place of the plot, wrapped, in the middle of ``fig`` (cleared)."""
    fig.clear()
    width_chars = max(int(fig.get_figwidth() * 11), 40)
    fig.text(0.5, 0.5, textwrap.fill(text, width_chars), ha="center", va="center",
             color="crimson", fontsize="medium")  # fmt: skip


class Explorer:
    """Controls bound to a render function, one reused figure, messages and export.

    Args:
        controls: named widgets; their current values are passed to ``render``.
        render: ``render(fig, values)`` draws into ``fig`` (cleared, see ``in_place``); it raises
            :class:`~toolkit.errors.InputError` with a short message when there is
            nothing to draw for ``values``.
        name: file stem for exported figures.
        export_dir: where exports go (default ``figures/``).
        dpi: pixels per inch of the figure on the page (its CSS size); the PNG has
            :data:`SCREEN_SCALE` times as many.
        run_more: a "train more points" row shown above the figure; the explorer
            redraws from the re-read store after each of its runs.
        inactive: ``inactive(values)`` names the controls that do not apply to the
            view ``values`` select (greyed out); by default all apply.
        in_place: ``render`` draws only through :mod:`toolkit.ui.plots`, whose figures
            clear ``fig`` themselves or redraw into the axes they made last time
            (:mod:`toolkit.ui.layout`): a new setting then costs a third less. Without
            it ``fig`` is cleared before every ``render``.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        render: Callable[[Figure, dict], object],
        *,
        name: str = "figure",
        export_dir: str | Path = "figures",
        dpi: int = 90,
        run_more: RunMore | None = None,
        inactive: Callable[[dict], Collection[str]] = lambda _values: (),
        in_place: bool = False,
    ) -> None:
        self.controls = dict(controls)
        self.render = render
        self.name = name
        self.export_dir = Path(export_dir)
        self.dpi = dpi
        self.inactive = inactive
        self.in_place = in_place
        self.figure = Figure()  # fixed margins (see layout.Layout): no layout pass per draw
        self._pictures: dict[tuple, tuple[bytes, tuple[float, float], str]] = {}
        self.image = widgets.Image(format="png")
        self.shown = ""
        """The words of the picture on screen (:func:`labels`), or its message."""
        self.message = ""
        """What the figure area says instead of a plot ("" while it shows one)."""
        self.status = widgets.HTML()
        self.draw_seconds: float | None = None
        for control in self.controls.values():
            control.style.description_width = "initial"
            control.observe(self._on_change, names="value")
        self.venue = dropdown(sorted(VENUES), value="neurips", description="venue")
        self.column = dropdown(["column", "full"], description="page width")
        self.format = dropdown(list(FORMATS), description="format")
        self.export_button = widgets.Button(
            description="Export", icon="download", layout=widgets.Layout(width="auto")
        )
        _on_click(self.export_button, self.export, self.status)
        self.run_more = run_more
        if run_more is not None:
            run_more.on_trained(self.forget)

    def values(self) -> dict:
        """The controls' current values by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change: object) -> None:
        self.redraw()

    def select(self, **values: object) -> None:
        """Set several controls at once (by name) and redraw once."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise InputError(f"controls={unknown} are not controls of this explorer; "
                             f"expected some of {sorted(self.controls)}")  # fmt: skip
        for control in self.controls.values():
            control.unobserve(self._on_change, names="value")
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            for control in self.controls.values():
                control.observe(self._on_change, names="value")
        self.redraw()

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Show ``what`` (e.g. "training sp, adam...") and disable the controls while the
        block runs; afterwards each control is as enabled as it was."""
        enabled = {name: not c.disabled for name, c in self.controls.items()}
        for control in self.controls.values():
            control.disabled = True
        self.status.value = f"<i>{what}</i>"
        try:
            yield
        finally:
            for name, control in self.controls.items():
                control.disabled = not enabled[name]
            self.status.value = ""

    def _picture(self, values: dict) -> tuple[bytes, tuple[float, float], str]:
        """``values``' view as PNG bytes, its size in inches and its text (:func:`labels`);
        a message when nothing can be drawn (logged with its traceback)."""
        self.message = ""
        if not self.in_place:
            self.figure.clear()
        try:
            self.render(self.figure, values)
        except InputError as error:
            log.info("nothing to draw for %s", values, exc_info=True)
            self.message = str(error)
        except Exception as error:  # a bug: shown in one line, its traceback logged
            log.error("drawing %s failed", values, exc_info=True)
            self.message = (f"could not draw this view ({type(error).__name__}: {error}); "
                            "the traceback is in the log (logger toolkit.ui)")  # fmt: skip
        if self.message:
            _message(self.figure, self.message)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi * SCREEN_SCALE,
                            pil_kwargs=SCREEN_PNG)  # fmt: skip
        text = self.message or " | ".join(labels(self.figure))
        return buffer.getvalue(), tuple(self.figure.get_size_inches()), text

    def redraw(self) -> None:
        """Render into the figure and show it at its size on the page, or a message in
        its place when there is nothing to draw.

        Pictures are kept per combination of control values, so going back to a
        setting already seen is instant; :meth:`forget` drops them when the data
        change. Messages are not kept: the next visit tries again.
        """
        started = time.perf_counter()
        values = self.values()
        inactive = set(self.inactive(values))
        for name, control in self.controls.items():
            control.disabled = name in inactive
        key = tuple(sorted((name, repr(value)) for name, value in values.items()))
        if key in self._pictures:
            self.message = ""
            png, (width, height), text = self._pictures[key]
        else:
            png, (width, height), text = self._picture(values)
            if not self.message:
                self._pictures[key] = png, (width, height), text
        self.image.value = png
        self.shown = text
        self.image.layout.width = f"{round(width * self.dpi)}px"
        self.image.layout.height = f"{round(height * self.dpi)}px"
        self.draw_seconds = time.perf_counter() - started

    def forget(self) -> None:
        """Drop the kept pictures (after new runs arrived) and redraw."""
        self._pictures.clear()
        self.redraw()

    def page_figure(self, venue: str, width: str = "column") -> Figure:
        """The view on screen drawn anew from the data for the controls' current values,
        laid out for ``venue``'s page (:func:`toolkit.ui.layout.page`): what
        :meth:`export` writes, for a notebook's own paper figure."""
        with page(venue, width):
            figure = Figure()  # made on the page: the venue's rcParams, constrained layout
            self.render(figure, self.values())
        return figure

    def export(self, directory: str | Path | None = None) -> list[Path]:
        """Write the view on screen for the chosen venue, width and format to ``directory``
        (default: the explorer's ``export_dir``).

        The figure is :meth:`page_figure` (never the picture on screen, which may be a
        kept one), written to a new file: ``<name>-<n>.<format>`` when
        ``<name>.<format>`` exists.
        """
        directory = self.export_dir if directory is None else Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        venue, width = self.venue.value, self.column.value
        target = _unused_name(directory, self.name, self.format.value)
        with page(venue, width):
            written = export(self.page_figure(venue, width), target, venue=venue, width=width)
        self.status.value = (f"exported {', '.join(str(p) for p in written)}: "
                             f"{html.escape(self.shown)}")  # fmt: skip
        return written

    @property
    def widget(self) -> widgets.Widget:
        """Controls, the "train more" row if any, the figure, the export row and status."""
        wrap = widgets.Layout(flex_flow="row wrap")
        controls = widgets.HBox(list(self.controls.values()), layout=wrap)
        extra = [] if self.run_more is None else [self.run_more.widget]
        exports = widgets.HBox([self.venue, self.column, self.format, self.export_button],
                               layout=wrap)  # fmt: skip
        return widgets.VBox([controls, *extra, self.image, exports, self.status])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if not self.image.value:  # first shown: draw now
            self.redraw()
        display(self.widget)
