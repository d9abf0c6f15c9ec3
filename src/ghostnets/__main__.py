"""``python -m ghostnets`` (also how ``torchrun -m ghostnets`` starts)."""

import sys

from .cli import main

sys.exit(main())
