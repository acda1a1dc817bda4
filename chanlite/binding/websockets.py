"""``WebsocketBinding``: a Binding speaking multiplexed JSON over WebSockets.

Outbound frames are ``{"stream": <stream>, "payload": {"action", "pk",
"data", "model"}}`` (``data`` from Django's JSON serializer, so a UUID pk is a
string); inbound frames on the same stream carry ``{"action", "pk", "data"}``.
Put ``MyBinding.consumer`` in a ``WebsocketDemultiplexer``::

    class Demultiplexer(WebsocketDemultiplexer):
        http_user = True
        consumers = {"values": ValueBinding.consumer}

Inbound ``data`` may only name the binding's fields (``fields`` /
``exclude``), and the values sent are validated (``Model.clean_fields``)
before anything is written; 1.x let a client write any column.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.core import serializers
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder

from ..generic.websockets import WebsocketMultiplexer
from ..ordering import enforce_ordering
from .base import Binding, InvalidInbound

__all__ = ["WebsocketBinding", "WebsocketBindingWithMembers"]


class WebsocketBinding(Binding):
    """Outbound and inbound binding over a ``WebsocketDemultiplexer`` stream.

    Implement ``group_names(cls, instance)`` (outbound) and
    ``has_permission(self, user, action, pk)`` (inbound); optionally
    ``serialize_data``, ``create`` and ``update``.
    """

    model = None  # abstract
    stream: ClassVar[str | None] = None
    strict_ordering: ClassVar[bool] = False
    slight_ordering: ClassVar[bool] = False

    # outbound

    @classmethod
    def encode(cls, stream: str, payload: dict) -> dict:
        return WebsocketMultiplexer.encode(stream, payload)

    def serialize(self, instance: Any, action: str, **kwargs: Any) -> dict:
        return {
            "action": action,
            "pk": instance.pk,
            "data": self.serialize_data(instance, **kwargs),
            "model": self.model_label,
        }

    def bound_field_names(self, instance: Any = None) -> list[str] | None:
        """The concrete fields this binding sends and accepts (None: all)."""
        if self.fields is not None:
            if self.fields == "__all__" or list(self.fields) == ["__all__"]:
                return None
            return list(self.fields)
        excluded = set(self.exclude or ())
        return [f.name for f in self.model._meta.get_fields() if f.name not in excluded]

    def serialize_data(self, instance: Any, **kwargs: Any) -> dict:
        """The instance's bound fields as JSON-safe data (Django's serializer)."""
        fields = self.bound_field_names(instance)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            fields = [f for f in (fields if fields is not None else update_fields)
                      if f in set(update_fields)]
        data = serializers.serialize("json", [instance], fields=fields)
        return json.loads(data)[0]["fields"]

    # inbound

    @classmethod
    def trigger_inbound(cls, message: Any, **kwargs: Any) -> None:
        """Only ``websocket.receive`` carries actions; the demultiplexer also
        forwards connect and disconnect, which a binding ignores."""
        if message.channel.name != "websocket.receive":
            return
        super().trigger_inbound(message, **kwargs)

    @classmethod
    def get_handler(cls) -> Any:
        handler = super().get_handler()
        if cls.strict_ordering or cls.slight_ordering:
            return enforce_ordering(handler, slight=not cls.strict_ordering)
        return handler

    def deserialize(self, message: Any) -> tuple[str, Any, Any]:
        try:
            body = json.loads(message["text"]) if "text" in message else message.content
        except ValueError as exc:
            raise InvalidInbound(f"the frame is not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise InvalidInbound(f"the payload must be a JSON object, not {body!r:.60}")
        if "action" not in body:
            raise InvalidInbound(f"the payload has no 'action' (keys: {sorted(body)})")
        return body["action"], body.get("pk"), body.get("data")

    def _check_data(self, data: Any) -> dict:
        if not isinstance(data, dict):
            raise InvalidInbound(f"'data' must be an object of field values, not {data!r:.60}")
        allowed = self.bound_field_names()
        concrete = {f.name for f in self.model._meta.concrete_fields} | {
            f.name for f in self.model._meta.many_to_many}
        names = concrete if allowed is None else set(allowed) & concrete
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInbound(
                f"'data' names {', '.join(map(repr, unknown))}, not among the fields this "
                f"binding accepts ({', '.join(sorted(names))})")
        errors = {}
        for name, value in data.items():
            field = self.model._meta.get_field(name)
            if field.is_relation:
                continue  # the deserializer resolves related keys
            try:
                field.to_python(value)
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)
        return data

    def _hydrate(self, pk: Any, data: dict) -> Any:
        """A DeserializedObject for ``data`` (Django's JSON deserializer
        converts and checks each value)."""
        s_data = [{"pk": pk, "model": self.model_label, "fields": data}]
        return list(serializers.deserialize("json", json.dumps(s_data, cls=DjangoJSONEncoder)))[0]

    def _validate(self, instance: Any, data: dict) -> None:
        """The model's own checks of the fields sent (validators, choices,
        max_length, uniqueness); missing fields are left to the database."""
        unsent = [f.name for f in instance._meta.fields if f.name not in data]
        instance.clean_fields(exclude=unsent)
        instance.validate_unique(exclude=unsent)

    def create(self, data: Any) -> None:
        data = self._check_data(data)
        hydrated = self._hydrate(None, data)
        # The deserializer looks a pk-less object up by natural key (a User by
        # username): a "create" must never turn into an update of that row.
        hydrated.object.pk = None
        hydrated.object._state.adding = True
        self._validate(hydrated.object, data)
        hydrated.save()

    def update(self, pk: Any, data: Any) -> None:
        data = self._check_data(data)
        instance = self.model._default_manager.get(pk=pk)
        hydrated = self._hydrate(pk, data)
        for name in data:
            field = instance._meta.get_field(name)
            if field.many_to_many:
                continue
            setattr(instance, field.attname, getattr(hydrated.object, field.attname))
        self._validate(instance, data)
        instance.save()
        for name, values in hydrated.m2m_data.items():
            getattr(instance, name).set(values)


class WebsocketBindingWithMembers(WebsocketBinding):
    """A WebsocketBinding that also sends attributes, properties and
    zero-argument methods named in ``send_members`` (dotted paths reach
    related objects: ``"author.username"`` is sent as ``author__username``)."""

    model = None  # abstract
    send_members: ClassVar[list[str]] = []
    encoder = DjangoJSONEncoder()

    def serialize_data(self, instance: Any, **kwargs: Any) -> dict:
        data = super().serialize_data(instance, **kwargs)
        members = {}
        for path in self.send_members:
            member = instance
            for part in path.split("."):
                member = getattr(member, part)
            members[path.replace(".", "__")] = member() if callable(member) else member
        data.update(json.loads(self.encoder.encode(members)))
        return data
