"""Optional experiment trackers: TensorBoard (--tensorboard) and Weights & Biases (--wandb).

Both receive the same things: the resolved config once, every epoch's metric row (the columns of
metrics.csv, at step = epoch) and the curves figure at the end.  They are imported only when asked
for, so neither is a dependency; config.json, metrics.csv and summary.json stay the run's record
(what scripts/reports/collect.py reads).  W&B runs offline (files under the run directory, `wandb sync`
uploads them later) unless the user has configured a mode (WANDB_MODE) themselves.
"""
import json
import os

from training.cli import UsageError
from training.records import METRIC_COLUMNS

TENSORBOARD_DIR = "tensorboard"     # under the run directory
WANDB_PROJECT = "lookbehind-sam"    # unless WANDB_PROJECT is set


def require(tensorboard=False, wandb=False):
    """UsageError now (before anything is written) if a requested tracker is not installed."""
    import importlib.util
    for wanted, module, flag in ((tensorboard, "tensorboard", "--tensorboard"), (wandb, "wandb", "--wandb")):
        if wanted and importlib.util.find_spec(module) is None:
            raise UsageError(f"{flag} needs the {module} package (pip install {module})")


class Trackers:
    def __init__(self, run_dir, config, tensorboard=False, wandb=False, columns=METRIC_COLUMNS):
        """columns: the metrics.csv columns to log (a continual run's has every task's accuracy)."""
        self.writer = self.wandb_run = None
        self.columns = columns
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            self.writer = SummaryWriter(log_dir=os.path.join(run_dir, TENSORBOARD_DIR))
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str) + "\n```")
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                raise UsageError("--wandb needs the wandb package (pip install wandb)") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            self.wandb_run = wandb_module.init(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                                               name=os.path.basename(os.path.normpath(run_dir)), dir=run_dir,
                                               config=config, reinit=True)

    def log_epoch(self, row):
        metrics = {key: row[key] for key in self.columns if key != "epoch" and row.get(key) is not None}
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({"epoch": row["epoch"], **metrics}, step=row["epoch"])

    def log_figure(self, png_path, epoch, name="curves"):
        if not os.path.exists(png_path):
            return
        if self.writer is not None:
            import matplotlib.image
            self.writer.add_image(name, matplotlib.image.imread(png_path)[..., :3], epoch, dataformats="HWC")
        if self.wandb_run is not None:
            import wandb as wandb_module
            self.wandb_run.log({name: wandb_module.Image(png_path)}, step=epoch)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
