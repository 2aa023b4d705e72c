"""django-redis serializer that speaks JSON through orjson (never pickle)."""

from typing import Any

import orjson
from django_redis.serializers.base import BaseSerializer


class OrjsonSerializer(BaseSerializer):
    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(self, value: bytes) -> Any:
        return orjson.loads(value)
