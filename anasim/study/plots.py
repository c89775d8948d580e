"""Standard plots of sweep results (matplotlib, Agg backend).

* :func:`plot_vs_parameter` -- a metric against one swept parameter, mean over
  seeds with the seed spread (min–max band), one line per value of a second
  parameter if there is one;
* :func:`plot_heatmap` -- a metric over two swept parameters (seed mean);
* :func:`plot_lipschitz_vs_symmetry` -- Lipschitz constants against the
  parameter that controls symmetry (``circuit.lam``, ``gyrator.mismatch``, ...);
* :func:`report_sweep` -- picks the plots that fit a result and writes PNGs
  (what ``anasim report`` calls for a sweep file).

A metric with an ``epoch`` dimension is taken at its last finished epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from anasim.study.runner import open_sweep

# Preferred metrics, most informative first (names the measurements produce).
_METRIC_ORDER = (
    "test_accuracy", "final_test_accuracy", "accuracy", "train_accuracy",
    "alignment", "lipschitz_bound", "final_loss", "loss",
)
_SYMMETRY_HINTS = ("lam", "mismatch", "asym", "symmetry", "epsilon")


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def swept_dims(ds: xr.Dataset) -> list[str]:
    """The swept dimensions of a sweep result, in the spec's order."""
    raw = ds.attrs.get("anasim_swept")
    if raw:
        dims = []
        for dim, _path in json.loads(raw):
            if dim in ds.dims and dim not in dims:
                dims.append(dim)
        return dims
    return [d for d in ds.dims if d != "epoch"]


def _final(da: xr.DataArray) -> xr.DataArray:
    """Last finished epoch of a per-epoch metric (points may have run different lengths)."""
    if "epoch" not in da.dims:
        return da
    ok = np.isfinite(da.values)
    idx = np.where(ok.any(axis=da.get_axis_num("epoch")),
                   ok.shape[da.get_axis_num("epoch")] - 1
                   - np.argmax(np.flip(ok, axis=da.get_axis_num("epoch")), axis=da.get_axis_num("epoch")),
                   0)
    vals = np.take_along_axis(da.values, np.expand_dims(idx, da.get_axis_num("epoch")), da.get_axis_num("epoch"))
    return da.isel(epoch=0, drop=True).copy(data=np.squeeze(vals, da.get_axis_num("epoch")))


def _reduce(da: xr.DataArray, keep: list[str]) -> xr.DataArray:
    """Average over every dimension not kept (seeds, layers, ...)."""
    other = [d for d in da.dims if d not in keep]
    return da.mean(other, skipna=True) if other else da


def pick_metric(ds: xr.Dataset) -> str:
    for name in _METRIC_ORDER:
        if name in ds.data_vars:
            return name
    return sorted(ds.data_vars)[0]


def _label(ds: xr.Dataset, dim: str) -> str:
    raw = ds.attrs.get("anasim_swept")
    if raw:
        for d, path in json.loads(raw):
            if d == dim and path != dim:
                return f"{dim} ({path})"
    return dim


def plot_vs_parameter(ds: xr.Dataset, metric: str | None = None, x: str | None = None,
                      hue: str | None = None, ax=None, seed_dim: str = "seed"):
    """``metric`` against swept parameter ``x``: seed mean, min–max band over seeds."""
    plt = _mpl()
    metric = metric or pick_metric(ds)
    dims = [d for d in swept_dims(ds) if d != seed_dim]
    if x is None:
        if not dims:
            raise ValueError("no swept parameter to plot against")
        x = dims[0]
    if hue is None:
        rest = [d for d in dims if d != x]
        hue = rest[0] if rest else None
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    da = _final(ds[metric])
    groups = [(None, da)] if hue is None else [(v, da.sel({hue: v})) for v in ds[hue].values]
    xs = ds[x].values
    numeric = np.issubdtype(xs.dtype, np.number)
    pos = xs if numeric else np.arange(len(xs))
    for val, g in groups:
        keep = [x] + ([seed_dim] if seed_dim in g.dims else [])
        g = _reduce(g, keep)
        if seed_dim in g.dims:
            mean = g.mean(seed_dim, skipna=True).values
            lo, hi = g.min(seed_dim, skipna=True).values, g.max(seed_dim, skipna=True).values
        else:
            mean = lo = hi = g.values
        label = None if val is None else f"{hue} = {val}"
        (line,) = ax.plot(pos, mean, marker="o", label=label)
        if seed_dim in g.dims and g.sizes[seed_dim] > 1:
            ax.fill_between(pos, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if not numeric:
        ax.set_xticks(pos, [str(v) for v in xs])
    ax.set_xlabel(_label(ds, x))
    nseed = ds.sizes.get(seed_dim, 1)
    ax.set_ylabel(metric + (f" (mean, band: {nseed} seeds)" if nseed > 1 else ""))
    if hue is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_heatmap(ds: xr.Dataset, metric: str | None = None, x: str | None = None,
                 y: str | None = None, ax=None, seed_dim: str = "seed"):
    """``metric`` over two swept parameters (seed mean), values printed in the cells."""
    plt = _mpl()
    metric = metric or pick_metric(ds)
    dims = [d for d in swept_dims(ds) if d != seed_dim]
    if x is None or y is None:
        if len(dims) < 2:
            raise ValueError("a heat map needs two swept parameters")
        x, y = x or dims[0], y or [d for d in dims if d != (x or dims[0])][0]
    da = _reduce(_final(ds[metric]), [y, x]).transpose(y, x)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    im = ax.imshow(da.values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(ds.sizes[x]), [_fmt(v) for v in ds[x].values])
    ax.set_yticks(range(ds.sizes[y]), [_fmt(v) for v in ds[y].values])
    ax.set_xlabel(_label(ds, x))
    ax.set_ylabel(_label(ds, y))
    vals = da.values
    if vals.size <= 120:
        finite = vals[np.isfinite(vals)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, f"{vals[i, j]:.3g}", ha="center", va="center", fontsize=7,
                            color="black" if vals[i, j] > mid else "white")
    ax.figure.colorbar(im, ax=ax, label=metric)
    return ax


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v)


