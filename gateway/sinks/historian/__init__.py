"""The embedded historian (``type: historian``): one local SQLite file, no server needed."""
