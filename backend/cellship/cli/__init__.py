"""The ``cellship`` command, one module per command group.

- :mod:`.main`   the parser, ``train``/``jobs``/``logs``/``status``/``cancel``/``tensorboard``
- :mod:`.batch`  ``batch`` and its ``batch-*`` subcommands
- :mod:`.serve`  ``export``, ``models``, ``serve``
- :mod:`.build`  ``build``
- :mod:`.deploy` ``deploy``, ``undeploy``, ``deployments``

Rules: nothing else in cellship imports this package; it is a thin layer over the API.
"""

from cellship.cli.main import main

__all__ = ["main"]
