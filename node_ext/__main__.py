"""python -m node_ext ...: the node-ext command line."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
