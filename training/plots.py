"""Learning-curve figure of one run (curves.png)."""
import io

from training.records import atomic_write


def plot_curves(path, rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [r["epoch"] for r in rows]
    tested = [r for r in rows if r["test_acc"] is not None]   # --eval_every N > 1: the evaluated epochs
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train (clean pass)")
    ax_loss.plot([r["epoch"] for r in tested], [r["test_loss"] for r in tested], label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], label="train (clean pass)")
    ax_acc.plot([r["epoch"] for r in tested], [r["test_acc"] for r in tested], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_loss.set_yscale("log")  # early losses can be orders of magnitude above the final ones
    ax_loss.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax_loss.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
        for line in ax.lines:
            line.set_marker("o" if len(rows) <= 30 else "")
            line.set_markersize(3)
        ax.grid(alpha=0.3)
        ax.legend()
    if tested:
        best = max(tested, key=lambda r: r["test_acc"])
        ax_acc.annotate(f"best {best['test_acc']:.2f}%", (best["epoch"], best["test_acc"]),
                        textcoords="offset points", xytext=(0, -15), ha="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def plot_continual(path, matrix_rows, rows, num_tasks, epochs_per_task, title):
    """continual.png: the accuracy matrix R as a heatmap (rows: after training task i, columns:
    tested on task j) and the test accuracy on each task over the sequence, one line per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_matrix, ax_tasks) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.4]})
    matrix = np.full((num_tasks, num_tasks), np.nan)
    if matrix_rows:
        matrix[:len(matrix_rows)] = matrix_rows
    image = ax_matrix.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
    if num_tasks <= 10:  # the numbers stay legible up to 10 x 10
        for i in range(len(matrix_rows)):
            for j in range(num_tasks):
                ax_matrix.text(j, i, f"{matrix[i, j]:.0f}", ha="center", va="center", fontsize=8,
                               color="black" if matrix[i, j] > 60 else "white")
    ax_matrix.set(xlabel="tested on task j", ylabel="after training on task i",
                  title="accuracy matrix R[i, j] (%)")
    ticks = range(0, num_tasks, max(1, num_tasks // 10))
    ax_matrix.set_xticks(ticks)
    ax_matrix.set_yticks(ticks)
    fig.colorbar(image, ax=ax_matrix, fraction=0.046, pad=0.04)

    epochs = [r["epoch"] for r in rows]
    colors = plt.get_cmap("tab10" if num_tasks <= 10 else "viridis")
    for j in range(num_tasks):
        # from the end of the first epoch on task j: before that it is an untrained head
        points = [(r["epoch"], r[f"acc_task{j}"]) for r in rows if r["task"] >= j]
        if points:
            xs, ys = zip(*points)
            ax_tasks.plot(xs, ys, marker="o" if len(rows) <= 40 else "", markersize=3,
                          color=colors(j / max(1, num_tasks - 1)) if num_tasks > 10 else colors(j),
                          label=f"task {j}" if num_tasks <= 10 else None)
    ax_tasks.plot(epochs, [r["test_acc"] for r in rows], color="black", linestyle="--", linewidth=1.5,
                  label="mean over tasks so far")
    for boundary in range(epochs_per_task, num_tasks * epochs_per_task, epochs_per_task):
        ax_tasks.axvline(boundary + 0.5, color="grey", alpha=0.3, linewidth=0.8)
    ax_tasks.set(xlabel=f"epoch of the sequence ({epochs_per_task} per task; grey: task boundaries)",
                 ylabel="test accuracy (%)", title="accuracy on each task over the sequence")
    ax_tasks.xaxis.get_major_locator().set_params(integer=True)
    ax_tasks.grid(alpha=0.3)
    ax_tasks.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
