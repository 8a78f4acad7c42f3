"""The MQTT bridge: a controller's state, telemetry and events out, fluoroscopy stops in (docs/mqtt.md).

from host.mqtt import MqttBridge, MqttOptions
bridge = MqttBridge(controller, MqttOptions(url="mqtt://127.0.0.1:1883", rig="rig1"))
await bridge.run()          # until cancelled; the broker going away never ends it
"""

from host.mqtt._bridge import BridgeCounters, MqttBridge
from host.mqtt._options import MqttOptions, MqttOptionsError
from host.mqtt._topics import Topics

__all__ = ["BridgeCounters", "MqttBridge", "MqttOptions", "MqttOptionsError", "Topics"]
