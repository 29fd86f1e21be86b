"""Registered learning-to-hash methods. Importing this package registers every method module,
then the methods of installed plugins (entry-point group ``hashbench.methods``)."""
from hashbench.methods.registry import (  # noqa: F401
    PLUGIN_ERRORS, available, config_file, get_method, load_plugins, origin, register,
)

# Each import registers its method(s) by name; a missing or broken module is an ImportError here.
from hashbench.methods import exhaustive, itq, lsh, pq, rq  # noqa: F401
from hashbench.methods import hashnet, drq, dht, cascade_dht  # noqa: F401

load_plugins()
