"""Plot helpers shared by the examples (matplotlib, without a display)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(ncols=1, nrows=1, size=4.0):
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    return fig, axes


def loss_curves(run, tasks, name="loss.png", key="loss", ylabel="training loss", log=True):
    """One curve per task of `key` against the unit index."""
    fig, axes = figure(size=4.5)
    ax = axes[0, 0]
    for t in tasks:
        values = [h[key] for h in t.history if key in h]
        if values:
            ax.plot(range(1, len(values) + 1), values, label=t.name)
    if log and all(v > 0 for t in tasks for h in t.history for v in [h.get(key, 1.0)]):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    run.savefig(fig, name)
