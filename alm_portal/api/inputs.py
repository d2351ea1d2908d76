"""The base of every API input serializer: what a caller sends is either used or refused, never ignored.

A field the serializer does not declare (a typo such as `justfication`, a field of another endpoint)
is refused with 400 and the field's name, rather than dropped while the request succeeds. Free text is
bounded by `max_length` on each field (DRF answers 400 "Ensure this field has no more than N
characters."), and the OpenAPI schema states the same limit as `maxLength`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not declare, so nobody believes they set something that was ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field; it cannot be set here."] for name in unknown})
        return super().to_internal_value(data)
