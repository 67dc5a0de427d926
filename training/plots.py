"""Learning-curve figure of one run (curves.png)."""
import io

from training.records import atomic_write


def plot_curves(path, rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train (clean pass)")
    ax_loss.plot(epochs, [r["test_loss"] for r in rows], label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], label="train (clean pass)")
    ax_acc.plot(epochs, [r["test_acc"] for r in rows], label="test")
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
    if rows:
        best = max(rows, key=lambda r: r["test_acc"])
        ax_acc.annotate(f"best {best['test_acc']:.2f}%", (best["epoch"], best["test_acc"]),
                        textcoords="offset points", xytext=(0, -15), ha="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
