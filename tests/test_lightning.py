"""A real client: PyTorch Lightning's Trainer in automatic optimization with our Lookbehind_SAM and an
LR scheduler from configure_optimizers gives the parameters and BatchNorm buffers of our own loop."""
import warnings

import lightning
import torch
import torch.nn.functional as F

import minimizers
from reference import LR, MOMENTUM, WD, make_batches, make_model

HPARAMS = dict(rho=0.05, k=2, alpha=-1)
MILESTONES, GAMMA = [2], 0.1      # the lr drops after the second step: the scheduler visibly acts


def make_optimizers(module):
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    minimizer = minimizers.create("Lookbehind_SAM", module, optimizer, **HPARAMS)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(minimizer, milestones=MILESTONES, gamma=GAMMA)
    return minimizer, scheduler


class LitTinyNet(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = make_model()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return F.cross_entropy(self(inputs), targets)

    def configure_optimizers(self):
        minimizer, scheduler = make_optimizers(self)
        return {"optimizer": minimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_lightning_trainer_matches_our_loop(tmp_path):
    batches = make_batches(5)

    ours = LitTinyNet()
    minimizer, scheduler = make_optimizers(ours)
    ours.train()
    for inputs, targets in batches:
        minimizer.step(minimizers.make_closure(ours, F.cross_entropy, inputs, targets))
        scheduler.step()

    lit = LitTinyNet()
    trainer = lightning.Trainer(max_steps=len(batches), accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(lit, loader)

    assert trainer.global_step == len(batches)
    assert trainer.optimizers[0].param_groups[0]["lr"] == LR * GAMMA      # the scheduler acted on the base lr
    theirs, mine = lit.state_dict(), ours.state_dict()
    assert theirs.keys() == mine.keys() and any("running_mean" in key for key in mine)
    for key, value in mine.items():
        assert torch.equal(theirs[key], value), key          # parameters and BatchNorm buffers, bit for bit
    assert not torch.equal(mine["net.conv.weight"], make_model().conv.weight.detach())
