"""One module per API resource; each has a ``router`` (an ``APIRouter``) that ``engine.api.app`` mounts."""
