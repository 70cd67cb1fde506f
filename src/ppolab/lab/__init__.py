"""The lab: sweeps of seeds and hyperparameters, their statistics, reports and the chapter's exercises.

``plan`` turns a grid into trials, ``trial`` runs one (an ordinary run directory), ``executors``
run many (a local process pool or Ray), ``sweep`` keeps the sweep directory's record and resumes
it, ``stats`` holds the estimators, ``report`` the figures and tables, ``exercises`` the chapter's
questions as ready-made sweeps.
"""
