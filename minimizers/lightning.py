"""PyTorch Lightning's fp16 mixed precision for the minimizers (imports lightning; nothing else in the
package does).

Lightning's own ``MixedPrecision`` plugin (``Trainer(precision="16-mixed")``) calls the training closure
once itself and then ``scaler.step(optimizer)`` without it, so a minimizer that evaluates the gradient at
several points never gets the closure.  ``MinimizerPrecision`` is that plugin with one change: for a
minimizer it attaches the plugin's GradScaler to it and hands it the closure, and the minimizer unscales
every evaluation, skips the whole step on a non-finite gradient and updates the scale once per step
(docs/fp16.md).  Any other optimizer gets Lightning's handling unchanged; bf16 (no scaler) too::

    from minimizers.lightning import MinimizerPrecision
    trainer = lightning.Trainer(plugins=[MinimizerPrecision("16-mixed", "cuda")])   # not precision="16-mixed"

It works in automatic optimization and in manual optimization (``self.optimizers().step(closure)`` with a
closure that calls ``self.manual_backward(loss)``).  Gradient clipping by the Trainer is refused for a
minimizer: it would clip each evaluation's still-scaled gradient.  Lightning checkpoints the scaler
itself (the plugin's state); the minimizer's state_dict holds it too.
"""
from functools import partial

from lightning.pytorch.plugins.precision import MixedPrecision

from .base import Minimizer


class MinimizerPrecision(MixedPrecision):
    """``MixedPrecision`` whose fp16 optimizer step hands the closure and the scaler to a minimizer."""

    def optimizer_step(self, optimizer, model, closure, **kwargs):
        if self.scaler is None or not isinstance(optimizer, Minimizer):
            return super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        if optimizer.scaler is not self.scaler:
            optimizer.attach_scaler(self.scaler)
        # _wrap_closure runs Lightning's on_before_optimizer_step hook after each evaluation, as in fp32.
        return optimizer.step(closure=partial(self._wrap_closure, model, optimizer, closure), **kwargs)

    def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm=None):
        if clip_val and self.scaler is not None and isinstance(optimizer, Minimizer):
            raise RuntimeError("gradient clipping by the Trainer is not supported with a minimizer under fp16: it "
                               "would clip each evaluation's gradient before the minimizer unscales it")
        kwargs = {} if gradient_clip_algorithm is None else {"gradient_clip_algorithm": gradient_clip_algorithm}
        return super().clip_gradients(optimizer, clip_val=clip_val, **kwargs)
