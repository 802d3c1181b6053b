"""A plain Lightning project, as a user has it before hasten: a LightningModule that classifies
scikit-learn's handwritten digits with a small CNN, and a LightningDataModule for the digits
(70/30 split, stratified, fixed seed). Nothing here knows about hasten; recipe.py adapts it.

With Lightning installed it trains as usual: `Trainer(max_epochs=5).fit(DigitsClassifier(),
DigitsData())`. Without it, the classes fall back to plain torch ones, which hasten's adapter
needs no more than (it supplies `self.log`), so the example runs wherever hasten does.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    from lightning.pytorch import LightningDataModule, LightningModule
except ImportError:
    try:
        from pytorch_lightning import LightningDataModule, LightningModule
    except ImportError:  # no Lightning here: hasten's adapter needs only the methods below
        LightningModule, LightningDataModule = nn.Module, object


class DigitsClassifier(LightningModule):
    """Two 3x3 convolutions, pooling and two linears; AdamW with a cosine schedule."""

    def __init__(self, lr: float = 3e-3, epochs: int = 5) -> None:
        super().__init__()
        self.lr, self.epochs = lr, epochs
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())
        self.log("val_loss", nn.functional.cross_entropy(logits, y))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


class DigitsData(LightningDataModule):
    """The digits as (N, 1, 8, 8) pixels in [0, 1] and their labels, split 70/30."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        digits = load_digits()
        pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
        labels = torch.tensor(digits.target)
        train, held = train_test_split(range(len(labels)), test_size=0.3, random_state=0,
                                       stratify=digits.target)
        self.train_set = TensorDataset(pixels[train], labels[train])
        self.val_set = TensorDataset(pixels[held], labels[held])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)
