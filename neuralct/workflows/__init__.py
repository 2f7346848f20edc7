"""What each command does, as functions: ``cli/X.py`` parses options and calls ``workflows/X.py``.

``train`` (build, train and rank a model from trajectories, arrays or a toy), ``analyze`` (CVs,
COLVAR files, Ramachandran and free-energy figures, VAMP-2 against TICA), ``bias`` (a well-tempered
metadynamics run on the learned CVs), ``sample`` (exact chains through a model), ``memory``
(refusing runs that cannot fit).
"""

__all__: list[str] = []
