"""Batches grouped by length: the sampler, the padding cut, what the switch needs, and a
training study that measures it against random batches."""

from __future__ import annotations

import statistics
import textwrap

import pytest
import torch

from hasten.options import TrainOptions
from hasten.train import candidates, run
from hasten.train.switches import length_grouped
from hasten.train.switches.length_grouped import LengthGroupedSampler, lengths, trim_padding

# A bag-of-embeddings classifier over right-padded token ids with an attention mask, whose
# label is the first token's parity: nothing in it depends on the length.
RECIPE = textwrap.dedent('''
    import torch
    from torch import nn

    WIDTH = 48


    def _data(n, seed):
        g = torch.Generator().manual_seed(seed)
        real = torch.randint(4, WIDTH + 1, (n,), generator=g)
        mask = (torch.arange(WIDTH)[None, :] < real[:, None]).long()
        ids = torch.randint(1, 50, (n, WIDTH), generator=g) * mask
        return torch.utils.data.TensorDataset(ids, mask, ids[:, 0] % 2)


    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.head = nn.Linear(16, 2)

        def forward(self, ids, mask):
            weights = mask.unsqueeze(-1).float()
            pooled = (self.embed(ids) * weights).sum(1) / weights.sum(1)
            return self.head(pooled)


    def model():
        torch.manual_seed(0)
        return Bag()


    def train_data():
        return _data(512, 0)


    def loss(model, batch):
        ids, mask, y = batch
        return nn.functional.cross_entropy(model(ids, mask), y)
''')


def test_batches_hold_samples_of_similar_length_and_cover_the_epoch():
    found = [int(x) for x in torch.randint(1, 100, (1000,), generator=torch.Generator()
                                           .manual_seed(1))]
    sampler = LengthGroupedSampler(found, 10, torch.Generator().manual_seed(0), drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 100
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = statistics.fmean(max(found[i] for i in b) - min(found[i] for i in b)
                              for b in batches)
    rng = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    random = statistics.fmean(max(found[i] for i in rng[s:s + 10]) - min(found[i] for i in
                                                                         rng[s:s + 10])
                              for s in range(0, 1000, 10))
    assert spread < random / 5
    # The same seed gives the same batches; the order of batches is shuffled, not sorted.
    again = list(LengthGroupedSampler(found, 10, torch.Generator().manual_seed(0),
                                      drop_last=False))
    assert again == batches
    firsts = [min(found[i] for i in b) for b in batches]
    assert firsts != sorted(firsts)


def test_drop_last_drops_the_short_batch():
    sampler = LengthGroupedSampler(list(range(25)), 10, torch.Generator().manual_seed(0))
    assert len(sampler) == 2 and all(len(b) == 10 for b in sampler)


def test_padding_is_cut_to_the_longest_sample():
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    ids = torch.arange(12).view(2, 6) * mask
    labels = torch.tensor([0, 1])
    cut = trim_padding((ids, mask, labels), 1)
    assert cut[0].shape == (2, 3) and cut[1].shape == (2, 3) and torch.equal(cut[2], labels)
    assert torch.equal(cut[0], ids[:, :3])
    as_dict = trim_padding({"ids": ids, "mask": mask}, "mask")
    assert as_dict["ids"].shape == (2, 3)


def test_what_the_switch_needs(tmp_path):
    switch = length_grouped.LengthGrouped()
    mask = (torch.arange(8)[None, :] < torch.tensor([[2], [8], [3], [5]])).long()
    text = torch.utils.data.TensorDataset(torch.ones(4, 8, dtype=torch.long), mask,
                                          torch.zeros(4))
    facts = switch.facts(None, None, text)
    assert facts["lengths"]["mask"] == 1 and facts["lengths"]["mean"] == 4.5
    assert lengths(text, 1) == [2, 8, 3, 5]
    settings = run_settings(devices=1)
    assert switch.unavailable(facts, settings) is None
    images = torch.utils.data.TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4))
    assert "attention mask" in switch.unavailable(switch.facts(None, None, images), settings)
    # Padded, but so little that grouping cannot pay.
    nearly = (torch.arange(8)[None, :] < torch.tensor([[8], [8], [8], [7]])).long()
    full = torch.utils.data.TensorDataset(torch.ones(4, 8, dtype=torch.long), nearly)
    assert "little to gain" in switch.unavailable(switch.facts(None, None, full), settings)
    assert "one process" in switch.unavailable(facts, run_settings(devices=2))


def run_settings(**fields):
    from hasten.train.settings import TrainSettings

    base = dict(device="cpu", max_drop=0.01, quick=False, threads=2, point_s=1.0,
                baseline="32-true", model={}, recipe="r.py", steps=10, batch_size=16,
                eval=False, devices=1, memory_budget_mb=1.0)
    return TrainSettings(**{**base, **fields})


def test_a_study_measures_it_against_random_batches(tmp_path, monkeypatch):
    chosen = [(c, q) for c, q in candidates.menu()
              if c.name in ("32-true", "32-true/length-grouped")]
    monkeypatch.setattr(candidates, "menu", lambda: chosen)
    monkeypatch.setattr(run, "CONVERGE", 0)
    recipe = tmp_path / "bag.py"
    recipe.write_text(RECIPE)
    study = run.optimize_training(recipe, TrainOptions(
        steps=20, batch_size=32, point_s=0.2, audit=False, memory_budget_mb=1.0,
        out=tmp_path / "runs"))
    rows = {r["candidate"]: r for r in study.table()}
    grouped = rows["32-true/length-grouped"]
    # It always trains to the end, so that the convergence run shows what it costs.
    assert grouped["status"] in ("ok", "outside tolerance"), grouped["reason"]
    assert grouped["converge"]["steps"] == 20 and grouped["samples_per_s"] > 0
    assert any("LengthGroupedSampler" in line for line in grouped["code"])
    assert study.settings.model["lengths"]["padded_to"] == 48


@pytest.mark.parametrize("name", ["digits"])
def test_the_digits_demo_has_no_lengths_to_group(name):
    from hasten.train.demos import DEMOS
    from hasten.train.recipe import load_recipe

    dataset = load_recipe(DEMOS[name]).train_dataset()
    facts = length_grouped.LengthGrouped().facts(None, None, dataset)
    assert facts == {"lengths": None}