def symmetry_dim(ds: xr.Dataset) -> str | None:
    """The swept parameter that controls coupling symmetry, if any."""
    raw = ds.attrs.get("anasim_swept")
    pairs = json.loads(raw) if raw else [[d, d] for d in ds.dims]
    for dim, path in pairs:
        leaf = path.rsplit(".", 1)[-1].lower()
        if dim in ds.dims and any(h in leaf for h in _SYMMETRY_HINTS):
            return dim
    return None


def lipschitz_vars(ds: xr.Dataset) -> list[str]:
    return [v for v in ds.data_vars if v.startswith("lipschitz")]


def plot_lipschitz_vs_symmetry(ds: xr.Dataset, x: str | None = None, ax=None, seed_dim: str = "seed"):
    """Every ``lipschitz*`` variable against the symmetry parameter (seed spread as a band)."""
    plt = _mpl()
    x = x or symmetry_dim(ds)
    names = lipschitz_vars(ds)
    if x is None or not names:
        raise ValueError("needs a swept symmetry parameter and a lipschitz* variable")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in names:
        sub = ds[[name]]
        plot_vs_parameter(sub.assign_attrs(ds.attrs), metric=name, x=x, hue=None, ax=ax, seed_dim=seed_dim)
        ax.lines[-1].set_label(name)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("Lipschitz constant")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax


def _panel_metrics(ds) -> list[str]:
    metrics = [m for m in _METRIC_ORDER if m in ds.data_vars and not m.startswith("lipschitz")
               and f"final_{m}" not in ds.data_vars]
    return list(dict.fromkeys(metrics + [pick_metric(ds)]))[:3]


def plotted_metrics(ds) -> list[str]:
    """The variables :func:`report_sweep` draws: the panels against the swept
    parameters, the heat map's metric, the Lipschitz constants vs symmetry."""
    dims = [d for d in swept_dims(ds) if d != "seed"]
    names = _panel_metrics(ds) if dims else []
    if len(dims) >= 2:
        names.append(pick_metric(ds))
    if symmetry_dim(ds) and lipschitz_vars(ds):
        names += list(lipschitz_vars(ds))
    return list(dict.fromkeys(names))


def metric_values(da) -> dict:
    """A metric of a result as JSON: its dims, their coordinates and the values
    (nested lists; NaN, a point not computed, as null)."""
    def plain(a):
        a = np.asarray(a)
        if a.dtype.kind in "fc":
            return [None if not np.isfinite(x) else float(x) for x in a.ravel()], a.shape
        return [x.item() if hasattr(x, "item") else x for x in a.ravel()], a.shape

    flat, shape = plain(da.values)

    def nest(items, shape):
        if not shape:
            return items[0]
        if len(shape) == 1:
            return list(items)
        step = len(items) // shape[0] if shape[0] else 0
        return [nest(items[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]

    coords = {d: plain(da[d].values)[0] if d in da.coords else list(range(da.sizes[d])) for d in da.dims}
    return {"dims": list(da.dims), "coords": coords, "values": nest(flat, shape)}


def report_sweep(result, out: str | Path | None = None) -> list[Path]:
    """Write the standard plots of a sweep result; return the PNG paths.

    ``result``: a Dataset or the path of a sweep file. ``out``: PNG path; extra
    figures get a suffix (``study.png``, ``study-heatmap.png``,
    ``study-lipschitz.png``). Default: next to the result file.
    """
    plt = _mpl()
    if isinstance(result, (str, Path)):
        ds = open_sweep(result)
        base = Path(out) if out else Path(result).with_suffix(".png")
    else:
        ds = result
        base = Path(out) if out else Path("sweep.png")
    base.parent.mkdir(parents=True, exist_ok=True)
    stem = base.with_suffix("")
    written: list[Path] = []
    dims = [d for d in swept_dims(ds) if d != "seed"]
    metric = pick_metric(ds)

    if dims:
        metrics = _panel_metrics(ds)
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
        for ax, m in zip(axes[0], metrics):
            plot_vs_parameter(ds, metric=m, ax=ax)
        if ds.attrs.get("title"):
            fig.suptitle(ds.attrs["title"])
        fig.tight_layout()
        fig.savefig(base, dpi=110)
        plt.close(fig)
        written.append(base)
    if len(dims) >= 2:
        fig, ax = plt.subplots(figsize=(5.8, 4.4))
        plot_heatmap(ds, metric=metric, x=dims[0], y=dims[1], ax=ax)
        fig.tight_layout()
        p = Path(f"{stem}-heatmap.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    if symmetry_dim(ds) and lipschitz_vars(ds):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        plot_lipschitz_vs_symmetry(ds, ax=ax)
        fig.tight_layout()
        p = Path(f"{stem}-lipschitz.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written
