"""The bench application: link, client, CLI, recordings, MQTT bridge, dashboard."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
