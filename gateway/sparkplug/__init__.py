"""Sparkplug B 3.0, shared by the host application (``connectors/sparkplug``) and the edge node
(``gateway/sinks/sparkplug``): topics, payloads ↔ values, and each side's memory of a session.

- :mod:`gateway.sparkplug.sparkplug_b_pb2`: generated from the specification's ``.proto`` (beside it);
- :mod:`gateway.sparkplug.topics`: ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` and STATE;
- :mod:`gateway.sparkplug.payload`: datatypes, where each value travels, Quality, templates;
- :mod:`gateway.sparkplug.host`: births, aliases, sequence numbers, deaths and rebirth episodes as
  a host application keeps them (no I/O);
- :mod:`gateway.sparkplug.edge`: an edge node's metrics, aliases, seq and bdSeq, and the payloads
  it publishes (no I/O).

No module here does I/O or knows MQTT: the connector and the sink own their connections.
"""
