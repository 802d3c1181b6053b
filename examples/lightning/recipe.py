"""A `hasten train` recipe from an existing LightningModule and LightningDataModule
(lit_digits.py), without rewriting them: hasten.train.lightning turns them into the recipe's
functions.

    hasten train examples/lightning/recipe.py --batch-size 64 --steps 150
"""

from lit_digits import DigitsClassifier, DigitsData

from hasten.train.lightning import recipe_from

model, train_data, loss, optimizer, eval_data, evaluate = recipe_from(DigitsClassifier,
                                                                      DigitsData)
