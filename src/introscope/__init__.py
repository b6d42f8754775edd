"""introscope: look inside neural networks and the data that flows through them.

A DNIKit 2.0 compatible toolkit: ``from introscope.base import pipeline`` etc.
"""

import logging

__version__ = "0.1.0"

logging.getLogger("introscope").addHandler(logging.NullHandler())
