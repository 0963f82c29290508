"""The ``fitnets`` commands, one module each (``run`` serves ``train``, ``distill`` and ``run``): each module's
``add_parser(sub)`` declares the command's flags and sets its handler, ``run(args) -> int``, beside it.
``flags`` holds what several commands share: the flags of a run and how they become its config."""
