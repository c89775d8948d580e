"""Learning curves from a result Dataset (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anasim.errors import AnasimError

_PANELS = (
    ("accuracy", ("train_accuracy", "test_accuracy"), "fraction correct"),
    ("loss", ("train_loss", "test_loss"), "loss"),
    ("Lipschitz (hidden, as built)", ("lipschitz",), "‖(I − W)⁻¹‖₂"),
    ("relaxation", ("iterations",), "iterations / phase set"),
    ("saturated neurons", ("saturated",), "fraction"),
    ("hardware time", ("hardware_time_s",), "s (simulated)"),
)


def plot_learning_curves(ds, path: str | Path, title: str | None = None) -> Path:
    """Draw the per-epoch metrics of a training result into a PNG at ``path``."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = Path(path)
    if "epoch" not in ds.dims:
        raise AnasimError(f"{ds.encoding.get('source', 'result')}: no 'epoch' dimension: not a training result")
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    epoch = np.asarray(ds["epoch"])
    panels = [p for p in _PANELS if any(v in ds for v in p[1])]
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, variables, ylabel) in zip(axes.flat, panels):
        for v in variables:
            if v in ds:
                ax.plot(epoch, np.asarray(ds[v]), marker="o", label=v.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.ticklabel_format(axis="y", useOffset=False)  # a Lipschitz of 1.0042 reads as such
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(variables) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title is None:
        title = f"{ds.attrs.get('circuit.name', '')} on {ds.attrs.get('device.profile', '')}".strip()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_generic(ds, path: str | Path) -> Path:
    """Every one-dimensional numeric variable against its coordinate (for other result files)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    vars_1d = [v for v in ds.data_vars if ds[v].ndim == 1 and np.issubdtype(ds[v].dtype, np.number)]
    if not vars_1d:
        raise AnasimError("result: no one-dimensional numeric variables to plot")
    cols = min(3, len(vars_1d))
    rows = -(-len(vars_1d) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, v in zip(axes.flat, vars_1d):
        dim = ds[v].dims[0]
        xs = np.asarray(ds[dim]) if dim in ds.coords else np.arange(ds[v].size)
        ax.plot(xs, np.asarray(ds[v]), marker="o")
        ax.set_title(v)
        ax.set_xlabel(dim)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(vars_1d):]:
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
