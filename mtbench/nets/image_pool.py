"""The CycleGAN image history buffer.

Zhu et al. 2017 (CycleGAN, arXiv:1703.10593, Sec. 4 "Training details"): "to
reduce model oscillation, we follow Shrivastava et al.'s strategy [SimGAN] and
update the discriminators using a history of generated images rather than the
ones produced by the latest generators. We keep an image buffer that stores the
50 previously created images." The behaviour is that of the reference
``util/image_pool.py`` (junyanz/pytorch-CycleGAN-and-pix2pix), with two changes:
the random draws use torch's global (CPU) generator instead of Python's
``random``, so runs are reproducible under ``torch.manual_seed`` and resumable
from a checkpoint of the torch RNG state; and the buffer can be saved and
restored with :meth:`ImagePool.state_dict` / :meth:`ImagePool.load_state_dict`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtbench import validate

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of up to ``pool_size`` previously generated images.

    :meth:`query` takes a batch of generated images and returns a batch of the
    same shape: while the buffer is not full, every image is stored and
    returned as is; once full, each image is, with probability 0.5, swapped
    with a uniformly chosen stored image (the stored one is returned, the new
    one takes its place), and otherwise returned as is. ``pool_size=0``
    disables the buffer (``query`` returns its input unchanged).

    Stored and returned images are detached copies; the pool keeps them on the
    device and dtype of the images it was given (a restored buffer is moved to
    the device and dtype of the next query). Random numbers come from torch's global CPU generator
    (``torch.rand``/``torch.randint``), so no device synchronisation happens.
    """

    def __init__(self, pool_size: int = 50) -> None:
        validate.non_negative_int("pool_size", pool_size)
        self.pool_size = pool_size
        self.images: list[Tensor] = []

    @property
    def num_imgs(self) -> int:
        """Number of images currently stored."""
        return len(self.images)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """Return a batch drawn from the history (see the class docstring)."""
        if self.pool_size == 0:
            return images
        images = images.detach()
        if self.images and (self.images[0].device != images.device or self.images[0].dtype != images.dtype):
            # e.g. a buffer restored on the CPU, or fakes produced under a different autocast dtype
            self.images = [img.to(device=images.device, dtype=images.dtype) for img in self.images]
        n = images.shape[0]
        # Images that arrive once the pool is full draw (p, index); the draws are
        # made in one go, on the CPU generator, for exactly those images.
        n_full = max(0, n - (self.pool_size - len(self.images)))
        if n_full:
            swap = (torch.rand(n_full) > 0.5).tolist()
            index = torch.randint(0, self.pool_size, (n_full,)).tolist()
        out: list[Tensor] = []
        j = 0
        for image in images:
            image = image.clone()
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
                continue
            if swap[j]:
                k = index[j]
                stored = self.images[k]
                self.images[k] = image
                out.append(stored)
            else:
                out.append(image)
            j += 1
        result = torch.stack(out, 0)
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
            result = result.contiguous(memory_format=torch.channels_last)
        return result

    def state_dict(self) -> dict[str, Any]:
        """``{"pool_size": int, "images": Tensor (num_imgs, C, H, W) or None}``.

        Only ints and tensors, so it loads with ``torch.load(weights_only=True)``.
        """
        images = torch.stack(self.images, 0) if self.images else None
        return {"pool_size": self.pool_size, "images": images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the buffer saved by :meth:`state_dict`.

        ``images`` may be a stacked tensor, a list of per-image tensors, or
        ``None``/empty. The pool size must match this pool's.
        """
        pool_size = int(state["pool_size"])
        if pool_size != self.pool_size:
            raise ValueError(f"ImagePool state has pool_size={pool_size}, this pool has {self.pool_size}")
        images = state.get("images")
        if images is None:
            stored: list[Tensor] = []
        elif isinstance(images, Tensor):
            stored = [img.clone() for img in images] if images.numel() else []
        else:
            stored = [img.clone() for img in images]
        if len(stored) > self.pool_size:
            raise ValueError(f"ImagePool state holds {len(stored)} images, more than pool_size={self.pool_size}")
        self.images = stored

    def __repr__(self) -> str:
        return f"ImagePool(pool_size={self.pool_size}, num_imgs={len(self.images)})"
