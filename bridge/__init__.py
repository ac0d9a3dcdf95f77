"""milur-bridge: polls Milur electricity meters and serves their values over OPC UA and Modbus TCP."""

__version__ = "0.1.0"
