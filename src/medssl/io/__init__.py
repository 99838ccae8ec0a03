"""The files of medssl: one reader and writer per format (`artifacts`), the run folder's owner,
state and rules (`rundir`), and what finished runs hold (`records`)."""
