"""A real client: PyTorch Lightning's Trainer in automatic optimization with our Lookbehind_SAM and an
LR scheduler from configure_optimizers gives the parameters and BatchNorm buffers of our own loop; in fp16
(minimizers.lightning.MinimizerPrecision, automatic and manual optimization) those of our scaled loop."""
import warnings

import lightning
import pytest
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


# ------------------------------------------------------------------------------ fp16 mixed precision
# Lightning turns Trainer(accelerator="cpu", precision="16-mixed") into bf16-mixed (with a warning), so the
# CPU test passes the plugin itself: MinimizerPrecision("16-mixed", "cpu"), i.e. fp16 autocast and a CPU
# GradScaler, exactly what precision="16-mixed" gives on a GPU.  The initial scale 2^20 overflows the tiny
# net's fp16 backward: the first steps are skipped (tests/test_amp.py), so the skipping path runs in the Trainer.
FP16_STEPS, INIT_SCALE = 6, 2.0 ** 20


class LitFp16(LitTinyNet):
    def __init__(self, manual=False):
        super().__init__()
        self.net = self.net.float()
        self.automatic_optimization = not manual

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        if self.automatic_optimization:
            return F.cross_entropy(self(inputs), targets)

        def closure():
            loss = F.cross_entropy(self(inputs), targets)
            self.manual_backward(loss)             # the plugin's scaler.scale(loss)
            return loss.detach()
        self.optimizers().step(closure=closure)
        self.lr_schedulers().step()


def fp16_batches():
    return [(x.float(), y) for x, y in make_batches(FP16_STEPS)]


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
def test_lightning_fp16_plugin_matches_our_scaled_loop(tmp_path, manual):
    from minimizers.lightning import MinimizerPrecision

    batches = fp16_batches()
    ours = LitFp16()
    minimizer, scheduler = make_optimizers(ours)
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    minimizer.attach_scaler(scaler)
    ours.train()
    for inputs, targets in batches:
        def closure():
            with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False):
                loss = F.cross_entropy(ours(inputs), targets)
            scaler.scale(loss).backward()
            return loss.detach()
        minimizer.step(closure)
        scheduler.step()
    assert scaler.get_scale() < INIT_SCALE                   # steps were skipped

    lit = LitFp16(manual)
    plugin = MinimizerPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=INIT_SCALE))
    trainer = lightning.Trainer(max_steps=FP16_STEPS, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, default_root_dir=str(tmp_path), plugins=[plugin])
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(lit, loader)

    assert trainer.global_step == FP16_STEPS
    assert trainer.optimizers[0].scaler is plugin.scaler
    assert plugin.scaler.get_scale() == scaler.get_scale()
    theirs, mine = lit.state_dict(), ours.state_dict()
    for key, value in mine.items():
        assert torch.equal(theirs[key], value), key          # parameters and BatchNorm buffers, bit for bit


def test_lightning_fp16_plugin_refuses_gradient_clipping(tmp_path):
    from minimizers.lightning import MinimizerPrecision

    trainer = lightning.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                                default_root_dir=str(tmp_path), gradient_clip_val=1.0,
                                plugins=[MinimizerPrecision("16-mixed", "cpu")])
    loader = torch.utils.data.DataLoader(fp16_batches()[:1], batch_size=None, shuffle=False)
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="gradient clipping"):
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(LitFp16(), loader)
