"""Registered learning-to-hash methods. Importing this package registers every method module,
then the methods of installed plugins (entry-point group ``hashbench.methods``)."""
from hashbench.methods.registry import (  # noqa: F401
    PLUGIN_ERRORS, available, config_file, get_method, load_plugins, origin, register,
)

# Each import registers its method(s) by name.
from hashbench.methods import exhaustive, itq, lsh, pq, rq  # noqa: F401,E402

for _optional in ("hashnet", "drq", "dht", "cascade_dht"):
    # Method modules land one issue at a time; the registry lists those present.
    try:
        __import__(f"hashbench.methods.{_optional}")
    except ModuleNotFoundError as _err:
        if _err.name != f"hashbench.methods.{_optional}":
            raise

load_plugins()
