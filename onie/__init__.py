"""ONIE knowledge as a library: installer images, partition layouts, discovery rules, TlvInfo EEPROM.

Never imports `provision` and never reads YAML: callers hand it plain typed objects.
"""
