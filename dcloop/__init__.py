"""dcloop: fix an image dataset in a spreadsheet, retrain a fixed model, see the score."""

__version__ = "0.1.0"
