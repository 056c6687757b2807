"""VPN gateway connectors: one shared syslog/file layer (``base``), one parser module per vendor."""
