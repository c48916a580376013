"""``python -m pyctr_fast``: the ``pyctr-fast`` command."""

from pyctr_fast.cli import main

if __name__ == "__main__":
    main()
