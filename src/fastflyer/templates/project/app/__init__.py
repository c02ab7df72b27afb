"""The apps of {{project_name}}: every package here is loaded by FastFlyer, in sorted order.

This directory is put on ``sys.path`` so an app imports its own modules briefly:
``from items.module import ItemStore``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)
