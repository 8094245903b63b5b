"""One module per fault scenario, ``sNN_name.py``: ``NUMBER``, ``TITLE``, ``run(env)``."""
