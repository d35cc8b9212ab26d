"""Vision as inverse graphics (the paper's Sec. 3.2): AIR's inference network trained against a fixed
renderer. Read scenes.py, render.py, model.py, estimator.py, then train.py."""
